"""The shopper's pages in a real browser: upload a photo and see its result, a refused file's message,
and both pages on a phone-sized screen.

Results come from a real Celery worker process and a tiny model trained by the test (see
``conftest.py``); the result page's own script polls and reloads, and the tests wait for what a
shopper would see. Needs PostgreSQL, Redis and Chromium; skips with the reason without them.
"""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import DESKTOP, PHONE, TIMEOUT_MS, worker_log_on_failure
from tests.conftest import image_bytes
from tests.tiny_catalog import BRAND_COLOURS, shoe_photo

expect = pytest.importorskip("playwright.sync_api", reason="browser tests need the playwright package").expect
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RESULT_URL = re.compile(r"/p/[0-9a-f-]{36}/$")
LOADED = "img => img.complete && img.naturalWidth > 0"
"""JavaScript predicate: an ``<img>`` finished loading a decodable picture."""
PHONE_FILE_NAME = "IMG_20261121_052154_123456789_HDR_PORTRAIT_BURST_COVER_SHOT.jpg"
"""A phone camera's file name: one long word that the drop zone must wrap, not widen the page with."""


def _horizontal_overflow(page) -> int:
    """CSS pixels by which the page is wider than its viewport (0: no horizontal scroll)."""
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


def _choose_photo(page, name: str, data: bytes, mime: str = "image/jpeg") -> None:
    """Put ``data`` into the upload form's file input, as the file picker would."""
    page.locator("#image").set_input_files(files=[{"name": name, "mimeType": mime, "buffer": data}])


def _wait_for_result(page, brand: str, worker_log) -> None:
    """Wait until the result page (reloaded by its polling script) names ``brand`` in its heading."""
    with worker_log_on_failure(worker_log):
        expect(page).to_have_url(RESULT_URL)
        expect(page.get_by_role("heading", level=1)).to_have_text(brand, timeout=TIMEOUT_MS)


def _wait_loaded(page, image) -> None:
    """Wait until an ``<img>`` (a locator) has loaded its picture."""
    page.wait_for_function(LOADED, arg=image.element_handle())


def test_upload_a_photo_and_see_the_result(open_page, screenshot, live_worker, e2e_model):
    page = open_page(DESKTOP)
    page.goto("/")
    expect(page.get_by_role("heading", name="What sneaker is this?")).to_be_visible()
    photo = shoe_photo(BRAND_COLOURS["redshoe"], 777, size=(320, 240), fmt="JPEG")
    _choose_photo(page, "red.jpg", photo)
    expect(page.locator("#drop-text")).to_contain_text("red.jpg")
    preview = page.locator("#preview")
    expect(preview).to_be_visible()  # upload.js shows the chosen photo before it is sent
    _wait_loaded(page, preview)
    screenshot(page, "upload")
    page.get_by_role("button", name="Identify").click()

    _wait_for_result(page, "Redshoe", live_worker)
    cutout = page.get_by_role("img", name="The shoe as the model saw it")
    expect(cutout).to_be_visible()
    expect(cutout).to_have_attribute("src", re.compile(r"/media/cutouts/"))
    _wait_loaded(page, cutout)
    bars = page.locator("ul.bars li")
    expect(bars).to_have_count(len(BRAND_COLOURS))
    expect(bars.first.locator(".label")).to_have_text("Redshoe")
    expect(page.locator("p.price")).to_contain_text("$")
    expect(page.get_by_role("heading", name="Similar products")).to_be_visible()
    products = page.locator("ul.products li")
    expect(products.first).to_contain_text("Redshoe")
    for image in products.locator("img").all():
        image.scroll_into_view_if_needed()  # product pictures load lazily
        _wait_loaded(page, image)
    page.locator("details.tech summary").click()  # the model version sits in the Details disclosure
    expect(page.locator("details.tech")).to_contain_text(e2e_model.name)
    screenshot(page, "result")
    assert page.problems == []


@pytest.mark.parametrize(
    ("name", "data", "mime", "message"),
    [
        ("notes.jpg", b"Shopping list: laces, insoles, socks.\n" * 40, "image/jpeg", r"not a readable image"),
        ("tiny.png", image_bytes("PNG", size=(8, 8)), "image/png", r"8 x 8 pixels"),
    ],
    ids=["text-file-named-jpg", "too-small-image"],
)
def test_a_refused_file_shows_a_readable_message(open_page, screenshot, name, data, mime, message):
    page = open_page(DESKTOP)
    page.goto("/")
    _choose_photo(page, name, data, mime)
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        page.get_by_role("button", name="Identify").click()
    assert answer.value.status == 400

    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_have_text(re.compile(message, re.IGNORECASE))
    expect(alert).not_to_contain_text("image_")  # words for people, not the API's error code
    expect(page).to_have_url(answer.value.url)  # still the upload page: no result page was made
    expect(page.get_by_role("button", name="Identify")).to_be_enabled()  # the shopper can try again
    screenshot(page, "refused")
    assert page.problems == []


def test_phone_sized_screen_has_no_horizontal_scroll(open_page, screenshot, live_worker, e2e_model):
    page = open_page(PHONE)
    page.goto("/")
    expect(page.get_by_role("button", name="Identify")).to_be_visible()
    assert _horizontal_overflow(page) == 0
    photo = shoe_photo(BRAND_COLOURS["blueshoe"], 778, size=(320, 240), fmt="JPEG")
    _choose_photo(page, PHONE_FILE_NAME, photo)
    expect(page.locator("#preview")).to_be_visible()
    screenshot(page, "phone-upload")
    assert _horizontal_overflow(page) == 0, "the chosen photo's name widens the upload page"
    page.get_by_role("button", name="Identify").click()

    _wait_for_result(page, "Blueshoe", live_worker)
    cutout = page.get_by_role("img", name="The shoe as the model saw it")
    _wait_loaded(page, cutout)
    box = cutout.bounding_box()
    assert box is not None and 0 <= box["x"] and box["x"] + box["width"] <= PHONE["width"]
    expect(page.get_by_role("link", name="Identify another")).to_be_visible()
    screenshot(page, "phone-result")
    assert _horizontal_overflow(page) == 0
    assert page.problems == []
