"""App config of the accounts app."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Users and partner credentials; imports nothing from ``predictions``."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"
