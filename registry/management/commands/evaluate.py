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
dropped by every side.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.datasets import provenance_styles
from registry import runtime
from registry.models import ModelVersion
from registry.selectors import model_version_get_active
from worker.ml.errors import ModelError
from worker.ml.evaluation import EvalItem, evaluate

SUMMARY_KEYS = (
    "top1",
    "top1_raw",
    "top1_answered",
    "top3",
    "log_loss",
    "ece",
    "model_top1",
    "model_top1_raw",
    "model_top5_raw",
    "model_top1_answered",
    "unknown_brand_refused",
    "known_refused_unknown_brand",
    "price_mae",
    "price_mape",
    "price_baseline_mae",
)
SPLIT_SIDES = ("train", "val", "test")
"""Values of ``--split``."""
NEGATIVE_SIDES = {"val": "tune", "test": "holdout"}
"""The negatives' half on each side: ``tune`` set the threshold (validation), ``holdout`` is held out;
none were trained on."""


def split_hashes(split: dict[str, Any], side: str) -> set[str]:
    """SHA-256 hex digests on ``side`` of a version's ``split.json`` (catalog, wild and negatives).

    Raises:
        ValueError: ``side`` is not one of ``SPLIT_SIDES``.
    """
    if side not in SPLIT_SIDES:
        raise ValueError(f"side must be one of {SPLIT_SIDES}, got {side!r}")
    hashes = set(split.get(side, []))
    hashes |= set(split.get("wild", {}).get(side, []))
    if side in NEGATIVE_SIDES:
        hashes |= set(split.get("negatives", {}).get(NEGATIVE_SIDES[side], []))
    return hashes


def read_split(version: Any) -> dict[str, Any]:
    """The version's ``split.json`` from storage; raises ``CommandError`` when it is missing."""
    name = f"{version.artifact_prefix.rstrip('/')}/split.json"
    try:
        with default_storage.open(name, "rb") as handle:
            return json.loads(handle.read())
    except FileNotFoundError as exc:
        raise CommandError(f"model version {version.name} has no split.json ({name})") from exc


def keep_side(items: list[Any], hashes: set[str]) -> list[Any]:
    """The items whose file bytes hash (SHA-256) into ``hashes``; unreadable files are dropped too."""
    kept = []
    for item in items:
        try:
            digest = hashlib.sha256(item.load()).hexdigest()
        except OSError:
            continue
        if digest in hashes:
            kept.append(item)
    return kept


def read_items(directory: Path) -> list[Any]:
    """``EvalItem``s for every row of ``DIR/manifest.csv``; raises ``CommandError`` on a bad manifest."""
    manifest = directory / "manifest.csv"
    if not manifest.is_file():
        raise CommandError(f"{manifest} does not exist")
    styles = provenance_styles(directory)
    with manifest.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        if "image_path" not in fields or not ({"brand", "category"} & set(fields)):
            raise CommandError(f"{manifest} needs image_path and a brand (or category) column")
        rows = list(reader)

    def price(raw: str | None) -> float | None:
        try:
            return float(raw) if raw else None
        except ValueError:
            return None

    return [
        EvalItem(
            load=lambda path=directory / row["image_path"]: path.read_bytes(),
            brand=(row.get("brand") or None) if "brand" in fields else None,
            category=row.get("category") or None,
            price_usd=price(row.get("price_usd")),
            style=styles.get(row["image_path"]) or None,
            name=row["image_path"],
            model=(row.get("product_name") or "").strip() or None,
            source=directory.resolve().name,
        )
        for row in rows
    ]


class Command(BaseCommand):
    help = "Evaluate a model version on DIR/manifest.csv through the prediction pipeline."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directories", nargs="+", type=Path, help="Folders holding manifest.csv.")
        parser.add_argument("--model", default=None, help="Model version name (default: the active one).")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")
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
        items = [item for directory in directories for item in read_items(directory)]
        if split is not None:
            items = keep_side(items, split_hashes(read_split(version), split))
            if not items:
                raise CommandError(f"no photo of {', '.join(map(str, directories))} is on the {split} side")
        try:
            pipeline = runtime.pipeline_get(version)
        except ModelError as exc:
            raise CommandError(str(exc)) from exc
        report = evaluate(pipeline, items, progress=self._progress if not json else None)
        dataset = ", ".join(str(directory) for directory in directories)
        report = {"model": version.name, "dataset": dataset, "split": split, **report}
        if not no_save:
            evaluations = dict(version.metrics.get("evaluations", {}))
            key = "+".join(directory.resolve().name for directory in directories) + (f":{split}" if split else "")
            evaluations[key] = report
            version.metrics = {**version.metrics, "evaluations": evaluations}
            version.save(update_fields=["metrics"])
        if json:
            self.stdout.write(_dumps(report))
            return
        self.stdout.write(f"model {version.name} on {dataset} ({report['n']} photos, {report['errors']} unreadable)")
        for key in SUMMARY_KEYS:
            if report.get(key) is not None:
                self.stdout.write(f"  {key:20s} {report[key]:.4f}")
        self.stdout.write(f"  abstained            {_dumps(report['abstained'])}")
        for group in ("by_style", "by_source"):
            for name, figures in report.get(group, {}).items():
                line = " ".join(
                    f"{key} {figures[key]:.3f}"
                    for key in ("top1", "top1_raw", "model_top1")
                    if figures.get(key) is not None
                )
                self.stdout.write(f"  [{name}] n {figures.get('n')} {line}")

    def _progress(self, done: int, total: int) -> None:
        if done == total or done % 100 == 0:
            self.stdout.write(f"  {done}/{total}")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=float)
