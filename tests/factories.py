"""factory_boy factories for catalog and prediction rows; images are made in memory."""

from __future__ import annotations

import hashlib
import io

import factory
from django.core.files.base import ContentFile
from PIL import Image

from catalog.models import Brand, Product, ProductImage


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), ((seed * 37) % 256, (seed * 91) % 256, (seed * 13) % 256)).save(buffer, "PNG")
    return buffer.getvalue()


class BrandFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Brand
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"brand-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    brand = factory.SubFactory(BrandFactory)
    name = factory.Sequence(lambda n: f"Runner {n}")
    price_usd = factory.Sequence(lambda n: 60 + n)


class ProductImageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProductImage

    brand = factory.LazyAttribute(lambda o: o.product.brand if o.product else BrandFactory())
    product = factory.SubFactory(ProductFactory)
    image = factory.LazyAttribute(lambda o: ContentFile(o.data, name="image.png"))
    sha256 = factory.LazyAttribute(lambda o: hashlib.sha256(o.data).hexdigest())
    width = 32
    height = 32

    class Params:
        data = factory.Sequence(_png)
