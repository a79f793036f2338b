"""catalog_import_manifest: grouping, unnamed images, bad rows with line numbers, idempotence."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from django.core.management import call_command

from catalog.models import Brand, Product, ProductImage
from catalog.selectors import product_list, training_rows
from catalog.services import catalog_import_manifest
from tests.conftest import image_bytes

HEADER = ["image_path", "brand", "product_name", "price_usd", "source_repo", "source_path", "source_commit"]


def write_dataset(root: Path) -> Path:
    """A tiny dataset in the shared manifest format, with one bad row of each kind."""
    (root / "images" / "nike").mkdir(parents=True)
    (root / "images" / "vans").mkdir(parents=True)
    files = {
        "images/nike/a.png": image_bytes("PNG", color=(255, 0, 0)),
        "images/nike/b.jpg": image_bytes("JPEG", color=(0, 255, 0)),
        "images/nike/c.png": image_bytes("PNG", color=(0, 0, 255)),
        "images/vans/d.jpg": image_bytes("JPEG", color=(10, 10, 10)),
        "images/vans/e.jpg": image_bytes("JPEG", color=(90, 90, 90)),
        "images/vans/broken.jpg": b"this is not an image",
        "images/vans/f.jpg": image_bytes("JPEG", color=(150, 90, 90)),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root.parent / "outside.jpg").write_bytes(image_bytes("JPEG"))
    rows = [
        ["images/nike/a.png", "nike", "Nike Air Max 90 - Men's", "120.00", "repo", "src/a.jpg", "abc"],  # line 2
        ["images/nike/b.jpg", "nike", "Nike Air Max 90 - Men's", "120.00", "repo", "src/b.jpg", "abc"],  # line 3
        ["images/nike/c.png", "nike", "Nike Air Max 90 - Men's", "140.00", "repo", "src/c.jpg", "abc"],  # line 4
        ["images/vans/d.jpg", "vans", "", "", "repo", "src/d.jpg", "abc"],  # line 5: unnamed
        ["images/vans/missing.jpg", "vans", "Old Skool", "60", "repo", "", ""],  # line 6: missing file
        ["images/vans/broken.jpg", "vans", "Old Skool", "60", "repo", "", ""],  # line 7: undecodable
        ["images/vans/e.jpg", "vans", "Old Skool", "-5", "repo", "", ""],  # line 8: bad price
        ["images/vans/f.jpg", "vans", "Old Skool", "60", "repo", "", ""],  # line 9
        ["../outside.jpg", "vans", "Old Skool", "60", "repo", "", ""],  # line 10: leaves the folder
    ]
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return manifest


@pytest.mark.django_db
def test_import_groups_products_keeps_unnamed_images_and_reports_bad_rows(tmp_path):
    manifest = write_dataset(tmp_path / "data")

    report = catalog_import_manifest(manifest_path=manifest)

    assert report.rows == 9
    assert report.images_created == 5
    assert [line for line, _ in report.errors] == [6, 7, 8, 10]
    assert "outside" in report.errors[3][1]
    assert "does not exist" in report.errors[0][1]
    assert "price_usd" in report.errors[2][1]
    assert set(Brand.objects.values_list("slug", flat=True)) == {"nike", "vans"}
    # Same title at two list prices: two editions; same title and price: one product with two images.
    air_max = Product.objects.filter(name="Nike Air Max 90 - Men's").order_by("price_usd")
    assert [str(p.price_usd) for p in air_max] == ["120.00", "140.00"]
    assert air_max[0].images.count() == 2
    unnamed = ProductImage.objects.get(product__isnull=True)
    assert unnamed.brand.slug == "vans" and unnamed.width == 64 and unnamed.height == 48
    # Unnamed images are training data, never shown as products.
    assert {row.brand for row in training_rows()} == {"nike", "vans"}
    assert len(training_rows()) == 5
    assert all(p.name for p in product_list())
    assert unnamed.image.read() == (tmp_path / "data/images/vans/d.jpg").read_bytes()


@pytest.mark.django_db
def test_import_is_idempotent(tmp_path):
    manifest = write_dataset(tmp_path / "data")
    catalog_import_manifest(manifest_path=manifest)
    before = (Product.objects.count(), ProductImage.objects.count(), Brand.objects.count())

    report = catalog_import_manifest(manifest_path=manifest)

    assert report.images_created == 0 and report.images_unchanged == 5 and report.products_created == 0
    assert (Product.objects.count(), ProductImage.objects.count(), Brand.objects.count()) == before


@pytest.mark.django_db
def test_training_rows_group_editions_of_one_title_together(tmp_path):
    catalog_import_manifest(manifest_path=write_dataset(tmp_path / "data"))
    groups = {row.group for row in training_rows() if row.brand == "nike"}
    assert groups == {"nike/Nike Air Max 90 - Men's"}


@pytest.mark.django_db
def test_import_command_prints_summary_and_bad_lines(tmp_path, capsys):
    manifest = write_dataset(tmp_path / "data")
    call_command("import_catalog", str(manifest.parent))
    out, err = capsys.readouterr()
    assert "5 images added" in out and "4 bad rows skipped" in out
    assert "manifest.csv:7:" in err


def test_import_rejects_manifest_without_required_columns(tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("image_path,category\nimages/x.jpg,cat\n")
    with pytest.raises(ValueError, match="brand"):
        catalog_import_manifest(manifest_path=manifest)


def write_model_set(root: Path) -> Path:
    """A tiny set in the sneaker_models layout: named models with several photos, provenance styles."""
    (root / "images" / "new-balance").mkdir(parents=True)
    (root / "extras").mkdir()
    rows, styles = [], []
    for index, style in enumerate(["real-world", "product-shot", "unlabelled"]):
        name = f"images/new-balance/snk_new-balance-550_{index:04d}.jpg"
        (root / name).write_bytes(image_bytes("JPEG", color=(20 * index, 200, 40)))
        rows.append([name, "new-balance", "New Balance 550", "110.00", "repo", f"src/{index}.jpg", "abc"])
        styles.append([name, style])
    asics = "images/new-balance/snk_asics_0000.jpg"
    (root / asics).write_bytes(image_bytes("JPEG", color=(200, 10, 10)))
    rows.append([asics, "asics", "ASICS Gel-Lyte III", "", "repo", "src/a.jpg", "abc"])
    with (root / "manifest.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([HEADER, *rows])
    with (root / "extras" / "provenance.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["image_path", "eyeballed_style"], *styles])
    return root / "manifest.csv"


@pytest.mark.django_db
def test_model_set_imports_models_with_styles_display_names_and_per_image_groups(tmp_path):
    manifest = write_model_set(tmp_path / "models")

    report = catalog_import_manifest(manifest_path=manifest, kind=Product.Kind.MODEL)

    assert report.images_created == 4 and not report.errors
    assert dict(Brand.objects.values_list("slug", "name")) == {"new-balance": "New Balance", "asics": "ASICS"}
    model = Product.objects.get(name="New Balance 550")
    assert model.kind == Product.Kind.MODEL and str(model.price_usd) == "110.00" and model.images.count() == 3
    styles = sorted(ProductImage.objects.filter(product=model).values_list("style", flat=True))
    assert styles == ["", "product-shot", "real-world"]  # "unlabelled" is stored blank
    rows = [row for row in training_rows() if row.brand == "new-balance"]
    assert {row.model for row in rows} == {"New Balance 550"}
    assert len({row.group for row in rows}) == 3  # one group per photo: the model has photos on each side
    assert sorted(row.style for row in rows) == ["", "product-shot", "real-world"]


@pytest.mark.django_db
def test_listing_rows_carry_no_model_and_group_by_title(tmp_path):
    catalog_import_manifest(manifest_path=write_dataset(tmp_path / "data"))

    rows = [row for row in training_rows() if row.brand == "nike"]
    assert {row.model for row in rows} == {None}
    assert {row.group for row in rows} == {"nike/Nike Air Max 90 - Men's"}


def test_import_refuses_an_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="kind must be one of"):
        catalog_import_manifest(manifest_path=write_dataset(tmp_path / "data"), kind="colourway")
