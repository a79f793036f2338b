"""Worker processes keep their database connection between tasks (``sneakers.celery.close_old_db_connections``),
closing only a broken or expired one, as Django does around requests; eager tasks are left alone."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from celery import signals
from celery.fixups.django import DjangoWorkerFixup
from django.db import connection

from predictions.models import Prediction
from sneakers.celery import app

pytestmark = pytest.mark.django_db(transaction=True)  # autocommit, as in a worker


class _Task:
    """What the signal handlers see of a task: its request's ``is_eager``."""

    def __init__(self, *, eager: bool) -> None:
        self.request = SimpleNamespace(is_eager=eager)


def _task(*, eager: bool) -> _Task:
    return _Task(eager=eager)


def _run_signals(sender: _Task) -> None:
    signals.task_prerun.send(sender=sender, task_id="t", task=sender, args=(), kwargs={})
    signals.task_postrun.send(sender=sender, task_id="t", task=sender, args=(), kwargs={}, retval=None, state="SUCCESS")


def test_celerys_fixup_is_told_to_leave_connections_open() -> None:
    assert DjangoWorkerFixup(app).db_reuse_max >= 1000


def test_a_task_keeps_a_live_connection_for_the_next() -> None:
    Prediction.objects.count()
    live = connection.connection
    assert live is not None
    _run_signals(_task(eager=False))
    assert connection.connection is live
    Prediction.objects.count()
    assert connection.connection is live  # no reconnect


def test_an_expired_connection_is_closed_around_a_task() -> None:
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        pytest.skip("Django never closes an in-memory SQLite database's connection (it would lose the database)")
    Prediction.objects.count()
    connection.close_at = time.monotonic() - 1  # older than CONN_MAX_AGE
    _run_signals(_task(eager=False))
    assert connection.connection is None
    assert Prediction.objects.count() == 0  # and the next query opens a new one


def test_an_eager_task_leaves_the_callers_connection_alone() -> None:
    Prediction.objects.count()
    live = connection.connection
    connection.close_at = time.monotonic() - 1
    _run_signals(_task(eager=True))
    assert connection.connection is live
