"""The embedded default cache backend: diskcache's Django backend, its connections kept open between requests."""

from __future__ import annotations

import threading
from typing import Any

from diskcache import DjangoCache


class OpenDiskCache(DjangoCache):
    """``diskcache.DjangoCache`` whose SQLite connections stay open from one request to the next.

    Django calls every cache's ``close()`` when a request finishes (its ``request_finished`` signal), meant for
    network clients. diskcache's ``close()`` shuts the calling thread's connection to each shard, and the next
    request opens them again, each opening re-reading diskcache's settings and setting its pragmas. Measured
    in process with Django's test client and the default 8 shards (README "Speed"): an API upload took 12.9 ms
    and a status read 7.0 ms with ``close()``, 7.3 ms and 3.1 ms without. diskcache's author advises leaving
    caches open, every operation being atomic on its own (python-diskcache issues #71 and #253). Connections
    are per thread and per shard (at most threads x shards per process; 8 x 8 for the Procfile's gunicorn) and
    diskcache reopens them after a fork. ``close_connections()`` closes the calling thread's, as ``close()`` did.
    """

    _one_writer = threading.Lock()
    """Held around counter writes. Every API request counts itself in a rate-limit window, and one caller's
    counters live in one row, so all of a web process's threads write the same shard at once; SQLite lets one
    in and the rest retry after sleeps of 1 ms and more while the holder waits its turn for the interpreter
    lock. A Python lock queues them in the process instead and hands over at once; processes still meet at
    SQLite's lock (README "Speed", sixth round)."""

    def close(self, **kwargs: object) -> None:
        """Keep the connections open (see the class docstring)."""

    def close_connections(self) -> None:
        """Close the calling thread's connections to every shard (diskcache's own ``close``)."""
        super().close()

    # Counters (the API's rate limits) are written by every request; see ``_one_writer``.
    def add(self, *args: Any, **kwargs: Any) -> bool:
        """diskcache's ``add``, one writing thread per process at a time (``_one_writer``)."""
        with self._one_writer:
            return super().add(*args, **kwargs)

    def incr(self, *args: Any, **kwargs: Any) -> int:
        """diskcache's ``incr`` (and so ``decr``, which calls it), one writing thread per process at a time
        (``_one_writer``)."""
        with self._one_writer:
            return super().incr(*args, **kwargs)
