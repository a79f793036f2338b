"""Forms of the catalog admin: a product photo (standalone and inline on a product), and a bulk price.

A photo added in admin passes the checks of a shopper's upload (``catalog.services
.product_image_inspect_upload``: size, pixel count, format, complete data), is refused when the catalog
already holds the same bytes (naming that photo), and gets its ``width``, ``height`` and ``sha256`` from
the bytes and its ``brand`` (the training label) from its product. Every bad file ends as a form error on
the page, never a server error.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.urls import reverse
from django.utils.html import format_html

from catalog.images import ImageRejected
from catalog.models import PriceKind, Product, ProductImage
from catalog.services import (
    MAX_PRICE_USD,
    STAFF_PRICE_SOURCE,
    InspectedPhoto,
    product_image_inspect_upload,
    product_image_save,
    product_images_delete,
)

ADMIN_SOURCE_REPO = "admin"
"""``ProductImage.source_repo`` of a photo uploaded in admin (when staff leave it blank)."""


def duplicate_message(existing: ProductImage) -> str:
    """A form error naming the catalog photo that already holds these bytes, linked to its admin page."""
    owner = f"a photo of “{existing.product.name}”" if existing.product else f"an unnamed {existing.brand.name} photo"
    return format_html(
        'This photo is already in the catalog: <a href="{}">{}</a> ({}, photo #{}).',
        reverse("admin:catalog_productimage_change", args=[existing.pk]),
        str(existing),
        owner,
        existing.pk,
    )


class ProductImageForm(forms.ModelForm):
    """A catalog photo in admin, alone (``ProductImageAdmin``) or as a row of a product's inline.

    ``clean_image`` checks a newly uploaded file (an unchanged stored file is not re-read) and refuses a
    duplicate; ``clean`` takes the brand from the product. The inline form has no ``product`` or ``brand``
    field of its own: its product is the page's product (``InlineForeignKeyField``), whose brand the
    parent form has just set. Standalone, ``brand`` is only needed for a photo without a product (a
    brand-labelled training photo); with a product, a brand the staff member picked that differs from the
    product's is refused.
    """

    class Meta:
        model = ProductImage
        fields = ("product", "brand", "image", "style", "source_repo", "source_path", "source_commit")
        # inspect_image is the one judge of the bytes (with messages in the units of the upload page); a
        # forms.ImageField would first run Pillow's own open/verify and answer a vaguer message.
        field_classes = {"image": forms.FileField}
        error_messages = {"image": {"empty": "The file is empty.", "invalid": "No file was sent."}}
        labels = {"image": "Photo file"}
        help_texts = {
            "product": "The product the photo shows; empty for a training photo of a brand (no product).",
            "brand": "Taken from the product when one is chosen. Choose it only for a photo without product "
            "(a training photo of the brand).",
            "image": "JPEG, PNG or WebP, checked like shoppers' uploads (size, pixel count, complete data).",
            "source_repo": "Where the photo comes from; blank for an upload: “admin”.",
            "source_path": "Its path or name there; blank for an upload: the uploaded file's name.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.photo: InspectedPhoto | None = None
        if "brand" in self.fields:
            self.fields["brand"].required = False
        if "image" in self.fields:
            # The stored name is <brand>/<sha256>.<format's extension>: the client's name never matters.
            self.fields["image"].max_length = None

    def clean_image(self) -> Any:
        """Inspect a new upload (``product_image_inspect_upload``), refuse a duplicate; name it by its format.

        Raises:
            ValidationError: with the ``image_*`` code and the upload checks' message, or ``duplicate``.
        """
        upload = self.cleaned_data.get("image")
        if not isinstance(upload, UploadedFile):
            return upload  # the stored file, unchanged
        try:
            photo = product_image_inspect_upload(upload=upload)
        except ImageRejected as exc:
            raise ValidationError(exc.message, code=exc.code) from exc
        existing = (
            ProductImage.objects.filter(sha256=photo.sha256)
            .exclude(pk=self.instance.pk)
            .select_related("brand", "product")
            .first()
        )
        if existing is not None:
            raise ValidationError(duplicate_message(existing), code="duplicate")
        self.photo = photo
        self.original_name = upload.name or ""
        upload.name = f"photo.{photo.extension}"
        return upload

    def clean(self) -> dict[str, Any]:
        """Set the brand from the product and the size and hash from the bytes (see the class docstring)."""
        cleaned = super().clean()
        product: Product | None = cleaned.get("product") if "product" in self.fields else self.instance.product
        chosen = cleaned.get("brand") if "brand" in self.fields else None
        if product is not None:
            if product.brand_id is None:
                raise ValidationError("Choose the product's brand first: a photo takes its brand from its product.")
            if chosen is not None and chosen != product.brand and "brand" in self.changed_data:
                self.add_error(
                    "brand",
                    f"“{product.name}” is a {product.brand.name} product and its photos are {product.brand.name} "
                    "photos: leave the brand empty or pick that one.",
                )
                return cleaned
            brand = product.brand
        elif chosen is not None:
            brand = chosen
        elif "brand" in self.fields:
            self.add_error("brand", "Choose a product, or a brand for a photo without product.")
            return cleaned
        else:
            brand = None
        if "brand" in self.fields:
            cleaned["brand"] = brand
        if brand is not None:
            self.instance.brand = brand
        if self.photo is not None:
            self.instance.sha256 = self.photo.sha256
            self.instance.width, self.instance.height = self.photo.width, self.photo.height
            # New bytes: the old file's provenance no longer applies, unless staff wrote their own.
            provenance = {
                "source_repo": ADMIN_SOURCE_REPO,
                "source_path": self.original_name[:1024],
                "source_commit": "",
            }
            for name, value in provenance.items():
                if name in self.fields and name in self.changed_data:
                    continue
                setattr(self.instance, name, value)
                if name in self.fields:
                    cleaned[name] = value
        return cleaned


class ProductImageInlineFormSet(forms.BaseInlineFormSet):
    """The photos of a product's page: refuses one photo twice in one submission; saves and deletes through
    ``catalog.services`` (files of deleted or replaced photos leave storage after commit)."""

    def clean(self) -> None:
        """Refuse two rows carrying the same new bytes (each passed the catalog's duplicate check alone).

        Raises:
            ValidationError: naming the rows, as a formset error shown above the photos.
        """
        super().clean()
        seen: dict[str, int] = {}
        for index, form in enumerate(self.forms, start=1):
            photo = getattr(form, "photo", None)
            if photo is None or not form.has_changed() or (self.can_delete and self._should_delete_form(form)):
                continue
            if photo.sha256 in seen:
                raise ValidationError(
                    f"Rows {seen[photo.sha256]} and {index} carry the same photo; keep one of them.", code="duplicate"
                )
            seen[photo.sha256] = index

    def save_new(self, form: forms.ModelForm, commit: bool = True) -> ProductImage:
        setattr(form.instance, self.fk.name, self.instance)
        return self.save_existing(form, form.instance, commit=commit)

    def save_existing(self, form: forms.ModelForm, obj: ProductImage, commit: bool = True) -> ProductImage:
        image = form.save(commit=False)
        if commit:
            product_image_save(image=image)
            form.save_m2m()
        return image

    def delete_existing(self, obj: ProductImage, commit: bool = True) -> None:
        if commit:
            product_images_delete(images=[obj])


class SetPriceForm(forms.Form):
    """The bulk "set price" action's question: one USD price (with its kind and source) for the selected products."""

    price_usd = forms.DecimalField(
        label="Price (USD)",
        min_value=Decimal("0.01"),
        max_value=MAX_PRICE_USD,
        max_digits=10,
        decimal_places=2,
        help_text=f"US dollars with at most 2 decimals, from 0.01 to {MAX_PRICE_USD:,}.",
        error_messages={
            "min_value": "A price is at least $0.01.",
            "max_value": f"A price is at most ${MAX_PRICE_USD:,}.",
            "invalid": "Enter the price as a number of US dollars, such as 129.99.",
            "max_decimal_places": "Give at most 2 decimals (cents).",
            "max_digits": f"A price is at most ${MAX_PRICE_USD:,}.",
            "max_whole_digits": f"A price is at most ${MAX_PRICE_USD:,}.",
        },
    )
    price_kind = forms.ChoiceField(label="Kind of price", choices=PriceKind.choices, initial=PriceKind.LIST)
    price_source = forms.CharField(
        label="Where the price comes from",
        max_length=255,
        required=False,
        help_text=f"Shown to shoppers beside the price; blank: “{STAFF_PRICE_SOURCE}”.",
    )
