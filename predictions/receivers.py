"""Signal receivers of the predictions app (connected in ``PredictionsConfig.ready``).

Django's ``user_logged_in`` is the one hook that fires on every login (the login form, sign-up, password
reset with auto-login, admin, ``Client.login``), and ``accounts`` sits below ``predictions`` and may not
call it; the receiver only reads the request and calls the service.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest

from predictions.services import VISITOR_SESSION_KEY, prediction_claim_session


def claim_uploads_on_login(sender: Any, request: HttpRequest | None, user: AbstractBaseUser, **kwargs: Any) -> None:
    """Move the uploads the browser made before sign-up or login (same session) to the account."""
    session = getattr(request, "session", None)
    key = session.get(VISITOR_SESSION_KEY) if session is not None else None
    if isinstance(key, str):  # sessions from before this entry held a key hold True
        prediction_claim_session(user=user, session_key=key)
