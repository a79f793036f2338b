"""Admin of the model registry: a version's metrics as readable tables (summary, per style, per brand, model
confusion), versions compared side by side, activate one.

Metrics are the dict ``worker.ml.training.run.train_model`` stores (``TrainingResult.metrics``) plus the
``evaluations`` that ``manage.py evaluate`` adds; every table renders the keys present and skips absent ones
(older versions lack the model head, styles or evaluations).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.utils.html import format_html_join
from django.utils.safestring import SafeString

from registry.models import ModelVersion
from registry.selectors import model_version_report_urls
from registry.services import model_version_activate

COMPARE_ROWS = (
    ("variant", ("variant",)),
    ("brand test top-1", ("brand", "top1")),
    ("brand test top-3", ("brand", "top3")),
    ("brand test log loss", ("brand", "log_loss")),
    ("ECE before temperature", ("brand", "ece_before")),
    ("ECE after temperature", ("brand", "ece_after")),
    ("model test top-1", ("model", "top1")),
    ("model test top-5", ("model", "top5")),
    ("model: share not sure", ("model", "uncertain_share")),
    ("model top-1 when sure", ("model", "top1_sure")),
    ("price MAE (USD)", ("price", "mae")),
    ("baseline MAE (USD)", ("price", "baseline_mae")),
    ("real-world top-1 (held out)", ("wild", "real-world", "top1")),
    ("product-shot top-1 (wild)", ("wild", "product-shot", "top1")),
    ("training seconds", ("seconds", "total")),
)
"""Rows of the summary and comparison tables: label and key path into ``ModelVersion.metrics``."""

USD_KEYS = {"mae", "baseline_mae", "price_mae", "price_baseline_mae", "rmse"}
PLAIN_KEYS = {"log_loss", "val_log_loss", "val_log_loss_calibrated", "temperature", "C", "alpha", "score", "threshold"}
STYLE_NAMES = {"": "unlabelled", "real-world": "real-world", "product-shot": "product-shot"}


def metric_at(metrics: Any, *path: str) -> Any:
    """The value at ``path`` in nested dicts, or None when a key is absent."""
    value = metrics
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def metric_format(key: str, value: Any) -> str:
    """A metric rounded for people: shares (accuracy, recall, ECE, MAPE) as percent with one decimal, USD with
    cents, seconds with one decimal, log loss and other scores to 3 significant digits; "–" when absent."""
    if value is None or value == "":
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) and key not in USD_KEYS:
        return f"{value:,}"
    if key in USD_KEYS or key.endswith("_usd"):
        return f"${value:,.2f}"
    if key in PLAIN_KEYS or "log_loss" in key:
        return f"{value:.3g}"
    if key in {"total", "embed", "fit", "seconds"} or key.endswith("_seconds"):
        return f"{value:,.1f} s"
    if -1.0 <= value <= 1.0:
        return f"{value * 100:.1f}%"
    return f"{value:,.4g}"


def style_rows(metrics: dict[str, Any]) -> list[dict[str, str]]:
    """Per-style figures of a version: ``[{"source", "style", "brand_top1", "model_top1", "model_top5", "n"}]``.

    Sources, where present: the catalog test split (``brand.by_style``, with ``model.by_style`` when the ML
    code writes it), the held-out wild photos (``wild.<style>``), and each ``manage.py evaluate`` run
    (``evaluations.<set>.by_style``). Styles: real-world, product-shot, unlabelled (a blank style).
    """
    rows: list[dict[str, str]] = []

    def add(source: str, style: str, brand: dict | None, model: dict | None) -> None:
        brand, model = brand or {}, model or {}
        n = brand.get("n", model.get("n"))
        rows.append(
            {
                "source": source,
                "style": STYLE_NAMES.get(style, style),
                "brand_top1": metric_format("top1", brand.get("top1")),
                "model_top1": metric_format(
                    "top1", model.get("top1", brand.get("model_top1", brand.get("model_top1_raw")))
                ),
                "model_top5": metric_format("top5", model.get("top5", brand.get("model_top5_raw"))),
                "n": metric_format("n", n),
            }
        )

    catalog_brand = metric_at(metrics, "brand", "by_style") or {}
    catalog_model = metric_at(metrics, "model", "by_style") or {}
    for style in sorted(set(catalog_brand) | set(catalog_model)):
        add("catalog test split", style, catalog_brand.get(style), catalog_model.get(style))
    wild = metrics.get("wild") or {}
    for style in sorted(wild):
        if style in STYLE_NAMES and isinstance(wild[style], dict):
            add("wild photos (held out)", style, wild[style], metric_at(wild[style], "model"))
    for name, report in sorted((metrics.get("evaluations") or {}).items()):
        for style, figures in sorted((metric_at(report, "by_style") or {}).items()):
            add(f"evaluate: {name}", style, figures, None)
    return rows


def confusion_pairs(confusion: dict[str, Any] | None, limit: int = 15) -> list[tuple[str, str, int, str]]:
    """The most frequent mistakes of a confusion matrix (rows true, columns predicted):
    ``[(true, predicted, count, share of the true class)]``, largest count first."""
    if not confusion or not confusion.get("labels"):
        return []
    labels, matrix = confusion["labels"], confusion["matrix"]
    pairs = []
    for i, row in enumerate(matrix):
        total = sum(row)
        for j, count in enumerate(row):
            if i != j and count:
                pairs.append((labels[i], labels[j], int(count), metric_format("share", count / total)))
    pairs.sort(key=lambda pair: (-pair[2], pair[0], pair[1]))
    return pairs[:limit]


def per_class_rows(report: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """``[(class, recall, precision, test photos)]`` of a ``classification_metrics`` report."""
    if not report:
        return []
    recall = report.get("per_brand_recall") or {}
    precision = report.get("per_brand_precision") or {}
    support = report.get("per_brand_support") or {}
    return [
        (
            name,
            metric_format("recall", recall.get(name)),
            metric_format("precision", precision.get(name)),
            metric_format("n", support.get(name)),
        )
        for name in sorted(set(recall) | set(support))
    ]


def _summary_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (label, metric_format(path[-1], metric_at(metrics, *path)))
        for label, path in COMPARE_ROWS
        if metric_at(metrics, *path) is not None
    ]


def _counts(metrics: dict[str, Any]) -> Iterable[tuple[str, str]]:
    return ((key, metric_format("n", value)) for key, value in sorted((metrics.get("counts") or {}).items()))


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Versions side by side: test top-1/top-3, log loss, model top-1, price MAE vs baseline; activate one."""

    list_display = (
        "name",
        "status",
        "variant",
        "top1",
        "top3",
        "log_loss",
        "model_top1",
        "price_mae",
        "price_baseline_mae",
        "created_at",
    )
    list_filter = ("status",)
    readonly_fields = (
        "name",
        "status",
        "variant",
        "artifact_prefix",
        "backbone_fingerprint",
        "classes",
        "report",
        "metrics_tables",
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
    def top1(self, obj: ModelVersion) -> str:
        return metric_format("top1", metric_at(obj.metrics, "brand", "top1"))

    @admin.display(description="top-3")
    def top3(self, obj: ModelVersion) -> str:
        return metric_format("top3", metric_at(obj.metrics, "brand", "top3"))

    @admin.display(description="log loss")
    def log_loss(self, obj: ModelVersion) -> str:
        return metric_format("log_loss", metric_at(obj.metrics, "brand", "log_loss"))

    @admin.display(description="model top-1")
    def model_top1(self, obj: ModelVersion) -> str:
        return metric_format("top1", metric_at(obj.metrics, "model", "top1"))

    @admin.display(description="price MAE")
    def price_mae(self, obj: ModelVersion) -> str:
        return metric_format("mae", metric_at(obj.metrics, "price", "mae"))

    @admin.display(description="baseline MAE")
    def price_baseline_mae(self, obj: ModelVersion) -> str:
        return metric_format("baseline_mae", metric_at(obj.metrics, "price", "baseline_mae"))

    @admin.display(description="variant")
    def variant(self, obj: ModelVersion) -> str:
        return obj.metrics.get("variant") or "head-only"

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

    @admin.display(description="metrics")
    def metrics_tables(self, obj: ModelVersion) -> SafeString:
        metrics = obj.metrics or {}
        model = metrics.get("model") if isinstance(metrics.get("model"), dict) else {}
        confusion = model.get("confusion") if model else None
        return render_to_string(
            "admin/registry/modelversion/metrics.html",
            {
                "summary": _summary_rows(metrics),
                "styles": style_rows(metrics),
                "brand_classes": per_class_rows(metrics.get("brand")),
                "model_classes": per_class_rows(model),
                "model_confusions": confusion_pairs(confusion),
                "model_confusion": confusion if confusion and confusion.get("labels") else None,
                "counts": list(_counts(metrics)),
                "raw": json.dumps(metrics, indent=2, sort_keys=True),
            },
        )

    @admin.action(description="Compare the selected versions side by side")
    def compare(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> TemplateResponse:
        versions = list(queryset.order_by("created_at"))
        rows = [
            (label, [metric_format(path[-1], metric_at(v.metrics, *path)) for v in versions])
            for label, path in COMPARE_ROWS
        ]
        rows[0] = ("variant", [v.metrics.get("variant") or "head-only" for v in versions])
        reports = [model_version_report_urls(model_version=v) for v in versions]
        names = sorted({name for report in reports for name in report})
        context = {
            **self.admin_site.each_context(request),
            "title": "Compare model versions",
            "versions": versions,
            "rows": rows,
            "style_tables": [(v, style_rows(v.metrics or {})) for v in versions],
            "report_rows": [(name, [report.get(name) for report in reports]) for name in names],
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/registry/modelversion/compare.html", context)

    @admin.action(description="Activate the selected version (exactly one)")
    def activate(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.ERROR)
            return
        version = model_version_activate(model_version=queryset.get())
        self.message_user(request, f"{version.name} is now active; workers load it on their next job.")
