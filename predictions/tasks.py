"""Celery tasks of the predictions app: thin wrappers that pass ids and call ``predictions.services``.

The web process imports this module (to enqueue), so nothing here imports an ML library at module
level; models load in worker processes only, warmed at ``worker_process_init``.
"""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_process_init
from django.db import InterfaceError, OperationalError

from predictions.services import prediction_mark_failed, prediction_release, prediction_run, prediction_sweep
from registry import runtime
from registry.selectors import model_version_get_active

logger = logging.getLogger(__name__)

# Errors worth another try: the database or storage blinked. Everything else is handled in the
# service as a permanent failure with a code.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


@shared_task(
    bind=True,
    name="predictions.tasks.predict",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=5,
    soft_time_limit=300,
    time_limit=360,
)
def predict(self, prediction_id: str) -> None:
    """Run the prediction pipeline for one ``Prediction`` id (queue ``inference``).

    Safe to rerun: the row is claimed with a conditional update. Transient errors put the row back
    to ``queued`` and retry with exponential backoff (1, 2, 4, 8, 16 s; Celery ``Task.retry``);
    after the last try the prediction fails with ``transient_error``. Unexpected errors fail the
    prediction with ``internal_error`` instead of leaving it ``running``.
    """
    try:
        prediction_run(prediction_id=prediction_id)
    except TRANSIENT_ERRORS as exc:
        prediction_release(prediction_id=prediction_id)
        if self.request.retries >= self.max_retries:
            prediction_mark_failed(
                prediction_id=prediction_id, code="transient_error", message=f"Gave up after retries: {exc}"
            )
            return
        raise self.retry(exc=exc, countdown=2**self.request.retries) from exc
    except Exception as exc:
        logger.exception("prediction %s failed unexpectedly", prediction_id)
        prediction_mark_failed(prediction_id=prediction_id, code="internal_error", message=f"Internal error: {exc}")


@shared_task(name="predictions.tasks.sweep", acks_late=True, soft_time_limit=60, time_limit=90)
def sweep() -> dict[str, int]:
    """Re-enqueue stale ``queued`` jobs and retry or fail jobs whose worker died (queue ``default``).

    Scheduled by Celery beat every ``SNEAKERS_SWEEP_INTERVAL_SECONDS``; see
    ``predictions.services.prediction_sweep``.
    """
    report = prediction_sweep()
    return {"requeued": report.requeued, "retried": report.retried, "failed": report.failed}


@worker_process_init.connect
def warm_models(**_: object) -> None:
    """Load the active model in each new worker process so the first job does not pay for it."""
    try:
        model_version = model_version_get_active()
        if model_version is not None:
            runtime.pipeline_warm(runtime.pipeline_get(model_version))
            logger.info("warmed model version %s", model_version.name)
    except Exception:  # a worker without a model still starts; jobs then fail with model_unavailable
        logger.exception("could not warm the active model")
