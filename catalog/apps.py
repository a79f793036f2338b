"""App config of the catalog app."""

from django.apps import AppConfig


class CatalogConfig(AppConfig):
    """Brands, products, product images; imports nothing from the other apps."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "catalog"
