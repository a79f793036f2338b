"""A tiny Celery app for the embedded broker's end-to-end tests (``tests/e2e/test_broker_embedded.py``).

Its broker settings come from Django's (``CELERY_*`` of ``sneakers.settings``, read from the
environment the test gives the worker process), so the worker runs on exactly what ``make run``
configures, while its one task needs no database or model: ``record(tag)`` appends ``"<tag> <pid>\\n"``
to the file named by ``BROKER_PROBE_LOG`` (one ``write`` on an ``O_APPEND`` descriptor, so lines
of concurrent pool processes never mix), after sleeping ``BROKER_PROBE_SLEEP`` seconds (default 0).
"""

from __future__ import annotations

import os
import time

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sneakers.settings")

app = Celery("broker_probe")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_routes = {"broker_probe.record": {"queue": "probe"}}
app.conf.beat_schedule = {}


@app.task(name="broker_probe.record", acks_late=True, reject_on_worker_lost=True)
def record(tag: str) -> None:
    """Append ``"<tag> <pid>"`` to ``BROKER_PROBE_LOG`` (after ``BROKER_PROBE_SLEEP`` seconds)."""
    time.sleep(float(os.environ.get("BROKER_PROBE_SLEEP", "0")))
    descriptor = os.open(os.environ["BROKER_PROBE_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, f"{tag} {os.getpid()}\n".encode())
    finally:
        os.close(descriptor)
