"""App config of the partners app."""

from django.apps import AppConfig


class PartnersConfig(AppConfig):
    """Batches, webhook endpoints and deliveries, per-partner API quotas and rate limits, the developers' page.

    Sits above ``predictions`` (it imports predictions; predictions never imports it): it learns of finished
    predictions through ``predictions.signals.prediction_finished``.
    """

    default_auto_field = "django.db.models.BigAutoField"
    name = "partners"

    def ready(self) -> None:
        """Connect the receiver that turns finished predictions into webhook deliveries and batch progress."""
        from partners.receivers import on_prediction_finished
        from predictions.signals import prediction_finished

        prediction_finished.connect(on_prediction_finished, dispatch_uid="partners.on_prediction_finished")
