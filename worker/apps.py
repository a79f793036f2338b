"""App config of the worker app: the glue between Django rows and ``worker.ml``."""

from django.apps import AppConfig


class WorkerConfig(AppConfig):
    """``worker.inference`` (run a photo through the active model, shape the result) and ``manage.py predict``.

    ``worker.ml`` below it is pure ML with no Django. Tasks live in the apps that own them
    (``predictions.tasks``, ``registry.tasks``).
    """

    default_auto_field = "django.db.models.BigAutoField"
    name = "worker"
