"""Progress of a ``TrainingRun`` as the job goes: stage, done of total, time left, log tail, heartbeat.

``RunProgress`` is the ``(stage, done, total)`` callback ``worker.ml.training.run.train_model`` (and the
import and evaluation loops) call, plus a ``log`` callback; it writes the row at most every
``min_interval`` seconds (``SNEAKERS_TRAINING_PROGRESS_SECONDS``, 2 s by default) and at every stage
change, so a training of ~10,000 photos writes a few hundred small updates, not one per photo.
``heartbeat`` touches ``heartbeat_at`` from a thread while a job runs, so a run whose worker died is
told apart from one in a long stage that reports nothing (``registry.services.training_run_fail_stale``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from registry.models import TrainingRun

logger = logging.getLogger(__name__)


def stage_eta(*, done: int, total: int, seconds: float) -> float | None:
    """Seconds left in a stage at the rate so far: ``seconds * (total - done) / done``.

    None before the first unit is done (no rate yet) or when ``total`` is unknown (0); 0.0 when done.
    A linear extrapolation: right for stages of alike units (photos, rows, epochs), rough for the
    fitting steps, which differ in length.
    """
    if total <= 0 or done <= 0:
        return None
    if done >= total:
        return 0.0
    return round(seconds * (total - done) / done, 1)


class RunProgress:
    """Callbacks that record a run's progress on its ``TrainingRun`` row.

    Call the object as ``progress(stage, done, total)`` (``TrainingRun.STAGES`` names) and ``progress.log(line)``;
    ``flush()`` writes whatever is pending (called at the end of a job). ``clock`` is ``time.monotonic``
    unless a test passes its own.
    """

    def __init__(
        self,
        run: TrainingRun,
        *,
        min_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        echo: Callable[[str, int, int], None] | None = None,
    ) -> None:
        self.run = run
        self.min_interval = settings.SNEAKERS_TRAINING_PROGRESS_SECONDS if min_interval is None else min_interval
        self.clock = clock
        self.echo = echo
        self._stage_clock = clock()
        self._written = float("-inf")
        self._lines: list[str] = [run.log] if run.log else []
        self._dirty = False

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Record ``done`` of ``total`` in ``stage``; a new stage closes the previous one in ``run.stages``."""
        run, now = self.run, self.clock()
        if self.echo is not None:
            self.echo(stage, done, total)
        if stage != run.stage:
            if run.stage:
                run.stages = [
                    *run.stages,
                    {"stage": run.stage, "total": run.total, "seconds": round(now - self._stage_clock, 1)},
                ]
            run.stage = stage
            run.stage_started_at = timezone.now()
            self._stage_clock = now
            self._written = float("-inf")  # a stage change is always written
        run.done, run.total = max(0, int(done)), max(0, int(total))
        run.eta_seconds = stage_eta(done=run.done, total=run.total, seconds=now - self._stage_clock)
        self._dirty = True
        if now - self._written >= self.min_interval:
            self.flush()

    def log(self, line: str) -> None:
        """Append a line (with the time) to the run's log; only the last ``LOG_TAIL_CHARS`` characters are kept."""
        logger.info("run %s: %s", self.run.pk, line)
        self._lines.append(f"{timezone.localtime():%H:%M:%S} {line}")
        text = "\n".join(self._lines)
        if len(text) > TrainingRun.LOG_TAIL_CHARS:
            text = text[-TrainingRun.LOG_TAIL_CHARS :]
            self._lines = [text]
        self.run.log = text
        self._dirty = True
        if self.clock() - self._written >= self.min_interval:
            self.flush()

    def flush(self) -> None:
        """Write the progress fields to the row now (when something changed)."""
        if not self._dirty:
            return
        run = self.run
        TrainingRun.objects.filter(id=run.id).update(
            stage=run.stage,
            done=run.done,
            total=run.total,
            eta_seconds=run.eta_seconds,
            stage_started_at=run.stage_started_at,
            stages=run.stages,
            log=run.log,
            heartbeat_at=timezone.now(),
        )
        self._written = self.clock()
        self._dirty = False

    def close_stage(self) -> None:
        """Record the current stage's time in ``run.stages`` (at the end of a job) and write the row."""
        run = self.run
        if run.stage:
            seconds = round(self.clock() - self._stage_clock, 1)
            run.stages = [*run.stages, {"stage": run.stage, "total": run.total, "seconds": seconds}]
            self._dirty = True
        self.flush()


@contextmanager
def heartbeat(run: TrainingRun, *, every: float | None = None) -> Iterator[None]:
    """Touch ``run.heartbeat_at`` every ``every`` seconds (``TrainingRun.HEARTBEAT_SECONDS``) from a daemon
    thread while the block runs; the thread uses and closes its own database connection."""
    every = TrainingRun.HEARTBEAT_SECONDS if every is None else every
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(every):
                try:
                    TrainingRun.objects.filter(id=run.id).update(heartbeat_at=timezone.now())
                except Exception:  # a database blip must not end the job; the next beat tries again
                    logger.warning("heartbeat of run %s not written", run.id, exc_info=True)
                    close_old_connections()
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"run-{run.id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
