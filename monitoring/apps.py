"""App config of the monitoring app (the top layer: it reads predictions, registry and catalog; nothing imports it)."""

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    """Per-prediction signals for drift and latency (``UploadSignal``), ``/api/v1/monitor/``, the admin dashboard
    and Prometheus ``/metrics``."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "monitoring"

    def ready(self) -> None:
        """Connect the ``prediction_finished`` receiver."""
        from monitoring.receivers import record_finished_prediction
        from predictions.signals import prediction_finished

        prediction_finished.connect(record_finished_prediction, dispatch_uid="monitoring.record_finished_prediction")
