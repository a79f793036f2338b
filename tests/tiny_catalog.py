"""A tiny made catalog for model tests: two brands told apart by colour, drawn by the test.

Each brand has named products (two photos each) and unnamed photos, like the real manifest.
"""

from __future__ import annotations

import hashlib
import io
import random

from django.core.files.base import ContentFile
from PIL import Image, ImageDraw

from catalog.models import Brand, Product, ProductImage

BRAND_COLOURS = {"redshoe": (200, 30, 40), "blueshoe": (30, 60, 210)}


def shoe_photo(colour: tuple[int, int, int], seed: int, size: tuple[int, int] = (96, 72), fmt: str = "PNG") -> bytes:
    """A white-background "product shot": a coloured shoe-like ellipse with a sole, jittered by seed."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    w, h = size
    x0, y0 = rng.randint(4, 14), rng.randint(10, 22)
    x1, y1 = w - rng.randint(4, 14), h - rng.randint(14, 24)
    jitter = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in colour)
    draw.ellipse((x0, y0, x1, y1), fill=jitter)
    draw.rectangle((x0, y1 - 6, x1, y1 + 2), fill=(40, 40, 40))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def build_tiny_catalog(*, products_per_brand: int = 4, unnamed_per_brand: int = 8) -> dict[str, list[Product]]:
    """Create brands, products (two images each, USD prices by brand) and unnamed images."""
    created: dict[str, list[Product]] = {}
    seed = 0
    for index, (slug, colour) in enumerate(BRAND_COLOURS.items()):
        brand = Brand.objects.create(slug=slug, name=slug.title())
        created[slug] = []
        for p in range(products_per_brand):
            product = Product.objects.create(brand=brand, name=f"{slug} model {p}", price_usd=60 + 80 * index + 5 * p)
            created[slug].append(product)
            for _ in range(2):
                seed += 1
                _add_image(brand, product, shoe_photo(colour, seed))
        for _ in range(unnamed_per_brand):
            seed += 1
            _add_image(brand, None, shoe_photo(colour, seed))
    return created


def _add_image(brand: Brand, product: Product | None, data: bytes) -> None:
    sha = hashlib.sha256(data).hexdigest()
    image = ProductImage(brand=brand, product=product, sha256=sha, width=96, height=72)
    image.image.save("shot.png", ContentFile(data), save=False)
    image.save()
