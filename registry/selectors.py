"""Reads of the model registry: the active version, a version's report plots."""

from __future__ import annotations

from django.core.files.storage import default_storage

from registry.models import ModelVersion


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
