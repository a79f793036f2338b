"""Product photos in admin, standalone and on a product's page: checked like shoppers' uploads, size and hash
from the bytes, brand from the product, duplicates refused, files removed with their rows; never a 500."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

import pytest
from PIL import Image

from catalog.models import Product, ProductImage
from tests.admin.conftest import INLINE, add_rows, photo, product_page_data, stored_files, upload
from tests.factories import BrandFactory, ProductFactory, ProductImageFactory

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/catalog/productimage/add/"


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int, height: int) -> bytes:
    """A 100-byte PNG whose header announces ``width x height`` pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + png_chunk(b"IEND", b"")
    )


def truncated_jpeg() -> bytes:
    data = photo(size=(400, 300)).read()
    return data[: len(data) // 3]


def gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (0, 120, 0)).save(buffer, "GIF")
    return buffer.getvalue()


BAD_FILES = {
    # name: (bytes, words of the message on the page)
    "html": (b"<!doctype html><html><body>Not found</body></html>", "not a readable image"),
    "truncated_jpeg": (truncated_jpeg(), "not a readable image"),
    "huge_pixel_count": (png_bomb(9000, 8000), "9000 x 8000 pixels (72.0 megapixels); the limit is 64 megapixels"),
    "decompression_bomb": (png_bomb(20_000, 20_000), "The image has too many pixels"),  # Pillow refuses to open it
    "empty": (b"", "The file is empty."),
    "gif": (gif(), "Images in GIF format are not accepted; send JPEG, PNG or WebP."),
    "tiny": (photo(size=(8, 8), fmt="PNG").read(), "each side must be at least 16 pixels"),
}


def sha(file) -> str:
    file.seek(0)
    digest = hashlib.sha256(file.read()).hexdigest()
    file.seek(0)
    return digest


def page_errors(response) -> str:
    """The text of the page (errors included), for assertions on messages."""
    return response.content.decode()


def test_standalone_photo_of_a_product_gets_size_hash_and_the_products_brand(staff_client):
    nike = BrandFactory(slug="nike", name="Nike")
    product = ProductFactory(brand=nike, name="Air Zoom")
    file = photo(size=(150, 100), name="IMG_0001 from phone.jpeg")

    response = staff_client.post(ADD_URL, {"product": product.pk, "image": file, "style": "real-world"})

    assert response.status_code == 302, response.context["adminform"].form.errors
    image = ProductImage.objects.get()
    assert (image.brand, image.product, image.width, image.height) == (nike, product, 150, 100)
    assert image.sha256 == sha(file)
    assert image.image.name == f"catalog/nike/{image.sha256[:2]}/{image.sha256}.jpg"
    assert (image.source_repo, image.source_path, image.style) == ("admin", "IMG_0001 from phone.jpeg", "real-world")
    assert [path.name for path in stored_files()] == [f"{image.sha256}.jpg"]


def test_standalone_photo_without_product_is_a_training_photo_of_the_chosen_brand(staff_client):
    vans = BrandFactory(slug="vans", name="Vans")
    file = photo(fmt="PNG", name="shot.jpg")  # the name lies; the bytes decide the extension

    response = staff_client.post(ADD_URL, {"brand": vans.pk, "image": file})

    assert response.status_code == 302
    image = ProductImage.objects.get()
    assert (image.brand, image.product, image.width, image.height) == (vans, None, 120, 90)
    assert image.image.name.endswith(f"{image.sha256}.png")


def test_standalone_photo_needs_a_product_or_a_brand(staff_client):
    response = staff_client.post(ADD_URL, {"image": photo()})

    assert response.status_code == 200
    assert "Choose a product, or a brand for a photo without product." in page_errors(response)
    assert not ProductImage.objects.exists() and stored_files() == []


def test_standalone_photo_refuses_a_brand_other_than_its_products(staff_client):
    product = ProductFactory(brand=BrandFactory(slug="nike", name="Nike"), name="Air Zoom")
    vans = BrandFactory(slug="vans", name="Vans")

    response = staff_client.post(ADD_URL, {"product": product.pk, "brand": vans.pk, "image": photo()})

    assert response.status_code == 200
    assert "is a Nike product and its photos are Nike photos" in page_errors(response)
    assert not ProductImage.objects.exists()


def test_photo_added_on_the_product_page_gets_size_hash_and_brand(staff_client):
    adidas = BrandFactory(slug="adidas", name="Adidas")
    product = ProductFactory(brand=adidas, name="Superstar")
    kept = ProductImageFactory(product=product)
    file = photo(color=(10, 200, 30), size=(90, 60), fmt="WEBP", name="superstar.png")

    data = add_rows(product_page_data(staff_client, product), file)
    response = staff_client.post(f"/admin/catalog/product/{product.pk}/change/", data)

    assert response.status_code == 302, response.context["inline_admin_formsets"][0].formset.errors
    added = ProductImage.objects.exclude(pk=kept.pk).get()
    assert (added.brand, added.product, added.width, added.height) == (adidas, product, 90, 60)
    assert added.sha256 == sha(file) and added.image.name.endswith(".webp")
    assert added.source_repo == "admin"
    assert ProductImage.objects.filter(product=product).count() == 2


def test_new_product_and_its_first_photo_in_one_save(staff_client):
    puma = BrandFactory(slug="puma", name="Puma")
    data = {
        "brand": puma.pk,
        "name": "Suede Classic",
        "price_usd": "70.00",
        "kind": "listing",
        "is_listed": "on",
        f"{INLINE}-TOTAL_FORMS": 1,
        f"{INLINE}-INITIAL_FORMS": 0,
        f"{INLINE}-MIN_NUM_FORMS": 0,
        f"{INLINE}-MAX_NUM_FORMS": 1000,
        f"{INLINE}-0-image": photo(size=(64, 64)),
    }

    response = staff_client.post("/admin/catalog/product/add/", data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    image = ProductImage.objects.get()
    assert image.product == Product.objects.get(name="Suede Classic") and image.brand == puma
    assert (image.width, image.height) == (64, 64)


def test_new_product_without_brand_asks_for_it_and_stores_no_photo(staff_client):
    data = {
        "name": "No Brand Yet",
        "kind": "listing",
        f"{INLINE}-TOTAL_FORMS": 1,
        f"{INLINE}-INITIAL_FORMS": 0,
        f"{INLINE}-MIN_NUM_FORMS": 0,
        f"{INLINE}-MAX_NUM_FORMS": 1000,
        f"{INLINE}-0-image": photo(),
    }

    response = staff_client.post("/admin/catalog/product/add/", data)

    assert response.status_code == 200
    assert "Choose the product&#x27;s brand first" in page_errors(response)
    assert not Product.objects.exists() and not ProductImage.objects.exists() and stored_files() == []


@pytest.mark.parametrize("kind", BAD_FILES)
def test_standalone_bad_file_is_refused_with_its_reason(staff_client, kind):
    data, words = BAD_FILES[kind]
    brand = BrandFactory()

    response = staff_client.post(ADD_URL, {"brand": brand.pk, "image": upload(data, name="shoe.jpg")})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["image"] and words in page_errors(response)
    assert not ProductImage.objects.exists() and stored_files() == []


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_file_on_the_product_page_is_refused_with_its_reason(staff_client, kind):
    data, words = BAD_FILES[kind]
    product = ProductFactory()
    ProductImageFactory(product=product)
    before = stored_files()

    post = add_rows(product_page_data(staff_client, product), upload(data, name="shoe.jpg"))
    response = staff_client.post(f"/admin/catalog/product/{product.pk}/change/", post)

    assert response.status_code == 200
    formset = response.context["inline_admin_formsets"][0].formset
    assert formset.errors[-1]["image"] and words in page_errors(response)
    assert ProductImage.objects.count() == 1 and stored_files() == before


def test_file_over_the_byte_limit_is_refused(staff_client, settings):
    settings.SNEAKERS_UPLOAD_MAX_BYTES = 1000
    noisy = Image.effect_noise((300, 300), 60).convert("RGB")
    buffer = io.BytesIO()
    noisy.save(buffer, "PNG")

    response = staff_client.post(ADD_URL, {"brand": BrandFactory().pk, "image": upload(buffer.getvalue(), "big.png")})

    assert response.status_code == 200
    assert "bytes; the limit is 1000 bytes" in page_errors(response)
    assert not ProductImage.objects.exists()


def test_pixel_limit_follows_the_upload_setting(staff_client, settings):
    settings.SNEAKERS_UPLOAD_MAX_PIXELS = 5_000

    response = staff_client.post(ADD_URL, {"brand": BrandFactory().pk, "image": photo(size=(100, 100))})

    assert response.status_code == 200
    assert "100 x 100 pixels (0.0 megapixels); the limit is 0.005 megapixels" in page_errors(response)


def test_duplicate_photo_is_refused_naming_the_one_in_the_catalog(staff_client):
    product = ProductFactory(name="Air Zoom")
    file = photo()
    existing = ProductImageFactory(product=product, data=file.read())
    file.seek(0)

    response = staff_client.post(ADD_URL, {"brand": BrandFactory().pk, "image": file})

    assert response.status_code == 200
    html = page_errors(response)
    assert "This photo is already in the catalog" in html
    assert f'href="/admin/catalog/productimage/{existing.pk}/change/"' in html and "Air Zoom" in html
    assert ProductImage.objects.count() == 1


def test_duplicate_photo_on_the_product_page_is_refused(staff_client):
    product = ProductFactory()
    file = photo()
    existing = ProductImageFactory(product=ProductFactory(name="Other Shoe"), data=file.read())
    file.seek(0)

    post = add_rows(product_page_data(staff_client, product), file)
    response = staff_client.post(f"/admin/catalog/product/{product.pk}/change/", post)

    assert response.status_code == 200
    assert f"/admin/catalog/productimage/{existing.pk}/change/" in page_errors(response)
    assert ProductImage.objects.count() == 1


def test_one_photo_twice_in_one_save_is_refused(staff_client):
    product = ProductFactory()
    first, second = photo(), photo()

    post = add_rows(product_page_data(staff_client, product), first, second)
    response = staff_client.post(f"/admin/catalog/product/{product.pk}/change/", post)

    assert response.status_code == 200
    assert "Rows 1 and 2 carry the same photo; keep one of them." in page_errors(response)
    assert not ProductImage.objects.exists() and stored_files() == []


def test_replacing_a_photos_file_updates_size_and_hash_and_removes_the_old_file(
    staff_client, django_capture_on_commit_callbacks
):
    product = ProductFactory()
    image = ProductImageFactory(product=product)
    old_name = image.image.name
    file = photo(size=(200, 100))

    with django_capture_on_commit_callbacks(execute=True):  # files leave storage after commit
        response = staff_client.post(
            f"/admin/catalog/productimage/{image.pk}/change/",
            {"product": product.pk, "brand": product.brand_id, "image": file, "source_repo": "admin"},
        )

    assert response.status_code == 302
    image.refresh_from_db()
    assert (image.width, image.height, image.sha256) == (200, 100, sha(file))
    assert image.image.name != old_name
    assert [path.name for path in stored_files()] == [f"{image.sha256}.jpg"]


def test_editing_a_photo_without_a_new_file_keeps_it(staff_client):
    product = ProductFactory()
    image = ProductImageFactory(product=product)
    before = (image.sha256, image.image.name)

    response = staff_client.post(
        f"/admin/catalog/productimage/{image.pk}/change/",
        {"product": product.pk, "brand": product.brand_id, "style": "product-shot"},
    )

    assert response.status_code == 302
    image.refresh_from_db()
    assert (image.sha256, image.image.name, image.style) == (*before, "product-shot")
    assert len(stored_files()) == 1


def test_deleting_a_photo_removes_its_file(staff_client, django_capture_on_commit_callbacks):
    image = ProductImageFactory()
    assert len(stored_files()) == 1

    with django_capture_on_commit_callbacks(execute=True):  # files leave storage after commit
        response = staff_client.post(f"/admin/catalog/productimage/{image.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not ProductImage.objects.exists() and stored_files() == []


def test_deleting_photos_in_bulk_removes_their_files(staff_client, django_capture_on_commit_callbacks):
    kept = ProductImageFactory()
    doomed = [ProductImageFactory(), ProductImageFactory()]

    with django_capture_on_commit_callbacks(execute=True):  # files leave storage after commit
        response = staff_client.post(
            "/admin/catalog/productimage/",
            {"action": "delete_selected", "_selected_action": [image.pk for image in doomed], "post": "yes"},
        )

    assert response.status_code == 302
    assert list(ProductImage.objects.all()) == [kept]
    assert [path.name for path in stored_files()] == [kept.image.name.rsplit("/", 1)[-1]]


def test_deleting_a_photo_on_the_product_page_removes_its_file(staff_client, django_capture_on_commit_callbacks):
    product = ProductFactory()
    doomed, kept = ProductImageFactory(product=product), ProductImageFactory(product=product)

    data = product_page_data(staff_client, product)
    index = next(i for i in range(2) if data[f"{INLINE}-{i}-id"] == doomed.pk)
    data[f"{INLINE}-{index}-DELETE"] = "on"
    with django_capture_on_commit_callbacks(execute=True):  # files leave storage after commit
        response = staff_client.post(f"/admin/catalog/product/{product.pk}/change/", data)

    assert response.status_code == 302
    assert list(ProductImage.objects.all()) == [kept]
    assert len(stored_files()) == 1


def test_changing_a_products_brand_moves_its_photos_to_that_brand(staff_client):
    product = ProductFactory(brand=BrandFactory(slug="nike"))
    images = [ProductImageFactory(product=product), ProductImageFactory(product=product)]
    vans = BrandFactory(slug="vans", name="Vans")

    data = product_page_data(staff_client, product)
    data["brand"] = vans.pk
    response = staff_client.post(f"/admin/catalog/product/{product.pk}/change/", data)

    assert response.status_code == 302
    assert {image.brand for image in ProductImage.objects.filter(pk__in=[i.pk for i in images])} == {vans}


def test_photo_lists_show_thumbnails(staff_client):
    product = ProductFactory()
    image = ProductImageFactory(product=product)

    listing = staff_client.get("/admin/catalog/productimage/").content.decode()
    page = staff_client.get(f"/admin/catalog/product/{product.pk}/change/").content.decode()
    own_page = staff_client.get(f"/admin/catalog/productimage/{image.pk}/change/").content.decode()

    for html in (listing, page, own_page):
        assert f'<img src="{image.image.url}"' in html
    assert "max-width:320px" in own_page and "max-width:96px" in page
