"""Evaluating a model version through the prediction pipeline: photos from manifest folders, the sides of a
version's training split, the report saved on the version.

Used by ``manage.py evaluate``, the ``evaluate`` job (admin) and the activation gate (``registry.gate``).
Imports TensorFlow only when a pipeline is built (``registry.runtime``), so the web process may import it.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from django.core.files.storage import default_storage

from catalog.datasets import provenance_styles
from registry.models import ModelVersion

SPLIT_SIDES = ("train", "val", "test")
"""Sides of a version's ``split.json``."""
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


def read_split(version: ModelVersion) -> dict[str, Any]:
    """The version's ``split.json`` from storage.

    Raises:
        FileNotFoundError: the version has no ``split.json`` (message names the file).
    """
    name = f"{version.artifact_prefix.rstrip('/')}/split.json"
    try:
        with default_storage.open(name, "rb") as handle:
            return json.loads(handle.read())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"model version {version.name} has no split.json ({name})") from exc


def keep_side(items: Sequence[Any], hashes: set[str]) -> list[Any]:
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
    """``worker.ml.evaluation.EvalItem``s for every row of ``DIR/manifest.csv``.

    A manifest with a ``brand`` column is scored as sneakers; one with ``category`` instead as photos that
    must be rejected. ``DIR/extras/provenance.csv`` (``eyeballed_style``) gives styles; ``product_name``
    the named model; the folder's name is the source.

    Raises:
        ValueError: the manifest is missing or lacks ``image_path`` and a brand (or category) column.
    """
    from worker.ml.evaluation import EvalItem

    manifest = directory / "manifest.csv"
    if not manifest.is_file():
        raise ValueError(f"{manifest} does not exist")
    styles = provenance_styles(directory)
    with manifest.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        if "image_path" not in fields or not ({"brand", "category"} & set(fields)):
            raise ValueError(f"{manifest} needs image_path and a brand (or category) column")
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


def model_version_evaluate(
    *,
    model_version: ModelVersion,
    directories: Sequence[Path],
    split: str | None = None,
    save: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Score a version on manifest folders through exactly the worker's pipeline (``worker.ml.evaluation``).

    ``split`` keeps only the photos on that side of the version's training split (``test``: held out);
    with ``save`` the report is stored under ``metrics["evaluations"][<folder names joined by +>[:<side>]]``.

    Returns:
        ``{"model", "dataset", "split", **worker.ml.evaluation.evaluate report}``.

    Raises:
        ValueError: a bad manifest, or no photo on the asked side.
        FileNotFoundError: ``split`` asked and the version has no ``split.json``.
        ModelError: the version's artifact or weights do not load.
    """
    from registry import runtime
    from worker.ml.evaluation import evaluate

    items = [item for directory in directories for item in read_items(Path(directory))]
    if split is not None:
        items = keep_side(items, split_hashes(read_split(model_version), split))
        if not items:
            raise ValueError(f"no photo of {', '.join(map(str, directories))} is on the {split} side")
    pipeline = runtime.pipeline_get(model_version)
    report = evaluate(pipeline, items, progress=progress)
    dataset = ", ".join(str(directory) for directory in directories)
    report = {"model": model_version.name, "dataset": dataset, "split": split, **report}
    if save:
        evaluations = dict(model_version.metrics.get("evaluations", {}))
        key = "+".join(Path(directory).resolve().name for directory in directories) + (f":{split}" if split else "")
        evaluations[key] = report
        model_version.metrics = {**model_version.metrics, "evaluations": evaluations}
        model_version.save(update_fields=["metrics"])
    return report
