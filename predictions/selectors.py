"""Reads of the predictions app: a visitor's own predictions."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import Http404

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
