"""Catalog read API: brands, products filtered by brand and price, image URLs, pagination."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.factories import BrandFactory, ProductFactory, ProductImageFactory

pytestmark = pytest.mark.django_db


def test_brands_are_listed():
    BrandFactory(slug="nike", name="Nike")
    BrandFactory(slug="vans", name="Vans")
    body = APIClient().get("/api/v1/brands/").json()
    assert [b["slug"] for b in body["results"]] == ["nike", "vans"]


def test_products_filter_by_brand_and_price_with_image_urls():
    nike, vans = BrandFactory(slug="nike"), BrandFactory(slug="vans")
    cheap = ProductFactory(brand=nike, name="Cheap", price_usd=50)
    ProductFactory(brand=nike, name="Dear", price_usd=200)
    ProductFactory(brand=vans, name="Old Skool", price_usd=60)
    ProductFactory(brand=nike, name="Hidden", price_usd=55, is_listed=False)
    ProductImageFactory(product=cheap)

    body = APIClient().get("/api/v1/products/?brand=nike&max_price=100").json()

    assert body["count"] == 1
    product = body["results"][0]
    assert product["name"] == "Cheap" and product["brand"] == "nike" and product["price_usd"] == 50.0
    assert product["images"][0]["url"].startswith("http://testserver/media/catalog/")


def test_products_are_paginated():
    brand = BrandFactory(slug="nike")
    for i in range(25):
        ProductFactory(brand=brand, name=f"Model {i:02d}")
    body = APIClient().get("/api/v1/products/").json()
    assert body["count"] == 25 and len(body["results"]) == 20 and body["next"]
