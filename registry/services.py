"""Writes of the model registry: register a trained version, activate it or roll back, record whether
workers load it, and the life of a ``TrainingRun`` (start, claim, finish, recognise a dead one)."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from registry.models import ModelVersion, TrainingRun
from registry.signals import model_activated

logger = logging.getLogger(__name__)

RUN_TASKS = {
    TrainingRun.Kind.BOOTSTRAP: "registry.tasks.bootstrap",
    TrainingRun.Kind.TRAIN: "registry.tasks.train",
    TrainingRun.Kind.RETRAIN: "registry.tasks.retrain",
    TrainingRun.Kind.EVALUATE: "registry.tasks.evaluate",
}
"""The Celery task (routed to the ``training`` queue by ``CELERY_TASK_ROUTES``) that runs each kind of run."""


@transaction.atomic
def model_version_activate(*, model_version: ModelVersion, remember_previous: bool = True) -> ModelVersion:
    """Make ``model_version`` the one active version; the previous active one is retired.

    ``previous_version`` is set to the version that was active (what a roll back returns to), unless
    ``remember_previous`` is False (a roll back keeps the older history). After commit, ``model_activated``
    is sent (``registry.signals``) with the version and the previous one (None for the first model).
    Activating the active version changes nothing and sends nothing.
    """
    previous = (
        ModelVersion.objects.select_for_update()
        .filter(status=ModelVersion.Status.ACTIVE)
        .exclude(id=model_version.id)
        .first()
    )
    if previous is None and model_version.status == ModelVersion.Status.ACTIVE:
        return model_version
    if previous is not None:
        ModelVersion.objects.filter(id=previous.id).update(status=ModelVersion.Status.RETIRED)
    fields = ["status", "activated_at"]
    model_version.status = ModelVersion.Status.ACTIVE
    model_version.activated_at = timezone.now()
    if remember_previous and previous is not None:
        model_version.previous_version = previous
        fields.append("previous_version")
    model_version.save(update_fields=fields)
    transaction.on_commit(
        lambda: model_activated.send(sender=ModelVersion, model_version=model_version, previous=previous)
    )
    return model_version


@transaction.atomic
def model_version_roll_back() -> ModelVersion:
    """Re-activate the version that was active before the active one (its ``previous_version``).

    The rolled-back version is retired; the restored one keeps its own ``previous_version``, so rolling back
    again goes one step further back.

    Raises:
        ValueError: no version is active, or the active one has no previous version (the first model).
    """
    active = ModelVersion.objects.select_for_update().filter(status=ModelVersion.Status.ACTIVE).first()
    if active is None:
        raise ValueError("No version is active, so there is nothing to roll back.")
    if active.previous_version_id is None:
        raise ValueError(f"{active.name} has no previous version to roll back to.")
    previous = ModelVersion.objects.get(id=active.previous_version_id)
    return model_version_activate(model_version=previous, remember_previous=False)


def model_version_set_gate(*, model_version: ModelVersion, gate: dict[str, Any]) -> None:
    """Store the activation gate's decision and figures on a version (admin shows them)."""
    model_version.gate = gate
    model_version.save(update_fields=["gate"])


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
    catalog_fingerprint: str = "",
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
        catalog_fingerprint=catalog_fingerprint,
    )
    if first and activate_if_first:
        model_version_activate(model_version=version)
    return version


def model_version_report_load(*, model_version: ModelVersion, error: str = "") -> None:
    """Record whether a worker could load this version (``error`` empty when it could); health shows it."""
    ModelVersion.objects.filter(id=model_version.id).update(load_error=error[:2000], load_checked_at=timezone.now())


def training_run_enqueue(*, run: TrainingRun) -> bool:
    """Send the run's task (``RUN_TASKS``) with its id; True when the broker took it.

    A broker outage leaves the run ``pending`` (logged); sending it again later is harmless, since the task
    claims its run with a conditional update (``training_run_claim``).
    """
    try:
        current_app.send_task(RUN_TASKS[run.kind], kwargs={"run_id": run.id})
    except Exception:  # kombu raises transport-specific errors; any of them means "not sent"
        logger.exception("could not enqueue training run %s; it stays pending", run.id)
        return False
    return True


def training_run_start(
    *, kind: str, options: dict[str, Any] | None = None, requested_by: AbstractBaseUser | None = None
) -> TrainingRun:
    """Create a ``pending`` run of ``kind`` and enqueue its task after the transaction commits.

    ``options`` by kind: train ``{"seed", "finetune", "activate": "first" | "always" | "gate"}``; bootstrap
    ``{"imports": [[folder, product kind], ...]}``; evaluate ``{"model", "directories", "split"}``.

    Raises:
        ValueError: an unknown kind.
    """
    if kind not in RUN_TASKS:
        raise ValueError(f"kind must be one of {sorted(RUN_TASKS)}, got {kind!r}")
    user = requested_by if requested_by is not None and requested_by.is_authenticated else None
    run = TrainingRun.objects.create(kind=kind, options=options or {}, requested_by=user)
    transaction.on_commit(lambda: training_run_enqueue(run=run))
    return run


def training_run_claim(*, run_id: int) -> TrainingRun | None:
    """Move a run ``pending -> running`` with a conditional update; None when it is not pending (done, or
    another worker has it), so a duplicate message does nothing."""
    now = timezone.now()
    changed = TrainingRun.objects.filter(id=run_id, status=TrainingRun.Status.PENDING).update(
        status=TrainingRun.Status.RUNNING, started_at=now, heartbeat_at=now, worker=this_worker()
    )
    return TrainingRun.objects.get(id=run_id) if changed else None


def training_run_finish(
    *, run: TrainingRun, status: str, error: str = "", model_version: ModelVersion | None = None
) -> None:
    """End a run: ``succeeded``, ``failed`` (with ``error``) or ``skipped``; the ETA is cleared."""
    run.status = status
    run.error = error[:4000]
    run.finished_at = timezone.now()
    run.eta_seconds = None
    fields = ["status", "error", "finished_at", "eta_seconds"]
    if model_version is not None:
        run.model_version = model_version
        fields.append("model_version")
    run.save(update_fields=fields)


def this_worker() -> str:
    """``host:pid`` of this process, as recorded on the runs it claims."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _process_gone(worker: str) -> bool:
    """True when ``worker`` (``host:pid``) names a process of this host that no longer exists."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def training_run_fail_stale(*, now: datetime | None = None) -> int:
    """Fail the ``running`` runs whose worker is gone: their process on this host no longer exists (a Ctrl-C
    of ``make run``, a killed worker), or no heartbeat for ``SNEAKERS_TRAINING_STALE_SECONDS`` (another host).
    Returns how many were failed. A message the broker hands out again for such a run then does nothing."""
    now = now or timezone.now()
    before = now - timedelta(seconds=settings.SNEAKERS_TRAINING_STALE_SECONDS)
    running = TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING)
    gone = [run.id for run in running.only("id", "worker", "heartbeat_at") if _process_gone(run.worker)]
    return running.filter(Q(heartbeat_at__lt=before) | Q(id__in=gone)).update(
        status=TrainingRun.Status.FAILED,
        error="The worker running this job stopped (killed, restarted or lost); start it again.",
        finished_at=now,
        eta_seconds=None,
    )
