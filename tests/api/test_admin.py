"""Admin pages: catalog curation lists and filters; model version report plots and side-by-side compare."""

from __future__ import annotations

import io

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from registry.services import model_version_create
from tests.factories import BrandFactory, ProductFactory, ProductImageFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, django_user_model):
    admin = django_user_model.objects.create_superuser(username="staff", password="pw-staff-123", email="s@x.io")
    client.force_login(admin)
    return client


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def version(name: str, top1: float):
    created = model_version_create(
        name=name,
        artifact_prefix=f"models/{name}",
        backbone_fingerprint="f",
        classes=["a", "b"],
        metrics={"variant": "head-only", "brand": {"top1": top1, "log_loss": 0.3}, "price": {"mae": 19.6}},
        training_seconds=10.0,
    )
    default_storage.save(f"models/{name}/report/confusion.png", ContentFile(png()))
    return created


def test_product_list_shows_thumbnails_and_filters_by_brand_and_price(staff_client):
    nike = BrandFactory(slug="nike", name="Nike")
    ProductImageFactory(product=ProductFactory(brand=nike, name="Air Zoom", price_usd=130))
    ProductFactory(brand=nike, name="Cheap One", price_usd=40)

    page = staff_client.get("/admin/catalog/product/", {"brand__id__exact": nike.id, "price_band": "125-175"})

    html = page.content.decode()
    assert page.status_code == 200 and "Air Zoom" in html and "Cheap One" not in html
    assert '<img src="/media/catalog/nike/' in html
    assert staff_client.get("/admin/catalog/product/", {"q": "cheap"}).content.decode().count("Cheap One") >= 1


def test_model_version_page_shows_the_report_plots(staff_client):
    v1 = version("v1", 0.9)
    html = staff_client.get(f"/admin/registry/modelversion/{v1.id}/change/").content.decode()
    assert "/media/models/v1/report/confusion.png" in html and "head-only" in html


def test_two_versions_compare_side_by_side(staff_client):
    v1, v2 = version("v1", 0.9), version("v2", 0.95)
    response = staff_client.post(
        "/admin/registry/modelversion/", {"action": "compare", "_selected_action": [v1.id, v2.id]}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "v1 (active)" in html and "v2 (candidate)" in html
    assert "90.0%" in html and "95.0%" in html and html.count("<td>head-only</td>") == 2  # rounded; variant filled
    assert html.count("report/confusion.png") == 2
