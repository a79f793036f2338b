"""Partner features above the prediction API: batches, webhook endpoints and their deliveries, quotas.

A partner is a user with an API token (``accounts``); every row here belongs to one (``owner``).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

WEBHOOK_EVENTS = ("prediction.succeeded", "prediction.failed", "batch.finished")
"""Event types a webhook endpoint can receive: a prediction reached a terminal status, or a batch finished."""


def rate_validate(value: str) -> None:
    """Validate a rate written as DRF writes them: ``"<requests>/<period>"``, period ``s``, ``min``, ``h`` or ``day``.

    Only the period's first letter counts (DRF's ``SimpleRateThrottle.parse_rate``): ``60/min``, ``5000/hour``.

    Raises:
        ValidationError: anything else, or a count below 1.
    """
    count, _, period = (value or "").partition("/")
    if not count.strip().isdigit() or int(count) < 1 or not period or period.strip()[0] not in "smhd":
        raise ValidationError(f"{value!r} is not a rate like 60/min, 5000/hour or 100000/day.")


class PartnerQuota(models.Model):
    """Per-partner API rates set by staff in admin; an empty rate means the site-wide default
    (``SNEAKERS_API_UPLOAD_RATE``, ``SNEAKERS_API_READ_RATE``).

    ``upload_rate`` counts photos sent (one per single upload, one per batch item); ``read_rate`` counts
    every authenticated request. Read by ``partners.throttling`` at each request.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="partner_quota")
    upload_rate = models.CharField(
        max_length=32, blank=True, validators=[rate_validate], help_text="Photos per period, e.g. 600/min."
    )
    read_rate = models.CharField(
        max_length=32, blank=True, validators=[rate_validate], help_text="Requests per period, e.g. 6000/min."
    )
    note = models.CharField(max_length=255, blank=True, help_text="Why this partner has its own rates.")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"quota of {self.user}"


class Batch(models.Model):
    """Many photos or image URLs sent at once; each item is a ``Prediction`` (channel ``api``).

    ``status`` is ``running`` until every item's prediction is terminal, then ``finished`` with
    ``finished_at`` set (by ``partners.services.batch_finish_if_done``). Counts per status are read from
    the items' predictions, not stored.
    """

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        FINISHED = "finished", "finished"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="batches")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING, db_index=True)
    item_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "batches"
        indexes = [models.Index(fields=["owner", "-created_at"], name="batch_owner_recent")]

    def __str__(self) -> str:
        return f"batch {self.id} ({self.item_count} items, {self.status})"


class BatchItem(models.Model):
    """One item of a batch: its position (0-based, the request's order) and its prediction."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField()
    prediction = models.OneToOneField("predictions.Prediction", on_delete=models.CASCADE, related_name="batch_item")

    class Meta:
        ordering = ["batch", "position"]
        constraints = [models.UniqueConstraint(fields=["batch", "position"], name="batch_item_position_unique")]

    def __str__(self) -> str:
        return f"item {self.position} of {self.batch_id}"


class WebhookEndpoint(models.Model):
    """A partner's HTTPS URL that receives signed event notifications.

    ``secret`` signs every delivery (``partners.signing``); it is generated (``whsec_`` + 32 random bytes
    as hex), shown once when the endpoint is created, and can be rolled. ``events`` lists the event types
    sent (``WEBHOOK_EVENTS``); empty means all of them.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    secret = models.CharField(max_length=100, editable=False)
    events = models.JSONField(default=list, blank=True, help_text="Event types sent; empty for all.")
    description = models.CharField(max_length=255, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event to deliver to one endpoint, with its fixed JSON body; tried until it succeeds or gives up.

    ``status``: ``pending`` (waiting for its next try), ``succeeded`` (a 2xx answer), ``failed`` (gave up
    after ``SNEAKERS_WEBHOOK_MAX_ATTEMPTS`` tries, or the endpoint was deleted or disabled). ``payload`` is
    the event (``{"id", "type", "created", "data"}``) and is sent byte for byte the same at every try; the
    signature's timestamp is fresh at every try.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.CharField(max_length=64, db_index=True)
    event_type = models.CharField(max_length=64)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempt_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        constraints = [models.UniqueConstraint(fields=["endpoint", "event_id"], name="webhook_delivery_once_per_event")]

    def __str__(self) -> str:
        return f"{self.event_type} to {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One HTTP POST of a delivery: what the endpoint answered (or the error), and how long it took."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField(help_text="1 for the first try.")
    started_at = models.DateTimeField()
    duration_ms = models.FloatField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True, help_text="First 500 characters of the answer.")

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}: {self.status_code or self.error}"

    @property
    def succeeded(self) -> bool:
        """True for a 2xx answer."""
        return self.status_code is not None and 200 <= self.status_code < 300
