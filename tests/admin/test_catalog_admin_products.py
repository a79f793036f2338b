"""Bulk actions on products in admin: list and unlist, set a price through a question page, export as CSV."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission

from catalog.models import Product
from tests.factories import BrandFactory, ProductFactory, ProductImageFactory

pytestmark = pytest.mark.django_db

LIST_URL = "/admin/catalog/product/"


def act(client, action: str, products, url: str = LIST_URL, **extra):
    """POST a bulk action from the product list (as its action bar does) for ``products``."""
    data = {"action": action, "_selected_action": [p.pk for p in products], "index": 0, **extra}
    return client.post(url, data)


def apply_price(client, products, url: str = LIST_URL, **fields):
    """POST the set-price page's form back (as its "Set price" button does), without ``index``."""
    data = {"action": "set_price", "_selected_action": [p.pk for p in products], "apply": "Set price", **fields}
    return client.post(url, data)


def messages_of(response) -> list[str]:
    return [str(message) for message in response.wsgi_request._messages]


def test_unlist_and_list_change_only_the_selected_products(staff_client):
    a, b, other = ProductFactory(), ProductFactory(), ProductFactory()

    response = act(staff_client, "unlist_products", [a, b])

    assert response.status_code == 302
    assert dict(Product.objects.values_list("pk", "is_listed")) == {a.pk: False, b.pk: False, other.pk: True}
    assert "2 product(s) unlisted; 0 already were." in messages_of(response)

    response = act(staff_client, "list_products", [a, other])

    assert dict(Product.objects.values_list("pk", "is_listed")) == {a.pk: True, b.pk: False, other.pk: True}
    assert "1 product(s) listed; 1 already were." in messages_of(response)


def test_set_price_asks_for_the_price_on_a_page_of_its_own(staff_client):
    a, b = ProductFactory(name="Air Zoom", price_usd=100), ProductFactory(name="Gel Lyte", price_usd=None)

    response = act(staff_client, "set_price", [a, b])

    assert response.status_code == 200
    html = response.content.decode()
    assert "Set the price of the selected products" in html and "for 2 products" in html
    assert "Air Zoom" in html and "now $100.00 (list price)" in html and "no price yet" in html
    for product in (a, b):
        assert f'name="_selected_action" value="{product.pk}"' in html
    assert Product.objects.get(pk=a.pk).price_usd == 100  # nothing changed yet


def test_set_price_sets_price_kind_and_source(staff_client):
    a, b, other = ProductFactory(price_usd=100), ProductFactory(price_usd=None), ProductFactory(price_usd=80)

    response = apply_price(staff_client, [a, b], price_usd="129.5", price_kind="retail", price_source="")

    assert response.status_code == 302
    for product in (a, b):
        product.refresh_from_db()
        assert (product.price_usd, product.price_kind, product.price_source) == (
            Decimal("129.50"),
            "retail",
            "Set by our staff",
        )
    assert Product.objects.get(pk=other.pk).price_usd == 80
    assert "2 product(s) now cost $129.50 (retail price)." in messages_of(response)

    apply_price(staff_client, [a], price_usd="99", price_kind="list", price_source="Shop list price, Dec 2026")
    a.refresh_from_db()
    assert (a.price_usd, a.price_kind, a.price_source) == (Decimal("99.00"), "list", "Shop list price, Dec 2026")


@pytest.mark.parametrize(
    ("price", "message"),
    [
        ("-3", "A price is at least $0.01."),
        ("0", "A price is at least $0.01."),
        ("abc", "Enter the price as a number of US dollars, such as 129.99."),
        ("NaN", "Enter the price as a number of US dollars, such as 129.99."),
        ("12.345", "Give at most 2 decimals (cents)."),
        ("100000.01", "A price is at most $100,000."),
        ("", "This field is required."),
    ],
)
def test_set_price_refuses_a_bad_price_and_changes_nothing(staff_client, price, message):
    product = ProductFactory(price_usd=100)

    response = apply_price(staff_client, [product], price_usd=price, price_kind="list")

    assert response.status_code == 200
    assert message in response.content.decode()
    assert f'name="_selected_action" value="{product.pk}"' in response.content.decode()  # can try again
    product.refresh_from_db()
    assert (product.price_usd, product.price_kind, product.price_source) == (100, "", "")


def test_set_price_refuses_an_unknown_price_kind(staff_client):
    product = ProductFactory(price_usd=100)

    response = apply_price(staff_client, [product], price_usd="90", price_kind="wholesale")

    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert Product.objects.get(pk=product.pk).price_usd == 100


def test_set_price_refuses_two_editions_of_a_title_at_one_price(staff_client):
    nike = BrandFactory(slug="nike", name="Nike")
    first = ProductFactory(brand=nike, name="Air Max 90", price_usd=120)
    second = ProductFactory(brand=nike, name="Air Max 90", price_usd=140)
    third = ProductFactory(brand=nike, name="Cortez", price_usd=80)

    both = apply_price(staff_client, [first, second], price_usd="130", price_kind="list")
    clash = apply_price(staff_client, [first, third], price_usd="140", price_kind="list")

    assert both.status_code == 200 and clash.status_code == 200
    assert "Nike “Air Max 90” is selected 2 times" in both.content.decode()
    assert f"Nike “Air Max 90” already has an edition at $140.00 (#{second.pk})" in clash.content.decode()
    assert dict(Product.objects.values_list("pk", "price_usd")) == {first.pk: 120, second.pk: 140, third.pk: 80}


def test_set_price_for_all_products_of_a_filtered_list(staff_client):
    nike, vans = BrandFactory(slug="nike"), BrandFactory(slug="vans")
    nikes = [ProductFactory(brand=nike, price_usd=100 + i) for i in range(3)]
    untouched = ProductFactory(brand=vans, price_usd=60)
    url = f"{LIST_URL}?brand__id__exact={nike.pk}"

    page = act(staff_client, "set_price", nikes[:1], url=url, select_across=1)
    assert 'name="select_across" value="1"' in page.content.decode() and "for 3 products" in page.content.decode()
    response = apply_price(staff_client, nikes[:1], url=url, select_across=1, price_usd="75", price_kind="list")

    assert response.status_code == 302
    assert set(Product.objects.filter(brand=nike).values_list("price_usd", flat=True)) == {Decimal("75.00")}
    assert Product.objects.get(pk=untouched.pk).price_usd == 60


def test_export_csv_of_the_selected_products(staff_client):
    nike = BrandFactory(slug="nike", name="Nike")
    model = ProductFactory(
        brand=nike, name="Nike Air Jordan 1 High", kind="model", price_usd=None, link="https://shop.example/aj1"
    )
    listing = ProductFactory(brand=nike, name='=HYPERLINK("http://evil")', price_usd=Decimal("89.9"))
    Product.objects.filter(pk=listing.pk).update(is_listed=False, price_kind="retail")
    for _ in range(2):
        ProductImageFactory(product=model)
    ProductFactory(brand=nike, name="Not selected")

    response = act(staff_client, "export_csv", [model, listing])

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="products-')
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8"))))
    assert rows == [
        ["id", "brand", "name", "kind", "price_usd", "price_kind", "link", "is_listed", "image_count"],
        [str(listing.pk), "Nike", '\'=HYPERLINK("http://evil")', "listing", "89.90", "retail", "", "false", "0"],
        [
            str(model.pk),
            "Nike",
            "Nike Air Jordan 1 High",
            "model",
            "",
            "retail",
            "https://shop.example/aj1",
            "true",
            "2",
        ],
    ]


def test_staff_who_may_only_view_products_can_export_but_not_change_them(client, django_user_model):
    viewer = django_user_model.objects.create_user(username="viewer", password="pw-viewer-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_product"))
    client.force_login(viewer)
    product = ProductFactory(price_usd=100)

    choices = [value for value, _ in client.get(LIST_URL).context["action_form"].fields["action"].choices]
    unlisted = act(client, "unlist_products", [product])
    priced = apply_price(client, [product], price_usd="50", price_kind="list")
    exported = act(client, "export_csv", [product])

    assert "export_csv" in choices and not {"unlist_products", "list_products", "set_price"} & set(choices)
    assert unlisted.status_code == 302 and priced.status_code == 302  # "No action selected.", nothing done
    product.refresh_from_db()
    assert (product.is_listed, product.price_usd) == (True, 100)
    assert exported.status_code == 200 and f"{product.pk}," in exported.content.decode()
