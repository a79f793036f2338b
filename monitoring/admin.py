"""Admin of the monitoring app: the upload signals (read-only) and the monitoring dashboard with plots."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from monitoring.models import DriftReference, MonitorDashboard, UploadSignal
from monitoring.selectors import MAX_HOURS, monitor_summary


class ReadOnly(admin.ModelAdmin):
    """Rows written by the receiver only: staff read them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(UploadSignal)
class UploadSignalAdmin(ReadOnly):
    list_display = ("prediction", "finished_at", "status", "error_code", "abstain_reason", "brand", "end_to_end_ms")
    list_filter = ("status", "abstain_reason", "error_code", "with_text")
    date_hierarchy = "finished_at"


@admin.register(DriftReference)
class DriftReferenceAdmin(ReadOnly):
    list_display = ("model_version", "catalog_rows", "created_at")


@admin.register(MonitorDashboard)
class MonitorDashboardAdmin(admin.ModelAdmin):
    """The dashboard: ``monitor_summary`` of the last ``?hours=`` (default 24) as tables and plots, for staff."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        from monitoring.models import DriftReference
        from monitoring.plots import dashboard_svgs

        try:
            hours = int(request.GET.get("hours", 24))
        except ValueError:
            hours = 24
        hours = min(max(hours, 1), MAX_HOURS)
        summary = monitor_summary(hours=hours)
        version = summary["drift"].get("model_version")
        recent: list[float] = []
        reference: list[float] = []
        if version:
            start = timezone.now() - timedelta(hours=hours)
            recent = [
                float(v)
                for v in UploadSignal.objects.filter(
                    finished_at__gt=start, model_version__name=version, novelty__isnull=False
                ).values_list("novelty", flat=True)[:5000]
            ]
            row = DriftReference.objects.filter(model_version__name=version).first()
            reference = list(row.novelty) if row else []
        context = {
            **self.admin_site.each_context(request),
            "title": "Monitoring dashboard",
            "opts": self.model._meta,
            "hours": hours,
            "choices": (1, 6, 24, 72, 168, 720),
            "summary": summary,
            "svgs": dashboard_svgs(summary, recent_novelty=recent, reference_novelty=reference),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/monitoring/dashboard.html", context)
