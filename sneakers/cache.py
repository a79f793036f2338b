"""The embedded default cache: Django's file-based cache with counters that processes share exactly.

The API's rate-limit counters (``partners.throttling``) must be shared by every web process (gunicorn
runs several), with no server to run. Django's ``FileBasedCache`` is shared by every process on the host,
but its ``incr`` is a read then a write (``BaseCache.incr``), so two processes counting at once can lose a
count, and its ``add`` is ``has_key`` then ``set``, so two processes can both reset a counter; its ``incr``
also resets the entry's expiry to the default timeout. This subclass runs ``add``, ``incr`` and ``decr``
under an exclusive lock on one lock file in the cache folder (``django.core.files.locks``, ``fcntl.flock``
on POSIX) and keeps an entry's expiry when it changes the value. Other operations are Django's.

Redis (``CACHE_URL=redis://...``) counts atomically by itself (``INCRBY``) and is what several hosts need.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.filebased import FileBasedCache
from django.core.files import locks
from django.core.files.move import file_move_safe

LOCK_NAME = "counters.lock"


class CounterFileBasedCache(FileBasedCache):
    """``FileBasedCache`` whose ``add``, ``incr`` and ``decr`` are atomic across processes on one host."""

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the cache folder's lock file (blocks until other processes release it)."""
        self._createdir()
        with open(os.path.join(self._dir, LOCK_NAME), "a+b") as handle:
            locks.lock(handle, locks.LOCK_EX)
            try:
                yield
            finally:
                locks.unlock(handle)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None) -> bool:
        """Set ``key`` only when it is absent or expired; True when this call set it."""
        with self._exclusive():
            return super().add(key, value, timeout, version)

    def incr(self, key, delta: int = 1, version=None) -> int:
        """Add ``delta`` to a stored number, keeping its expiry; the new value.

        Raises:
            ValueError: the key is absent or expired (as Django's ``incr``).
        """
        with self._exclusive():
            fname = self._key_to_file(key, version)
            try:
                with open(fname, "rb") as handle:
                    expiry = pickle.load(handle)
                    value = pickle.loads(zlib.decompress(handle.read()))
            except (FileNotFoundError, EOFError):
                raise ValueError(f"Key '{key}' not found") from None
            if expiry is not None and expiry < time.time():
                self._delete(fname)
                raise ValueError(f"Key '{key}' not found")
            value += delta
            fd, tmp_path = tempfile.mkstemp(dir=self._dir)
            renamed = False
            try:
                with open(fd, "wb") as handle:
                    handle.write(pickle.dumps(expiry, self.pickle_protocol))
                    handle.write(zlib.compress(pickle.dumps(value, self.pickle_protocol)))
                file_move_safe(tmp_path, fname, allow_overwrite=True)
                renamed = True
            finally:
                if not renamed:
                    os.remove(tmp_path)
            return value

    def decr(self, key, delta: int = 1, version=None) -> int:
        """Subtract ``delta`` (see ``incr``)."""
        return self.incr(key, -delta, version)
