"""Catalog admin in a real browser: staff add a photo to a product from its page (the photos inline).

Needs PostgreSQL and Chromium (no worker: nothing here is predicted); skips with the reason without them.
"""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from catalog.models import ProductImage
from tests.browser.conftest import DESKTOP
from tests.factories import BrandFactory, ProductFactory, ProductImageFactory

expect = pytest.importorskip("playwright.sync_api", reason="browser tests need the playwright package").expect
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LOADED = "img => img.complete && img.naturalWidth > 0"
"""JavaScript predicate: an ``<img>`` finished loading a decodable picture."""


def test_staff_add_a_photo_on_the_product_page(open_page, screenshot, django_user_model, tmp_path):
    django_user_model.objects.create_superuser(username="curator", email="", password="pw-curator-not-common")
    product = ProductFactory(brand=BrandFactory(slug="vans", name="Vans"), name="Vans Old Skool")
    ProductImageFactory(product=product)
    buffer = io.BytesIO()
    Image.new("RGB", (240, 160), (20, 90, 200)).save(buffer, "JPEG")
    good = tmp_path / "old skool side.jpg"
    good.write_bytes(buffer.getvalue())
    bad = tmp_path / "saved page.jpg"
    bad.write_bytes(b"<!doctype html><title>Old Skool</title>")

    page = open_page(DESKTOP)
    page.goto(f"/admin/login/?next=/admin/catalog/product/{product.pk}/change/")
    page.get_by_label("Username").fill("curator")
    page.get_by_label("Password").fill("pw-curator-not-common")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Vans Old Skool")).to_be_visible()
    photos = page.locator("#images-group")
    new_row = photos.locator("tbody tr.form-row:not(.has_original):not(.empty-form)")
    expect(new_row).to_have_count(1)  # one empty row, ready for a photo

    new_row.locator("input[type=file]").set_input_files(str(bad))
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".errornote")).to_be_visible()
    expect(photos.get_by_text("The file is not a readable image")).to_be_visible()
    screenshot(page, "refused")
    assert ProductImage.objects.filter(product=product).count() == 1

    new_row.locator("input[type=file]").set_input_files(str(good))
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".messagelist .success")).to_be_visible()
    rows = photos.locator("tbody tr.has_original")
    expect(rows).to_have_count(2)

    added = ProductImage.objects.filter(product=product).order_by("pk").last()
    assert (added.brand.slug, added.width, added.height) == ("vans", 240, 160)
    assert added.sha256 == hashlib.sha256(good.read_bytes()).hexdigest()
    row = rows.filter(has_text=added.sha256[:12])
    expect(row.locator("td.field-width")).to_have_text("240")
    expect(row.locator("td.field-height")).to_have_text("160")
    thumbnail = row.locator("td.field-preview img")
    expect(thumbnail).to_be_visible()
    page.wait_for_function(LOADED, arg=thumbnail.element_handle())
    screenshot(page, "added")
    assert page.problems == []
