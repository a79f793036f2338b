"""Writes of the partners app: batches, webhook endpoints, webhook events and their deliveries, quotas.

Events are built from committed rows (``prediction_finished`` is sent after commit), stored as one
``WebhookDelivery`` per active endpoint that wants the event, and sent by ``partners.tasks.deliver_webhook``
on the ``default`` queue, which retries with exponential backoff.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urljoin

from celery import current_app
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from partners.delivery import UnsafeURL, url_check, webhook_post
from partners.models import WEBHOOK_EVENTS, Batch, BatchItem, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from partners.selectors import batch_summary
from partners.signing import HEADER as SIGNATURE_HEADER
from partners.signing import secret_generate, signature_header
from predictions.apis import PredictionOutputSerializer
from predictions.models import Prediction
from predictions.services import prediction_create, prediction_create_from_url
from sneakers.exceptions import ApplicationError

logger = logging.getLogger(__name__)

EVENT_NAMESPACE = uuid.UUID("8f5a3c1e-2b7d-4c9a-9e61-5d0b7a4f2c13")
"""Namespace of event ids (``uuid5``): one event per object and type, so a repeated signal makes no duplicate."""


# --- Batches ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoItem:
    """A batch item sent as a file, with its optional listing text."""

    upload: UploadedFile
    title: str = ""
    description: str = ""


@dataclass(frozen=True)
class UrlItem:
    """A batch item sent as an image URL (fetched by the worker), with its optional listing text."""

    image_url: str
    title: str = ""
    description: str = ""


@transaction.atomic
def batch_create(*, owner: AbstractBaseUser, items: Sequence[PhotoItem | UrlItem]) -> Batch:
    """Create a batch whose items become ``api`` predictions of ``owner``, in the given order.

    Photos are checked like single uploads: a refused photo is kept as a ``failed`` item (its code and
    message on the item's prediction), the others are queued; URL items are queued and fetched by the
    worker. Every prediction is enqueued after the transaction commits, and refused items send their
    ``prediction_finished`` then, when the batch rows exist; a batch whose items are all refused finishes at
    once. ``SNEAKERS_BATCH_MAX_ITEMS`` is the view's to enforce.

    Raises:
        ApplicationError: ``batch_empty`` (400) for no item.
    """
    if not items:
        raise ApplicationError("A batch needs at least one photo or image URL.", code="batch_empty")
    batch = Batch.objects.create(owner=owner, item_count=len(items))
    for position, item in enumerate(items):
        if isinstance(item, PhotoItem):
            try:
                prediction = prediction_create(
                    upload=item.upload,
                    channel=Prediction.Channel.API,
                    owner=owner,
                    title=item.title,
                    description=item.description,
                )
            except ApplicationError as exc:
                prediction = Prediction.objects.get(id=exc.extra["prediction_id"])
        else:
            prediction = prediction_create_from_url(
                url=item.image_url,
                channel=Prediction.Channel.API,
                owner=owner,
                title=item.title,
                description=item.description,
            )
        BatchItem.objects.create(batch=batch, position=position, prediction=prediction)
    return batch


def batch_finish_if_done(*, prediction: Prediction) -> Batch | None:
    """Finish the batch of ``prediction`` (if it has one) when no item is left to run; emit ``batch.finished``.

    Safe to call from every item's ``prediction_finished``: the batch is finished by a conditional update,
    so only one caller does it. Returns the batch when this call finished it.
    """
    item = BatchItem.objects.filter(prediction_id=prediction.id).select_related("batch").first()
    if item is None or item.batch.status == Batch.Status.FINISHED:
        return None
    return batch_finish(batch=item.batch)


def batch_finish(*, batch: Batch) -> Batch | None:
    """Mark ``batch`` finished if every item is terminal; the batch when this call did it, else None."""
    pending = BatchItem.objects.filter(batch=batch).exclude(prediction__status__in=Prediction.TERMINAL).exists()
    if pending:
        return None
    now = timezone.now()
    changed = Batch.objects.filter(id=batch.id, status=Batch.Status.RUNNING).update(
        status=Batch.Status.FINISHED, finished_at=now
    )
    if not changed:
        return None
    batch.refresh_from_db()
    webhook_event_emit_batch(batch=batch)
    return batch


def batch_sweep(*, now: datetime | None = None) -> int:
    """Finish running batches whose items are all terminal (a lost ``prediction_finished``); how many."""
    now = now or timezone.now()
    candidates = Batch.objects.filter(status=Batch.Status.RUNNING, created_at__lt=now - timedelta(seconds=60))
    candidates = candidates.exclude(items__prediction__status__in=[Prediction.Status.QUEUED, Prediction.Status.RUNNING])
    return sum(batch_finish(batch=batch) is not None for batch in candidates[: settings.SNEAKERS_SWEEP_BATCH])


# --- Webhook endpoints ----------------------------------------------------------------------------------


def _events_clean(events: Sequence[str] | None) -> list[str]:
    events = list(dict.fromkeys(events or []))
    unknown = [event for event in events if event not in WEBHOOK_EVENTS]
    if unknown:
        raise ApplicationError(
            f"Unknown event type(s) {', '.join(unknown)}; choose from {', '.join(WEBHOOK_EVENTS)}.",
            code="webhook_event_unknown",
        )
    return events


def _url_clean(url: str) -> str:
    try:
        url_check(url, resolve=False)
    except UnsafeURL as exc:
        raise ApplicationError(exc.message, code=exc.code) from None
    return url


def webhook_endpoint_create(
    *, owner: AbstractBaseUser, url: str, events: Sequence[str] | None = None, description: str = ""
) -> WebhookEndpoint:
    """Register a webhook URL for ``owner`` with a new secret (shown once by the API).

    Raises:
        ApplicationError: ``webhook_url_invalid`` / ``webhook_url_private`` (400) for a URL webhooks are not
            sent to, ``webhook_event_unknown`` (400), ``webhook_endpoint_limit`` (400) past
            ``SNEAKERS_WEBHOOK_MAX_ENDPOINTS`` endpoints.
    """
    if WebhookEndpoint.objects.filter(owner=owner).count() >= settings.SNEAKERS_WEBHOOK_MAX_ENDPOINTS:
        raise ApplicationError(
            f"An account can have at most {settings.SNEAKERS_WEBHOOK_MAX_ENDPOINTS} webhook endpoints.",
            code="webhook_endpoint_limit",
        )
    return WebhookEndpoint.objects.create(
        owner=owner,
        url=_url_clean(url),
        secret=secret_generate(),
        events=_events_clean(events),
        description=description[:255],
    )


def webhook_endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    events: Sequence[str] | None = None,
    description: str | None = None,
    is_active: bool | None = None,
    roll_secret: bool = False,
) -> WebhookEndpoint:
    """Change an endpoint's fields (those given); ``roll_secret`` replaces its secret with a new one.

    Raises:
        ApplicationError: as ``webhook_endpoint_create``.
    """
    if url is not None:
        endpoint.url = _url_clean(url)
    if events is not None:
        endpoint.events = _events_clean(events)
    if description is not None:
        endpoint.description = description[:255]
    if is_active is not None:
        endpoint.is_active = is_active
    if roll_secret:
        endpoint.secret = secret_generate()
    endpoint.save()
    return endpoint


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Delete an endpoint and its deliveries (pending ones are not sent)."""
    endpoint.delete()


# --- Webhook events and deliveries ----------------------------------------------------------------------


class _BaseUrl:
    """Stands for a request where serializers build absolute URLs: joins paths to ``SNEAKERS_PUBLIC_URL``."""

    def build_absolute_uri(self, location: str) -> str:
        return urljoin(settings.SNEAKERS_PUBLIC_URL.rstrip("/") + "/", location.lstrip("/"))


def event_id_for(*, event_type: str, object_id: Any) -> str:
    """The event's id: ``evt_`` and a UUID derived from the type and the object's id (the same every time)."""
    return "evt_" + uuid.uuid5(EVENT_NAMESPACE, f"{event_type}:{object_id}").hex


def event_build(*, event_type: str, object_id: Any, data: dict[str, Any]) -> dict[str, Any]:
    """An event body: ``{"id", "type", "created" (Unix seconds), "data": {"object": ...}}``."""
    return {
        "id": event_id_for(event_type=event_type, object_id=object_id),
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": data},
    }


def prediction_event_data(*, prediction: Prediction) -> dict[str, Any]:
    """The prediction as ``GET /api/v1/predictions/{id}/`` shows it, with absolute URLs on ``SNEAKERS_PUBLIC_URL``."""
    item = BatchItem.objects.filter(prediction_id=prediction.id).values_list("batch_id", flat=True).first()
    data = dict(PredictionOutputSerializer(prediction, context={"request": _BaseUrl()}).data)
    data["batch_id"] = str(item) if item else None
    return json.loads(json.dumps(data, default=str))


def batch_event_data(*, batch: Batch) -> dict[str, Any]:
    """A batch's summary as ``GET /api/v1/batches/{id}/`` shows it, without its items."""
    return json.loads(json.dumps(batch_summary(batch=batch, request=_BaseUrl()), default=str))


def _endpoints_for(*, owner_id: Any, event_type: str) -> list[WebhookEndpoint]:
    return [
        endpoint
        for endpoint in WebhookEndpoint.objects.filter(owner_id=owner_id, is_active=True)
        if not endpoint.events or event_type in endpoint.events
    ]


def webhook_event_emit(*, owner_id: Any, event: dict[str, Any]) -> list[WebhookDelivery]:
    """Store one delivery of ``event`` per active endpoint of ``owner_id`` that wants it; enqueue each after
    commit. An event already stored for an endpoint (same id) is not stored twice."""
    deliveries = []
    for endpoint in _endpoints_for(owner_id=owner_id, event_type=event["type"]):
        try:
            with transaction.atomic():
                delivery = WebhookDelivery.objects.create(
                    endpoint=endpoint, event_id=event["id"], event_type=event["type"], payload=event
                )
        except IntegrityError:
            continue
        deliveries.append(delivery)
        transaction.on_commit(lambda delivery_id=delivery.id: webhook_delivery_enqueue(delivery_id=delivery_id))
    return deliveries


def webhook_event_emit_prediction(*, prediction: Prediction) -> list[WebhookDelivery]:
    """``prediction.succeeded`` or ``prediction.failed`` for a terminal ``api`` prediction of a partner."""
    if prediction.owner_id is None or prediction.channel != Prediction.Channel.API or not prediction.is_terminal:
        return []
    event_type = f"prediction.{prediction.status}"
    if not _endpoints_for(owner_id=prediction.owner_id, event_type=event_type):
        return []
    prediction = Prediction.objects.select_related("model_version").get(id=prediction.id)
    event = event_build(
        event_type=event_type, object_id=prediction.id, data=prediction_event_data(prediction=prediction)
    )
    return webhook_event_emit(owner_id=prediction.owner_id, event=event)


def webhook_event_emit_batch(*, batch: Batch) -> list[WebhookDelivery]:
    """``batch.finished`` for a finished batch."""
    if not _endpoints_for(owner_id=batch.owner_id, event_type="batch.finished"):
        return []
    event = event_build(event_type="batch.finished", object_id=batch.id, data=batch_event_data(batch=batch))
    return webhook_event_emit(owner_id=batch.owner_id, event=event)


def webhook_delivery_enqueue(*, delivery_id: Any) -> bool:
    """Send the ``deliver_webhook`` task; False (logged) when the broker refuses it (the sweep sends it later)."""
    try:
        current_app.send_task("partners.tasks.deliver_webhook", args=[str(delivery_id)])
    except Exception:  # kombu raises transport-specific errors; any of them means "not sent"
        logger.exception("could not enqueue webhook delivery %s; the sweep will", delivery_id)
        return False
    WebhookDelivery.objects.filter(id=delivery_id).update(enqueued_at=timezone.now())
    return True


def delivery_body(delivery: WebhookDelivery) -> bytes:
    """The exact bytes POSTed: the event as compact JSON with sorted keys (the same at every try)."""
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class AttemptOutcome:
    """What ``webhook_delivery_attempt`` did: ``done`` (succeeded, failed for good, or nothing to do) or
    ``retry`` (the caller retries later), and the attempt stored (None when none was made)."""

    retry: bool
    attempt: WebhookAttempt | None


def webhook_delivery_attempt(*, delivery_id: Any, last_try: bool = False) -> AttemptOutcome:
    """POST a pending delivery once, store the attempt, and mark it succeeded (2xx) or, on the last try or for
    a URL that cannot be sent to, failed.

    Returns ``retry=True`` when the attempt failed and another may help.
    """
    delivery = WebhookDelivery.objects.select_related("endpoint").filter(id=delivery_id).first()
    if delivery is None or delivery.status != WebhookDelivery.Status.PENDING:
        return AttemptOutcome(retry=False, attempt=None)
    endpoint = delivery.endpoint
    if not endpoint.is_active:
        _delivery_end(delivery, WebhookDelivery.Status.FAILED)
        return AttemptOutcome(retry=False, attempt=None)
    number = delivery.attempt_count + 1
    body = delivery_body(delivery)
    headers = {
        SIGNATURE_HEADER: signature_header(secret=endpoint.secret, body=body),
        "Sneakers-Event-Id": delivery.event_id,
        "Sneakers-Event-Type": delivery.event_type,
        "Sneakers-Delivery-Attempt": str(number),
    }
    started = timezone.now()
    permanent = False
    try:
        result = webhook_post(url=endpoint.url, body=body, headers=headers)
        status_code, error, excerpt, duration = result.status_code, result.error, result.excerpt, result.duration_ms
        ok = result.ok and not error
    except UnsafeURL as exc:
        status_code, error, excerpt, duration, ok, permanent = None, exc.message, "", 0.0, False, True
    if not ok and not error:
        error = f"Answered HTTP {status_code}."
    attempt = WebhookAttempt.objects.create(
        delivery=delivery,
        number=number,
        started_at=started,
        duration_ms=duration,
        status_code=status_code,
        error=error[:500],
        response_excerpt=excerpt[:500],
    )
    WebhookDelivery.objects.filter(id=delivery.id).update(attempt_count=number, enqueued_at=timezone.now())
    if ok:
        _delivery_end(delivery, WebhookDelivery.Status.SUCCEEDED)
        return AttemptOutcome(retry=False, attempt=attempt)
    if permanent or last_try:
        _delivery_end(delivery, WebhookDelivery.Status.FAILED)
        return AttemptOutcome(retry=False, attempt=attempt)
    return AttemptOutcome(retry=True, attempt=attempt)


def _delivery_end(delivery: WebhookDelivery, status: str) -> None:
    WebhookDelivery.objects.filter(id=delivery.id, status=WebhookDelivery.Status.PENDING).update(
        status=status, finished_at=timezone.now()
    )


def webhook_sweep(*, now: datetime | None = None) -> int:
    """Enqueue pending deliveries that no task holds: never enqueued (broker down) for over a minute, or idle
    longer than the longest backoff plus the task's time limit (the message was lost). How many."""
    now = now or timezone.now()
    lost_after = timedelta(seconds=settings.SNEAKERS_WEBHOOK_BACKOFF_MAX_SECONDS + 600)
    stale = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING).filter(
        Q(enqueued_at__isnull=True, created_at__lt=now - timedelta(seconds=60)) | Q(enqueued_at__lt=now - lost_after)
    )
    ids = list(stale.values_list("id", flat=True)[: settings.SNEAKERS_SWEEP_BATCH])
    return sum(webhook_delivery_enqueue(delivery_id=delivery_id) for delivery_id in ids)
