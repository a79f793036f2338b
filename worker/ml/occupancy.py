"""How many inference processes on this host are busy, so that a photo running alone may use every core.

The inference worker runs several single-threaded pool processes (two on two cores): under load each photo gets
one core, which gives the most photos per second. A photo that arrives while the others are idle would finish
sooner on all cores (U^2-Net-p at 320 px, measured on this project's 2-core machine: about 0.49 s on one
thread, 0.27 s on two; both processes busy with two threads each lost 8-10 % of throughput against one thread
each: README "Speed"). So each process marks itself busy while it runs a photo, and asks how many others are
busy before choosing its thread count.

"Busy" is an advisory lock (``fcntl.flock``) on one of a few slot files in a folder: taking a free slot marks the
process busy; a slot whose lock cannot be taken belongs to a busy process. The kernel drops a lock when its
process dies, so a killed worker never leaves a slot marked busy. POSIX only; elsewhere nothing is ever busy.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: occupancy is unknown and every call may use the full budget
    fcntl = None  # type: ignore[assignment]


def usable_cores() -> int:
    """CPU cores this process may run on (``os.sched_getaffinity``; ``os.cpu_count()`` where that is missing)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class Occupancy:
    """Busy marks of the inference processes of one host, shared through slot files in ``directory``.

    Args:
        directory: folder for the slot files (made here when missing); every process of the host must use the same.
        slots: slot files; more than the processes that may be busy at once (extra ones cost a lock try each).
        cores: cores the processes share (default ``usable_cores()``).
        floor: fewest threads a photo gets however busy the host is (the pool processes' own budget).

    Raises:
        ValueError: ``slots``, ``cores`` or ``floor`` below 1.
    """

    def __init__(self, directory: str | Path, *, slots: int = 8, cores: int | None = None, floor: int = 1) -> None:
        self.cores = cores if cores is not None else usable_cores()
        if slots < 1 or self.cores < 1 or floor < 1:
            raise ValueError("slots, cores and floor must be at least 1")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.slots = slots
        self.floor = floor
        self._held: dict[int, int] = {}  # thread id -> slot held by that thread
        self._lock = threading.Lock()

    def _path(self, slot: int) -> Path:
        return self.directory / f"slot-{slot}.lock"

    def _try_lock(self, slot: int) -> int | None:
        """An open descriptor holding slot ``slot``'s lock, or None when another holder has it."""
        fd = os.open(self._path(slot), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd

    @contextmanager
    def held(self) -> Iterator[None]:
        """Mark the calling thread busy for the ``with`` block: hold the first free slot (none when all are
        taken: the photo still runs, unseen by the others)."""
        if fcntl is None:
            yield
            return
        taken: tuple[int, int] | None = None
        for slot in range(self.slots):
            fd = self._try_lock(slot)
            if fd is not None:
                taken = (slot, fd)
                break
        ident = threading.get_ident()
        if taken is not None:
            with self._lock:
                self._held[ident] = taken[0]
        try:
            yield
        finally:
            if taken is not None:
                with self._lock:
                    self._held.pop(ident, None)
                with suppress(OSError):
                    fcntl.flock(taken[1], fcntl.LOCK_UN)
                os.close(taken[1])

    def others_busy(self) -> int:
        """How many slots are held by other processes or threads than the caller (0 where not POSIX)."""
        if fcntl is None:
            return 0
        with self._lock:
            own = self._held.get(threading.get_ident())
        busy = 0
        for slot in range(self.slots):
            if slot == own:
                continue
            fd = self._try_lock(slot)
            if fd is None:
                busy += 1
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        return busy

    def threads_now(self) -> int:
        """Threads the caller's photo may use now: the cores shared by the busy photos, itself included, and at
        least ``floor``: ``max(floor, cores // (1 + others_busy()))`` (2 cores: 2 alone, 1 beside another)."""
        return max(self.floor, self.cores // (1 + self.others_busy()))
