"""The Celery app: configured from Django settings (``CELERY_*``), tasks discovered in installed apps.

Queues by kind of work: ``inference`` (GPU hosts when present), ``training``, ``ingest``,
``default``; routes live in ``settings.CELERY_TASK_ROUTES``.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sneakers.settings")

app = Celery("sneakers")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
