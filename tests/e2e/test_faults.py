"""Faults with real processes: a worker SIGKILLed mid-job, and Redis down at upload time.

Runs its own Redis server (on a free port, so it can be stopped and started), a gunicorn web
process and Celery worker processes (with embedded beat running the sweeper every second) against
the test's PostgreSQL database. Needs PostgreSQL and ``redis-server``; skips with the reason
elsewhere, fails under CI.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from predictions.models import Prediction
from tests.e2e.conftest import process_env, require_services, worker_argv

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Processes:
    """Starts and stops the Redis, web and worker processes of one test, each in its own session."""

    def __init__(self, tmp_path: Path, env: dict[str, str], redis_port: int, web_port: int) -> None:
        self.tmp_path, self.env, self.redis_port, self.web_port = tmp_path, env, redis_port, web_port
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = self.tmp_path / f"{name}.log"
        self.logs[name] = log
        self.procs[name] = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True
        )
        return self.procs[name]

    def start_redis(self) -> None:
        self.start(
            "redis",
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        )
        _wait(lambda: _ping(self.redis_port), 20, what="redis")

    def start_web(self) -> None:
        self.start(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "sneakers.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.web_port}",
                "--workers",
                "1",
                "--threads",
                "2",
            ],
        )
        _wait(lambda: _http_ok(f"http://127.0.0.1:{self.web_port}/healthz"), 30, what="web")

    def start_worker(self, name: str) -> None:
        self.start(name, worker_argv(queues="inference,default", beat_schedule=self.tmp_path / f"{name}-beat"))
        _wait(lambda: "ready." in self.logs[name].read_text(), 60, what=f"{name} ready")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[name].pid, sig)
        self.procs[name].wait(timeout=20)

    def stop_all(self) -> None:
        for name in list(self.procs):
            if self.procs[name].poll() is None:
                self.kill(name, signal.SIGTERM if name == "redis" else signal.SIGKILL)

    def tail(self) -> str:
        return "\n".join(f"--- {n}\n{p.read_text()[-2000:]}" for n, p in self.logs.items())


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _http_ok(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=1).status == 200
    except OSError:
        return False


def _noisy_photo(seed: int) -> bytes:
    """A 1024x768 noisy JPEG: no plain background, so the worker runs GrabCut on it (~0.3 s)."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(768, 1024, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _upload(port: int, token: str, data: bytes, timeout: float = 30) -> tuple[int, dict]:
    """POST ``data`` as a photo upload; ``timeout`` (seconds) is the socket timeout, a guard against a hang."""
    import json

    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="shoe.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/predictions/",
        data=body,
        method="POST",
        headers={"Authorization": f"Token {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, json.loads(response.read())


@pytest.fixture
def stack(settings, tmp_path, tiny_backbone_path, e2e_model, partner_token):
    require_services(broker_is_redis=False, redis_server=True)
    redis_port, web_port = _free_port(), _free_port()
    env = process_env(
        tmp_path,
        tiny_backbone_path,
        f"redis://127.0.0.1:{redis_port}/0",
        CELERY_BROKER_CONNECTION_TIMEOUT="1",
        SNEAKERS_BACKGROUND_METHOD="grabcut",
        SNEAKERS_SWEEP_INTERVAL_SECONDS="1",
        SNEAKERS_REQUEUE_AFTER_SECONDS="2",
        SNEAKERS_STUCK_AFTER_SECONDS="3",
    )
    processes = Processes(tmp_path, env, redis_port, web_port)
    try:
        processes.start_redis()
        processes.start_web()
        yield processes, partner_token
    finally:
        processes.stop_all()


def test_a_job_whose_worker_is_killed_mid_run_succeeds_after_a_worker_comes_back(stack):
    processes, token = stack
    processes.start_worker("worker1")
    caught = None
    for attempt in range(8):  # the kill must land while the job runs (~0.3 s of GrabCut)
        status, body = _upload(processes.web_port, token, _noisy_photo(attempt))
        assert status == 202
        running = _wait(
            lambda pk=body["id"]: Prediction.objects.filter(id=pk).exclude(status="queued").first(),
            60,
            0.005,
            "a claim",
        )
        if running.status == "running":
            processes.kill("worker1")  # SIGKILL the whole worker: main process, pool child, beat
            time.sleep(1)  # a commit already in flight when the kill landed would show by now
            if Prediction.objects.get(id=body["id"]).status == "running":
                caught = body["id"]
                break
        processes.procs["worker1"].poll() is None or processes.start_worker("worker1")
    assert caught, "could not kill the worker while a job was running\n" + processes.tail()

    processes.start_worker("worker2")
    done = _wait(
        lambda: Prediction.objects.filter(id=caught, status__in=["succeeded", "failed"]).first(),
        90,
        what="the interrupted job to finish",
    )
    assert done.status == "succeeded", (done.error_code, processes.tail())
    assert done.attempts == 2 and done.brand


def test_an_upload_while_redis_is_down_is_kept_and_processed_when_it_is_back(stack):
    processes, token = stack
    processes.start_worker("worker")
    processes.kill("redis", signal.SIGTERM)

    # The web process gives up on the broker (CELERY_BROKER_CONNECTION_TIMEOUT=1 here, one publish retry) and
    # answers; an upload blocked on the broker would hang until the socket timeout and fail the test there.
    status, body = _upload(processes.web_port, token, _noisy_photo(42), timeout=15)
    assert status == 202 and body["status"] == "queued"
    row = Prediction.objects.get(id=body["id"])
    assert row.status == "queued" and row.enqueued_at is None  # kept; the broker never took it

    processes.start_redis()
    done = _wait(
        lambda: Prediction.objects.filter(id=body["id"], status__in=["succeeded", "failed"]).first(),
        90,
        what="the kept upload to be processed",
    )
    assert done.status == "succeeded", (done.error_code, processes.tail())
