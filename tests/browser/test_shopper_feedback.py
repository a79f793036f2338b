"""Corrections and staff pages in a real browser: a shopper says "wrong model" and picks the right one, staff
see the correction and add the photo to the catalog; a failed job is worded by its cause; the staff brand list,
a model version's metric tables and the prediction list's thumbnails.

Results are written into the database by the test (no worker, no model): these flows are about the pages.
Needs Chromium and the test database; skips with the reason without them.
"""

from __future__ import annotations

import re

import pytest

from catalog.models import Brand, Product, ProductImage
from predictions.models import Feedback, Prediction
from registry.services import model_version_create
from tests.api.test_staff_pages import METRICS
from tests.browser.conftest import DESKTOP, PHONE
from tests.tiny_catalog import BRAND_COLOURS, build_tiny_catalog, shoe_photo

expect = pytest.importorskip("playwright.sync_api", reason="browser tests need the playwright package").expect
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STAFF_PASSWORD = "pw-curator-not-common"


def _upload(page) -> Prediction:
    page.goto("/")
    photo = shoe_photo(BRAND_COLOURS["blueshoe"], 902, size=(320, 240), fmt="JPEG")
    page.locator("#image").set_input_files(files=[{"name": "blue.jpg", "mimeType": "image/jpeg", "buffer": photo}])
    page.get_by_role("button", name="Identify").click()
    expect(page).to_have_url(re.compile(r"/p/[0-9a-f-]{36}/$"))
    return Prediction.objects.get(id=page.url.rstrip("/").rsplit("/", 1)[1])


def _staff_login(page) -> None:
    page.goto("/admin/")
    page.get_by_label("Username").fill("curator")
    page.get_by_label("Password").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()


def test_a_shopper_corrects_the_model_and_staff_add_the_photo_to_the_catalog(open_page, screenshot, django_user_model):
    catalog = build_tiny_catalog(products_per_brand=2, unnamed_per_brand=0)
    blue = Brand.objects.get(slug="blueshoe")
    right = Product.objects.create(brand=blue, name="Blueshoe Racer", kind="model", price_usd=99)
    wrong = Product.objects.create(brand=blue, name="Blueshoe Walker", kind="model", price_usd=79)
    page = open_page(PHONE)
    prediction = _upload(page)
    Prediction.objects.filter(id=prediction.id).update(
        status="succeeded",
        brand="blueshoe",
        brands=[{"name": "blueshoe", "probability": 0.93}, {"name": "redshoe", "probability": 0.07}],
        shoe_model=wrong.name,
        shoe_models=[{"name": wrong.name, "brand": "blueshoe", "probability": 0.8}],
        price_estimate_usd=85,
        price_low_usd=70,
        price_high_usd=100,
        similar=[
            {
                "product_id": p.id,
                "name": p.name,
                "brand": "blueshoe",
                "price_usd": float(p.price_usd),
                "score": 0.9,
                "image_url": p.images.first().image.url,
            }
            for p in catalog["blueshoe"]
        ],
    )
    # No page.reload(): the page long-polls its status and reloads itself once the job has ended.
    expect(page.get_by_role("heading", level=1)).to_have_text("Blueshoe")
    answer = page.get_by_role("region", name="Answer")
    box = answer.bounding_box()
    assert box["y"] + box["height"] <= PHONE["height"], "the answer must fit the first phone screen"
    screenshot(page, "phone-result")

    page.get_by_text("Wrong answer? Tell us").click()
    page.get_by_label("Wrong model").check()
    page.get_by_label("The right brand").select_option("redshoe")
    expect(page.locator('#fb-model optgroup[data-brand="blueshoe"]')).to_be_disabled()  # only the brand's models
    page.get_by_label("The right brand").select_option("blueshoe")
    page.get_by_label("The right model").select_option(label="Blueshoe Racer")
    page.get_by_label("Anything else").fill("Racer in navy")
    screenshot(page, "phone-feedback-form")
    page.get_by_role("button", name="Send correction").click()
    expect(page.get_by_text("Thank you: your correction is saved")).to_be_visible()
    feedback = Feedback.objects.get()
    assert (feedback.kind, feedback.product, feedback.note) == ("wrong_model", right, "Racer in navy")

    django_user_model.objects.create_superuser(username="curator", email="", password=STAFF_PASSWORD)
    staff = open_page(DESKTOP)
    _staff_login(staff)
    staff.goto("/admin/predictions/feedback/")
    row = staff.locator("#result_list tbody tr").first
    expect(row).to_contain_text("Blueshoe Racer")
    expect(row).to_contain_text("wrong model")
    row.locator("input.action-select").check()
    staff.locator("select[name=action]").select_option("add_to_catalog")
    staff.get_by_role("button", name="Go").click()
    expect(staff.get_by_text("1 photo(s) added to the catalog")).to_be_visible()
    screenshot(staff, "admin-feedback")
    image = ProductImage.objects.get(source_repo="feedback")
    assert (image.brand, image.product, image.sha256) == (blue, right, prediction.sha256)
    assert page.problems == [] and staff.problems == []


def test_a_server_failure_is_not_blamed_on_the_photo(open_page, screenshot):
    page = open_page(PHONE)
    prediction = _upload(page)
    Prediction.objects.filter(id=prediction.id).update(
        status="failed", error_code="model_unavailable", error_message="No model is active yet."
    )
    # No page.reload(): the page long-polls its status and reloads itself once the job has ended.
    expect(page.get_by_role("heading", level=1)).to_have_text("Recognition is not available right now")
    expect(page.get_by_role("alert")).to_contain_text("Your photo is fine")
    expect(page.get_by_text("model_unavailable")).to_be_hidden()  # the code sits in the closed Details
    screenshot(page, "phone-failed")
    page.get_by_role("link", name="History").click()
    expect(page.locator("ul.history li").first).to_contain_text("Not identified: our error")
    assert page.problems == []


def test_staff_pages_brand_counts_metric_tables_and_prediction_thumbnails(open_page, screenshot, django_user_model):
    build_tiny_catalog(products_per_brand=2, unnamed_per_brand=1)
    version = model_version_create(
        name="v-metrics",
        artifact_prefix="models/v-metrics",
        backbone_fingerprint="f",
        classes=["x"],
        metrics=METRICS,
        training_seconds=1.0,
    )
    shopper = open_page(DESKTOP)
    _upload(shopper)
    django_user_model.objects.create_superuser(username="curator", email="", password=STAFF_PASSWORD)
    page = open_page(DESKTOP)
    _staff_login(page)

    page.goto("/admin/catalog/brand/")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first.locator("td.field-product_count")).to_have_text("2")
    expect(rows.first.locator("td.field-image_count")).to_have_text("5")

    page.goto(f"/admin/registry/modelversion/{version.id}/change/")
    expect(page.get_by_role("heading", name="Per photo style")).to_be_visible()
    expect(page.get_by_role("cell", name="91.2%")).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("Model confusion"))).to_be_visible()
    screenshot(page, "admin-metrics")

    page.goto("/admin/predictions/prediction/")
    thumbnail = page.locator("#result_list .field-thumbnail img").first
    expect(thumbnail).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle())
    assert page.problems == [] and shopper.problems == []


def test_a_not_sure_result_shows_candidates_above_the_fold_and_the_history_reads_plainly(open_page, screenshot):
    page = open_page(PHONE)
    failed = _upload(page)
    Prediction.objects.filter(id=failed.id).update(
        status="failed", error_code="image_unreadable", error_message="The file is not a readable image."
    )
    # The page long-polls its status and reloads itself as soon as the job has ended; wait for that, or the next
    # upload's navigation would race the reload.
    expect(page.locator("#result")).to_have_attribute("data-terminal", "1")
    unsure = _upload(page)
    Prediction.objects.filter(id=unsure.id).update(
        status="succeeded",
        brand="",
        abstain={"reason": "low_confidence", "score": 0.41},
        brands=[{"name": "blueshoe", "probability": 0.41}, {"name": "redshoe", "probability": 0.38}],
        shoe_models=[{"name": "Blueshoe Racer", "brand": "blueshoe", "probability": 0.3}],
        price_estimate_usd=90,
        price_low_usd=60,
        price_high_usd=130,
    )
    # No page.reload(): the page long-polls its status and reloads itself once the job has ended.
    expect(page.get_by_role("heading", level=1)).to_have_text("Not sure which brand this is")
    candidates = page.locator("ul.candidates li")
    expect(candidates).to_have_count(2)
    box = candidates.last.bounding_box()
    assert box["y"] + box["height"] <= PHONE["height"], "the candidates must be on the first phone screen"
    screenshot(page, "phone-not-sure")
    page.get_by_role("link", name="History").click()
    items = page.locator("ul.history li")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_contain_text("Not sure")
    expect(items.nth(1)).to_contain_text("Photo not readable")
    screenshot(page, "phone-history")
    page.get_by_role("link", name="Identify", exact=True).click()
    screenshot(page, "phone-upload")
    assert page.problems == []
