"""Admin of the partners app: quotas, webhook endpoints, deliveries with every attempt, batches."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from partners.models import Batch, BatchItem, PartnerQuota, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from partners.selectors import batch_summary
from partners.services import webhook_delivery_enqueue
from partners.signing import secret_generate


@admin.register(PartnerQuota)
class PartnerQuotaAdmin(admin.ModelAdmin):
    """Per-partner upload and read rates (empty: the site-wide ``SNEAKERS_API_*_RATE``)."""

    list_display = ("user", "upload_rate", "read_rate", "note", "updated_at")
    search_fields = ("user__username", "user__email", "note")
    autocomplete_fields = ("user",)


class WebhookDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    fields = ("event_type", "event_id", "status", "attempt_count", "created_at", "finished_at")
    readonly_fields = fields
    extra = 0
    max_num = 0
    show_change_link = True
    ordering = ("-created_at",)


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Partners' webhook URLs. A new endpoint gets a generated secret (shown once, in the message after saving)."""

    list_display = ("url", "owner", "is_active", "events", "created_at")
    list_filter = ("is_active",)
    search_fields = ("url", "owner__username", "description")
    readonly_fields = ("id", "secret_hint", "created_at")
    fields = ("id", "owner", "url", "events", "description", "is_active", "secret_hint", "created_at")
    autocomplete_fields = ("owner",)
    inlines = [WebhookDeliveryInline]
    actions = ["roll_secrets"]

    @admin.display(description="secret")
    def secret_hint(self, obj: WebhookEndpoint) -> str:
        return f"whsec_…{obj.secret[-4:]}" if obj.secret else "-"

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form, change: bool) -> None:
        if not obj.secret:
            obj.secret = secret_generate()
            super().save_model(request, obj, form, change)
            self.message_user(
                request, f"Secret of {obj.url} (copy it now; it is not shown again): {obj.secret}", messages.WARNING
            )
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Roll the secret (a new one, shown once)")
    def roll_secrets(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            endpoint.secret = secret_generate()
            endpoint.save(update_fields=["secret"])
            self.message_user(request, f"New secret of {endpoint.url}: {endpoint.secret}", messages.WARNING)


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    fields = ("number", "started_at", "duration_ms", "status_code", "error", "response_excerpt")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """Every webhook event sent to an endpoint, with each attempt's HTTP status, error and duration."""

    list_display = ("event_type", "endpoint", "status", "attempt_count", "last_status", "created_at", "finished_at")
    list_filter = ("status", "event_type")
    search_fields = ("event_id", "endpoint__url", "endpoint__owner__username")
    readonly_fields = (
        "id",
        "endpoint",
        "event_id",
        "event_type",
        "payload",
        "status",
        "attempt_count",
        "created_at",
        "enqueued_at",
        "finished_at",
    )
    inlines = [WebhookAttemptInline]
    actions = ["send_again"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="last answer")
    def last_status(self, obj: WebhookDelivery) -> str:
        attempt = obj.attempts.order_by("-number").first()
        if attempt is None:
            return "-"
        return str(attempt.status_code) if attempt.status_code else attempt.error[:60]

    @admin.action(description="Send again (a new series of attempts)")
    def send_again(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        sent = 0
        for delivery in queryset:
            WebhookDelivery.objects.filter(id=delivery.id).update(
                status=WebhookDelivery.Status.PENDING, finished_at=None
            )
            sent += webhook_delivery_enqueue(delivery_id=delivery.id)
        self.message_user(request, f"{sent} deliveries queued.")


class BatchItemInline(admin.TabularInline):
    model = BatchItem
    fields = ("position", "prediction")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False


class _AdminUrls:
    """``build_absolute_uri`` for admin pages: the site-relative URL."""

    def build_absolute_uri(self, location: str) -> str:
        return location


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    """Partners' batches with their counts per status; read-only."""

    list_display = ("id", "owner", "status", "item_count", "progress", "created_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("id", "owner__username")
    readonly_fields = ("id", "owner", "status", "item_count", "progress", "created_at", "finished_at")
    inlines = [BatchItemInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="progress")
    def progress(self, obj: Batch) -> str:
        summary = batch_summary(batch=obj, request=_AdminUrls())
        counts = summary["counts"]
        return f"{summary['progress']:.0%} ({counts['succeeded']} succeeded, {counts['failed']} failed)"
