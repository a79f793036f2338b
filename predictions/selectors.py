"""Reads of the predictions app: a visitor's own predictions."""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import Http404

from predictions.longpoll import watcher
from predictions.models import Prediction


def prediction_list_visible(
    *, user: AbstractBaseUser | AnonymousUser | None, session_key: str = ""
) -> QuerySet[Prediction]:
    """Predictions the caller may see: a signed-in user's own, else the anonymous session's own.

    Nobody sees another visitor's predictions; an anonymous caller without a session sees none.
    """
    if user is not None and user.is_authenticated:
        return Prediction.objects.filter(owner=user).order_by("-created_at")
    if session_key:
        return Prediction.objects.filter(owner__isnull=True, session_key=session_key).order_by("-created_at")
    return Prediction.objects.none()


def prediction_get_visible(
    *, prediction_id: Any, user: AbstractBaseUser | AnonymousUser | None, session_key: str = ""
) -> Prediction:
    """One prediction the caller may see.

    Raises:
        Http404: the id does not exist or belongs to someone else (the two look the same).
    """
    prediction = (
        prediction_list_visible(user=user, session_key=session_key)
        .select_related("model_version")
        .filter(id=prediction_id)
        .first()
    )
    if prediction is None:
        raise Http404("No such prediction.")
    return prediction


_waiters: dict[int, threading.BoundedSemaphore] = {}
_waiters_lock = threading.Lock()


def _waiter_slots(count: int) -> threading.BoundedSemaphore:
    """This process's ``count`` long-poll slots (``SNEAKERS_LONG_POLL_WAITERS``), made on first use."""
    with _waiters_lock:
        return _waiters.setdefault(count, threading.BoundedSemaphore(count))


def prediction_wait_terminal(*, prediction: Prediction, seconds: float, known_status: str = "") -> Prediction:
    """Hold a status read until the prediction is finished (long polling), so a client learns of its result
    as soon as the result exists instead of at its next poll.

    The request sleeps until this process's status watcher (``predictions.longpoll``), which reads the status of
    every waiting prediction in one query every ``SNEAKERS_LONG_POLL_INTERVAL`` seconds (25 ms by default), sees
    it terminal, or until ``seconds`` have passed. Each web process lets at most ``SNEAKERS_LONG_POLL_WAITERS`` requests
    wait at once (fewer than its threads, so uploads and page views always find a free thread); when they
    are all taken the read answers at once, and the caller's usual poll schedule takes over.

    Args:
        prediction: the caller's prediction, as ``prediction_get_visible`` returned it.
        seconds: longest wait, in seconds; 0 or a finished prediction answers at once.
        known_status: the status the caller last saw (the result page: ``queued``); when given, the wait also
            ends as soon as the status is another one (``queued`` -> ``running``), and at once when it already is.

    Returns:
        The prediction as it is now (re-read with its model version when it changed).

    Raises:
        Http404: the prediction was deleted while the request waited.
    """
    count = settings.SNEAKERS_LONG_POLL_WAITERS
    changed = bool(known_status) and prediction.status != known_status
    if seconds <= 0 or prediction.is_terminal or changed or count <= 0:
        return prediction
    slots = _waiter_slots(count)
    if not slots.acquire(blocking=False):
        return prediction
    try:
        moved = watcher().wait(prediction_id=prediction.id, known_status=known_status, timeout=seconds)
    finally:
        slots.release()
    if not moved:
        return prediction
    # One query with the model version the answer names (``refresh_from_db`` would leave it to a second one).
    again = Prediction.objects.select_related("model_version").filter(pk=prediction.pk).first()
    if again is None:
        raise Http404("No such prediction.")
    return again
