"""Catalog read API (``/api/v1/brands/``, ``/api/v1/products/``): plain read-only viewsets."""

from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.permissions import AllowAny

from catalog.models import Brand, Product, ProductImage
from catalog.selectors import brand_list, product_list
from sneakers.openapi import BAD_FILTER, NOT_FOUND


class BrandSerializer(serializers.ModelSerializer):
    """A brand: ``slug`` is the label predictions use."""

    class Meta:
        model = Brand
        fields = ("id", "slug", "name")


class ProductImageSerializer(serializers.ModelSerializer):
    """A product image: absolute URL and size in pixels."""

    url = serializers.SerializerMethodField()

    class Meta:
        model = ProductImage
        fields = ("url", "width", "height")

    def get_url(self, obj: ProductImage) -> str:
        request = self.context.get("request")
        url = obj.image.url
        return request.build_absolute_uri(url) if request else url


class ProductSerializer(serializers.ModelSerializer):
    """A listed product with its brand, list price in USD and image URLs."""

    brand = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    price_usd = serializers.DecimalField(max_digits=10, decimal_places=2, coerce_to_string=False, allow_null=True)
    images = ProductImageSerializer(many=True, read_only=True)

    class Meta:
        model = Product
        fields = ("id", "name", "brand", "style_code", "colourway", "price_usd", "images")


class ProductFilter(filters.FilterSet):
    """``?brand=<slug>``, ``?min_price=``/``?max_price=`` (USD) and ``?q=`` (name contains)."""

    brand = filters.CharFilter(field_name="brand__slug")
    min_price = filters.NumberFilter(field_name="price_usd", lookup_expr="gte")
    max_price = filters.NumberFilter(field_name="price_usd", lookup_expr="lte")
    q = filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = Product
        fields = ("brand", "min_price", "max_price", "q")


@extend_schema_view(
    list=extend_schema(responses={200: BrandSerializer(many=True), 404: NOT_FOUND}),
    retrieve=extend_schema(responses={200: BrandSerializer, 404: NOT_FOUND}),
)
class BrandViewSet(viewsets.ReadOnlyModelViewSet):
    """The brands the catalog knows (public, paginated)."""

    serializer_class = BrandSerializer
    permission_classes = [AllowAny]
    filter_backends: list = []

    def get_queryset(self):
        return brand_list()


@extend_schema_view(
    list=extend_schema(
        parameters=[OpenApiParameter("brand", str, description="Brand slug.")],
        responses={200: ProductSerializer(many=True), 400: BAD_FILTER, 404: NOT_FOUND},
    ),
    retrieve=extend_schema(responses={200: ProductSerializer, 404: NOT_FOUND}),
)
class ProductViewSet(viewsets.ReadOnlyModelViewSet):
    """Listed catalog products with prices and image URLs (public, paginated, filterable)."""

    serializer_class = ProductSerializer
    permission_classes = [AllowAny]
    filterset_class = ProductFilter

    def get_queryset(self):
        return product_list()
