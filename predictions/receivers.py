"""Signal receivers of the predictions app (connected in ``PredictionsConfig.ready``): uploads move to the
account at login; uploads that waited for the first model are enqueued when it is activated.

Django's ``user_logged_in`` is the one hook that fires on every login (the login form, sign-up, password
reset with auto-login, admin, ``Client.login``), and ``accounts`` sits below ``predictions`` and may not
call it; the receiver only reads the request and calls the service.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.dispatch import receiver
from django.http import HttpRequest

from predictions.services import VISITOR_SESSION_KEY, prediction_claim_session, prediction_enqueue_waiting
from registry.models import ModelVersion
from registry.signals import model_activated


def claim_uploads_on_login(sender: Any, request: HttpRequest | None, user: AbstractBaseUser, **kwargs: Any) -> None:
    """Move the uploads the browser made before sign-up or login (same session) to the account."""
    session = getattr(request, "session", None)
    key = session.get(VISITOR_SESSION_KEY) if session is not None else None
    if isinstance(key, str):  # sessions from before this entry held a key hold True
        prediction_claim_session(user=user, session_key=key)


@receiver(model_activated, dispatch_uid="predictions.enqueue_waiting_uploads")
def enqueue_waiting_uploads(
    sender: Any, model_version: ModelVersion, previous: ModelVersion | None, **kwargs: Any
) -> None:
    """The first model is active (``previous`` is None): send the uploads that waited for it to the workers.

    Connected when this module is imported (``PredictionsConfig.ready``). Later activations need nothing:
    uploads made while a version is active never wait.
    """
    if previous is None:
        prediction_enqueue_waiting()
