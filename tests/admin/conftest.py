"""Fixtures of the catalog admin tests: a logged-in staff client, photo makers and the product page's form data."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from catalog.models import Product

INLINE = "images"
"""Form prefix of the photos inline on a product's page (``Product.images``)."""


@pytest.fixture
def staff_client(client, django_user_model):
    """The test client logged in as a superuser (staff)."""
    staff = django_user_model.objects.create_superuser(username="curator", password="pw-curator-123", email="c@x.io")
    client.force_login(staff)
    return client


def photo(
    color: tuple[int, int, int] = (200, 40, 40), size: tuple[int, int] = (120, 90), fmt: str = "JPEG", name: str = ""
) -> SimpleUploadedFile:
    """An upload of a solid-colour photo drawn here (``name`` defaults to ``photo.<fmt>``)."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return SimpleUploadedFile(name or f"photo.{fmt.lower()}", buffer.getvalue())


def upload(data: bytes, name: str = "photo.jpg") -> SimpleUploadedFile:
    """An upload of the given bytes."""
    return SimpleUploadedFile(name, data)


def stored_files() -> list[Path]:
    """Files under the test's media folder (``tests/conftest.py`` gives each test its own)."""
    root = Path(settings.MEDIA_ROOT)
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


def product_page_data(client, product: Product) -> dict[str, object]:
    """The POST data of ``product``'s admin page as it is now (its fields and its photo rows), no new photo.

    Read from the page's own forms, so fields other apps add to ``Product`` travel too.
    """
    response = client.get(f"/admin/catalog/product/{product.pk}/change/")
    assert response.status_code == 200
    form = response.context["adminform"].form
    data: dict[str, object] = {}
    for name in form.fields:
        value = form[name].value()
        if isinstance(value, bool):
            if value:
                data[name] = "on"
        elif value is not None:
            data[name] = value
    formset = next(f.formset for f in response.context["inline_admin_formsets"] if f.formset.prefix == INLINE)
    data.update({f"{INLINE}-{key}": value for key, value in formset.management_form.initial.items()})
    for index, row in enumerate(formset.initial_forms):
        data[f"{INLINE}-{index}-id"] = row.instance.pk
        data[f"{INLINE}-{index}-product"] = product.pk
        data[f"{INLINE}-{index}-style"] = row.instance.style
    data[f"{INLINE}-TOTAL_FORMS"] = formset.initial_form_count()
    return data


def add_rows(data: dict[str, object], *files: SimpleUploadedFile) -> dict[str, object]:
    """``data`` with new photo rows on the product page's inline, one per file."""
    start = int(data[f"{INLINE}-TOTAL_FORMS"])
    for offset, file in enumerate(files):
        data[f"{INLINE}-{start + offset}-image"] = file
    data[f"{INLINE}-TOTAL_FORMS"] = start + len(files)
    return data
