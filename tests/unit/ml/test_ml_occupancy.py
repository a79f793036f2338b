"""Busy marks of inference processes (``worker.ml.occupancy``): a photo alone gets every core, one beside a busy
process gets its share, and a killed process never leaves its mark behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from worker.ml.occupancy import Occupancy

ROOT = Path(__file__).resolve().parents[3]
U2NETP_PATH = ROOT.parent / "shared" / "weights" / "u2netp.onnx"

HOLDER = textwrap.dedent(
    """
    import sys, time
    from worker.ml.occupancy import Occupancy

    with Occupancy(sys.argv[1], cores=2).held():
        print("held", flush=True)
        time.sleep(60)
    """
)


def test_a_held_slot_is_seen_by_others_and_not_by_its_holder(tmp_path):
    mine, theirs = Occupancy(tmp_path, cores=2), Occupancy(tmp_path, cores=2)
    assert theirs.others_busy() == 0 and theirs.threads_now() == 2
    with mine.held():
        assert mine.others_busy() == 0  # its own mark does not count
        assert theirs.others_busy() == 1
        assert theirs.threads_now() == 1
    assert theirs.others_busy() == 0 and theirs.threads_now() == 2


def test_threads_are_shared_among_busy_photos_and_never_below_the_floor(tmp_path):
    probe = Occupancy(tmp_path, cores=4, floor=1)
    holders = [Occupancy(tmp_path, cores=4) for _ in range(3)]
    contexts = [holder.held() for holder in holders]
    seen = []
    for context in contexts:
        context.__enter__()
        seen.append(probe.threads_now())
    for context in reversed(contexts):
        context.__exit__(None, None, None)
    assert seen == [2, 1, 1]  # 4 cores // 2, 4 // 3, 4 // 4
    assert Occupancy(tmp_path, cores=4, floor=2).threads_now() == 4
    with pytest.raises(ValueError):
        Occupancy(tmp_path, slots=0)


@pytest.mark.skipif(os.name != "posix", reason="flock is POSIX")
def test_a_killed_process_leaves_no_busy_mark(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        probe = Occupancy(tmp_path, cores=2)
        assert probe.others_busy() == 1 and probe.threads_now() == 1
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        deadline = time.monotonic() + 10
        while probe.others_busy() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert probe.others_busy() == 0 and probe.threads_now() == 2
    finally:
        if holder.poll() is None:
            holder.kill()


@pytest.mark.shared_data
@pytest.mark.skipif(not U2NETP_PATH.is_file(), reason=f"U^2-Net-p weights not found at {U2NETP_PATH}")
def test_u2netp_takes_its_thread_count_per_photo(tmp_path):
    """The remover asks before each photo and runs it on a session with that many threads; masks agree."""
    from tests.unit.ml.test_ml_background import ellipse_on_texture
    from worker.ml.background import U2NetpRemover

    occupancy = Occupancy(tmp_path, cores=2)
    asked = []

    def threads_now() -> int:
        asked.append(occupancy.threads_now())
        return asked[-1]

    remover = U2NetpRemover(U2NETP_PATH, intra_op_threads=1, threads_now=threads_now)
    photo, _ = ellipse_on_texture()
    alone = remover.predict_mask(photo)
    with Occupancy(tmp_path, cores=2).held():
        beside = remover.predict_mask(photo)
    assert asked == [2, 1]
    assert np.abs(alone - beside).max() < 1e-4
