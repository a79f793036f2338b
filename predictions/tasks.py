"""Celery tasks of the predictions app: thin wrappers that pass ids and call ``predictions.services``.

The web process imports this module (to enqueue), so nothing here imports an ML library at module
level; models load in worker processes only, warmed at ``worker_process_init``.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from celery import shared_task
from celery.signals import celeryd_after_setup, worker_process_init
from django.conf import settings
from django.db import InterfaceError, OperationalError

from predictions import idempotency
from predictions.services import prediction_mark_failed, prediction_release, prediction_run, prediction_sweep
from registry import runtime
from registry.selectors import model_version_get_active

logger = logging.getLogger(__name__)

# Errors worth another try: the database, the broker or storage (S3 through django-storages/boto3)
# blinked. botocore's connection errors (EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError)
# derive from its own ConnectionError, and its read timeouts and dropped connections (ReadTimeoutError,
# ConnectionClosedError) from HTTPClientError; none is a builtin ConnectionError. Everything else is
# handled in the service as a permanent failure with a code, or fails the job with ``internal_error``.
TRANSIENT_ERRORS = (
    OperationalError,
    InterfaceError,
    ConnectionError,
    TimeoutError,
    BotocoreConnectionError,
    HTTPClientError,
)

TRANSIENT_STORAGE_CODES = frozenset(
    {
        # botocore.retries.standard: TransientRetryableChecker and ThrottledRetryableChecker (botocore 1.44).
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
        # Amazon S3 error responses (S3 API reference, "Error responses"): HTTP 500 and 503.
        "InternalError",
        "ServiceUnavailable",
    }
)
"""S3 error codes of a ``botocore.exceptions.ClientError`` worth another try; any HTTP 5xx or 429 is too."""

RETRY_BACKOFF_MAX_SECONDS = 60
"""Longest wait between two tries, in seconds (the backoff doubles from 1 s: 1, 2, 4, 8, 16)."""


class TransientError(Exception):
    """A transient failure of one try of a task, raised so that Celery's ``autoretry_for`` retries it."""


def error_is_transient(exc: BaseException) -> bool:
    """Tell whether an error raised while running a job is worth another try.

    True for ``TRANSIENT_ERRORS`` (database, network, botocore connection and timeout errors) and for
    a botocore ``ClientError`` whose code is in ``TRANSIENT_STORAGE_CODES`` or whose HTTP status is 429
    or 5xx (the statuses botocore's own standard retry mode retries). False for everything else,
    including ``ClientError`` 403/404 (a configuration error or a missing object: another try won't help).
    """
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return code in TRANSIENT_STORAGE_CODES or status == 429 or status >= 500
    return False


@shared_task(
    bind=True,
    name="predictions.tasks.predict",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(TransientError,),
    max_retries=5,
    retry_backoff=1,
    retry_backoff_max=RETRY_BACKOFF_MAX_SECONDS,
    retry_jitter=True,
    soft_time_limit=300,
    time_limit=360,
)
def predict(self, prediction_id: str) -> None:
    """Run the prediction pipeline for one ``Prediction`` id (queue ``inference``).

    Safe to rerun: the row is claimed with a conditional update. A transient error
    (``error_is_transient``: database, broker or storage blips) puts the row back to ``queued`` and
    Celery retries the task (``autoretry_for``) after an exponential backoff with full jitter: before
    retry n (0-based) it waits a random whole number of seconds in [0, min(2**n, 60)], so the caps are
    1, 2, 4, 8 and 16 s (Celery's ``retry_backoff`` / ``retry_jitter``, after "Exponential Backoff And
    Jitter", AWS Architecture Blog, 2015). That is at most 6 tries (``max_retries`` = 5 retries); after
    the last one the prediction fails with ``transient_error``. Unexpected errors fail the prediction
    with ``internal_error`` instead of leaving it ``running``.
    """
    try:
        prediction_run(prediction_id=prediction_id)
    except Exception as exc:
        if not error_is_transient(exc):
            logger.exception("prediction %s failed unexpectedly", prediction_id)
            prediction_mark_failed(prediction_id=prediction_id, code="internal_error", message=f"Internal error: {exc}")
            return
        prediction_release(prediction_id=prediction_id)
        if self.request.retries >= self.max_retries:
            prediction_mark_failed(
                prediction_id=prediction_id, code="transient_error", message=f"Gave up after retries: {exc}"
            )
            return
        logger.warning("prediction %s: transient error, retrying: %r", prediction_id, exc)
        raise TransientError(f"{type(exc).__name__}: {exc}") from exc


@shared_task(name="predictions.tasks.sweep", acks_late=True, soft_time_limit=60, time_limit=90)
def sweep() -> dict[str, int]:
    """Re-enqueue stale ``queued`` jobs and retry or fail jobs whose worker died (queue ``default``).

    Scheduled by Celery beat every ``SNEAKERS_SWEEP_INTERVAL_SECONDS``; see
    ``predictions.services.prediction_sweep``.
    """
    report = prediction_sweep()
    return {"requeued": report.requeued, "retried": report.retried, "failed": report.failed}


_consumes_predict_queue: bool | None = None
"""Whether this worker consumes the queue ``predict`` is routed to, as ``note_queues`` saw it in the worker's main
process (pool processes inherit it); None when no ``celery worker`` set-up was seen (e.g. an embedded test worker):
warm."""


@celeryd_after_setup.connect
def note_queues(sender: str, instance: Any, **_: object) -> None:
    """Note whether this worker consumes ``predict``'s queue (``CELERY_TASK_ROUTES``; its ``--queues``), before its
    pool processes fork."""
    global _consumes_predict_queue
    queue = settings.CELERY_TASK_ROUTES.get(predict.name, {}).get("queue", "inference")
    _consumes_predict_queue = queue in instance.app.amqp.queues.consume_from


@worker_process_init.connect
def warm_models(**_: object) -> None:
    """Load the active model in each new worker process so the first job does not pay for it.

    Skipped in workers that do not consume ``predict``'s queue (the Procfile's ``jobs`` worker: training and feed
    ingestion build what they need themselves): there the model held about 1 GB per process for nothing and its
    loading took a core for seconds at every start (``--max-tasks-per-child 1`` starts one per job).
    """
    if _consumes_predict_queue is False:
        return
    try:
        model_version = model_version_get_active()
        if model_version is not None:
            runtime.pipeline_warm(runtime.pipeline_get(model_version))
            logger.info("warmed model version %s", model_version.name)
    except Exception:  # a worker whose model does not load still starts; its jobs fail with model_unavailable
        logger.exception("could not warm the active model")


@shared_task(name="predictions.tasks.idempotency_sweep", acks_late=True, soft_time_limit=60, time_limit=90)
def idempotency_sweep() -> int:
    """Delete ``Idempotency-Key`` records older than ``SNEAKERS_IDEMPOTENCY_TTL_SECONDS`` (queue ``default``).

    Scheduled by Celery beat (hourly); expired keys are also ignored when met, so a late sweep changes nothing
    a client sees. Returns the number deleted.
    """
    return idempotency.idempotency_sweep()
