"""Site pages of the catalog: a product's page (photos, brand, model, price with its kind and source, the
shop link when the catalog has one, more like this). Similar products in a result link here."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from catalog.models import Product
from catalog.selectors import product_get_listed, product_list_more_like

PHOTOS_SHOWN = 12
"""Photos on a product page (a named model can have over 100)."""


@require_GET
def product_detail_view(request: HttpRequest, product_id: int) -> HttpResponse:
    """A listed product's page; 404 for unknown or unlisted products."""
    try:
        product = product_get_listed(product_id=product_id)
    except Product.DoesNotExist as exc:
        raise Http404("No such product.") from exc
    photos = list(product.images.all())
    return render(
        request,
        "catalog/product.html",
        {
            "product": product,
            "photos": photos[:PHOTOS_SHOWN],
            "photo_count": len(photos),
            "more": product_list_more_like(product=product),
        },
    )
