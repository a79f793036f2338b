"""Staff pages: brand counts without the cross join, model-version metrics as rounded tables (summary, per
style, model confusion), the comparison's variant row, prediction thumbnails, and shoppers' corrections
added to the catalog."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import ProductImage
from predictions.models import Feedback, Prediction
from registry.admin import confusion_pairs, metric_format, style_rows
from registry.services import model_version_create
from tests.api.test_site import post_photo
from tests.conftest import image_bytes
from tests.factories import BrandFactory, ProductFactory, ProductImageFactory

pytestmark = pytest.mark.django_db

METRICS = {
    "variant": "fine-tuned",
    "brand": {
        "top1": 0.912345678901234,
        "top3": 0.99,
        "log_loss": 0.2871234567,
        "per_brand_recall": {"nike": 0.95},
        "per_brand_support": {"nike": 40},
        "by_style": {"real-world": {"top1": 0.61, "n": 18}, "product-shot": {"top1": 0.97, "n": 300}},
    },
    "model": {
        "top1": 0.7012,
        "top5": 0.93,
        "confusion": {
            "labels": ["Nike Dunk Low", "Nike Dunk High", "Nike Cortez"],
            "matrix": [[8, 3, 0], [1, 9, 0], [0, 0, 5]],
        },
    },
    "wild": {"real-world": {"top1": 0.55, "n": 20}, "unknown_brands": {"n": 4}},
    "evaluations": {
        "sneakers_wild": {"by_style": {"": {"top1": 0.5, "model_top1": 0.25, "model_top5_raw": 0.6, "n": 8}}}
    },
    "price": {"mae": 19.6123, "baseline_mae": 27.1},
    "seconds": {"total": 123.456},
}


@pytest.fixture
def staff_client(client, django_user_model):
    admin = django_user_model.objects.create_superuser(username="staff", password="pw-staff-123", email="s@x.io")
    client.force_login(admin)
    return client


def test_brand_list_counts_products_and_images_with_one_query_and_no_cross_join(staff_client):
    nike, vans = BrandFactory(slug="nike"), BrandFactory(slug="vans")
    for index in range(3):
        product = ProductFactory(brand=nike)
        for _ in range(index + 1):
            ProductImageFactory(product=product)
    ProductFactory(brand=vans)
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get("/admin/catalog/brand/")
    brands = {brand.slug: brand for brand in response.context["cl"].result_list}
    assert (brands["nike"]._products, brands["nike"]._images) == (3, 6)
    assert (brands["vans"]._products, brands["vans"]._images) == (1, 0)
    listing = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT") and "_products" in q["sql"]]
    assert listing and all("JOIN" not in sql for sql in listing)  # counts are subqueries, not joins


def test_metric_format_rounds_for_people():
    assert metric_format("top1", 0.912345678901234) == "91.2%"
    assert metric_format("mae", 19.6123) == "$19.61"
    assert metric_format("log_loss", 0.2871234567) == "0.287"
    assert metric_format("total", 123.456) == "123.5 s"
    assert metric_format("n", 1234) == "1,234" and metric_format("top1", None) == "–"


def test_style_rows_cover_catalog_wild_and_evaluations_and_skip_what_is_absent():
    rows = style_rows(METRICS)
    table = {(row["source"], row["style"]): row for row in rows}
    assert table[("catalog test split", "real-world")]["brand_top1"] == "61.0%"
    assert table[("catalog test split", "product-shot")]["n"] == "300"
    assert table[("wild photos (held out)", "real-world")]["model_top1"] == "–"
    evaluated = table[("evaluate: sneakers_wild", "unlabelled")]
    assert (evaluated["model_top1"], evaluated["model_top5"], evaluated["n"]) == ("25.0%", "60.0%", "8")
    assert ("wild photos (held out)", "unknown_brands") not in table
    assert style_rows({}) == [] and style_rows({"brand": {"top1": 0.5}}) == []


def test_confusion_pairs_list_the_largest_mistakes_first():
    pairs = confusion_pairs(METRICS["model"]["confusion"])
    assert pairs == [("Nike Dunk Low", "Nike Dunk High", 3, "27.3%"), ("Nike Dunk High", "Nike Dunk Low", 1, "10.0%")]
    assert confusion_pairs(None) == [] and confusion_pairs({"labels": [], "matrix": []}) == []


def test_model_version_page_shows_metrics_as_tables_and_compare_fills_the_variant(staff_client):
    version = model_version_create(
        name="v1",
        artifact_prefix="models/v1",
        backbone_fingerprint="f",
        classes=["nike"],
        metrics=METRICS,
        training_seconds=1.0,
    )
    html = staff_client.get(f"/admin/registry/modelversion/{version.id}/change/").content.decode()
    assert "91.2%" in html and "0.912345678901234" not in html.split("All metrics (JSON)")[0]
    assert "Per photo style" in html and "Model confusion" in html and "Nike Dunk High" in html
    bare = model_version_create(
        name="v0", artifact_prefix="models/v0", backbone_fingerprint="f", classes=[], metrics={}, training_seconds=None
    )
    assert staff_client.get(f"/admin/registry/modelversion/{bare.id}/change/").status_code == 200
    html = staff_client.post(
        "/admin/registry/modelversion/", {"action": "compare", "_selected_action": [version.id, bare.id]}
    ).content.decode()
    assert "<td>fine-tuned</td>" in html and "<td>head-only</td>" in html


def test_prediction_list_shows_thumbnails_of_cutouts_or_uploads(staff_client, client):
    post_photo(client, data=image_bytes("PNG"))
    prediction = Prediction.objects.get()
    html = staff_client.get("/admin/predictions/prediction/").content.decode()
    assert f'<img src="{prediction.image.url}"' in html


def test_staff_add_a_corrected_photo_to_the_catalog_as_the_chosen_brand_and_model(staff_client, client):
    vans = BrandFactory(slug="vans", name="Vans")
    model = ProductFactory(brand=vans, name="Vans Sk8-Hi", kind="model")
    post_photo(client, data=image_bytes("PNG", size=(80, 60)))
    prediction = Prediction.objects.get()
    Prediction.objects.filter(id=prediction.id).update(status="succeeded", brand="nike")
    response = client.post(
        f"/p/{prediction.id}/feedback/", {"kind": "wrong_brand", "brand": "vans", "model": str(model.id)}
    )
    assert response.status_code == 302
    feedback = Feedback.objects.get()
    html = staff_client.get("/admin/predictions/feedback/").content.decode()
    assert "Vans Sk8-Hi" in html and "wrong brand" in html

    staff_client.post("/admin/predictions/feedback/", {"action": "add_to_catalog", "_selected_action": [feedback.id]})
    feedback.refresh_from_db()
    image = ProductImage.objects.get(source_repo="feedback")
    assert feedback.status == "added" and feedback.catalog_image == image
    assert (image.brand, image.product, image.width, image.height) == (vans, model, 80, 60)
    assert image.sha256 == prediction.sha256 and image.style == ""  # nobody labelled its style
