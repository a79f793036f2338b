"""Reads of the model registry: the active version, a version's report plots, training runs and the
model status the site shows while no model is active."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from django.core.files.storage import default_storage
from django.db.models import Case, Value, When

from catalog.selectors import TrainingRow, training_rows
from registry.models import ModelVersion, TrainingRun

MODEL_RUN_KINDS = (TrainingRun.Kind.BOOTSTRAP, TrainingRun.Kind.TRAIN, TrainingRun.Kind.RETRAIN)
"""Kinds of run that produce a model version."""

STAGE_LABELS = {
    "importing": "Importing the catalog photos",
    "splitting": "Splitting the photos into training and test sets",
    "embedding": "Reading the catalog photos",
    "preparing": "Preparing real-world photos",
    "fitting": "Fitting the brand classifier",
    "augmenting": "Making practice copies of the photos",
    "fine-tuning": "Fine-tuning the image model",
    "finishing": "Fitting the model, price and refusal rules",
    "saving": "Saving the model",
    "gating": "Comparing with the active model",
    "evaluating": "Scoring photos",
}
"""What each ``TrainingRun.STAGES`` stage means, for people (the site's banner and admin)."""
STAGE_UNITS = {
    "importing": "photos",
    "embedding": "photos",
    "preparing": "photos",
    "augmenting": "photos",
    "evaluating": "photos",
    "gating": "photos",
    "fine-tuning": "rounds",
    "saving": "files",
}
"""What ``done`` / ``total`` count in each stage (``steps`` where not listed)."""


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


def training_run_live(*, kinds: Sequence[str] = MODEL_RUN_KINDS) -> TrainingRun | None:
    """The oldest ``pending`` or ``running`` run of these kinds (the one the ``training`` queue does first), or None."""
    return TrainingRun.objects.filter(kind__in=kinds, status__in=TrainingRun.LIVE).order_by("created_at", "id").first()


def catalog_fingerprint(rows: Iterable[TrainingRow] | None = None) -> str:
    """SHA-256 (hex) of what training reads from the catalog: each image's hash, brand, group, price,
    listed product, named model and style, in image order (``catalog.selectors.training_rows``).

    Equal fingerprints mean a new training would see the same data (and, with the same seed and settings,
    give the same model), so scheduled retraining skips it.
    """
    digest = hashlib.sha256()
    for row in rows if rows is not None else training_rows():
        fields = (row.sha256, row.brand, row.group, row.price_usd, row.product_id, row.model, row.style)
        digest.update("\x1f".join("" if value is None else str(value) for value in fields).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()


def training_run_progress(run: TrainingRun) -> dict[str, Any]:
    """A run's progress as JSON-ready figures: ``{"id", "kind", "status", "stage", "stage_label", "step",
    "steps", "done", "total", "unit", "percent", "eta_seconds", "started_at", "updated_at"}``.

    ``step`` / ``steps`` place the stage among the stages this run goes through (importing only when it
    imports sets, fine-tuning stages only when it fine-tunes, gating only for a scheduled retraining);
    ``percent`` is ``done / total`` of the stage (None when the total is unknown). No error text or paths:
    the site shows this to anyone.
    """
    if run.kind == TrainingRun.Kind.EVALUATE:
        stages = ["evaluating"]
    else:
        stages = [
            stage
            for stage in TrainingRun.STAGES
            if stage != "evaluating"
            and (stage != "importing" or bool(run.options.get("imports")))
            and (stage not in {"augmenting", "fine-tuning"} or run.options.get("finetune", True))
            and (stage != "gating" or run.kind == TrainingRun.Kind.RETRAIN)
        ]
    step = stages.index(run.stage) + 1 if run.stage in stages else None
    return {
        "id": run.id,
        "kind": run.kind,
        "status": run.status,
        "stage": run.stage or None,
        "stage_label": STAGE_LABELS.get(run.stage, run.stage) if run.stage else None,
        "step": step,
        "steps": len(stages),
        "done": run.done,
        "total": run.total,
        "unit": STAGE_UNITS.get(run.stage, "steps"),
        "percent": round(100 * run.done / run.total, 1) if run.total else None,
        "eta_seconds": run.eta_seconds,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "updated_at": (run.heartbeat_at or run.created_at).isoformat(),
    }


def model_status(*, run_when_ready: bool = True) -> dict[str, Any]:
    """What the site tells visitors about the model: ``{"ready", "active", "run"}``, in two queries (one when
    a version is active and ``run_when_ready`` is False: the banner needs no run then).

    ``ready``: a version is active. ``active``: ``{"name", "activated_at"}`` or None. ``run``
    (``training_run_progress``): a live run that will produce a version (a retraining, say); with no active
    version and none live, the latest such run (a failed one shows as ``status: failed``); else None.
    """
    active = model_version_get_active()
    if active is not None and not run_when_ready:
        return {"ready": True, "active": {"name": active.name}, "run": None}
    run = (
        TrainingRun.objects.filter(kind__in=MODEL_RUN_KINDS)
        .annotate(idle=Case(When(status__in=TrainingRun.LIVE, then=Value(0)), default=Value(1)))
        .order_by("idle", "-created_at", "-id")
        .first()
    )
    if run is not None and active is not None and not run.is_live:
        run = None
    return {
        "ready": active is not None,
        "active": {
            "name": active.name,
            "activated_at": active.activated_at.isoformat() if active.activated_at else None,
        }
        if active is not None
        else None,
        "run": training_run_progress(run) if run is not None else None,
    }
