"""The Celery app: configured from Django settings (``CELERY_*``), tasks discovered in installed apps.

Queues by kind of work: ``inference`` (GPU hosts when present), ``training``, ``ingest``,
``default``; routes live in ``settings.CELERY_TASK_ROUTES``.
"""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sneakers.settings")

app = Celery("sneakers")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.task_prerun.connect
@signals.task_postrun.connect
def close_old_db_connections(sender: object = None, **_: object) -> None:
    """Before and after each task, close this process's database connections that are broken or older than
    ``CONN_MAX_AGE`` (``django.db.close_old_connections``: what Django does around each request), and keep the
    others for the next task.

    Celery's Django fixup would instead close every connection before and after each task unless
    ``CELERY_DB_REUSE_MAX`` is set (``celery.fixups.django.DjangoWorkerFixup.close_database``), which costs a
    reconnect per job: on the embedded SQLite database about 3 % of an inference worker's CPU per photo
    (py-spy, README "Speed", sixth round), on PostgreSQL a TCP connection and authentication. Settings set
    ``CELERY_DB_REUSE_MAX`` so the fixup leaves them to this handler. Eagerly run tasks (tests, ``.apply()``)
    run inside the caller's request or transaction and are left alone, as the fixup leaves them.
    """
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
