"""Product feed ingest: read a shop's feed in the Google Merchant Center product data format, download its
images and keep the feed's products in the catalog up to date.

Format (Google Merchant Center Help, "Product data specification" and "Use a file to add products"): a
delimited text file, tab-separated (``.txt``/``.tsv``) or comma-separated (``.csv``), whose first line names
the attributes, or JSON lines (one object per line, ``.jsonl``/``.ndjson``/``.json``). Attributes read:

- ``id`` (required, unique in the feed): the product's key, with the feed (``Product.feed``, ``.external_id``);
- ``title`` and ``brand`` (required): ``Product.name`` and its ``Brand`` (created when new, slug and display
  name as ``catalog.services.brand_get_or_create`` makes them);
- ``price``: ``"89.99 USD"``, ``"USD 89.99"``, ``"$89.99"`` or a plain number (USD); in JSON lines also a number
  or ``{"value": "89.99", "currency": "USD"}``. Empty: no price. Another currency is a bad row (the catalog keeps
  USD). Stored as the shop's list price (``PriceKind.LIST``) with the feed named as its source;
- ``image_link`` (required) and ``additional_image_link`` (comma-separated in text files, a list or a string in
  JSON lines; at most ``MAX_ADDITIONAL_IMAGES``): downloaded concurrently by ``catalog.downloads.fetch_many``
  (http/https only, public addresses, timeouts, retries, byte cap) and checked like uploads
  (``catalog.images.inspect_image``); photos are keyed by their SHA-256 (``ProductImage.sha256``);
- ``link``: the shop's page (``Product.link``); must be an http(s) URL when given.

Column names are matched without case, spaces as underscores, and a ``g:`` prefix dropped.

What a run does (``feed_run_execute``): reads the file (an upload, a URL, or a path named by the operator),
keeps it on the ``FeedRun``, then ingests row by row. A bad row (no id, title or brand, a bad price or link, a
repeated id, every photo failing) is counted ``failed`` with its reason and skipped; the run goes on. A product
already ingested from the feed is updated when a field changed or a new photo arrived, else counted
``unchanged``, so a re-run of the same file changes nothing. Products of the feed missing from the file are
unlisted (``is_listed=False``), never deleted; they are listed again when they come back. A file that cannot be
read at all (not reachable, no header, no rows, missing required columns) fails the run with a reason, the file
kept, and unlists nothing.

Products a feed brings are managed by it: title, brand, price, link and listing follow the feed on every run.
Photos no longer in the feed stay with their product (staff can delete them in admin).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from catalog.downloads import DownloadError, FetchedFile, fetch_many, fetch_url
from catalog.images import ImageRejected, inspect_image
from catalog.models import Feed, FeedRun, PriceKind, Product, ProductImage
from catalog.services import MAX_PRICE_USD, brand_get_or_create

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS: Final = ("id", "title", "brand", "image_link")
"""Columns a delimited feed must name in its header (``price``, ``additional_image_link``, ``link`` are optional)."""
MAX_ADDITIONAL_IMAGES: Final = 10
"""Additional photos read per item (Google's limit for ``additional_image_link``)."""
MAX_REPORTED: Final = 1000
"""Failures and warnings kept in a ``FeedRun`` row; the counts hold the true totals."""
CHUNK_URLS: Final = 32
"""Photos downloaded (and held in memory) at once: rows are ingested in chunks of about this many photo URLs."""
FEED_RUN_TIME_LIMIT_SECONDS: Final = 2 * 3600
"""Hard time limit of the ingest task; a run still ``running`` after it lost its worker."""
JSON_EXTENSIONS: Final = (".jsonl", ".ndjson", ".json")
_IMAGE_EXTENSIONS: Final = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}

FEED_UNREADABLE: Final = "feed_unreadable"
FEED_EMPTY: Final = "feed_empty"
FEED_COLUMNS: Final = "feed_columns"
FEED_TOO_LARGE: Final = "feed_too_large"
FEED_SOURCE: Final = "feed_source"

_CURRENCY_RE: Final = re.compile(r"^(?:(?P<pre>[A-Za-z]{3})\s*)?(?P<number>[^A-Za-z\s]+?)\s*(?P<post>[A-Za-z]{3})?$")
_THOUSANDS_RE: Final = re.compile(r"^\d{1,3}(,\d{3})+(\.\d+)?$")


class FeedError(Exception):
    """The feed file as a whole cannot be read; the run fails with ``code`` and ``message``.

    Codes: ``feed_unreadable`` (download failed, not text), ``feed_empty`` (no header or no rows),
    ``feed_columns`` (a required column is missing), ``feed_too_large``, ``feed_source`` (no source to read).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- Parsing ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedItem:
    """One well-formed feed row.

    Attributes:
        line: line number in the file (the header is line 1 of a delimited file; JSON lines count from 1).
        id: the feed's item id.
        title: product title, at most 255 characters.
        brand: brand as written in the feed.
        brand_slug: ``slugify(brand)``, at most 50 characters, not empty.
        price_usd: USD with 2 decimals, or None when the feed gives no price.
        image_urls: ``image_link`` then the additional ones, without repeats, at most 1 + ``MAX_ADDITIONAL_IMAGES``.
        link: the shop's page of the product, or ``""``.
    """

    line: int
    id: str
    title: str
    brand: str
    brand_slug: str
    price_usd: Decimal | None
    image_urls: tuple[str, ...]
    link: str


@dataclass(frozen=True)
class RowFailure:
    """A feed row that was skipped: its line, its id (``""`` when unknown) and the reason, for people."""

    line: int
    id: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """``{"line", "id", "reason"}``, as ``FeedRun.failures`` stores it."""
        return {"line": self.line, "id": self.id, "reason": self.reason}


@dataclass
class ParsedFeed:
    """A feed file read into rows.

    Attributes:
        format: ``"csv"``, ``"tsv"`` or ``"jsonl"``.
        rows: data rows in the file (blank lines not counted).
        items: the well-formed rows, in file order.
        failures: rows refused while reading (bad price, missing title ...).
        ids: every item id the file names, well-formed row or not (a product whose row is bad stays listed).
    """

    format: str
    rows: int = 0
    items: list[FeedItem] = field(default_factory=list)
    failures: list[RowFailure] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)


def parse_price(raw: Any) -> Decimal | None:
    """A USD price from a feed's ``price`` value; ``None`` when empty.

    Accepts ``"89.99 USD"``, ``"USD 89.99"``, ``"$89.99"``, ``"1,299.00 USD"``, ``"89.99"``, numbers, and the
    Content API object ``{"value": "89.99", "currency": "USD"}``.

    Raises:
        ValueError: not a number, negative or over ``MAX_PRICE_USD``, or a currency other than USD (the message
            says which, for the run's report).
    """
    if raw is None:
        return None
    if isinstance(raw, dict):
        currency = str(raw.get("currency") or "USD").strip().upper()
        if currency != "USD":
            raise ValueError(f"price is in {currency}; the catalog keeps USD prices only")
        raw = raw.get("value")
        if raw is None:
            return None
    if isinstance(raw, bool):
        raise ValueError(f"price {raw!r} is not a number")
    text = str(raw).strip()
    if not text:
        return None
    match = _CURRENCY_RE.match(text)
    if not match:
        raise ValueError(f"price {text!r} is not a number with an optional currency code")
    currencies = {code.upper() for code in (match["pre"], match["post"]) if code}
    if currencies - {"USD"}:
        raise ValueError(f"price {text!r} is in {', '.join(sorted(currencies))}; the catalog keeps USD prices only")
    number = match["number"].strip()
    number = number[1:].strip() if number.startswith("$") else number
    if _THOUSANDS_RE.match(number):
        number = number.replace(",", "")
    try:
        price = Decimal(number)
    except InvalidOperation as exc:
        raise ValueError(f"price {text!r} is not a number") from exc
    if not price.is_finite() or price < 0 or price > MAX_PRICE_USD:
        raise ValueError(f"price {text!r} is outside 0..{MAX_PRICE_USD} USD")
    return price.quantize(Decimal("0.01"))


def _decode(data: bytes) -> str:
    """Text of a feed file: UTF-16 when it starts with its byte-order mark, else UTF-8 (BOM or not), else Latin-1
    (the encodings Google Merchant Center accepts for text feeds)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise FeedError(FEED_UNREADABLE, "The file starts like UTF-16 text but is not.") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _column_name(name: Any) -> str:
    """``"G:Image Link "`` -> ``"image_link"``."""
    text = str(name).strip().lower().replace(" ", "_").replace("-", "_")
    return text[2:] if text.startswith("g:") else text


def _split_urls(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value or "").split(",") if part.strip()]


_LINK_VALIDATOR: Final = URLValidator(schemes=["http", "https"])


def _item_from_row(row: dict[str, Any], line: int) -> FeedItem | RowFailure:
    """Check one row (column names already normalised) into a ``FeedItem``, or say why it is refused."""
    item_id = str(row.get("id") if row.get("id") is not None else "").strip()
    if not item_id:
        return RowFailure(line, "", "id is empty")
    if len(item_id) > 255:
        return RowFailure(line, item_id[:50], "id is longer than 255 characters")

    def fail(reason: str) -> RowFailure:
        return RowFailure(line, item_id, reason)

    title = " ".join(str(row.get("title") or "").split())
    if not title:
        return fail("title is empty")
    brand = " ".join(str(row.get("brand") or "").split())
    if not brand:
        return fail("brand is empty")
    brand_slug = slugify(brand)[:50].strip("-")
    if not brand_slug:
        return fail(f"brand {brand!r} has no letters or digits")
    try:
        price = parse_price(row.get("price"))
    except ValueError as exc:
        return fail(str(exc))
    main = _split_urls(row.get("image_link"))
    if not main:
        return fail("image_link is empty")
    additional = _split_urls(row.get("additional_image_link"))[:MAX_ADDITIONAL_IMAGES]
    urls = tuple(dict.fromkeys(main[:1] + additional))
    link = str(row.get("link") or "").strip()
    if link:
        try:
            if len(link) > 1000:
                raise ValidationError("too long")
            _LINK_VALIDATOR(link)
        except ValidationError:
            return fail(f"link {link[:100]!r} is not an http(s) URL of at most 1000 characters")
    return FeedItem(
        line=line,
        id=item_id,
        title=title[:255],
        brand=brand,
        brand_slug=brand_slug,
        price_usd=price,
        image_urls=urls,
        link=link,
    )


def _delimited_rows(text: str) -> tuple[str, Iterator[tuple[int, dict[str, Any] | str]]]:
    """Format (``csv``/``tsv``) and ``(line, row dict | reason)`` pairs of a delimited feed.

    Raises:
        FeedError: ``feed_empty`` without a header, ``feed_columns`` when a required column is missing.
    """
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    if not first_line:
        raise FeedError(FEED_EMPTY, "The file is empty.")
    delimiter = "\t" if first_line.count("\t") >= max(1, first_line.count(",")) else ","
    fmt = "tsv" if delimiter == "\t" else "csv"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] = []
    for raw in reader:
        if any(cell.strip() for cell in raw):
            header = [_column_name(cell) for cell in raw]
            break
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        raise FeedError(
            FEED_COLUMNS,
            f"The {fmt.upper()} header lacks column(s) {', '.join(missing)}; "
            f"it has: {', '.join(header[:20]) or 'nothing'}.",
        )

    def rows() -> Iterator[tuple[int, dict[str, Any] | str]]:
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield reader.line_num, f"the line cannot be read as {fmt.upper()} ({exc})"
                continue
            if not any(cell.strip() for cell in cells):
                continue
            yield reader.line_num, dict(zip(header, cells, strict=False))

    return fmt, rows()


def _json_rows(text: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """``(line, row dict | reason)`` pairs of a JSON-lines feed (one object per line)."""
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except ValueError as exc:
            yield line, f"the line is not valid JSON ({exc.args[0] if exc.args else exc})"
            continue
        if not isinstance(value, dict):
            yield line, "the line is not a JSON object"
            continue
        yield line, {_column_name(key): item for key, item in value.items()}


def feed_parse(data: bytes, *, filename: str = "") -> ParsedFeed:
    """Read a feed file into well-formed items and refused rows.

    JSON lines when ``filename`` ends in ``.jsonl``, ``.ndjson`` or ``.json`` or the first non-blank character
    is ``{``; otherwise a delimited file, tab-separated when its header line has at least as many tabs as
    commas, else comma-separated (CSV quoting rules for both).

    Args:
        data: the file's bytes (UTF-8, UTF-16 with BOM, or Latin-1).
        filename: the file's name or URL path, only for its extension.

    Returns:
        ``ParsedFeed``; a repeated id is refused on its later lines.

    Raises:
        FeedError: ``feed_empty`` (no header or no data rows), ``feed_columns`` (header lacks a required column).
    """
    text = _decode(data)
    is_json = filename.lower().endswith(JSON_EXTENSIONS) or text.lstrip().startswith("{")
    if is_json:
        fmt, rows = "jsonl", _json_rows(text)
    else:
        fmt, rows = _delimited_rows(text)
    parsed = ParsedFeed(format=fmt)
    first_line: dict[str, int] = {}
    for line, row in rows:
        parsed.rows += 1
        if isinstance(row, str):
            parsed.failures.append(RowFailure(line, "", row))
            continue
        result = _item_from_row(row, line)
        if result.id:
            if result.id in first_line:
                parsed.failures.append(
                    RowFailure(line, result.id, f"id {result.id!r} already appeared on line {first_line[result.id]}")
                )
                continue
            first_line[result.id] = line
            parsed.ids.add(result.id)
        if isinstance(result, RowFailure):
            parsed.failures.append(result)
        else:
            parsed.items.append(result)
    if parsed.rows == 0:
        raise FeedError(FEED_EMPTY, "The file has no product rows.")
    return parsed


# --- Ingest -----------------------------------------------------------------------------------------------


@dataclass
class FeedReport:
    """What one ingest did; counts are of feed rows (see ``FeedRun``)."""

    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    unlisted: int = 0
    images_added: int = 0
    failures: list[RowFailure] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def done(self) -> int:
        """Rows handled so far."""
        return self.added + self.updated + self.unchanged + self.failed

    def fail(self, failure: RowFailure) -> None:
        """Count a skipped row and keep its reason."""
        self.failed += 1
        self.failures.append(failure)


@dataclass(frozen=True)
class _Photo:
    url: str
    data: bytes
    sha256: str
    format: str
    width: int
    height: int


def _chunks(items: Sequence[FeedItem], max_urls: int) -> Iterator[list[FeedItem]]:
    """Consecutive items holding about ``max_urls`` photo URLs together (at least one item each)."""
    chunk: list[FeedItem] = []
    urls = 0
    for item in items:
        if chunk and urls + len(item.image_urls) > max_urls:
            yield chunk
            chunk, urls = [], 0
        chunk.append(item)
        urls += len(item.image_urls)
    if chunk:
        yield chunk


def _photos_of(item: FeedItem, fetched: dict[str, FetchedFile | DownloadError]) -> tuple[list[_Photo], list[str]]:
    """The item's photos that downloaded and passed the upload checks, and a reason per refused one."""
    photos: list[_Photo] = []
    problems: list[str] = []
    for url in item.image_urls:
        result = fetched[url]
        if isinstance(result, DownloadError):
            problems.append(f"{url}: {result.code}: {result.message}")
            continue
        try:
            info = inspect_image(
                result.content,
                max_bytes=settings.SNEAKERS_FETCH_MAX_BYTES,
                max_pixels=settings.SNEAKERS_UPLOAD_MAX_PIXELS,
            )
        except ImageRejected as exc:
            problems.append(f"{url}: {exc.code}: {exc.message}")
            continue
        photos.append(
            _Photo(
                url=url,
                data=result.content,
                sha256=hashlib.sha256(result.content).hexdigest(),
                format=info.format,
                width=info.width,
                height=info.height,
            )
        )
    return photos, problems


def _price_source(feed: Feed) -> str:
    return f"The shop's price in its product feed “{feed.name}”"[:255]


def _ingest_item(*, feed: Feed, item: FeedItem, photos: list[_Photo], report: FeedReport) -> str:
    """Create or update the item's product and add its new photos (inside the caller's savepoint).

    Returns ``"added"``, ``"updated"`` or ``"unchanged"``. Items are keyed by (feed, item id) alone: a size or
    colour variant with the same title and price, or a title another feed or the shared catalog has, is a
    product of its own (the brand/title/price uniqueness binds only products outside feeds).
    """
    brand, _created = brand_get_or_create(slug=item.brand_slug)
    product = Product.objects.select_for_update().filter(feed=feed, external_id=item.id).first()
    values = {
        "brand": brand,
        "name": item.title,
        "price_usd": item.price_usd,
        "link": item.link,
        "kind": Product.Kind.LISTING,
        "price_kind": PriceKind.LIST,
        "price_source": _price_source(feed),
        "source": f"feed: {feed.name}"[:255],
        "is_listed": True,
    }
    if product is None:
        product = Product.objects.create(feed=feed, external_id=item.id, **values)
        outcome = "added"
    else:
        changed = [name for name, value in values.items() if getattr(product, name) != value]
        if changed:
            for name in changed:
                setattr(product, name, values[name])
            product.save(update_fields=[*changed, "updated_at"])
            if "brand" in changed:  # a photo's brand is its product's (the training label)
                ProductImage.objects.filter(product=product).update(brand=brand)
        outcome = "updated" if changed else "unchanged"

    existing = {
        image.sha256: image
        for image in ProductImage.objects.filter(sha256__in=[photo.sha256 for photo in photos]).select_related(
            "product"
        )
    }
    added = 0
    for photo in photos:
        if photo.sha256 in existing:
            known = existing[photo.sha256]
            if known.product_id != product.pk:
                owner = f"product #{known.product_id}" if known.product_id else f"brand {known.brand_id} (no product)"
                report.warnings.append(
                    {
                        "line": item.line,
                        "id": item.id,
                        "reason": f"{photo.url}: the same photo is already in the catalog ({owner}); not added again",
                    }
                )
            continue
        image = ProductImage(
            brand=brand,
            product=product,
            sha256=photo.sha256,
            width=photo.width,
            height=photo.height,
            source_repo=f"feed: {feed.name}"[:255],
            source_path=photo.url[:1024],
        )
        image.image.save(f"{photo.sha256}.{_IMAGE_EXTENSIONS[photo.format]}", ContentFile(photo.data), save=False)
        image.save()
        existing[photo.sha256] = image
        added += 1
    report.images_added += added
    if added and outcome == "unchanged":
        outcome = "updated"
    return outcome


def feed_ingest(
    *,
    feed: Feed,
    parsed: ParsedFeed,
    progress: Callable[[FeedReport], None] | None = None,
    workers: int | None = None,
) -> FeedReport:
    """Ingest parsed feed rows into the catalog (see the module docstring); idempotent, tolerant of bad rows.

    Photos are downloaded ``CHUNK_URLS`` at a time with ``fetch_many`` (``workers`` threads, default
    ``SNEAKERS_FETCH_WORKERS``); each row is written in its own savepoint, so a failing row leaves nothing behind.
    After the last row, the feed's listed products whose id the file does not name are unlisted.

    Args:
        feed: the feed the rows belong to.
        parsed: ``feed_parse``'s result.
        progress: called with the report after each chunk of rows (``report.done`` of ``report.rows``).
        workers: download threads.

    Returns:
        The ``FeedReport``.
    """
    report = FeedReport(rows=parsed.rows)
    for failure in parsed.failures:
        report.fail(failure)
    if progress:
        progress(report)
    for chunk in _chunks(parsed.items, CHUNK_URLS):
        urls = list(dict.fromkeys(url for item in chunk for url in item.image_urls))
        fetched = dict(zip(urls, fetch_many(urls, workers=workers), strict=True))
        for item in chunk:
            photos, problems = _photos_of(item, fetched)
            if not photos:
                report.fail(RowFailure(item.line, item.id, "no usable photo: " + "; ".join(problems)))
                continue
            try:
                with transaction.atomic():
                    outcome = _ingest_item(feed=feed, item=item, photos=photos, report=report)
            except IntegrityError as exc:  # a concurrent writer took the same key meanwhile
                report.fail(RowFailure(item.line, item.id, f"the catalog refused the row ({exc.__class__.__name__})"))
                continue
            except OSError as exc:  # storage (disk full, S3 unreachable): the row is retried by the next run
                report.fail(RowFailure(item.line, item.id, f"a photo could not be stored ({exc})"))
                continue
            setattr(report, outcome, getattr(report, outcome) + 1)
            report.warnings.extend({"line": item.line, "id": item.id, "reason": problem} for problem in problems)
        if progress:
            progress(report)
    report.unlisted = _unlist_missing(feed=feed, ids=parsed.ids)
    if progress:
        progress(report)
    return report


def _unlist_missing(*, feed: Feed, ids: set[str]) -> int:
    """Unlist the feed's listed products whose id is not in ``ids``; returns how many."""
    gone = [
        pk
        for pk, external_id in feed.products.filter(is_listed=True).values_list("pk", "external_id")
        if external_id not in ids
    ]
    now = timezone.now()
    for start in range(0, len(gone), 500):
        Product.objects.filter(pk__in=gone[start : start + 500]).update(is_listed=False, updated_at=now)
    return len(gone)


# --- Feeds and runs ---------------------------------------------------------------------------------------


def source_is_url(source: str) -> bool:
    """Whether a feed source is an http(s) URL (else it is a path on the server)."""
    return urlsplit(source.strip()).scheme.lower() in ("http", "https")


def feed_name_for_source(source: str) -> str:
    """A feed name made from its source: ``"shop.example/products.tsv"`` for a URL, the file name for a path."""
    if source_is_url(source):
        parts = urlsplit(source.strip())
        last = parts.path.rstrip("/").rsplit("/", 1)[-1]
        name = f"{parts.hostname or 'feed'}/{last}" if last else (parts.hostname or "feed")
    else:
        name = Path(source).name or "feed"
    return name[:100]


def feed_get_or_create(*, name: str | None = None, source: str = "", scheduled: bool | None = None) -> Feed:
    """The feed called ``name`` (or, without a name, the one reading ``source``), created when new.

    A new feed without a name gets ``feed_name_for_source(source)``, with `` (2)``, `` (3)`` ... when taken.
    A URL ``source`` is stored on a new feed, and on a named feed that has none yet; ``scheduled`` is set when
    given.
    """
    source = source.strip()
    feed = None
    if name:
        feed = Feed.objects.filter(name=name[:100]).first()
    elif source:
        feed = Feed.objects.filter(source=source).order_by("pk").first()
    if feed is None:
        base = (name or feed_name_for_source(source) or "feed")[:100]
        candidate, n = base, 1
        while Feed.objects.filter(name=candidate).exists():
            n += 1
            suffix = f" ({n})"
            candidate = base[: 100 - len(suffix)] + suffix
        feed = Feed.objects.create(name=candidate, source=source if source_is_url(source) or not name else "")
    changed = []
    if source and not feed.source and source_is_url(source):
        feed.source = source
        changed.append("source")
    if scheduled is not None and feed.scheduled != scheduled:
        feed.scheduled = scheduled
        changed.append("scheduled")
    if changed:
        feed.save(update_fields=[*changed, "updated_at"])
    return feed


@transaction.atomic
def feed_run_create(
    *, feed: Feed, origin: str, source: str = "", data: bytes | None = None, filename: str = ""
) -> FeedRun:
    """A ``queued`` run of ``feed``: of the file ``data`` (kept at once), else of ``source`` (URL or path),
    else of the feed's own source.

    Raises:
        FeedError: ``feed_source`` when there is nothing to read, ``feed_too_large`` over
            ``SNEAKERS_FEED_MAX_BYTES``.
    """
    run = FeedRun(feed=feed, origin=origin, source=(source or filename or feed.source)[:2000])
    if data is None and not run.source:
        raise FeedError(FEED_SOURCE, f"Feed “{feed.name}” has no URL; give a URL or upload a file.")
    if data is not None:
        _check_size(len(data))
        _keep_file(run, data, filename or "feed.txt")
    run.save()
    return run


def _check_size(size: int) -> None:
    limit = settings.SNEAKERS_FEED_MAX_BYTES
    if size > limit:
        raise FeedError(FEED_TOO_LARGE, f"The feed file has {size} bytes; the limit is {limit} bytes.")


def _keep_file(run: FeedRun, data: bytes, filename: str) -> None:
    """Store the received bytes on the run (``FeedRun.file``), named by time and hash (not the client's name)."""
    run.file_sha256 = hashlib.sha256(data).hexdigest()
    extension = Path(urlsplit(filename).path).suffix.lower()[:8] or ".txt"
    run.file.save(f"feed{extension}", ContentFile(data), save=False)


def feed_run_start(
    *, feed: Feed, origin: str, source: str = "", data: bytes | None = None, filename: str = ""
) -> FeedRun:
    """Create a run (``feed_run_create``) and send it to the ``ingest`` queue once the transaction commits."""
    run = feed_run_create(feed=feed, origin=origin, source=source, data=data, filename=filename)
    transaction.on_commit(lambda: feed_run_enqueue(run_id=run.pk))
    return run


def feed_run_enqueue(*, run_id: int) -> bool:
    """Send ``catalog.tasks.ingest_feed`` for a run, by name (routed to the ``ingest`` queue); False (logged) when
    the broker refused it: the run stays ``queued`` and the next scheduled ingest sends it again."""
    try:
        current_app.send_task("catalog.tasks.ingest_feed", args=[run_id])
    except Exception:  # kombu raises transport-specific errors; any of them means "not sent"
        logger.exception("could not enqueue feed run %s; it stays queued", run_id)
        return False
    return True


def _read_source(run: FeedRun) -> tuple[bytes, str]:
    """The bytes of a run's file: as kept, else downloaded from its URL, else read from its server path.

    A path is read only when the operator named it (``manage.py ingest_feed``, ``SNEAKERS_FEEDS``), never for
    a run started from admin.

    Raises:
        FeedError: ``feed_unreadable``, ``feed_too_large`` or ``feed_source``.
    """
    if run.file:
        with run.file.open("rb") as handle:
            return handle.read(), run.file.name
    source = run.source.strip()
    if source_is_url(source):
        try:
            fetched = fetch_url(source, max_bytes=settings.SNEAKERS_FEED_MAX_BYTES, image_only=False)
        except DownloadError as exc:
            code = FEED_TOO_LARGE if exc.code == "url_too_large" else FEED_UNREADABLE
            raise FeedError(code, f"The feed could not be downloaded: {exc.message} ({exc.code})") from exc
        return fetched.content, urlsplit(fetched.final_url).path
    operator_paths = {str(entry).strip() for entry in settings.SNEAKERS_FEEDS}
    if run.origin != FeedRun.Origin.COMMAND and source not in operator_paths:
        raise FeedError(FEED_SOURCE, "Only http(s) URLs and uploaded files are read for this run.")
    path = Path(source)
    try:
        _check_size(path.stat().st_size)
        return path.read_bytes(), path.name
    except OSError as exc:
        raise FeedError(FEED_UNREADABLE, f"The feed file {source} cannot be read ({exc.strerror or exc}).") from exc


def _save_report(run: FeedRun, report: FeedReport, **extra: Any) -> None:
    """Write the report's counts (and ``extra`` fields) to the run row."""
    values = {
        "rows_total": report.rows,
        "rows_done": report.done,
        "added": report.added,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "failed": report.failed,
        "unlisted": report.unlisted,
        "images_added": report.images_added,
        **extra,
    }
    FeedRun.objects.filter(pk=run.pk).update(**values)
    for name, value in values.items():
        setattr(run, name, value)


def feed_run_execute(*, run_id: int, progress: Callable[[FeedReport], None] | None = None) -> FeedRun | None:
    """Claim a ``queued`` run and do it: read the file (keeping it), parse, ingest, report.

    Progress (rows done of rows total, and the counts) is written to the run row after each chunk of rows. A
    ``FeedError`` fails the run with its code and message, the file kept. Any other exception fails the run with
    ``internal_error`` and is raised again.

    Args:
        run_id: the ``FeedRun``'s id.
        progress: also called with the report after each chunk (the command's progress bar).

    Returns:
        The finished run, or None when it was not ``queued`` (another worker has it, or it is done).
    """
    claimed = FeedRun.objects.filter(pk=run_id, status=FeedRun.Status.QUEUED).update(
        status=FeedRun.Status.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return None
    run = FeedRun.objects.select_related("feed").get(pk=run_id)
    try:
        data, filename = _read_source(run)
        if not run.file:
            _keep_file(run, data, filename)
            FeedRun.objects.filter(pk=run.pk).update(file=run.file.name, file_sha256=run.file_sha256)
        parsed = feed_parse(data, filename=filename)
        del data

        def record(report: FeedReport) -> None:
            _save_report(run, report)
            if progress:
                progress(report)

        report = feed_ingest(feed=run.feed, parsed=parsed, progress=record)
    except FeedError as exc:
        feed_run_mark_failed(run=run, code=exc.code, message=exc.message)
        return run
    except Exception:
        feed_run_mark_failed(run=run, code="internal_error", message="The ingest stopped on an internal error.")
        raise
    _save_report(
        run,
        report,
        status=FeedRun.Status.SUCCEEDED,
        finished_at=timezone.now(),
        failures=[failure.as_dict() for failure in report.failures[:MAX_REPORTED]],
        warnings=report.warnings[:MAX_REPORTED],
    )
    return run


def feed_run_mark_failed(*, run: FeedRun, code: str, message: str) -> None:
    """Fail a run with a code and a message for staff (what it read so far is kept)."""
    run.status, run.error_code, run.error_message = FeedRun.Status.FAILED, code, message
    run.finished_at = timezone.now()
    FeedRun.objects.filter(pk=run.pk).update(
        status=run.status, error_code=code, error_message=message, finished_at=run.finished_at
    )


def feeds_ingest_scheduled() -> list[FeedRun]:
    """Start a run of every feed due by schedule: each source in ``settings.SNEAKERS_FEEDS`` (its feed created
    when new) and every ``Feed`` marked ``scheduled`` with a source.

    A feed with an unfinished run is skipped, unless that run is ``running`` for longer than the ingest task's
    hard limit (its worker is lost: it is failed with ``worker_lost``) or still ``queued`` after the interval
    (the broker lost it: it is sent again instead of a new one).

    Returns:
        The runs started or sent again.
    """
    for source in settings.SNEAKERS_FEEDS:
        if str(source).strip():
            feed_get_or_create(source=str(source).strip(), scheduled=True)
    now = timezone.now()
    lost = FeedRun.objects.filter(
        status=FeedRun.Status.RUNNING, started_at__lt=now - timedelta(seconds=FEED_RUN_TIME_LIMIT_SECONDS + 60)
    )
    for run in lost:
        feed_run_mark_failed(run=run, code="worker_lost", message="The worker running this ingest stopped.")
    started: list[FeedRun] = []
    for feed in Feed.objects.filter(scheduled=True).exclude(source=""):
        pending = feed.runs.filter(status__in=[FeedRun.Status.QUEUED, FeedRun.Status.RUNNING]).order_by("pk").first()
        if pending is None:
            run = feed_run_create(feed=feed, origin=FeedRun.Origin.SCHEDULE)
            feed_run_enqueue(run_id=run.pk)
            started.append(run)
        elif pending.status == FeedRun.Status.QUEUED and pending.created_at < now - timedelta(
            seconds=settings.SNEAKERS_FEED_INTERVAL_SECONDS
        ):
            feed_run_enqueue(run_id=pending.pk)
            started.append(pending)
    return started
