"""Product pages: photos, brand, model, price with its kind and source, the shop link, more like this; similar
products in a result link to them, one per product family."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.conf import settings
from django.test import Client

from catalog.models import Product
from predictions.models import Prediction
from tests.factories import BrandFactory, ProductFactory, ProductImageFactory
from worker.inference import similar_payload
from worker.ml.results import SimilarItem

pytestmark = pytest.mark.django_db


def test_a_listing_page_shows_photos_brand_list_price_its_source_and_the_shop_link():
    brand = BrandFactory(slug="vans", name="Vans")
    product = ProductFactory(
        brand=brand,
        name="Vans Old Skool - Men's",
        price_usd=Decimal("65.00"),
        source="luoken/Shoe-detector",
        link="https://shop.example.com/old-skool",
    )
    photos = [ProductImageFactory(product=product), ProductImageFactory(product=product)]
    html = Client().get(f"/products/{product.id}/").content.decode()
    assert "<h1>Vans Old Skool - Men&#x27;s</h1>" in html and "Vans · shop listing" in html
    assert "$65.00 <small>list price</small>" in html and "Foot Locker list price, early 2018" in html
    assert 'href="https://shop.example.com/old-skool"' in html and "View in the shop" in html
    for photo in photos:
        assert photo.image.url in html


def test_a_model_page_says_retail_price_from_the_resale_snapshot_and_a_product_without_price_says_so():
    brand = BrandFactory(slug="nike", name="Nike")
    model = ProductFactory(brand=brand, name="Nike Air Jordan 1 High", price_usd=170, kind=Product.Kind.MODEL)
    ProductImageFactory(product=model)
    html = Client().get(f"/products/{model.id}/").content.decode()
    assert "$170.00 <small>retail price</small>" in html and "2023 resale-market snapshot" in html
    assert "View in the shop" not in html  # no link in the catalog: none shown

    unpriced = ProductFactory(brand=brand, name="Nike Cortez", price_usd=None, kind=Product.Kind.MODEL)
    html = Client().get(f"/products/{unpriced.id}/").content.decode()
    assert "No price in our catalog for this model." in html


def test_a_stored_price_kind_and_source_win_over_the_defaults():
    product = ProductFactory(price_kind="retail", price_source="Brand's own shop, 2026", kind=Product.Kind.LISTING)
    html = Client().get(f"/products/{product.id}/").content.decode()
    assert "retail price" in html and "Brand&#x27;s own shop, 2026" in html


def test_more_like_this_is_same_brand_one_per_title_closest_price_first_and_never_other_brands():
    brand = BrandFactory(slug="vans", name="Vans")
    product = ProductFactory(brand=brand, name="Old Skool", price_usd=60)
    near = ProductFactory(brand=brand, name="Authentic", price_usd=55)
    far = ProductFactory(brand=brand, name="Sk8-Hi", price_usd=90)
    twin = ProductFactory(brand=brand, name="Authentic", price_usd=50)  # another edition: same family as ``near``
    same_title = ProductFactory(brand=brand, name="Old Skool", price_usd=65)  # the product's own family
    other_brand = ProductFactory(brand=BrandFactory(slug="nike"), name="Cortez", price_usd=60)
    for item in (product, near, far, twin, same_title, other_brand):
        ProductImageFactory(product=item)
    more = Client().get(f"/products/{product.id}/").context["more"]
    assert [p.id for p in more] == [near.id, far.id]


def test_unknown_or_unlisted_products_answer_404():
    hidden = ProductFactory(is_listed=False)
    assert Client().get(f"/products/{hidden.id}/").status_code == 404
    assert Client().get("/products/999999/").status_code == 404


def test_similar_payload_keeps_one_hit_per_product_family_and_at_most_the_limit():
    brand = BrandFactory(slug="vans")
    first = ProductFactory(brand=brand, name="Vans Old Skool - Men's", price_usd=60)
    edition = ProductFactory(brand=brand, name="Vans Old Skool - Men's", price_usd=65)
    others = [ProductFactory(brand=brand, name=f"Vans Model {i}") for i in range(6)]
    hits = [SimilarItem(first.id, 0.9), SimilarItem(edition.id, 0.89)] + [
        SimilarItem(p.id, 0.8 - i / 100) for i, p in enumerate(others)
    ]
    payload = similar_payload(hits, limit=5)
    names = [item["name"] for item in payload]
    assert len(names) == 5 and len(set(names)) == 5
    assert payload[0]["product_id"] == first.id and edition.id not in [item["product_id"] for item in payload]


def test_similar_payload_puts_the_answered_brands_products_first_in_similarity_order():
    adidas, nike = BrandFactory(slug="adidas"), BrandFactory(slug="nike")
    nike_close = ProductFactory(brand=nike, name="Nike Cortez")
    adidas_a = ProductFactory(brand=adidas, name="Adidas Samba")
    nike_far = ProductFactory(brand=nike, name="Nike Blazer")
    adidas_b = ProductFactory(brand=adidas, name="Adidas Gazelle")
    hits = [SimilarItem(p.id, 0.9 - i / 10) for i, p in enumerate([nike_close, adidas_a, nike_far, adidas_b])]

    answered = [item["product_id"] for item in similar_payload(hits, limit=3, brand="adidas")]
    assert answered == [adidas_a.id, adidas_b.id, nike_close.id]  # other brands only fill the places left
    unanswered = [item["product_id"] for item in similar_payload(hits, limit=3)]
    assert unanswered == [nike_close.id, adidas_a.id, nike_far.id]  # an abstention keeps pure similarity


def test_similar_payload_shows_each_products_first_photo_and_reads_only_that_one(django_assert_max_num_queries):
    """A named model has dozens of photos; a hit needs its first (lowest id) only, and no more rows are read."""
    brand = BrandFactory(slug="nike")
    products = [ProductFactory(brand=brand, name=f"Nike Model {i}", kind=Product.Kind.MODEL) for i in range(3)]
    firsts = {}
    for product in products:
        photos = [ProductImageFactory(product=product) for _ in range(4)]
        firsts[product.id] = photos[0].image.url
    from catalog.selectors import product_get_many

    with django_assert_max_num_queries(1):  # products with brands and their first image's name
        found = product_get_many(ids=[p.id for p in products])
        assert {pid: product.first_image for pid, product in found.items()} == {
            pid: url.removeprefix(settings.MEDIA_URL) for pid, url in firsts.items()
        }
    payload = similar_payload([SimilarItem(p.id, 0.9 - i / 10) for i, p in enumerate(products)], limit=5)
    assert [item["image_url"] for item in payload] == [firsts[p.id] for p in products]


def test_similar_products_in_a_result_link_to_their_product_pages_and_say_when_there_is_no_price():
    brand = BrandFactory(slug="nike", name="Nike")
    priced = ProductFactory(brand=brand, name="Nike Air Max 90", price_usd=140, kind=Product.Kind.MODEL)
    unpriced = ProductFactory(brand=brand, name="Nike Cortez", price_usd=None, kind=Product.Kind.MODEL)
    client = Client()
    from tests.api.test_site import post_photo

    post_photo(client)
    prediction = Prediction.objects.get()
    Prediction.objects.filter(id=prediction.id).update(
        status="succeeded",
        brand="nike",
        brands=[{"name": "nike", "probability": 0.9}],
        similar=[
            {"product_id": p.id, "name": p.name, "brand": "nike", "price_usd": price, "score": 0.8, "image_url": None}
            for p, price in ((priced, 140.0), (unpriced, None))
        ],
    )
    html = client.get(f"/p/{prediction.id}/").content.decode()
    assert f'href="/products/{priced.id}/"' in html and f'href="/products/{unpriced.id}/"' in html
    assert "$140.00 <small>retail price</small>" in html and "no price in our catalog" in html
    assert "similarity 0.80" not in html  # engineers' words live in the details disclosure


def test_more_like_this_of_a_named_model_lists_other_models_before_listings_of_the_brand():
    brand = BrandFactory(slug="nike", name="Nike")
    product = ProductFactory(brand=brand, name="Nike Air Jordan 1 High", price_usd=170, kind=Product.Kind.MODEL)
    listings = [ProductFactory(brand=brand, name=f"Air Jordan {i}", price_usd=None) for i in range(12)]
    other_model = ProductFactory(brand=brand, name="Nike Dunk Low", price_usd=110, kind=Product.Kind.MODEL)
    for item in (product, *listings, other_model):
        ProductImageFactory(product=item)
    more = Client().get(f"/products/{product.id}/").context["more"]
    assert more[0] == other_model and len(more) == 8
