"""Readers of the shared dataset folders (``manifest.csv`` and ``extras/provenance.csv``).

The layout is the one ``../shared/datasets/*/SOURCES.md`` describes: ``manifest.csv`` with an
``image_path`` column relative to the folder, and for some sets ``extras/provenance.csv`` with an
``eyeballed_style`` (``real-world`` / ``product-shot``) per image path. Plain Python, no database.
"""

from __future__ import annotations

import csv
from pathlib import Path


def manifest_rows(directory: Path) -> list[tuple[dict[str, str], Path]]:
    """``(row, image path)`` of ``directory/manifest.csv`` whose image exists; [] without a manifest."""
    manifest = directory / "manifest.csv"
    if not manifest.is_file():
        return []
    with manifest.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("image_path")]
    return [(row, directory / row["image_path"]) for row in rows if (directory / row["image_path"]).is_file()]


def provenance_styles(directory: Path) -> dict[str, str]:
    """``image_path -> eyeballed_style`` from ``directory/extras/provenance.csv`` ({} when absent).

    The style (``real-world`` / ``product-shot``) of the shared wild photos; used by training and by
    ``manage.py evaluate`` for per-style figures.
    """
    provenance = directory / "extras" / "provenance.csv"
    if not provenance.is_file():
        return {}
    with provenance.open(newline="", encoding="utf-8") as handle:
        return {row["image_path"]: row.get("eyeballed_style") or "" for row in csv.DictReader(handle)}
