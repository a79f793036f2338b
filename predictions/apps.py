"""App config of the predictions app."""

from django.apps import AppConfig


class PredictionsConfig(AppConfig):
    """Uploads, prediction jobs, model versions; may use catalog and accounts selectors."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "predictions"
