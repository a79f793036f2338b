"""Celery tasks (``worker.tasks``) and the Django-free ML package (``worker.ml``)."""
