"""One status watcher per web process for long polling (``predictions.selectors.prediction_wait_terminal``).

Every request that waits for a prediction registers here and sleeps on its own ``threading.Event``; a single
daemon thread reads the status of all registered predictions in one query every ``SNEAKERS_LONG_POLL_INTERVAL``
seconds and wakes the requests whose prediction finished (or moved on from the status they know). The database
is read at that rate per process however many requests wait, where each waiting request used to read it on its
own: with 4 clients long-polling, gunicorn spent about 10 ms of CPU per photo on those reads (README "Speed",
fifth round). Reading the database rather than listening for a message from the worker works the same with every
broker and database and across hosts.

The thread opens its own database connection (Django keeps one per thread) and closes it whenever nobody waits,
so an idle web process holds no extra connection, and a test database can be dropped.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connections

from predictions.models import Prediction

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _Waiter:
    """One waiting request: its prediction, the status it knows ("" = wait for the end only) and its event."""

    prediction_id: uuid.UUID
    known_status: str
    done: threading.Event = field(default_factory=threading.Event)

    def settled_by(self, status: str | None) -> bool:
        """Whether ``status`` (``None``: the row is gone) ends this wait."""
        if status is None or status in Prediction.TERMINAL:
            return True
        return bool(self.known_status) and status != self.known_status


class StatusWatcher:
    """Wakes waiting requests when their prediction's status changes; one per process (``watcher()``).

    ``wait`` is safe to call from any number of threads. The reading thread starts on the first wait and sleeps on
    a condition while nobody waits. A failed read (database unreachable) is logged and retried at the next tick; the
    waiting requests then run out their time and answer with the status they had, as a plain poll would.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._someone_waits = threading.Condition(self._lock)
        self._waiters: set[_Waiter] = set()
        self._thread: threading.Thread | None = None

    def wait(self, *, prediction_id: uuid.UUID, known_status: str, timeout: float) -> bool:
        """Block until the prediction is finished (or, with ``known_status``, has another status), at most
        ``timeout`` seconds.

        Returns:
            True when the status changed as asked, False when the time ran out.
        """
        waiter = _Waiter(prediction_id=prediction_id, known_status=known_status)
        with self._lock:
            self._waiters.add(waiter)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="long-poll-watcher", daemon=True)
                self._thread.start()
            self._someone_waits.notify()
        try:
            return waiter.done.wait(timeout)
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    def _run(self) -> None:
        """The reading thread: one query per tick for every waiting request's prediction."""
        while True:
            with self._lock:
                if not self._waiters:
                    connections.close_all()  # this thread's connections only
                while not self._waiters:
                    self._someone_waits.wait()
                waiters = list(self._waiters)
            try:
                self._tick(waiters)
            except Exception:  # the database went away: keep the thread, try again next tick
                logger.exception("long polling: reading prediction statuses failed")
                connections.close_all()
            time.sleep(settings.SNEAKERS_LONG_POLL_INTERVAL)

    @staticmethod
    def _tick(waiters: list[_Waiter]) -> None:
        """Read the statuses of ``waiters``' predictions in one query and wake those that are settled."""
        ids = {waiter.prediction_id for waiter in waiters}
        statuses = dict(Prediction.objects.filter(id__in=ids).values_list("id", "status"))
        for waiter in waiters:
            if waiter.settled_by(statuses.get(waiter.prediction_id)):
                waiter.done.set()


_watcher = StatusWatcher()


def watcher() -> StatusWatcher:
    """This process's ``StatusWatcher``."""
    return _watcher
