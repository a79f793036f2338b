"""Writes to the catalog: brand/product upserts and the manifest import.

The manifest format is the one of ``../shared/datasets/sneakers/manifest.csv``: a CSV with columns
``image_path, brand, product_name, price_usd, source_repo, source_path, source_commit``, where
``image_path`` is relative to the manifest's folder.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import Count, QuerySet
from django.utils import timezone
from django.utils.text import slugify

from catalog.datasets import provenance_styles
from catalog.images import ImageRejected, inspect_image
from catalog.models import Brand, PriceKind, Product, ProductImage
from sneakers.exceptions import ApplicationError

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
            feed=None,  # the rows a manifest shares are products outside feeds (feed items are keyed apart)
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


# --- Admin curation: product photos and bulk product edits (catalog admin, issue 11) ---

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
"""File name extension of a stored photo per ``inspect_image`` format: names follow the bytes, not the client."""

STAFF_PRICE_SOURCE = "Set by our staff"
"""``Product.price_source`` of a price set from admin when staff give no words of their own."""


@dataclass(frozen=True)
class InspectedPhoto:
    """An uploaded photo that passed the upload checks.

    Attributes:
        data: the file's bytes.
        sha256: hex SHA-256 of ``data`` (64 characters; names the stored file and keys the catalog).
        format: ``"JPEG"``, ``"PNG"`` or ``"WEBP"`` (``catalog.images.ALLOWED_FORMATS``).
        width: pixels, as stored (before EXIF orientation).
        height: pixels, as stored.
    """

    data: bytes
    sha256: str
    format: str
    width: int
    height: int

    @property
    def extension(self) -> str:
        """``jpg``, ``png`` or ``webp``: the extension of the stored file."""
        return IMAGE_EXTENSIONS[self.format]


def product_image_inspect_upload(*, upload: UploadedFile) -> InspectedPhoto:
    """Check an uploaded catalog photo with the shopper uploads' checks and hash it.

    The same policy as ``predictions.services.prediction_create``: at most ``SNEAKERS_UPLOAD_MAX_BYTES``
    bytes (refused from the upload's size before reading it), at most ``SNEAKERS_UPLOAD_MAX_PIXELS``
    pixels, JPEG/PNG/WebP only, sides of at least ``catalog.images.MIN_SIDE`` pixels, complete data
    (``catalog.images.inspect_image``). Reads at most one byte more than the limit.

    Raises:
        ImageRejected: with the ``image_*`` code and a message for people.
    """
    max_bytes = settings.SNEAKERS_UPLOAD_MAX_BYTES
    if (upload.size or 0) > max_bytes:
        raise ImageRejected("image_too_large", f"The file has {upload.size} bytes; the limit is {max_bytes} bytes.")
    upload.seek(0)
    data = upload.read(max_bytes + 1)
    upload.seek(0)
    info = inspect_image(data, max_bytes=max_bytes, max_pixels=settings.SNEAKERS_UPLOAD_MAX_PIXELS)
    return InspectedPhoto(
        data=data, sha256=hashlib.sha256(data).hexdigest(), format=info.format, width=info.width, height=info.height
    )


def _storage_delete_on_commit(*, storage: Storage, name: str) -> None:
    """Delete ``name`` from ``storage`` once the current transaction commits (never for a rolled-back delete).

    A storage error (S3 down) is logged, not raised: the row is gone either way and the file is an orphan
    that a later clean-up can remove; the staff member's request must not fail for it.
    """

    def delete() -> None:
        try:
            storage.delete(name)
        except Exception:  # broad on purpose: any storage backend error, see docstring
            logger.exception("could not delete catalog photo file %s from storage", name)

    transaction.on_commit(delete)


@transaction.atomic
def product_image_save(*, image: ProductImage) -> ProductImage:
    """Save a catalog photo made or changed in admin; a replaced file is deleted from storage after commit.

    ``image`` carries its ``brand``, ``sha256``, ``width`` and ``height`` (see ``catalog.forms
    .ProductImageForm``); a new, not yet stored file is written by ``FileField.pre_save`` under
    ``catalog.models.product_image_upload_to``'s name.
    """
    previous = None
    if image.pk is not None:
        previous = ProductImage.objects.filter(pk=image.pk).values_list("image", flat=True).first()
    image.save()
    if previous and previous != image.image.name:
        _storage_delete_on_commit(storage=image.image.storage, name=previous)
    return image


@transaction.atomic
def product_images_delete(*, images: Iterable[ProductImage]) -> int:
    """Delete catalog photos and, after the transaction commits, their files from storage.

    Predictions made before keep their stored results; a result that showed one of these photos as a
    similar product's picture then shows none. ``predictions.Feedback.catalog_image`` links are cleared
    (``SET_NULL``). Returns the number of photos deleted.
    """
    deleted = 0
    for image in images:
        name, storage = image.image.name, image.image.storage
        image.delete()
        deleted += 1
        if name:
            _storage_delete_on_commit(storage=storage, name=name)
    return deleted


def products_set_listed(*, products: QuerySet[Product], is_listed: bool) -> int:
    """List (shown to shoppers, used as similarity matches) or unlist products; returns how many changed.

    Products already in the wanted state are left alone (their ``updated_at`` stays).
    """
    ids = list(products.values_list("pk", flat=True))
    return (
        Product.objects.filter(pk__in=ids)
        .exclude(is_listed=is_listed)
        .update(is_listed=is_listed, updated_at=timezone.now())
    )


def _price_conflicts(*, ids: list[int], price_usd: Decimal) -> list[str]:
    """Products that would break ``catalog_product_unique_brand_name_price`` at ``price_usd``, as sentences.

    One row per (brand, title, price) is the catalog's rule for products outside feeds: two selected editions of
    one title cannot take one price, nor can a selected product take the price of an unselected edition of its
    title. A feed's products are keyed by their feed item and never clash.
    """
    selected = Product.objects.filter(pk__in=ids, feed__isnull=True)
    conflicts = [
        f"{group['brand__name']} “{group['name']}” is selected {group['n']} times (editions at other prices)"
        for group in selected.order_by()
        .values("brand_id", "brand__name", "name")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .order_by("brand__name", "name")
    ]
    names = selected.values("name")
    for other in (
        Product.objects.filter(price_usd=price_usd, name__in=names, feed__isnull=True)
        .exclude(pk__in=ids)
        .select_related("brand")
        .order_by("brand__name", "name")
    ):
        if selected.filter(brand_id=other.brand_id, name=other.name).exists():
            conflicts.append(f"{other.brand.name} “{other.name}” already has an edition at ${price_usd} (#{other.pk})")
    return conflicts


def products_set_price(
    *, products: QuerySet[Product], price_usd: Decimal, price_kind: str, price_source: str = ""
) -> int:
    """Give products one USD price, with what kind of price it is and where it comes from; returns the count.

    Args:
        products: the products to change.
        price_usd: the new price in USD, 0.01 to ``MAX_PRICE_USD``; stored with 2 decimals.
        price_kind: ``PriceKind`` value (``list`` or ``retail``).
        price_source: where the price comes from, shown to shoppers; blank: ``STAFF_PRICE_SOURCE`` (the words
            the old price carried, such as a 2018 shop snapshot, would no longer be true).

    Raises:
        ApplicationError: ``price_invalid`` for a price outside the range or an unknown kind;
            ``price_conflict`` when the catalog's one-row-per-(brand, title, price) rule would break (nothing
            changes then; the message names the products).
    """
    if not price_usd.is_finite() or not Decimal("0.01") <= price_usd <= MAX_PRICE_USD:
        raise ApplicationError(f"The price must be between $0.01 and ${MAX_PRICE_USD}.", code="price_invalid")
    if price_kind not in PriceKind.values:
        raise ApplicationError(f"The price kind must be one of {', '.join(PriceKind.values)}.", code="price_invalid")
    price_usd = price_usd.quantize(Decimal("0.01"))
    ids = list(products.values_list("pk", flat=True))
    conflicts = _price_conflicts(ids=ids, price_usd=price_usd)
    if conflicts:
        raise ApplicationError(
            "Nothing changed: one title of a brand has one row per price. " + "; ".join(conflicts) + ".",
            code="price_conflict",
            extra={"conflicts": conflicts},
        )
    try:
        with transaction.atomic():
            return Product.objects.filter(pk__in=ids).update(
                price_usd=price_usd,
                price_kind=price_kind,
                price_source=(price_source.strip() or STAFF_PRICE_SOURCE)[:255],
                updated_at=timezone.now(),
            )
    except IntegrityError as exc:  # a concurrent edit made a clash after the check
        raise ApplicationError(
            "Nothing changed: another product took this brand, title and price meanwhile.", code="price_conflict"
        ) from exc


def product_images_follow_brand(*, product: Product) -> int:
    """Give a product's photos the product's brand (their training label), after staff changed its brand.

    Stored file names keep the old brand's folder (names are storage keys, not labels). Returns how many
    photos changed.
    """
    return ProductImage.objects.filter(product=product).exclude(brand_id=product.brand_id).update(brand=product.brand)
