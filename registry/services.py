"""Writes of the model registry: register a trained version, activate it, record whether workers load it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.utils import timezone

from registry.models import ModelVersion


@transaction.atomic
def model_version_activate(*, model_version: ModelVersion) -> ModelVersion:
    """Make ``model_version`` the one active version; the previous active one is retired."""
    ModelVersion.objects.select_for_update().filter(status=ModelVersion.Status.ACTIVE).exclude(
        id=model_version.id
    ).update(status=ModelVersion.Status.RETIRED)
    model_version.status = ModelVersion.Status.ACTIVE
    model_version.activated_at = timezone.now()
    model_version.save(update_fields=["status", "activated_at"])
    return model_version


@transaction.atomic
def model_version_create(
    *,
    name: str,
    artifact_prefix: str,
    backbone_fingerprint: str,
    classes: Sequence[str],
    metrics: dict[str, Any],
    training_seconds: float | None,
    activate_if_first: bool = True,
) -> ModelVersion:
    """Register a trained artifact as a ``candidate`` version; the first version ever becomes active."""
    first = not ModelVersion.objects.exists()
    version = ModelVersion.objects.create(
        name=name,
        artifact_prefix=artifact_prefix,
        backbone_fingerprint=backbone_fingerprint,
        classes=list(classes),
        metrics=metrics,
        training_seconds=training_seconds,
    )
    if first and activate_if_first:
        model_version_activate(model_version=version)
    return version


def model_version_report_load(*, model_version: ModelVersion, error: str = "") -> None:
    """Record whether a worker could load this version (``error`` empty when it could); health shows it."""
    ModelVersion.objects.filter(id=model_version.id).update(load_error=error[:2000], load_checked_at=timezone.now())
