"""App config of the predictions app."""

from django.apps import AppConfig


class PredictionsConfig(AppConfig):
    """Uploads, prediction jobs and their results, the predict and sweep tasks; uses catalog, accounts, registry and worker glue."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "predictions"
