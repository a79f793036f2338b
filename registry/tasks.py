"""Celery tasks of the model registry (queue ``training``, the ``jobs`` worker): thin wrappers around
``registry.jobs``, each running one ``TrainingRun``.

Services enqueue them by name (``registry.services.training_run_enqueue``), so the web process never
imports this module; ``registry.training`` imports TensorFlow only inside the functions that train.
Every task claims its run with a conditional update, so a duplicate message does nothing.
"""

from __future__ import annotations

from celery import shared_task

from registry.jobs import run_options, training_run_execute
from registry.models import TrainingRun

TRAINING_LIMITS = {"acks_late": True, "soft_time_limit": 3 * 3600, "time_limit": 3 * 3600 + 300}
"""A fine-tuned training of the shared catalog takes about an hour on 2 CPU cores; 3 hours is the ceiling."""


def _run(kind: str, run_id: int | None, options: dict) -> int:
    """Execute run ``run_id``, or a new run of ``kind`` with ``options`` when None; returns the run's id."""
    if run_id is None:
        run_id = TrainingRun.objects.create(kind=kind, options=options).id
    training_run_execute(run_id=run_id)
    return run_id


@shared_task(name="registry.tasks.train", **TRAINING_LIMITS)
def train(run_id: int | None = None, seed: int | None = None) -> int:
    """Train a new ``ModelVersion`` (run ``run_id``, or a new ``train`` run with ``seed``); returns the run id."""
    return _run(TrainingRun.Kind.TRAIN, run_id, run_options(seed=seed))


@shared_task(name="registry.tasks.bootstrap", **TRAINING_LIMITS)
def bootstrap(run_id: int) -> int:
    """First run: import the shared sets the catalog lacks, then train and activate (``registry.jobs``)."""
    return _run(TrainingRun.Kind.BOOTSTRAP, run_id, {})


@shared_task(name="registry.tasks.retrain", **TRAINING_LIMITS)
def retrain(run_id: int | None = None) -> int:
    """Scheduled retraining (Celery beat): train when the catalog changed, activate only through the gate."""
    return _run(TrainingRun.Kind.RETRAIN, run_id, run_options(activate="gate"))


@shared_task(name="registry.tasks.evaluate", **TRAINING_LIMITS)
def evaluate(run_id: int) -> int:
    """Score a version through the prediction pipeline (``options``: model, directories, split)."""
    return _run(TrainingRun.Kind.EVALUATE, run_id, {})
