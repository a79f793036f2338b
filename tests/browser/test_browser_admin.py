"""Django admin in a real browser: a staff member logs in, finds a product and sees its images.

Needs PostgreSQL and Chromium (no worker: nothing here is predicted); skips with the reason without them.
"""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import DESKTOP
from tests.tiny_catalog import build_tiny_catalog

expect = pytest.importorskip("playwright.sync_api", reason="browser tests need the playwright package").expect
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LOADED = "img => img.complete && img.naturalWidth > 0"
"""JavaScript predicate: an ``<img>`` finished loading a decodable picture."""


def test_staff_logs_in_and_sees_a_products_images(open_page, screenshot, django_user_model):
    django_user_model.objects.create_superuser(username="curator", email="", password="pw-curator-not-common")
    product = build_tiny_catalog(products_per_brand=2, unnamed_per_brand=1)["blueshoe"][1]
    shas = sorted(product.images.values_list("sha256", flat=True))
    assert len(shas) == 2

    page = open_page(DESKTOP)
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/\?next=/admin/$"))  # staff only: sent to the login form
    page.get_by_label("Username").fill("curator")
    page.get_by_label("Password").fill("pw-curator-not-common")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()

    page.get_by_role("link", name="Products").click()
    expect(page.get_by_role("heading", name="Select product to change")).to_be_visible()
    page.get_by_role("link", name=product.name, exact=True).click()
    expect(page.get_by_role("heading", name=product.name)).to_be_visible()
    expect(page.get_by_label("Name:")).to_have_value(product.name)

    rows = page.locator("#images-group tbody tr.has_original")
    expect(rows).to_have_count(2)
    assert sorted(row.locator("td.field-sha256").inner_text().strip() for row in rows.all()) == shas
    for thumbnail in rows.locator("td.field-preview img").all():
        expect(thumbnail).to_be_visible()
        page.wait_for_function(LOADED, arg=thumbnail.element_handle())
    screenshot(page, "admin-product")
    assert page.problems == []
