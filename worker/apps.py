"""App config of the worker app (Celery tasks, ML glue and the ML management commands)."""

from django.apps import AppConfig


class WorkerConfig(AppConfig):
    """Celery tasks (``worker.tasks``) and the commands ``train``, ``predict``, ``bootstrap``."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "worker"
