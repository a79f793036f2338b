"""App config of the predictions app."""

from django.apps import AppConfig


class PredictionsConfig(AppConfig):
    """Uploads, prediction jobs and their results, the predict and sweep tasks.

    Uses catalog, accounts and registry selectors and the ``worker.inference`` glue (the layers below it).
    """

    default_auto_field = "django.db.models.BigAutoField"
    name = "predictions"

    def ready(self) -> None:
        """Connect the login receiver that moves a visitor's earlier uploads to their account."""
        from django.contrib.auth.signals import user_logged_in

        from predictions.receivers import claim_uploads_on_login

        user_logged_in.connect(claim_uploads_on_login, dispatch_uid="predictions.claim_uploads_on_login")
