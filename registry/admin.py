"""Admin of the model registry: a version's metrics as readable tables (summary, per style, per brand, model
confusion), versions compared side by side, activate one or roll back; start a training or an evaluation
(a ``TrainingRun`` on the ``training`` queue) and watch its progress and log; the activation gate's verdict.

Metrics are the dict ``worker.ml.training.run.train_model`` stores (``TrainingResult.metrics``) plus the
``evaluations`` that ``manage.py evaluate`` adds; every table renders the keys present and skips absent ones
(older versions lack the model head, styles or evaluations).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from registry.jobs import default_evaluation_sets, run_options
from registry.models import ModelVersion, TrainingRun
from registry.reports import COMPARE_ROWS, metric_at, metric_format, summary_rows, text_table
from registry.selectors import (
    STAGE_LABELS,
    model_version_get_active,
    model_version_report_urls,
    training_run_live,
    training_run_progress,
)
from registry.services import (
    model_version_activate,
    model_version_roll_back,
    training_run_fail_stale,
    training_run_start,
)

STYLE_NAMES = {"": "unlabelled", "real-world": "real-world", "product-shot": "product-shot"}


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
        "gate_summary",
        "created_at",
    )
    list_filter = ("status",)
    readonly_fields = (
        "name",
        "status",
        "gate_table",
        "previous_version",
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
        "catalog_fingerprint",
        "runs",
    )
    exclude = ("metrics", "gate")
    actions = ["activate", "compare", "evaluate"]
    change_list_template = "admin/registry/modelversion/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_urls(self):
        """Two staff-only POST endpoints before the model admin's own: start a training, roll back."""
        wrap = self.admin_site.admin_view
        return [
            path("train/", wrap(require_POST(self.train_view)), name="registry_modelversion_train"),
            path("roll-back/", wrap(require_POST(self.roll_back_view)), name="registry_modelversion_roll_back"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        """The list, with the training form, the live run and the roll-back target above it."""
        active = model_version_get_active()
        live = training_run_live()
        context = {
            "active_version": active,
            "roll_back_to": active.previous_version if active is not None else None,
            "live_run": live,
            "live_progress": training_run_progress(live) if live is not None else None,
            "can_run": self.has_change_permission(request),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)

    def train_view(self, request: HttpRequest) -> HttpResponse:
        """Start a training run (form of the version list): activation rule and fine-tuning from the form.

        One model run at a time: with one pending or running, this opens it instead of starting another.
        """
        if not self.has_change_permission(request):
            raise PermissionDenied
        training_run_fail_stale()
        live = training_run_live()
        if live is not None:
            self.message_user(
                request, f"Training run #{live.id} is still {live.status}: follow it here.", messages.WARNING
            )
            return HttpResponseRedirect(reverse("admin:registry_trainingrun_change", args=[live.id]))
        activate = request.POST.get("activate", "gate")
        if activate not in {"first", "gate", "always"}:
            activate = "gate"
        finetune = {"yes": True, "no": False}.get(request.POST.get("finetune", ""))
        run = training_run_start(
            kind=TrainingRun.Kind.TRAIN,
            options=run_options(activate=activate, finetune=finetune),
            requested_by=request.user,
        )
        self.message_user(request, f"Training run #{run.id} queued on the jobs worker.")
        return HttpResponseRedirect(reverse("admin:registry_trainingrun_change", args=[run.id]))

    def roll_back_view(self, request: HttpRequest) -> HttpResponse:
        """Re-activate the version that was active before the active one."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        try:
            restored = model_version_roll_back()
        except ValueError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, f"Rolled back: {restored.name} is active again.")
        return HttpResponseRedirect(reverse("admin:registry_modelversion_changelist"))

    @admin.display(description="gate")
    def gate_summary(self, obj: ModelVersion) -> str:
        gate = obj.gate or {}
        if not gate:
            return "–"
        verdict = "passed" if gate.get("decision") == "activate" else "kept as candidate"
        return f"{verdict}: {gate.get('reason', '')}"

    @admin.display(description="activation gate")
    def gate_table(self, obj: ModelVersion) -> SafeString | str:
        gate = obj.gate or {}
        if not gate:
            return "– (no gate: activated by staff, or the first version)"
        rows = [
            (
                label,
                metric_format(key, (gate.get("candidate") or {}).get(key)),
                metric_format(key, (gate.get("active") or {}).get(key)),
            )
            for label, key in (
                ("brand top-1", "top1"),
                ("brand top-1, abstained = wrong", "top1_shopper"),
                ("log loss", "log_loss"),
                ("photos", "n"),
            )
        ]
        return render_to_string("admin/registry/modelversion/gate.html", {"gate": gate, "rows": rows, "version": obj})

    @admin.display(description="runs")
    def runs(self, obj: ModelVersion) -> SafeString | str:
        runs = list(obj.runs.order_by("-created_at")[:10])
        if not runs:
            return "–"
        return format_html_join(
            ", ",
            '<a href="{}">#{} {} ({})</a>',
            (
                (reverse("admin:registry_trainingrun_change", args=[run.id]), run.id, run.kind, run.status)
                for run in runs
            ),
        )

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
                "summary": summary_rows(metrics),
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

    @admin.action(description="Evaluate the selected versions on their held-out photos")
    def evaluate(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> HttpResponse | None:
        """Queue one ``evaluate`` run per version: the shared sets' photos on the version's test side."""
        directories = default_evaluation_sets()
        if not directories:
            self.message_user(
                request, "No evaluation set was found (SNEAKERS_DATASET_DIR and friends).", messages.ERROR
            )
            return None
        runs = [
            training_run_start(
                kind=TrainingRun.Kind.EVALUATE,
                options={"model": version.name, "directories": directories, "split": "test"},
                requested_by=request.user,
            )
            for version in queryset
        ]
        self.message_user(request, f"Evaluation run(s) {', '.join(f'#{run.id}' for run in runs)} queued.")
        if len(runs) == 1:
            return HttpResponseRedirect(reverse("admin:registry_trainingrun_change", args=[runs[0].id]))
        return None

    @admin.action(description="Activate the selected version (exactly one)")
    def activate(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.ERROR)
            return
        version = model_version_activate(model_version=queryset.get())
        self.message_user(request, f"{version.name} is now active; workers load it on their next job.")


def _progress_text(run: TrainingRun) -> str:
    """ "embedding 1,234 of 9,807 photos (12.6 %), about 6 minutes left in this step", or the status."""
    if not run.is_live or not run.stage:
        return run.status
    figures = training_run_progress(run)
    text = f"step {figures['step'] or '?'} of {figures['steps']}: {STAGE_LABELS.get(run.stage, run.stage)}"
    if run.total:
        text += f", {run.done:,} of {run.total:,} {figures['unit']} ({figures['percent']:.1f} %)"
    if run.eta_seconds is not None:
        from registry.templatetags.model_status import duration

        text += f", {duration(run.eta_seconds)} left in this step"
    return text


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    """Training, evaluation and first-run jobs: progress, per-stage times, log and error; read-only.

    Start them from the model version list (training) or its actions (evaluation); a live run's page reloads
    itself every 5 seconds.
    """

    list_display = ("id", "kind", "status", "progress", "model_version", "requested_by", "created_at", "duration")
    list_display_links = ("id", "kind")
    list_filter = ("kind", "status")
    fields = (
        "kind",
        "status",
        "progress_detail",
        "model_version_link",
        "error",
        "stage_times",
        "log_tail",
        "options",
        "requested_by",
        "worker",
        "created_at",
        "started_at",
        "heartbeat_at",
        "finished_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: TrainingRun | None = None) -> bool:
        return False  # read-only: runs are started from the version list and written by the worker

    def get_queryset(self, request: HttpRequest) -> QuerySet[TrainingRun]:
        return super().get_queryset(request).select_related("model_version", "requested_by")

    @admin.display(description="progress")
    def progress(self, obj: TrainingRun) -> str:
        return _progress_text(obj)

    @admin.display(description="progress")
    def progress_detail(self, obj: TrainingRun) -> SafeString | str:
        if not obj.is_live or obj.total <= 1:
            return _progress_text(obj)
        return format_html(
            '{}<br><progress max="{}" value="{}" style="width:30em"></progress>',
            _progress_text(obj),
            obj.total,
            obj.done,
        )

    @admin.display(description="model version")
    def model_version_link(self, obj: TrainingRun) -> SafeString | str:
        if obj.model_version is None:
            return "–"
        url = reverse("admin:registry_modelversion_change", args=[obj.model_version_id])
        return format_html('<a href="{}">{}</a>', url, obj.model_version)

    @admin.display(description="time per stage")
    def stage_times(self, obj: TrainingRun) -> SafeString | str:
        rows = [(entry["stage"], f"{entry.get('total', 0):,}", f"{entry['seconds']:,.1f} s") for entry in obj.stages]
        if not rows:
            return "–"
        return format_html("<pre>{}</pre>", text_table(rows, header=("stage", "units", "time")))

    @admin.display(description="log (last lines)")
    def log_tail(self, obj: TrainingRun) -> SafeString | str:
        if not obj.log:
            return "–"
        return format_html('<pre style="max-height:30em;overflow:auto;white-space:pre-wrap">{}</pre>', obj.log)

    @admin.display(description="time")
    def duration(self, obj: TrainingRun) -> str:
        if obj.started_at is None:
            return "–"
        end = obj.finished_at or obj.heartbeat_at or obj.started_at
        return metric_format("seconds", (end - obj.started_at).total_seconds())
