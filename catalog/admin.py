"""Django admin for curating the catalog: brands; products with thumbnails, their photos inline and bulk actions
(list, unlist, set price, export CSV); product photos, checked like shoppers' uploads."""

import csv
from collections.abc import Iterable, Iterator

from django import forms
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import models
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html

from catalog.forms import ProductImageForm, ProductImageInlineFormSet, SetPriceForm
from catalog.models import Brand, PriceKind, Product, ProductImage
from catalog.services import (
    product_image_save,
    product_images_delete,
    product_images_follow_brand,
    products_set_listed,
    products_set_price,
)
from sneakers.exceptions import ApplicationError

CSV_COLUMNS = ("id", "brand", "name", "kind", "price_usd", "price_kind", "link", "is_listed", "image_count")
"""Columns of the products CSV export, in order."""

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection")."""


def _thumbnail(image: ProductImage | None, size: int = 64) -> str:
    """An ``<img>`` tag for a product image, ``size`` pixels on its longest side (lazily loaded); "-" without one."""
    if image is None or not image.image:
        return "-"
    return format_html(
        '<img src="{}" style="max-width:{}px;max-height:{}px;background:#fff" alt="" loading="lazy">',
        image.image.url,
        size,
        size,
    )


def csv_cell(value: object) -> str:
    """A value as a CSV cell: text that a spreadsheet would run as a formula gets a leading ``'``.

    Names and links come from shops' feeds; OWASP's CSV-injection advice is to prefix such cells.
    """
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


class _Echo:
    """A write-only file whose ``write`` returns the line: ``csv.writer`` over it yields CSV lines
    (Django docs, "Streaming large CSV files")."""

    def write(self, value: str) -> str:
        return value


def products_csv_lines(products: Iterable[Product]) -> Iterator[str]:
    """CSV lines (header first) of ``products``, with ``CSV_COLUMNS``; each product needs ``_images`` (a count).

    ``price_usd`` is plain decimal USD (empty when unknown); ``price_kind`` is the kind shown to shoppers
    (``list`` or ``retail``; the product's kind decides when none is stored); ``is_listed`` is ``true`` or
    ``false``.
    """
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for product in products:
        yield writer.writerow(
            [
                product.pk,
                csv_cell(product.brand.name),
                csv_cell(product.name),
                product.kind,
                "" if product.price_usd is None else f"{product.price_usd:.2f}",
                product.price_kind_shown,
                csv_cell(product.link),
                "true" if product.is_listed else "false",
                product._images,
            ]
        )


def _count_per_brand(model: type[Product] | type[ProductImage]) -> Coalesce:
    """``COUNT(*)`` of ``model`` rows of the outer brand, as a correlated subquery (0 when none)."""
    counts = model.objects.filter(brand=OuterRef("pk")).order_by().values("brand").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counts, output_field=IntegerField()), 0)


@admin.register(Brand)
class BrandAdmin(admin.ModelAdmin):
    """Brands with their product and image counts."""

    list_display = ("name", "slug", "product_count", "image_count")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Brand]:
        """Brands with product and image counts from two correlated subqueries (one indexed count each).

        Two ``Count`` joins in one query would join every product with every image of the brand (5.2 s on
        the shared catalog); each subquery counts one table by its brand index.
        """
        return (
            super()
            .get_queryset(request)
            .annotate(_products=_count_per_brand(Product), _images=_count_per_brand(ProductImage))
        )

    @admin.display(ordering="_products", description="products")
    def product_count(self, obj: Brand) -> int:
        return obj._products

    @admin.display(ordering="_images", description="images")
    def image_count(self, obj: Brand) -> int:
        return obj._images


class PriceBandFilter(admin.SimpleListFilter):
    """Filter products by list-price band in USD."""

    title = "price (USD)"
    parameter_name = "price_band"
    bands = {"lt75": (None, 75), "75-125": (75, 125), "125-175": (125, 175), "gte175": (175, None)}

    def lookups(self, request, model_admin):
        return [
            ("lt75", "< 75"),
            ("75-125", "75 – 125"),
            ("125-175", "125 – 175"),
            ("gte175", "≥ 175"),
            ("none", "unknown"),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "none":
            return queryset.filter(price_usd__isnull=True)
        if value in self.bands:
            low, high = self.bands[value]
            if low is not None:
                queryset = queryset.filter(price_usd__gte=low)
            if high is not None:
                queryset = queryset.filter(price_usd__lt=high)
        return queryset


class ProductImageInline(admin.TabularInline):
    """Photos of a product, with thumbnails: add (checked like uploads, brand from the product), replace, delete."""

    model = ProductImage
    form = ProductImageForm
    formset = ProductImageInlineFormSet
    extra = 1
    verbose_name = "photo"
    verbose_name_plural = "photos"
    show_change_link = True
    fields = ("preview", "image", "style", "sha256", "width", "height")
    readonly_fields = ("preview", "sha256", "width", "height")
    # The preview shows the stored photo; the file input only takes a new or replacement file (the
    # "Currently: <storage name>" of the default widget made rows wider than the page). Where a photo
    # came from is on its own page ("Change").
    formfield_overrides = {models.ImageField: {"widget": forms.FileInput}}

    @admin.display(description="preview")
    def preview(self, obj: ProductImage) -> str:
        return _thumbnail(obj, 96)


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    """Products: thumbnail, brand, price; search by name/style code, filter by brand and price; photos inline;
    bulk list/unlist, set price and CSV export."""

    list_display = ("thumbnail", "name", "brand", "price_usd", "colourway", "is_listed", "image_count")
    list_display_links = ("thumbnail", "name")
    list_filter = ("brand", PriceBandFilter, "is_listed", "kind")
    list_editable = ("is_listed",)
    search_fields = ("name", "style_code", "colourway")
    list_select_related = ("brand",)
    inlines = [ProductImageInline]
    list_per_page = 50
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # shop links; Django 6's default
    actions = ["list_products", "unlist_products", "set_price", "export_csv"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Product]:
        return super().get_queryset(request).annotate(_images=Count("images")).prefetch_related("images")

    @admin.display(description="")
    def thumbnail(self, obj: Product) -> str:
        images = list(obj.images.all())
        return _thumbnail(images[0] if images else None)

    @admin.display(ordering="_images", description="images")
    def image_count(self, obj: Product) -> int:
        return obj._images

    def save_model(self, request: HttpRequest, obj: Product, form, change: bool) -> None:
        """Save the product; when its brand changed, its photos follow (a photo's brand is its training label)."""
        super().save_model(request, obj, form, change)
        if change and "brand" in form.changed_data:
            moved = product_images_follow_brand(product=obj)
            if moved:
                self.message_user(request, f"{moved} photo(s) of “{obj.name}” now carry the brand {obj.brand.name}.")

    @admin.action(permissions=["change"], description="List the selected products (shown to shoppers, used as matches)")
    def list_products(self, request: HttpRequest, queryset: QuerySet[Product]) -> None:
        changed = products_set_listed(products=queryset, is_listed=True)
        self.message_user(request, f"{changed} product(s) listed; {queryset.count() - changed} already were.")

    @admin.action(
        permissions=["change"], description="Unlist the selected products (hidden from shoppers, kept for training)"
    )
    def unlist_products(self, request: HttpRequest, queryset: QuerySet[Product]) -> None:
        changed = products_set_listed(products=queryset, is_listed=False)
        self.message_user(request, f"{changed} product(s) unlisted; {queryset.count() - changed} already were.")

    @admin.action(permissions=["change"], description="Set the price of the selected products…")
    def set_price(self, request: HttpRequest, queryset: QuerySet[Product]) -> TemplateResponse | None:
        """Ask for a USD price (a page of its own), then set it; the page again with the errors when invalid.

        The page posts back to the list's URL (its filters and search included) with the action, the
        selection and ``apply``; Django's changelist calls this action again with the same products.
        """
        form = SetPriceForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            data = form.cleaned_data
            try:
                changed = products_set_price(
                    products=queryset,
                    price_usd=data["price_usd"],
                    price_kind=data["price_kind"],
                    price_source=data["price_source"],
                )
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                kind = PriceKind(data["price_kind"]).label
                self.message_user(request, f"{changed} product(s) now cost ${data['price_usd']:.2f} ({kind}).")
                return None
        select_across = request.POST.get("select_across") == "1"
        products = queryset.prefetch_related(None).select_related("brand")
        total = products.count()
        context = {
            **self.admin_site.each_context(request),
            "title": "Set the price of the selected products",
            "opts": self.model._meta,
            "form": form,
            "products": products[:20],
            "more": max(total - 20, 0),
            "total": total,
            # With "select all" the list's query string names the products; else each id travels back.
            "select_across": select_across,
            "selected_ids": [products.first().pk] if select_across and total else [p.pk for p in products],
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "action": "set_price",
        }
        return TemplateResponse(request, "admin/catalog/product/set_price.html", context)

    @admin.action(permissions=["view"], description="Export the selected products as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Product]) -> HttpResponse:
        """A CSV download (UTF-8) of the selected products with ``CSV_COLUMNS``, by brand and name."""
        products = queryset.prefetch_related(None).select_related("brand").order_by("brand__name", "name", "pk")
        response = HttpResponse(products_csv_lines(products), content_type="text/csv; charset=utf-8")
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="products-{stamp}.csv"'
        return response


@admin.register(ProductImage)
class ProductImageAdmin(admin.ModelAdmin):
    """All catalog photos, including unnamed training photos (no product): add, replace and delete them.

    An upload is checked like a shopper's (``catalog.forms.ProductImageForm``); deleting a photo, alone or
    in bulk, removes its file from storage too (after the transaction commits).
    """

    form = ProductImageForm
    # The product's name through a method: Django keeps foreign-key cells on one line, and long listing titles
    # pushed the last columns out of view. Source repo is a filter, for the same reason.
    list_display = ("preview", "brand", "product_name", "style", "size")
    list_filter = ("brand", ("product", admin.EmptyFieldListFilter), "style", "source_repo")
    search_fields = ("sha256", "source_path", "product__name")
    list_select_related = ("brand", "product")
    raw_id_fields = ("product",)
    fields = (
        "large_preview",
        "product",
        "brand",
        "image",
        "style",
        "sha256",
        "width",
        "height",
        "source_repo",
        "source_path",
        "source_commit",
        "created_at",
    )
    readonly_fields = ("large_preview", "sha256", "width", "height", "created_at")

    def get_fields(self, request: HttpRequest, obj: ProductImage | None = None) -> tuple[str, ...]:
        """All fields on a photo's page; on the add page only those staff fill (the rest come from the file)."""
        if obj is None:
            return tuple(name for name in self.fields if name not in self.readonly_fields)
        return self.fields

    @admin.display(description="")
    def preview(self, obj: ProductImage) -> str:
        return _thumbnail(obj)

    @admin.display(ordering="product__name", description="product")
    def product_name(self, obj: ProductImage) -> str:
        return obj.product.name if obj.product else "– (training photo)"

    @admin.display(description="size (px)")
    def size(self, obj: ProductImage) -> str:
        return f"{obj.width}\u00a0×\u00a0{obj.height}"  # no-break spaces: one line

    @admin.display(description="photo")
    def large_preview(self, obj: ProductImage) -> str:
        return _thumbnail(obj, 320)

    def save_model(self, request: HttpRequest, obj: ProductImage, form, change: bool) -> None:
        product_image_save(image=obj)

    def delete_model(self, request: HttpRequest, obj: ProductImage) -> None:
        product_images_delete(images=[obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ProductImage]) -> None:
        product_images_delete(images=queryset.select_related(None))


from catalog import feed_admin  # noqa: E402,F401  (registers Feed and FeedRun; catalog/feed_admin.py)
