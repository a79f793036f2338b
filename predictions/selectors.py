"""Reads of the predictions app: a visitor's own predictions, the active model version."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import Http404

from predictions.models import ModelVersion, Prediction


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


def model_version_report_urls(*, model_version: ModelVersion) -> dict[str, str]:
    """URLs of the version's report plots (``<artifact_prefix>/report/*.png``), by file name."""
    folder = f"{model_version.artifact_prefix.rstrip('/')}/report"
    try:
        _, files = default_storage.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {name: default_storage.url(f"{folder}/{name}") for name in sorted(files) if name.endswith(".png")}


def model_version_get_active() -> ModelVersion | None:
    """The active model version, or None before the first training."""
    return ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).first()
