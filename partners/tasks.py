"""Celery tasks of the partners app (queue ``default``): webhook delivery with retries, and a sweep."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from partners.services import batch_sweep, webhook_delivery_attempt, webhook_sweep

logger = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    """One webhook attempt failed (no 2xx answer); raised so that Celery's ``autoretry_for`` retries it."""


@shared_task(
    bind=True,
    name="partners.tasks.deliver_webhook",
    acks_late=True,
    autoretry_for=(DeliveryFailed,),
    max_retries=settings.SNEAKERS_WEBHOOK_MAX_ATTEMPTS - 1,
    retry_backoff=settings.SNEAKERS_WEBHOOK_BACKOFF_SECONDS,
    retry_backoff_max=settings.SNEAKERS_WEBHOOK_BACKOFF_MAX_SECONDS,
    retry_jitter=True,
    soft_time_limit=60,
    time_limit=90,
)
def deliver_webhook(self, delivery_id: str) -> str:
    """POST one webhook delivery (``partners.services.webhook_delivery_attempt``); retry until a 2xx answer.

    A failed attempt (an answer other than 2xx, a redirect, a timeout, a refused connection) is stored and
    raises ``DeliveryFailed``; Celery retries it (``autoretry_for``) after an exponential backoff with full
    jitter: before retry n (0-based) it waits a random time in [0, min(B * 2**n, M)] seconds, with B =
    ``SNEAKERS_WEBHOOK_BACKOFF_SECONDS`` and M = ``SNEAKERS_WEBHOOK_BACKOFF_MAX_SECONDS`` (Celery's
    ``retry_backoff``, ``retry_backoff_max``, ``retry_jitter``). The attempt numbered
    ``SNEAKERS_WEBHOOK_MAX_ATTEMPTS`` is the last: it fails the delivery for good. Reruns are safe: a delivery
    that is no longer pending is left alone. Returns ``"succeeded"`` or ``"done"`` (failed for good, or nothing to do).
    """
    outcome = webhook_delivery_attempt(delivery_id=delivery_id, last_try=self.request.retries >= self.max_retries)
    if outcome.retry:
        attempt = outcome.attempt
        logger.info("webhook delivery %s failed (%s); retrying", delivery_id, attempt.error if attempt else "")
        raise DeliveryFailed(attempt.error if attempt else "failed")
    if outcome.attempt is not None and outcome.attempt.succeeded:
        return "succeeded"
    return "done"


@shared_task(name="partners.tasks.sweep", acks_late=True, soft_time_limit=60, time_limit=90)
def sweep() -> dict[str, int]:
    """Send webhook deliveries no task holds and finish batches whose items all ended (queue ``default``).

    Scheduled by Celery beat every ``SNEAKERS_SWEEP_INTERVAL_SECONDS``; see ``partners.services.webhook_sweep``
    and ``batch_sweep``.
    """
    return {"webhooks_enqueued": webhook_sweep(), "batches_finished": batch_sweep()}
