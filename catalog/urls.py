"""Site routes of the catalog: product pages (the read API is ``catalog.api_urls``)."""

from django.urls import path

from catalog import views

app_name = "catalog"

urlpatterns = [
    path("products/<int:product_id>/", views.product_detail_view, name="product"),
]
