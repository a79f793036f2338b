"""``manage.py evaluate DIR [DIR ...] [--model VERSION] [--split SIDE] [--json]``: score a model on manifest folders.

Runs exactly the worker's prediction pipeline (``worker.ml.evaluation.evaluate``). A manifest with a
``brand`` column is scored as sneakers; one without (``category`` instead, like
``../shared/datasets/negatives/``) as photos that must be rejected. ``DIR/extras/provenance.csv`` with
an ``eyeballed_style`` column adds figures per style (real-world / product-shot); each folder's photos
are also reported as a source set (``by_source``), and a ``product_name`` that is a class of the
version's model head is scored as the photo's named model (model top-1 / top-5). Photos of brands
the version does not know measure the ``unknown_brand`` refusal. The figures are printed and saved on
the model version (``metrics["evaluations"][<folder names joined by +>]``, with ``:<side>`` for
``--split``), where admin shows them.

``--split test`` keeps only the photos the version held out when it was trained (its ``split.json``,
matched by SHA-256 of the file): catalog test side, held-out wild photos, held-out negatives.
``--split val`` keeps the validation side (catalog validation, wild validation, the negatives that
tuned the threshold) and ``--split train`` the training side. A photo the version never saw is
dropped by every side. The work itself is ``registry.evaluation.model_version_evaluate``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from registry.evaluation import SPLIT_SIDES, model_version_evaluate
from registry.models import ModelVersion
from registry.reports import metric_format, text_table
from registry.selectors import model_version_get_active
from worker.ml.errors import ModelError

SUMMARY_KEYS = (
    ("brand top-1", "top1"),
    ("brand top-1, abstain ignored", "top1_raw"),
    ("brand top-1 when answered", "top1_answered"),
    ("brand top-3", "top3"),
    ("log loss", "log_loss"),
    ("ECE", "ece"),
    ("model top-1", "model_top1"),
    ("model top-5, abstain ignored", "model_top5_raw"),
    ("unknown brands refused", "unknown_brand_refused"),
    ("known brands refused as unknown", "known_refused_unknown_brand"),
    ("price MAE", "price_mae"),
    ("price baseline MAE", "price_baseline_mae"),
)
"""Rows of the printed summary: label and key of the ``worker.ml.evaluation.evaluate`` report."""
GROUP_KEYS = ("n", "top1", "top1_raw", "log_loss", "model_top1")
"""Columns of the per-style and per-source table."""


class Command(BaseCommand):
    help = "Evaluate a model version on DIR/manifest.csv through the prediction pipeline."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directories", nargs="+", type=Path, help="Folders holding manifest.csv.")
        parser.add_argument("--model", default=None, help="Model version name (default: the active one).")
        parser.add_argument("--json", action="store_true", help="Print the full report as one JSON object.")
        parser.add_argument("--no-save", action="store_true", help="Do not store the figures on the version.")
        parser.add_argument(
            "--split",
            choices=SPLIT_SIDES,
            default=None,
            help="Only the photos on this side of the version's training split (test: held out).",
        )

    def handle(
        self,
        *args,
        directories: list[Path],
        model: str | None,
        json: bool,
        no_save: bool,
        split: str | None,
        **options,
    ) -> None:
        version = ModelVersion.objects.filter(name=model).first() if model else model_version_get_active()
        if version is None:
            raise CommandError(f"no model version {model!r}" if model else "no model version is active")
        bar = tqdm(
            desc="Scoring photos", file=getattr(self.stderr, "_out", self.stderr), disable=True if json else None
        )

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            report = model_version_evaluate(
                model_version=version, directories=directories, split=split, save=not no_save, progress=progress
            )
        except (ValueError, FileNotFoundError, ModelError) as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()
        if json:
            self.stdout.write(_dumps(report))
            return
        self.stdout.write(
            f"model {version.name} on {report['dataset']}{f' ({split} side)' if split else ''}: "
            f"{report['n']} photos, {report['errors']} unreadable"
        )
        rows = [(label, metric_format(key, report[key])) for label, key in SUMMARY_KEYS if report.get(key) is not None]
        self.stdout.write(text_table(rows, header=("figure", "value")))
        abstained = report.get("abstained") or {}
        if abstained:
            self.stdout.write(
                "abstained: "
                + ", ".join(f"{key} {value}" for key, value in abstained.items() if not isinstance(value, dict))
            )
        groups = [
            (f"{group.removeprefix('by_')} {name}", figures)
            for group in ("by_style", "by_source")
            for name, figures in (report.get(group) or {}).items()
        ]
        if groups:
            self.stdout.write("")
            self.stdout.write(
                text_table(
                    [[name, *(metric_format(key, figures.get(key)) for key in GROUP_KEYS)] for name, figures in groups],
                    header=("photos", *GROUP_KEYS),
                )
            )
        if not no_save:
            self.stdout.write(self.style.SUCCESS(f"saved on {version.name}; full report: --json or admin"))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=float)
