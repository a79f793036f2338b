"""Admin of predictions (history, results, errors; read-only, with thumbnails) and of shoppers' corrections
(``Feedback``), which staff can add to the catalog as training photos."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from predictions.models import Feedback, Prediction
from predictions.services import feedback_add_to_catalog, feedback_dismiss
from sneakers.exceptions import ApplicationError

RASTER_SUFFIXES = (".jpg", ".png", ".webp")


def _thumbnail(prediction: Prediction, size: int = 64) -> str:
    """An ``<img>`` of the prediction's cut-out, else of its upload (never of refused ``.bin`` bytes)."""
    field = prediction.cutout or prediction.image
    if not field or not field.name.endswith(RASTER_SUFFIXES):
        return "-"
    return format_html(
        '<img src="{}" style="max-width:{}px;max-height:{}px;background:#fff" alt="" loading="lazy">',
        field.url,
        size,
        size,
    )


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    """Every prediction with its thumbnail, status, result and error; read-only."""

    list_display = (
        "thumbnail",
        "id",
        "status",
        "brand",
        "shoe_model",
        "price_estimate_usd",
        "channel",
        "owner",
        "error_code",
        "created_at",
    )
    list_display_links = ("thumbnail", "id")
    list_filter = ("status", "channel", "error_code", "model_version")
    search_fields = ("id", "sha256", "owner__username", "original_filename")
    date_hierarchy = "created_at"
    list_select_related = ("owner", "model_version")
    readonly_fields = ("preview",)

    @admin.display(description="")
    def thumbnail(self, obj: Prediction) -> str:
        return _thumbnail(obj)

    @admin.display(description="photo")
    def preview(self, obj: Prediction) -> str:
        return _thumbnail(obj, 320)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    """Shoppers' corrections ("wrong brand / wrong model" with the right one): review them, add the photo to the
    catalog as a training photo of the chosen brand and model for the next training, or dismiss them."""

    list_display = ("thumbnail", "kind", "said", "right_brand", "right_model", "note", "status", "created_at")
    list_filter = ("status", "kind", "brand")
    list_select_related = ("prediction", "brand", "product")
    search_fields = ("prediction__id", "note", "product__name")
    readonly_fields = ("prediction", "kind", "brand", "product", "note", "catalog_image", "reviewed_at", "created_at")
    fields = readonly_fields + ("status",)
    actions = ["add_to_catalog", "dismiss"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="")
    def thumbnail(self, obj: Feedback) -> str:
        return _thumbnail(obj.prediction)

    @admin.display(description="the result said")
    def said(self, obj: Feedback) -> str:
        prediction = obj.prediction
        return " · ".join(part for part in (prediction.brand or "(no brand)", prediction.shoe_model) if part)

    @admin.display(ordering="brand__name", description="right brand")
    def right_brand(self, obj: Feedback) -> str:
        return obj.brand.name

    @admin.display(ordering="product__name", description="right model")
    def right_model(self, obj: Feedback) -> str:
        return obj.product.name if obj.product else "-"

    @admin.action(description="Add the photos to the catalog (as the chosen brand and model) for the next training")
    def add_to_catalog(self, request: HttpRequest, queryset: QuerySet[Feedback]) -> None:
        added, failed = 0, []
        for feedback in queryset.select_related("prediction", "brand", "product"):
            try:
                feedback_add_to_catalog(feedback=feedback)
            except ApplicationError as exc:
                failed.append(f"{feedback.prediction_id}: {exc.message}")
            else:
                added += 1
        if added:
            self.message_user(request, f"{added} photo(s) added to the catalog; the next training uses them.")
        for line in failed:
            self.message_user(request, line, messages.ERROR)

    @admin.action(description="Dismiss the selected corrections")
    def dismiss(self, request: HttpRequest, queryset: QuerySet[Feedback]) -> None:
        for feedback in queryset:
            feedback_dismiss(feedback=feedback)
        self.message_user(request, f"{queryset.count()} correction(s) dismissed.")
