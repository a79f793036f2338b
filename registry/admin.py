"""Admin of the model registry: compare model versions' metrics side by side, activate one."""

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join

from registry.models import ModelVersion
from registry.selectors import model_version_report_urls
from registry.services import model_version_activate

COMPARE_ROWS = (
    ("variant", ("variant",)),
    ("test top-1", ("brand", "top1")),
    ("test top-3", ("brand", "top3")),
    ("test log loss", ("brand", "log_loss")),
    ("ECE before temperature", ("brand", "ece_before")),
    ("ECE after temperature", ("brand", "ece_after")),
    ("price MAE (USD)", ("price", "mae")),
    ("baseline MAE (USD)", ("price", "baseline_mae")),
    ("real-world top-1 (held out)", ("wild", "real-world", "top1")),
    ("product-shot top-1 (wild)", ("wild", "product-shot", "top1")),
    ("training seconds", ("seconds", "total")),
)


def _metric(version: ModelVersion, *path: str) -> float | None:
    value = version.metrics
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Versions side by side: test top-1/top-3, log loss, price MAE vs baseline; activate one."""

    list_display = ("name", "status", "top1", "top3", "log_loss", "price_mae", "price_baseline_mae", "created_at")
    list_filter = ("status",)
    readonly_fields = (
        "name",
        "status",
        "variant",
        "artifact_prefix",
        "backbone_fingerprint",
        "classes",
        "report",
        "metrics_pretty",
        "load_error",
        "load_checked_at",
        "training_seconds",
        "created_at",
        "activated_at",
    )
    exclude = ("metrics",)
    actions = ["activate", "compare"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="top-1")
    def top1(self, obj: ModelVersion):
        return _metric(obj, "brand", "top1")

    @admin.display(description="top-3")
    def top3(self, obj: ModelVersion):
        return _metric(obj, "brand", "top3")

    @admin.display(description="log loss")
    def log_loss(self, obj: ModelVersion):
        return _metric(obj, "brand", "log_loss")

    @admin.display(description="price MAE (USD)")
    def price_mae(self, obj: ModelVersion):
        return _metric(obj, "price", "mae")

    @admin.display(description="baseline MAE (USD)")
    def price_baseline_mae(self, obj: ModelVersion):
        return _metric(obj, "price", "baseline_mae")

    @admin.display(description="variant")
    def variant(self, obj: ModelVersion) -> str:
        return obj.metrics.get("variant", "head-only")

    @admin.display(description="report")
    def report(self, obj: ModelVersion) -> str:
        urls = model_version_report_urls(model_version=obj)
        if not urls:
            return "-"
        return format_html_join(
            "",
            '<figure style="display:inline-block;margin:0 1em 1em 0"><img src="{}" style="max-width:480px"'
            ' alt="{}"><figcaption>{}</figcaption></figure>',
            ((url, name, name) for name, url in urls.items()),
        )

    @admin.action(description="Compare the selected versions side by side")
    def compare(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> TemplateResponse:
        versions = list(queryset.order_by("created_at"))
        rows = [(label, [_metric(v, *path) for v in versions]) for label, path in COMPARE_ROWS]
        reports = [model_version_report_urls(model_version=v) for v in versions]
        names = sorted({name for report in reports for name in report})
        context = {
            **self.admin_site.each_context(request),
            "title": "Compare model versions",
            "versions": versions,
            "rows": rows,
            "report_rows": [(name, [report.get(name) for report in reports]) for name in names],
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/registry/modelversion/compare.html", context)

    @admin.display(description="metrics")
    def metrics_pretty(self, obj: ModelVersion) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.metrics, indent=2))

    @admin.action(description="Activate the selected version (exactly one)")
    def activate(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.ERROR)
            return
        version = model_version_activate(model_version=queryset.get())
        self.message_user(request, f"{version.name} is now active; workers load it on their next job.")
