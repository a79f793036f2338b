"""The shopper's result in a real browser, from a real worker and a tiny trained model: the answer first on a
phone with a small cut-out, technical details behind a disclosure, similar products that link to product pages
(photos, price with its kind and source, more like this), and the back button leaving no stale photo in the
upload form.

Needs PostgreSQL, Redis and Chromium; skips with the reason without them.
"""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import DESKTOP, PHONE, TIMEOUT_MS, worker_log_on_failure
from tests.tiny_catalog import BRAND_COLOURS, shoe_photo

expect = pytest.importorskip("playwright.sync_api", reason="browser tests need the playwright package").expect
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LOADED = "img => img.complete && img.naturalWidth > 0"


def _identify(page, brand: str, seed: int, worker_log) -> None:
    page.goto("/")
    photo = shoe_photo(BRAND_COLOURS[brand], seed, size=(320, 240), fmt="JPEG")
    page.locator("#image").set_input_files(files=[{"name": f"{brand}.jpg", "mimeType": "image/jpeg", "buffer": photo}])
    page.get_by_role("button", name="Identify").click()
    with worker_log_on_failure(worker_log):
        expect(page).to_have_url(re.compile(r"/p/[0-9a-f-]{36}/$"))
        expect(page.get_by_role("heading", level=1)).to_have_text(brand.title(), timeout=TIMEOUT_MS)


def test_phone_answer_first_details_hidden_product_pages_and_back_button(open_page, screenshot, live_worker, e2e_model):
    page = open_page(PHONE)
    _identify(page, "redshoe", 811, live_worker)
    answer = page.get_by_role("region", name="Answer")
    cutout = answer.get_by_role("img", name="The shoe as the model saw it")
    page.wait_for_function(LOADED, arg=cutout.element_handle())
    answer_box, cutout_box = answer.bounding_box(), cutout.bounding_box()
    assert answer_box["y"] + answer_box["height"] <= PHONE["height"], "the answer must fit the first phone screen"
    assert cutout_box["width"] <= PHONE["width"] / 3, "the cut-out is a thumbnail beside the answer on a phone"
    expect(answer.locator("p.price")).to_contain_text("estimated price")
    details = page.locator("details.tech")
    expect(details.get_by_text(e2e_model.name)).to_be_hidden()
    details.locator("summary").click()
    expect(details.get_by_text(e2e_model.name)).to_be_visible()
    expect(page.get_by_text(re.compile(r"similarity \d"))).to_have_count(0)
    screenshot(page, "phone-result")

    cards = page.locator("ul.products li")
    names = [name.strip() for name in cards.locator("strong").all_inner_texts()]
    assert names and len(names) == len(set(names)), f"a title repeats: {names}"
    first = cards.first.get_by_role("link")
    name = names[0]
    first.click()
    expect(page).to_have_url(re.compile(r"/products/\d+/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    expect(page.locator("p.price")).to_contain_text("list price")
    expect(page.get_by_role("heading", name="More like this")).to_be_visible()
    main_photo = page.get_by_role("img", name=name)
    page.wait_for_function(LOADED, arg=main_photo.element_handle())
    screenshot(page, "phone-product")
    assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") == 0

    page.go_back()
    page.go_back()  # back on the upload page the photo was sent from
    expect(page.get_by_role("heading", name="What sneaker is this?")).to_be_visible()
    expect(page.locator("#drop-text")).to_contain_text("Drop a photo here")
    assert page.locator("#image").evaluate("input => input.files.length") == 0, "the old photo would be sent again"
    expect(page.get_by_role("button", name="Identify")).to_be_enabled()
    assert page.problems == []


def test_desktop_result_and_product_page(open_page, screenshot, live_worker, e2e_model):
    page = open_page(DESKTOP)
    _identify(page, "blueshoe", 812, live_worker)
    page.wait_for_function(LOADED, arg=page.get_by_role("img", name="The shoe as the model saw it").element_handle())
    for image in page.locator("ul.products img").all():
        image.scroll_into_view_if_needed()
        page.wait_for_function(LOADED, arg=image.element_handle())
    screenshot(page, "desktop-result")
    page.locator("ul.products li a").first.click()
    expect(page.get_by_role("heading", name="More like this")).to_be_visible()
    second = page.locator(".thumbs a.thumb").nth(1)  # tiny catalog products have two photos
    second.click()
    expect(page.locator(".main-photo")).to_have_attribute("src", second.get_attribute("href"))
    expect(second).to_have_class(re.compile(r"\bcurrent\b"))
    for image in page.locator("img").all():
        image.scroll_into_view_if_needed()
        page.wait_for_function(LOADED, arg=image.element_handle())
    screenshot(page, "desktop-product")
    assert page.problems == []
