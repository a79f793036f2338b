"""Writes to the catalog: brand/product upserts and the manifest import.

The manifest format is the one of ``../shared/datasets/sneakers/manifest.csv``: a CSV with columns
``image_path, brand, product_name, price_usd, source_repo, source_path, source_commit``, where
``image_path`` is relative to the manifest's folder.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.core.files.base import ContentFile
from django.db import transaction
from django.utils.text import slugify

from catalog.datasets import provenance_styles
from catalog.images import ImageRejected, inspect_image
from catalog.models import Brand, Product, ProductImage

MANIFEST_COLUMNS = ("image_path", "brand", "product_name", "price_usd")
MAX_PRICE_USD = Decimal("100000")
BRAND_DISPLAY_NAMES = {"asics": "ASICS"}
"""Display names that title-casing the slug gets wrong (the brand's own spelling); others are title-cased
(``new-balance`` -> "New Balance")."""
IMAGE_STYLES = ("real-world", "product-shot")
"""``ProductImage.style`` values read from a set's ``extras/provenance.csv`` (``eyeballed_style``); any other
value (``unlabelled``) is stored blank."""


@dataclass
class ImportReport:
    """What one import did: counts and the bad rows as ``(line number, message)``."""

    rows: int = 0
    images_created: int = 0
    images_unchanged: int = 0
    products_created: int = 0
    brands_created: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


def brand_get_or_create(*, slug: str) -> tuple[Brand, bool]:
    """The brand with this slug, created when new with its display name (``BRAND_DISPLAY_NAMES`` or title case)."""
    slug = slugify(slug)
    name = BRAND_DISPLAY_NAMES.get(slug, slug.replace("-", " ").title())
    return Brand.objects.get_or_create(slug=slug, defaults={"name": name})


def _parse_price(raw: str) -> Decimal | None:
    """A USD price from the manifest; empty means unknown. Raises ``ValueError`` on bad values."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        price = Decimal(raw)
    except InvalidOperation as exc:
        raise ValueError(f"price_usd {raw!r} is not a number") from exc
    if not price.is_finite() or price < 0 or price > MAX_PRICE_USD:
        raise ValueError(f"price_usd {raw!r} is outside 0..{MAX_PRICE_USD}")
    return price.quantize(Decimal("0.01"))


def catalog_import_manifest(
    *,
    manifest_path: Path,
    kind: str = Product.Kind.LISTING,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 200,
) -> ImportReport:
    """Import a manifest's images into the catalog; idempotent and tolerant of bad rows.

    Rows naming the same ``(brand, product_name, price_usd)`` become one ``Product`` (the same
    title at another price is another edition). Rows without a product name become brand-labelled
    ``ProductImage`` rows with no product: usable for training, never shown as products. Images are
    keyed by the SHA-256 of their bytes, so re-running changes nothing. A bad row (missing file,
    undecodable image, bad price, missing brand) is reported with its line number (the header is
    line 1) and skipped; the import goes on. Each image's style (real-world or product shot) comes from
    ``extras/provenance.csv`` beside the manifest when the set has one (``eyeballed_style``).

    Args:
        manifest_path: the CSV file; image paths are relative to its folder.
        kind: ``Product.Kind`` of the products created: ``listing`` for shop listings (``../shared/datasets/
            sneakers``), ``model`` for named shoe models with many photos each (``sneaker_models``).
        progress: called as ``progress(rows_done, rows_total)`` after each batch.
        batch_size: rows per database transaction.

    Raises:
        FileNotFoundError: the manifest does not exist.
        ValueError: the manifest lacks a required column.
    """
    manifest_path = Path(manifest_path)
    root = manifest_path.parent
    with manifest_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in MANIFEST_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{manifest_path} lacks column(s): {', '.join(missing)}")
        rows = [(line, row) for line, row in enumerate(reader, start=2)]

    if kind not in Product.Kind.values:
        raise ValueError(f"kind must be one of {Product.Kind.values}, got {kind!r}")
    styles = provenance_styles(root)
    report = ImportReport(rows=len(rows))
    known_shas = set(ProductImage.objects.values_list("sha256", flat=True))
    for start in range(0, len(rows), batch_size):
        with transaction.atomic():
            for line, row in rows[start : start + batch_size]:
                try:
                    _import_row(row=row, root=root, kind=kind, styles=styles, known_shas=known_shas, report=report)
                except (ValueError, OSError, ImageRejected) as exc:
                    message = exc.message if isinstance(exc, ImageRejected) else str(exc)
                    report.errors.append((line, message))
        if progress:
            progress(min(start + batch_size, len(rows)), len(rows))
    return report


def _import_row(
    *, row: dict[str, str], root: Path, kind: str, styles: dict[str, str], known_shas: set[str], report: ImportReport
) -> None:
    """Import one manifest row (see ``catalog_import_manifest``); raises on a bad row."""
    relative = (row.get("image_path") or "").strip()
    brand_slug = slugify((row.get("brand") or "").strip())
    if not relative:
        raise ValueError("image_path is empty")
    if not brand_slug:
        raise ValueError("brand is empty")
    price = _parse_price(row.get("price_usd") or "")
    # Refuse ".." and absolute paths that leave the manifest's folder (symlinks inside it are the
    # operator's choice and are followed).
    path = Path(os.path.normpath(root / relative))
    if not path.is_relative_to(Path(os.path.normpath(root))):
        raise ValueError(f"image_path {relative!r} points outside the manifest's folder")
    if not path.is_file():
        raise ValueError(f"image file {relative!r} does not exist")

    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    if sha256 in known_shas:
        report.images_unchanged += 1
        return
    info = inspect_image(data)  # raises ImageRejected for undecodable or unsupported files

    brand, created = brand_get_or_create(slug=brand_slug)
    report.brands_created += int(created)
    product = None
    name = (row.get("product_name") or "").strip()
    if name:
        product, created = Product.objects.get_or_create(
            brand=brand,
            name=name[:255],
            price_usd=price,
            defaults={"source": (row.get("source_repo") or "")[:255], "kind": kind},
        )
        report.products_created += int(created)

    image = ProductImage(
        brand=brand,
        product=product,
        sha256=sha256,
        width=info.width,
        height=info.height,
        source_repo=(row.get("source_repo") or "")[:255],
        source_path=(row.get("source_path") or relative)[:1024],
        source_commit=(row.get("source_commit") or "")[:64],
        style=styles.get(relative, "") if styles.get(relative, "") in IMAGE_STYLES else "",
    )
    image.image.save(path.name, ContentFile(data), save=False)
    image.save()
    known_shas.add(sha256)
    report.images_created += 1
