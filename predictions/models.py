"""``Prediction``: one uploaded photo and what the pipeline said about it."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


def prediction_upload_to(instance: "Prediction", filename: str) -> str:
    """Storage name of an upload: ``uploads/YYYY/MM/DD/<uuid>.<ext>``; the client's name never reaches a path."""
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
    if extension not in {"jpg", "png", "webp", "bin"}:
        extension = "bin"
    return f"uploads/{timezone.now():%Y/%m/%d}/{instance.id}.{extension}"


def prediction_cutout_to(instance: "Prediction", filename: str) -> str:
    """Storage name of the background-removed cut-out: ``cutouts/YYYY/MM/DD/<uuid>.jpg`` (``.png`` before
    2026-12-03: stored names are kept)."""
    return f"cutouts/{timezone.now():%Y/%m/%d}/{instance.id}.jpg"


class Prediction(models.Model):
    """One uploaded photo and what the pipeline said about it.

    Owned by a user or, for anonymous visitors, by their session key; nobody else may read it.
    ``brands`` is the top-3 as ``[{"name": slug, "probability": float}]``, kept as guesses when the
    model abstains (``abstain`` set, ``brand`` empty); ``similar`` the top-5
    catalog products as ``[{"product_id", "name", "brand", "price_usd", "score"}]`` (a snapshot, so
    history stays readable if the catalog changes); prices are USD; ``timings_ms`` per stage.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"

    class Channel(models.TextChoices):
        WEB = "web", "web"
        API = "api", "api"

    TERMINAL = (Status.SUCCEEDED, Status.FAILED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="predictions"
    )
    session_key = models.CharField(max_length=64, blank=True, db_index=True)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    image = models.FileField(upload_to=prediction_upload_to, blank=True)
    original_filename = models.CharField(max_length=255, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, db_index=True, blank=True)
    title = models.CharField(max_length=300, blank=True, help_text="Optional listing title sent with the photo.")
    description = models.TextField(blank=True, help_text="Optional listing description sent with the photo.")
    source_url = models.URLField(
        max_length=2000, blank=True, help_text="Image URL of a URL item (fetched by the worker); empty for uploads."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)

    brand = models.CharField(max_length=50, blank=True, help_text="Top-1 brand slug; empty when abstaining.")
    brands = models.JSONField(default=list, blank=True)
    shoe_model = models.CharField(
        max_length=255, blank=True, help_text="Top-1 named shoe model; empty when not sure or when abstaining."
    )
    shoe_models = models.JSONField(
        default=list, blank=True, help_text='Top-k named shoe models: [{"name", "brand", "probability"}].'
    )
    abstain = models.JSONField(
        null=True,
        blank=True,
        help_text='Why no brand is given: {"reason": "not_footwear" | "unknown_brand" | "low_confidence", "score"}.',
    )
    price_estimate_usd = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    price_low_usd = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    price_high_usd = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    similar = models.JSONField(default=list, blank=True)
    cutout = models.FileField(upload_to=prediction_cutout_to, blank=True)
    background_method = models.CharField(max_length=32, blank=True)
    model_version = models.ForeignKey(
        "registry.ModelVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="predictions"
    )

    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    timings_ms = models.JSONField(default=dict, blank=True)
    inputs = models.JSONField(
        default=list,
        blank=True,
        help_text='What the answer was made from: ["image"], or with "title" / "description" when listing text was '
        "fused with the photo (worker.ml.text); empty until it succeeds.",
    )
    attempts = models.PositiveIntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    enqueued_at = models.DateTimeField(null=True, blank=True, help_text="Last time the broker accepted its task.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="prediction_owner_recent"),
            models.Index(fields=["session_key", "-created_at"], name="prediction_session_recent"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(owner__isnull=False) | ~Q(session_key=""), name="prediction_has_owner_or_session"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        """True once the job has ``succeeded`` or ``failed``."""
        return self.status in self.TERMINAL


class Feedback(models.Model):
    """A shopper's correction of a result: "wrong brand" or "wrong model", with the right one picked.

    ``brand`` is the brand the shopper says is right (always set); ``product`` the right named shoe model
    (a ``model`` product) for a "wrong model" correction. Staff review corrections in admin and may add
    the photo to the catalog (``catalog_image``) as a training photo of that brand and model.
    """

    class Kind(models.TextChoices):
        WRONG_BRAND = "wrong_brand", "wrong brand"
        WRONG_MODEL = "wrong_model", "wrong model"

    class Status(models.TextChoices):
        NEW = "new", "new"
        ADDED = "added", "added to the catalog"
        DISMISSED = "dismissed", "dismissed"

    prediction = models.ForeignKey(Prediction, on_delete=models.CASCADE, related_name="feedback")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    brand = models.ForeignKey("catalog.Brand", on_delete=models.PROTECT, related_name="+")
    product = models.ForeignKey("catalog.Product", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    note = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW, db_index=True)
    catalog_image = models.ForeignKey(
        "catalog.ProductImage", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "feedback"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.prediction_id}"


class IdempotencyKey(models.Model):
    """A client's ``Idempotency-Key`` on a POST and the answer it got, replayed for a retry of the same request.

    Scoped per user: ``(owner, key)`` is unique. ``request_hash`` is the SHA-256 (hex) of the method, path,
    form fields and file bytes (``predictions.idempotency.request_fingerprint``); a retry with the same key
    and another hash is refused. ``response_status`` is null while the first request is still being
    answered. Rows older than ``SNEAKERS_IDEMPOTENCY_TTL_SECONDS`` (24 h) are ignored and swept.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "key"], name="idempotency_key_unique_per_owner")]

    def __str__(self) -> str:
        return f"{self.key} ({self.method} {self.path})"
