"""Admin of predictions (history, results, errors); read-only."""

from django.contrib import admin
from django.http import HttpRequest

from predictions.models import Prediction


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    """Every prediction with its status, result and error; read-only."""

    list_display = ("id", "status", "brand", "price_estimate_usd", "channel", "owner", "error_code", "created_at")
    list_filter = ("status", "channel", "error_code", "model_version")
    search_fields = ("id", "sha256", "owner__username", "original_filename")
    date_hierarchy = "created_at"
    list_select_related = ("owner", "model_version")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
