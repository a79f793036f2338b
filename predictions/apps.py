"""App config of the predictions app."""

from django.apps import AppConfig


class PredictionsConfig(AppConfig):
    """Uploads, prediction jobs and their results, the predict and sweep tasks.

    Uses catalog, accounts and registry selectors and the ``worker.inference`` glue (the layers below it).
    """

    default_auto_field = "django.db.models.BigAutoField"
    name = "predictions"
