"""App config of the model registry."""

from django.apps import AppConfig


class RegistryConfig(AppConfig):
    """Model versions, the per-process model cache, training, evaluation and activation.

    Sits above ``catalog`` (it trains on catalog rows) and below ``worker`` glue and ``predictions``.
    """

    default_auto_field = "django.db.models.BigAutoField"
    name = "registry"
    verbose_name = "Model registry"
