"""End to end on the embedded broker (``sneakers.broker``, ``make run``'s default): a real Celery worker
process, prefork with two pool processes, configured by ``sneakers.settings`` from the environment as
``make run`` does, fed by publisher threads of this process.

Needs no PostgreSQL or Redis: the broker is an SQLite file in the test's folder and the task
(``tests/e2e/broker_probe.py``) writes one line per run to a file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def publisher() -> Celery:
    """A Celery app of this process that publishes to the embedded broker (connections are given the
    broker's URL explicitly: Celery lets a ``CELERY_BROKER_URL`` environment variable override its
    configuration, and the test run's names Redis)."""
    app = Celery("broker-test-publisher", set_as_current=False)
    app.conf.broker_transport = "sneakers.broker:Transport"
    return app


def send(app: Celery, broker_url: str, tags: list[str]) -> None:
    """Publish ``broker_probe.record(tag)`` for each tag, on one connection."""
    with app.connection_for_write(broker_url) as connection:
        for tag in tags:
            app.send_task("broker_probe.record", args=[tag], queue="probe", connection=connection)


@contextlib.contextmanager
def probe_worker(tmp_path: Path, broker_url: str, log: Path, *, sleep: float = 0.0) -> Iterator[subprocess.Popen]:
    """``celery -A tests.e2e.broker_probe worker`` (prefork, 2 processes) in its own process group."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CELERY_", "DATABASE_URL", "SNEAKERS_VAR_DIR"))
    }
    env.update(
        CELERY_BROKER_URL=broker_url,
        SNEAKERS_VAR_DIR=str(tmp_path / "var"),
        BROKER_PROBE_LOG=str(log),
        BROKER_PROBE_SLEEP=str(sleep),
    )
    argv = [sys.executable, "-m", "celery", "-A", "tests.e2e.broker_probe", "worker", "--queues", "probe"]
    argv += ["--concurrency", "2", "--pool", "prefork", "--loglevel", "INFO", "--hostname", f"probe{time.time_ns()}@%h"]
    with (tmp_path / "worker.log").open("a") as out:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            # SIGTERM to the main process (Celery's warm shutdown stops its pool), then SIGKILL to what is left:
            # SIGTERM to the whole group at once can leave the main process blocked on a pool lock.
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=10)


def recorded(log: Path) -> Counter:
    """How many times each tag ran, from the probe's log."""
    if not log.exists():
        return Counter()
    return Counter(line.split()[0] for line in log.read_text().splitlines() if line.strip())


def wait_for(condition, *, timeout: float) -> bool:
    """Poll ``condition()`` every 0.1 s until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def rows_held(database: Path) -> int:
    """Messages reserved by a consumer and not acknowledged."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        return db.execute("SELECT COUNT(*) FROM message WHERE owner IS NOT NULL").fetchone()[0]


def rows_left(database: Path) -> int:
    """Messages still in the broker file (ready or reserved)."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        return db.execute("SELECT COUNT(*) FROM message").fetchone()[0]


def test_concurrent_publishers_every_task_runs_exactly_once(tmp_path):
    database = tmp_path / "broker.sqlite3"
    url = f"sqlite:///{database}"
    log = tmp_path / "runs.log"
    app = publisher()
    tags = [f"t{thread}-{n}" for thread in range(6) for n in range(25)]

    with probe_worker(tmp_path, url, log) as worker:
        threads = [
            threading.Thread(target=send, args=(app, url, [f"t{thread}-{n}" for n in range(25)])) for thread in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done = wait_for(lambda: sum(recorded(log).values()) >= len(tags), timeout=60)
        time.sleep(0.5)  # a duplicate delivery would show up now
        alive = worker.poll() is None
    worker_log = (tmp_path / "worker.log").read_text()
    runs = recorded(log)
    assert done, f"{len(runs)} of {len(tags)} tasks ran; worker log:\n{worker_log[-3000:]}"
    assert set(runs) == set(tags)
    assert max(runs.values()) == 1, [tag for tag, count in runs.items() if count > 1]
    assert alive, worker_log[-3000:]
    assert "Unrecoverable error" not in worker_log and "Traceback" not in worker_log, worker_log[-3000:]
    assert rows_left(database) == 0  # every message was acknowledged, and acknowledging deletes it


def test_messages_held_by_a_killed_worker_are_delivered_again(tmp_path):
    database = tmp_path / "broker.sqlite3"
    url = f"sqlite:///{database}"
    log = tmp_path / "runs.log"
    tags = [f"k{n}" for n in range(16)]
    send(publisher(), url, tags)

    with probe_worker(tmp_path, url, log, sleep=0.4) as worker:
        # Kill while the worker holds messages it has not acknowledged (the pool is busy with them).
        busy = wait_for(lambda: sum(recorded(log).values()) >= 3 and rows_held(database) >= 1, timeout=30)
        os.killpg(worker.pid, signal.SIGKILL)  # main process and pool: no warm shutdown, nothing restored by it
        worker.wait(timeout=10)
    assert busy, (tmp_path / "worker.log").read_text()[-3000:]
    assert rows_held(database) >= 1  # still reserved by the dead worker

    with probe_worker(tmp_path, url, log) as worker:
        done = wait_for(lambda: set(recorded(log)) == set(tags), timeout=40)
        time.sleep(0.3)
        alive = worker.poll() is None
    runs = recorded(log)
    assert done, (
        f"never ran: {sorted(set(tags) - set(runs))}; worker log:\n{(tmp_path / 'worker.log').read_text()[-3000:]}"
    )
    assert alive
    assert rows_left(database) == 0
