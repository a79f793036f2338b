"""The embedded Celery broker: a kombu virtual transport that keeps messages in one SQLite file.

``make run``'s default (``CELERY_BROKER_URL=sqlite:///var/broker.sqlite3``; settings select this transport
for the ``sqlite://`` scheme through ``CELERY_BROKER_TRANSPORT``). It needs no server, yet web, beat and
worker are separate processes that share the queue through the file.

Why not kombu's own embedded transports (kombu 5.7.0, read in its source):

- ``filesystem://`` writes a message file in place (``open(..., "wb")`` then ``write``) and readers list
  the folder without taking the writer's lock, so a worker can read a file that is still empty or half
  written and die with ``JSONDecodeError`` (kombu issue 1551; it took ``make run``'s worker down after
  13 minutes here). A delivered message is moved out of the folder and lives only in the worker's
  memory until acknowledged, so a killed worker loses it.
- ``sqla+sqlite://`` (SQLAlchemy) is atomic, but marks a delivered message ``visible = False`` and never
  deletes or restores it: the table grows by one row per message forever, and a message whose worker
  was killed (SIGKILL, out of memory) is never delivered again.

Both are polled once a second by default, which caps a worker at about one short job per second: after
a job is acknowledged the worker sleeps up to ``polling_interval`` before it looks for the next one.

This transport keeps kombu's virtual transport (routing, QoS, Celery integration) and changes the
storage, following the SQLite documentation (https://www.sqlite.org/wal.html,
https://www.sqlite.org/lang_returning.html):

- one row per message, written by one ``INSERT`` (a transaction: a reader sees all of it or nothing);
  WAL journal, so readers never block the writer; ``busy_timeout`` so concurrent writers wait instead
  of failing;
- delivery reserves the oldest ready row with one ``UPDATE ... RETURNING`` that records the owner (host,
  pid and the process's start time); acknowledging deletes the row; rejecting with requeue, or
  closing a channel with unacknowledged messages (a worker's warm shutdown), clears the owner, so the
  row goes back to the head of its queue;
- rows owned by a process that no longer exists on this host (killed, crashed) are made ready again by
  any consumer, checked every ``orphan_check_interval`` seconds (default 5); rows owned by another
  host are made ready after ``visibility_timeout`` seconds (default 3 hours, as the Redis transport);
- queue bindings are stored in the file too (like the filesystem transport's control folder), so a
  process that never declared a queue still routes to it;
- the poll is one indexed ``SELECT`` per queue, so the default ``polling_interval`` is 0.05 s, not 1 s, and
  a worker whose pool just freed up, or that just had a job, polls again within 5 ms (``drain_events``).

Not supported: fanout exchanges (so Celery's remote control, ``celery inspect``, gossip and events are
off on this broker; use Redis for them), priorities and message TTLs. One machine only: SQLite's
locking needs a local filesystem, not NFS.

Transport options (``CELERY_BROKER_TRANSPORT_OPTIONS``): ``polling_interval`` (seconds, 0.05: the longest
wait between polls; ``Transport.drain_events`` starts at ``polling_interval_min``, 0.005, and doubles),
``busy_timeout`` (seconds a writer waits for the file's lock, 30), ``synchronous`` (SQLite's
``PRAGMA synchronous``: ``FULL`` (the transport's default) syncs every commit to disk; ``NORMAL`` (what
``sneakers.settings`` passes, ``CELERY_BROKER_SYNCHRONOUS``) may drop the last commits on power loss but never on
a process crash, and the sweeper sends the jobs of lost messages again), ``orphan_check_interval`` (5),
``visibility_timeout`` (10800). Figures (publish and take costs, against kombu's SQLAlchemy transport, the soak
test): README "Speed".
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from pathlib import Path
from queue import Empty
from typing import Any, Final

from kombu.transport import virtual
from kombu.utils.json import dumps, loads

SCHEME: Final = "sqlite://"
"""URL prefix of this broker: ``sqlite:///relative/path`` or ``sqlite:////absolute/path`` (SQLAlchemy's
spelling)."""

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    payload TEXT NOT NULL,
    owner TEXT,
    reserved_at REAL,
    deliveries INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS message_ready ON message (queue, id) WHERE owner IS NULL;
CREATE INDEX IF NOT EXISTS message_owner ON message (owner) WHERE owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS binding (
    exchange TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    pattern TEXT NOT NULL,
    queue TEXT NOT NULL,
    PRIMARY KEY (exchange, routing_key, pattern, queue)
);
"""
"""Tables of the broker file. ``owner`` is NULL for a ready message, else the reserving process
(``process_identity``); ``deliveries`` counts reservations (a message reserved before is marked
redelivered)."""

SYNCHRONOUS_MODES: Final = ("OFF", "NORMAL", "FULL", "EXTRA")
"""Values of SQLite's ``PRAGMA synchronous`` accepted in the ``synchronous`` option."""

_abandoned: list[sqlite3.Connection] = []
"""Connections inherited across ``fork``: kept referenced and never closed in the child, as the SQLite
documentation asks (https://www.sqlite.org/howtocorrupt.html, section 2.6)."""


def database_path(url: str) -> Path:
    """The SQLite file named by a broker URL: ``sqlite:///var/b.sqlite3`` -> ``var/b.sqlite3``,
    ``sqlite:////tmp/b.sqlite3`` -> ``/tmp/b.sqlite3``.

    Raises:
        ValueError: the URL does not start with ``sqlite:///`` or names no file.
    """
    if not url.startswith(SCHEME + "/"):
        raise ValueError(f"not an embedded broker URL (expected sqlite:///PATH): {url!r}")
    path = url[len(SCHEME) + 1 :]
    if not path or path.endswith("/"):
        raise ValueError(f"the broker URL names no file: {url!r}")
    return Path(path)


def _start_ticks(pid: int) -> str | None:
    """Start time of a process in clock ticks after boot (field 22 of ``/proc/<pid>/stat``, proc(5)),
    or None when it does not exist. Raises ``OSError`` when ``/proc`` is not available."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except FileNotFoundError:
        if not Path("/proc/self/stat").exists():
            raise
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    return stat.rsplit(")", 1)[1].split()[19]


def process_identity(pid: int | None = None) -> str:
    """``host:pid:start`` naming a process for good: a pid reused after the process ended gets
    another start time. ``start`` is ``-`` where ``/proc`` is missing (then only the pid is checked)."""
    pid = os.getpid() if pid is None else pid
    try:
        start = _start_ticks(pid) or "-"
    except OSError:
        start = "-"
    return f"{socket.gethostname()}:{pid}:{start}"


def process_alive(identity: str) -> bool | None:
    """Whether the process named by ``process_identity`` still runs: True, False, or None when it is
    on another host (or the identity cannot be read) and only a timeout can tell."""
    try:
        host, pid_text, start = identity.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    try:
        current = _start_ticks(pid)
    except OSError:
        current = start
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
    if current is None:
        return False
    return start == "-" or current == start


class QoS(virtual.QoS):
    """Acknowledgement in the file: ``ack`` deletes the row, ``reject`` deletes or requeues it, and
    restoring unacknowledged messages (channel closed with messages still held) makes their rows ready
    again in place, keeping their position, instead of publishing copies."""

    def ack(self, delivery_tag: Any) -> None:
        """Delete the message's row, then forget the delivery."""
        self.channel._settle(delivery_tag, requeue=False)
        super().ack(delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        """Delete the row, or with ``requeue`` make it ready again at the head of its queue."""
        self.channel._settle(delivery_tag, requeue=requeue)
        self._quick_ack(delivery_tag)

    def restore_unacked(self) -> list[tuple[BaseException, Any]]:
        """Make every held, unacknowledged message ready again; returns the errors (none expected)."""
        self._flush()
        errors = []
        while self._delivered:
            try:
                tag, message = self._delivered.popitem()
            except KeyError:  # pragma: no cover - emptied by another thread
                break
            try:
                self.channel._settle(tag, requeue=True)
            except Exception as exc:  # the file went away or is locked for longer than busy_timeout
                errors.append((exc, message))
        self._delivered.clear()
        return errors


class Channel(virtual.Channel):
    """A virtual channel whose queues are rows of the SQLite file (see the module docstring).

    One SQLite connection per channel and process (opened again in a forked child), used under a lock,
    since Celery may acknowledge from a pool thread while the consumer thread polls.
    """

    QoS = QoS
    supports_fanout = False

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        options = connection.client.transport_options
        self._path = database_path(connection.client.hostname or "")
        self._busy_timeout = float(options.get("busy_timeout", 30.0))
        synchronous = str(options.get("synchronous", "FULL")).upper()
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, got {synchronous!r}")
        self._synchronous = synchronous
        self._orphan_interval = float(options.get("orphan_check_interval", 5.0))
        self._visibility_timeout = float(options.get("visibility_timeout", 3 * 3600))
        self._lock = threading.RLock()
        self._db_conn: sqlite3.Connection | None = None
        self._db_pid = 0
        self._identity = ""
        self._reserved: dict[Any, int] = {}
        self._no_ack_queues: set[str] = set()
        self._orphans_checked = 0.0
        super().__init__(connection, **kwargs)
        with self._lock:
            self._db()  # fail at connect time (unwritable folder, not a database), not at the first message

    # --- the file ------------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        """This process's connection to the file, opened (and the tables made) on first use; call it
        holding ``self._lock``."""
        if self._db_conn is not None and self._db_pid == os.getpid():
            return self._db_conn
        if self._db_conn is not None:
            _abandoned.append(self._db_conn)  # inherited through fork: never close it here
            self._reserved.clear()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(self._path), timeout=self._busy_timeout, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {self._synchronous}")
        db.executescript(SCHEMA)
        self._db_conn, self._db_pid, self._identity = db, os.getpid(), process_identity()
        return db

    def _execute(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        """Run one statement (its own transaction) under the channel's lock; all result rows."""
        with self._lock:
            return self._db().execute(sql, parameters).fetchall()

    # --- kombu's virtual channel interface -----------------------------------------------------

    def _put(self, queue: str, message: dict, **kwargs: Any) -> None:
        """Append a message to ``queue`` (one ``INSERT``)."""
        self._execute("INSERT INTO message (queue, payload) VALUES (?, ?)", (queue, dumps(message)))

    def _get(self, queue: str, timeout: float | None = None) -> dict:
        """Reserve and return the oldest ready message of ``queue``; ``queue.Empty`` when none.

        Messages of a queue consumed with ``no_ack`` are deleted instead of reserved.
        """
        self._maybe_restore_orphans()
        if not self._execute("SELECT 1 FROM message WHERE queue = ? AND owner IS NULL LIMIT 1", (queue,)):
            raise Empty()  # the common idle case: a read, no write lock
        pick = "(SELECT id FROM message WHERE queue = ? AND owner IS NULL ORDER BY id LIMIT 1)"
        if queue in self._no_ack_queues:
            rows = self._execute(f"DELETE FROM message WHERE id = {pick} RETURNING id, payload, deliveries", (queue,))
        else:
            rows = self._execute(
                "UPDATE message SET owner = ?, reserved_at = ?, deliveries = deliveries + 1 "
                f"WHERE id = {pick} RETURNING id, payload, deliveries - 1",
                (self._identity, time.time(), queue),
            )
        if not rows:
            raise Empty()  # another consumer took it between the two statements
        row_id, payload, earlier = rows[0]
        message = loads(payload)
        if earlier:  # marked as kombu's Redis transport marks a restored message
            message["properties"].setdefault("delivery_info", {})["redelivered"] = True
            if isinstance(message.get("headers"), dict):
                message["headers"]["redelivered"] = True
        if queue not in self._no_ack_queues:
            with self._lock:
                self._reserved[message["properties"]["delivery_tag"]] = row_id
        return message

    def _size(self, queue: str) -> int:
        """Ready (not reserved) messages of ``queue``."""
        return int(self._execute("SELECT COUNT(*) FROM message WHERE queue = ? AND owner IS NULL", (queue,))[0][0])

    def _purge(self, queue: str) -> int:
        """Delete the ready messages of ``queue``; how many."""
        with self._lock:
            return self._db().execute("DELETE FROM message WHERE queue = ? AND owner IS NULL", (queue,)).rowcount

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        """Forget ``queue``: its ready messages and its bindings."""
        self._purge(queue)
        self._execute("DELETE FROM binding WHERE queue = ?", (queue,))

    def queue_bind(self, queue: str, exchange: str | None = None, routing_key: str = "", arguments=None, **kwargs):
        """Bind as kombu does, and store the binding in the file for processes that never declared it."""
        exchange = exchange or "amq.direct"
        super().queue_bind(queue, exchange, routing_key, arguments, **kwargs)
        routing_key_, pattern, queue_ = self.typeof(exchange).prepare_bind(queue, exchange, routing_key, arguments)
        self._execute(
            "INSERT OR IGNORE INTO binding (exchange, routing_key, pattern, queue) VALUES (?, ?, ?, ?)",
            (exchange, routing_key_ or "", pattern or "", queue_),
        )

    def get_table(self, exchange: str) -> list[tuple[str, str, str]]:
        """``(routing key, pattern, queue)`` bindings of ``exchange``: this process's and the file's."""
        stored = self._execute("SELECT routing_key, pattern, queue FROM binding WHERE exchange = ?", (exchange,))
        table = list(self.state.exchanges.get(exchange, {}).get("table", []))
        return table + [row for row in stored if row not in table]

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        """Consume as kombu does; remember ``no_ack`` queues, whose messages are deleted when taken."""
        if no_ack:
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        """Get one message synchronously (kombu's ``basic_get``), honouring ``no_ack`` in the file."""
        if not no_ack:
            return super().basic_get(queue, no_ack=False, **kwargs)
        self._no_ack_queues.add(queue)
        try:
            return super().basic_get(queue, no_ack=True, **kwargs)
        finally:
            self._no_ack_queues.discard(queue)

    def close(self) -> None:
        """Close as kombu does (unacknowledged messages are made ready again), then the file."""
        try:
            super().close()
        finally:
            with self._lock:
                if self._db_conn is not None and self._db_pid == os.getpid():
                    self._db_conn.close()
                self._db_conn = None

    # --- acknowledgement and recovery ----------------------------------------------------------

    def _settle(self, delivery_tag: Any, *, requeue: bool) -> None:
        """Delete the row of a delivered message, or make it ready again (``requeue``)."""
        with self._lock:
            row_id = self._reserved.pop(delivery_tag, None)
            if row_id is None or self._db_pid != os.getpid():
                return  # no_ack delivery, already settled, or reserved by the parent before a fork
            if requeue:
                self._db().execute(
                    "UPDATE message SET owner = NULL, reserved_at = NULL WHERE id = ? AND owner = ?",
                    (row_id, self._identity),
                )
            else:
                self._db().execute("DELETE FROM message WHERE id = ? AND owner = ?", (row_id, self._identity))

    def _maybe_restore_orphans(self) -> None:
        """At most every ``orphan_check_interval`` s: make ready the rows of owners that are gone."""
        now = time.monotonic()
        if now - self._orphans_checked < self._orphan_interval:
            return
        self._orphans_checked = now
        with self._lock:
            restore_orphans(self._db(), visibility_timeout=self._visibility_timeout)


def restore_orphans(db: sqlite3.Connection, *, visibility_timeout: float) -> int:
    """Make ready again the reserved rows whose owner process is gone (``process_alive`` False), and
    those of owners on other hosts reserved more than ``visibility_timeout`` seconds ago; how many.

    Args:
        db: a connection to the broker file (autocommit: each statement is its own transaction).
        visibility_timeout: seconds after which another host's reservation is presumed lost.
    """
    owners = [row[0] for row in db.execute("SELECT DISTINCT owner FROM message WHERE owner IS NOT NULL")]
    restored = 0
    for owner in owners:
        alive = process_alive(owner)
        if alive is False:
            restored += db.execute(
                "UPDATE message SET owner = NULL, reserved_at = NULL WHERE owner = ?", (owner,)
            ).rowcount
        elif alive is None:
            restored += db.execute(
                "UPDATE message SET owner = NULL, reserved_at = NULL WHERE owner = ? AND reserved_at < ?",
                (owner, time.time() - visibility_timeout),
            ).rowcount
    return restored


class Transport(virtual.Transport):
    """kombu transport of the embedded broker (``CELERY_BROKER_TRANSPORT = "sneakers.broker:Transport"``).

    SQLite errors (a lock held longer than ``busy_timeout``, an unreadable file) count as connection
    errors, so Celery reconnects and a publisher keeps the job for the sweeper instead of crashing.
    """

    Channel = Channel
    polling_interval = 0.05
    can_parse_url = True
    default_port = 0
    driver_type = "sqlite"
    driver_name = "sqlite3"
    connection_errors = (*virtual.Transport.connection_errors, sqlite3.DatabaseError)
    implements = virtual.Transport.implements.extend(exchange_type=frozenset(["direct", "topic"]))

    polling_interval_min = 0.005

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        minimum = client.transport_options.get("polling_interval_min")
        if minimum is not None:
            self.polling_interval_min = float(minimum)

    def driver_version(self) -> str:
        """The SQLite library's version."""
        return sqlite3.sqlite_version

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        """Deliver one message, polling the file until there is one or ``timeout`` seconds have passed.

        kombu's virtual transport sleeps ``polling_interval`` after every empty poll, also while the consumer
        may not take a message (its prefetch is full: every pool process busy). A worker then learns that a
        pool process is free, or that a job arrived, up to ``polling_interval`` late: on 2 cores with 4
        clients that left about a fifth of the CPU idle (README "Speed", sixth round). Here the wait starts at
        ``polling_interval_min`` (5 ms) at each call and doubles after each empty poll up to
        ``polling_interval``; while the prefetch is full it stays at the minimum, which costs no query (kombu
        checks the prefetch before it reads the file). An idle worker so polls at ``polling_interval``, and a
        busy one takes its next job within a few milliseconds.

        Raises:
            TimeoutError: (``socket.timeout``) no message within ``timeout`` seconds (kombu's contract; Celery loops
                on it).
        """
        started = time.monotonic()
        wait = self.polling_interval_min
        while True:
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                left = None if timeout is None else timeout - (time.monotonic() - started)
                if left is not None and left <= 0:
                    raise TimeoutError from None  # socket.timeout, which kombu and Celery catch
            consuming = [channel for channel in self.channels if channel._consumers]
            full = bool(consuming) and not any(channel.qos.can_consume() for channel in consuming)
            pause = self.polling_interval_min if full else wait
            time.sleep(pause if left is None else min(pause, left))
            if not full:
                wait = min(wait * 2, self.polling_interval)
