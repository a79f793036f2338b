"""The embedded broker's transport (``sneakers.broker``) through kombu, without a worker: what is stored,
when a row goes away, what comes back after a consumer dies, and how settings select it."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import kombu
import kombu.exceptions
import pytest

from sneakers.broker import database_path, process_alive, process_identity

ROOT = Path(__file__).resolve().parents[2]
TRANSPORT = "sneakers.broker:Transport"


def connect(database: Path, **options) -> kombu.Connection:
    """A kombu connection to the broker file (orphans checked on every poll unless told otherwise)."""
    return kombu.Connection(
        f"sqlite:///{database}", transport=TRANSPORT, transport_options={"orphan_check_interval": 0, **options}
    )


def probe_queue() -> kombu.Queue:
    return kombu.Queue("probe", kombu.Exchange("probe"), routing_key="probe")


def publish(connection: kombu.Connection, *bodies: int) -> None:
    queue = probe_queue()
    with connection.Producer() as producer:
        for body in bodies:
            producer.publish({"n": body}, exchange=queue.exchange, routing_key="probe", declare=[queue])


def rows(database: Path) -> list[tuple]:
    """``(body n, owner)`` of every message row, oldest first."""
    import json

    with contextlib.closing(sqlite3.connect(database)) as db:
        found = db.execute("SELECT payload, owner FROM message ORDER BY id").fetchall()
    return [(json.loads(__import__("base64").b64decode(json.loads(p)["body"]))["n"], owner) for p, owner in found]


def test_url_names_the_file():
    assert database_path("sqlite:////tmp/b.sqlite3") == Path("/tmp/b.sqlite3")
    assert database_path("sqlite:///var/b.sqlite3") == Path("var/b.sqlite3")
    for bad in ("sqlite://", "sqlite:///", "redis://localhost/0", "sqla+sqlite:///x"):
        with pytest.raises(ValueError):
            database_path(bad)


def test_ack_deletes_and_reject_requeues_at_the_head(tmp_path):
    database = tmp_path / "b.sqlite3"
    with connect(database) as connection:
        publish(connection, 1, 2, 3)
        channel = connection.channel()
        probe_queue()(channel).declare()
        first = channel.basic_get("probe")
        assert first.payload == {"n": 1} and not first.delivery_info.get("redelivered")
        assert [owner is not None for _, owner in rows(database)] == [True, False, False]
        first.reject(requeue=True)
        assert rows(database) == [(1, None), (2, None), (3, None)]  # back in place, not appended
        again = channel.basic_get("probe")
        assert again.payload == {"n": 1} and again.delivery_info["redelivered"] is True
        again.ack()
        assert [n for n, _ in rows(database)] == [2, 3]
        second = channel.basic_get("probe")
        second.reject(requeue=False)
        assert [n for n, _ in rows(database)] == [3]
        assert probe_queue()(channel).queue_declare().message_count == 1


def test_closing_a_channel_makes_its_unacked_messages_ready_again(tmp_path):
    database = tmp_path / "b.sqlite3"
    with connect(database) as connection:
        publish(connection, 1, 2)
        channel = connection.channel()
        assert channel.basic_get("probe").payload == {"n": 1}
        assert channel.basic_get("probe").payload == {"n": 2}
        assert all(owner is not None for _, owner in rows(database))
        channel.close()  # what a worker's warm shutdown does with prefetched messages
    assert rows(database) == [(1, None), (2, None)]


def _take_one_and_die(database: str) -> None:
    """Child process: reserve one message, then exit without acknowledging or closing (like SIGKILL)."""
    connection = connect(Path(database))
    message = connection.channel().basic_get("probe")
    assert message is not None
    os._exit(0)


def test_rows_of_a_dead_consumer_come_back_and_a_live_ones_stay(tmp_path):
    database = tmp_path / "b.sqlite3"
    with connect(database) as connection:
        publish(connection, 1, 2)
        child = multiprocessing.get_context("fork").Process(target=_take_one_and_die, args=(str(database),))
        child.start()
        child.join(timeout=30)
        assert child.exitcode == 0
        assert rows(database)[0][1] is not None  # reserved by the child, which is gone
        channel = connection.channel()
        held = channel.basic_get("probe")  # the check restores the dead child's row first: oldest first
        assert held.payload == {"n": 1}
        with connect(database) as other_connection:
            other = other_connection.channel()
            taken = other.basic_get("probe")
            assert taken.payload == {"n": 2}
            assert other.basic_get("probe") is None  # n=1 is held by this (live) process: not restored
            taken.ack()
        held.ack()
    assert rows(database) == []


def test_process_identity_tells_dead_from_alive():
    assert process_alive(process_identity()) is True
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    identity = process_identity()
    host = identity.rsplit(":", 2)[0]
    assert process_alive(f"{host}:{dead_pid}:1") is False or dead_pid == os.getpid()
    start = identity.rsplit(":", 1)[1]
    assert process_alive(f"{host}:{os.getpid()}:{start}1") is False  # same pid, another start: pid reused
    assert process_alive(f"elsewhere.example:{os.getpid()}:{start}") is None  # only a timeout can tell


def test_another_hosts_reservation_comes_back_after_the_visibility_timeout(tmp_path):
    database = tmp_path / "b.sqlite3"
    with connect(database, visibility_timeout=60) as connection:
        publish(connection, 1)
        with contextlib.closing(sqlite3.connect(database)) as db, db:
            db.execute("UPDATE message SET owner = 'elsewhere.example:1:1', reserved_at = strftime('%s', 'now')")
        channel = connection.channel()
        assert channel.basic_get("probe") is None  # reserved a moment ago on another host: not taken
        with contextlib.closing(sqlite3.connect(database)) as db, db:
            db.execute("UPDATE message SET reserved_at = reserved_at - 61")
        assert channel.basic_get("probe").payload == {"n": 1}


def test_a_forked_child_publishes_on_its_own_connection(tmp_path):
    database = tmp_path / "b.sqlite3"
    with connect(database) as connection:
        publish(connection, 1)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                publish(connection, 2)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        publish(connection, 3)  # the parent's connection still works after the child exited
    assert [n for n, _ in rows(database)] == [1, 2, 3]


def test_an_unusable_file_is_a_connection_error(tmp_path):
    (tmp_path / "not-a-db.sqlite3").write_bytes(b"this is not an SQLite database" * 100)
    connection = connect(tmp_path / "not-a-db.sqlite3")
    # kombu turns a transport's connection errors into its own OperationalError, which Celery retries
    # and the health check reports; a crash would raise sqlite3's error instead.
    with pytest.raises(kombu.exceptions.OperationalError, match="not a database"):
        connection.ensure_connection(max_retries=1)


def test_settings_default_to_the_embedded_broker_in_the_var_folder(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "CELERY_BROKER_URL"}
    env["SNEAKERS_VAR_DIR"] = str(tmp_path / "var")
    code = (
        "from django.conf import settings as s; print(s.CELERY_BROKER_URL); print(s.CELERY_BROKER_TRANSPORT); "
        "print(s.CELERY_BROKER_TRANSPORT_OPTIONS['polling_interval'])"
    )
    env["DJANGO_SETTINGS_MODULE"] = "sneakers.settings"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    url, transport, interval = out.stdout.split()
    assert url == f"sqlite:///{tmp_path / 'var' / 'broker.sqlite3'}"
    assert transport == TRANSPORT and float(interval) < 1.0


def _consumer(connection: kombu.Connection, received: list, *, prefetch: int = 0):
    """A consumer of ``probe`` on ``connection`` that appends each message (unacknowledged) to ``received``."""
    channel = connection.channel()
    if prefetch:
        channel.basic_qos(0, prefetch, False)
    consumer = kombu.Consumer(
        channel, queues=[probe_queue()], callbacks=[lambda body, message: received.append(message)]
    )
    consumer.consume()
    return channel


def _count_polls(connection: kombu.Connection, monkeypatch) -> list[float]:
    """Record the time of every poll of the file (``Channel._get``) of ``connection``'s transport."""
    from sneakers import broker

    polls: list[float] = []
    real_get = broker.Channel._get

    def get(self, queue, *args, **kwargs):
        polls.append(time.monotonic())
        return real_get(self, queue, *args, **kwargs)

    monkeypatch.setattr(broker.Channel, "_get", get)
    return polls


def test_an_idle_poll_backs_off_to_the_polling_interval(tmp_path, monkeypatch):
    with connect(tmp_path / "b.sqlite3", polling_interval=0.05) as connection:
        received: list = []
        _consumer(connection, received)
        polls = _count_polls(connection, monkeypatch)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            connection.drain_events(timeout=0.5)
        assert time.monotonic() - started >= 0.5
        gaps = [later - earlier for earlier, later in zip(polls, polls[1:], strict=False)]
        assert gaps[0] < 0.03  # first retries come fast...
        assert 0.04 <= max(gaps) < 0.1  # ...then every polling_interval
        assert len(polls) <= 20  # 100 at a steady 5 ms


def test_a_message_is_taken_within_milliseconds_once_the_prefetch_frees(tmp_path):
    database = tmp_path / "b.sqlite3"
    with connect(database, polling_interval=0.5) as connection:
        publish(connection, 1, 2)
        received: list = []
        _consumer(connection, received, prefetch=1)
        connection.drain_events(timeout=2)
        assert [m.payload["n"] for m in received] == [1]

        def ack_later() -> None:
            time.sleep(0.3)
            received[0].ack()
            acked.append(time.monotonic())

        acked: list[float] = []
        thread = threading.Thread(target=ack_later)
        thread.start()
        connection.drain_events(timeout=2)  # prefetch full until the ack: polls at the minimum meanwhile
        delivered = time.monotonic()
        thread.join()
        assert [m.payload["n"] for m in received] == [1, 2]
        assert delivered - acked[0] < 0.1  # not polling_interval (0.5 s) late
