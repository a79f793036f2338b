"""Reads of the catalog: querysets for the API and admin, training samples, product lookups."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import (
    Case,
    CharField,
    DecimalField,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Abs, Coalesce

from catalog.models import Brand, Product, ProductImage


def brand_list() -> QuerySet[Brand]:
    """All brands, by name."""
    return Brand.objects.order_by("name")


def product_list(*, brand: str | None = None) -> QuerySet[Product]:
    """Products shown to shoppers (``is_listed``), optionally of one brand slug, with their images."""
    queryset = (
        Product.objects.filter(is_listed=True)
        .select_related("brand")
        .prefetch_related(Prefetch("images", queryset=ProductImage.objects.order_by("id")))
        .order_by("brand__name", "name", "id")
    )
    if brand:
        queryset = queryset.filter(brand__slug=brand)
    return queryset


def product_get_many(*, ids: Iterable[int]) -> dict[int, Product]:
    """Listed products by id (missing or unlisted ids are left out), with their brand, and the storage name of
    their first image (lowest id) as ``product.first_image`` ("" when none). A named shoe model has dozens of
    photos and a result's similar products show one each, so only that name is read: a correlated subquery per
    product on the (product, id) index, in the same query."""
    first_image = ProductImage.objects.filter(product=OuterRef("pk")).order_by("id").values("image")[:1]
    queryset = (
        Product.objects.filter(is_listed=True, id__in=list(ids))
        .select_related("brand")
        .annotate(first_image=Coalesce(Subquery(first_image), Value(""), output_field=CharField()))
    )
    return {product.id: product for product in queryset}


def image_url(name: str) -> str | None:
    """The URL of a stored catalog image by its storage name (``ProductImage.image``'s storage); None for ""."""
    return ProductImage._meta.get_field("image").storage.url(name) if name else None


def catalog_is_empty() -> bool:
    """True when the catalog holds no image at all (a fresh install)."""
    return not ProductImage.objects.exists()


@dataclass(frozen=True)
class TrainingRow:
    """One catalog image as training data.

    ``group`` keeps photos of one shoe on one side of a split: ``brand/name`` for shop listings (all
    editions of a title together), the image's SHA-256 for unnamed images and for the photos of a named
    shoe model (many colourways, each photo its own shoe: near-duplicates are merged later by
    ``worker.ml.dedup``), so that every model has photos on each side. ``model`` is the display name of
    a ``model`` product ("Nike Air Jordan 1 High"), the model head's label; None otherwise. ``style``
    is ``real-world``, ``product-shot`` or blank (unlabelled). ``product_id`` is set only for listed
    products, the ones similarity search may return.
    """

    sha256: str
    brand: str
    group: str
    price_usd: float | None
    product_id: int | None
    storage_name: str
    model: str | None = None
    style: str = ""


def training_rows() -> list[TrainingRow]:
    """Every catalog image as a ``TrainingRow``, ordered by image id (deterministic)."""
    rows = []
    queryset = ProductImage.objects.select_related("brand", "product").order_by("id")
    for image in queryset.iterator(chunk_size=2000):
        product = image.product
        price: Decimal | None = product.price_usd if product else None
        is_model = product is not None and product.kind == Product.Kind.MODEL
        rows.append(
            TrainingRow(
                sha256=image.sha256,
                brand=image.brand.slug,
                group=f"{image.brand.slug}/{product.name}" if product and not is_model else image.sha256,
                price_usd=float(price) if price is not None else None,
                product_id=product.id if product and product.is_listed else None,
                storage_name=image.image.name,
                model=product.name if is_model else None,
                style=image.style,
            )
        )
    return rows


def product_kind_exists(*, kind: str) -> bool:
    """True when the catalog has at least one product of this ``Product.Kind``."""
    return Product.objects.filter(kind=kind).exists()


def brand_slugs_with_images() -> set[str]:
    """Slugs of the brands that have at least one catalog image (the ones a model can learn)."""
    return set(Brand.objects.filter(images__isnull=False).values_list("slug", flat=True).distinct())


def brand_display_names() -> dict[str, str]:
    """``slug -> display name`` of every brand (a few dozen rows at most)."""
    return dict(Brand.objects.values_list("slug", "name"))


def product_get_listed(*, product_id: int) -> Product:
    """One listed product with its brand and images (ordered by id), for its page.

    Raises:
        Product.DoesNotExist: no listed product has this id.
    """
    return product_list().get(id=product_id)


def product_list_more_like(*, product: Product, limit: int = 8) -> list[Product]:
    """Listed products like ``product``, for its page's "more like this": same brand, same kind first, then
    the closest in price (USD; unpriced last), one per product family (brand and name, so no title repeats,
    and never the product's own family), with images.

    A cheap catalog rule, not visual similarity: image embeddings live in the worker's artifact, which the
    web process does not load. The database orders the candidates; the first ``limit * 10`` are read.
    """
    price = product.price_usd
    gap = Abs(F("price_usd") - price) if price is not None else Value(0, output_field=DecimalField())
    candidates = (
        product_list()
        .filter(brand=product.brand, images__isnull=False)
        .exclude(name__iexact=product.name)
        .distinct()
        .annotate(
            _other_kind=Case(When(kind=product.kind, then=Value(0)), default=Value(1), output_field=IntegerField()),
            _gap=gap,
        )
        .order_by("_other_kind", F("_gap").asc(nulls_last=True), F("price_usd").asc(nulls_last=True), "name", "id")
    )
    chosen: list[Product] = []
    seen: set[str] = set()
    for other in candidates[: limit * 10]:
        family = other.name.casefold()
        if family in seen:
            continue
        seen.add(family)
        chosen.append(other)
        if len(chosen) >= limit:
            break
    return chosen


def product_list_models() -> QuerySet[Product]:
    """Listed named shoe models (``kind=model``) with their brand, by brand and name (for pick lists)."""
    return (
        Product.objects.filter(is_listed=True, kind=Product.Kind.MODEL)
        .select_related("brand")
        .order_by("brand__name", "name", "id")
    )
