"""Shared set-up of the end-to-end tests: service checks, a trained tiny model, a partner token, and
the environment that worker/web subprocesses need to share the test's database, media and model."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from tests.tiny_catalog import build_tiny_catalog


def require_services(*, broker_is_redis: bool = True, redis_server: bool = False) -> None:
    """Skip (or, under CI, fail) unless PostgreSQL and the Redis pieces the test needs are there."""
    reasons = []
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        reasons.append("DATABASE_URL is not PostgreSQL")
    if broker_is_redis and not settings.CELERY_BROKER_URL.startswith("redis://"):
        reasons.append("CELERY_BROKER_URL is not Redis")
    if redis_server and shutil.which("redis-server") is None:
        reasons.append("redis-server is not installed")
    if reasons:
        message = "end-to-end test needs real services (run `make test`): " + "; ".join(reasons)
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def database_url() -> str:
    """A ``DATABASE_URL`` naming the test database, for subprocesses."""
    db = settings.DATABASES["default"]
    user, password = db.get("USER") or "", db.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else f"{user}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def worker_argv(*, queues: str, beat_schedule: Path | None = None) -> list[str]:
    """Command line of a real Celery worker process (with embedded beat when ``beat_schedule`` is set)."""
    argv = [sys.executable, "-m", "celery", "-A", "sneakers", "worker", "--queues", queues, "--concurrency", "1"]
    if beat_schedule is not None:
        argv += ["--beat", "--schedule", str(beat_schedule)]
    return argv + ["--loglevel", "INFO", "--without-gossip", "--without-mingle"]


def process_env(tmp_path: Path, backbone_path: Path, broker_url: str, **extra: str) -> dict[str, str]:
    """Environment for a web/worker subprocess sharing the test's database, media, caches and model."""
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": broker_url,
        "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "SNEAKERS_CACHE_DIR": str(settings.SNEAKERS_CACHE_DIR),
        "SNEAKERS_BACKBONE_PATH": str(backbone_path),
        "SNEAKERS_BACKGROUND_METHOD": "none",
        "SNEAKERS_VAR_DIR": str(tmp_path / "var"),
        **extra,
    }


@contextlib.contextmanager
def worker_process(env: dict[str, str], log_path: Path, *, queues: str = "inference") -> Iterator[subprocess.Popen]:
    """A real ``celery worker`` process (the test broker's queues purged first), stopped on exit.

    Output goes to ``log_path``; the process gets ``terminate`` and, after 20 s, ``kill``.
    """
    from sneakers.celery import app

    with app.connection_for_write() as connection:  # drop messages other tests left in the test broker
        for queue in ("inference", "default"):
            connection.default_channel.queue_purge(queue)
    root = Path(__file__).resolve().parents[2]
    with log_path.open("w") as log:
        process = subprocess.Popen(worker_argv(queues=queues), cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=20)


def poll_until_terminal(client, created, *, timeout: float, log_path: Path) -> dict:
    """Poll the ``Location`` of a 202 answer every 0.5 s until the prediction is terminal; return its JSON.

    Gives up after ``timeout`` seconds (the caller asserts the status); the worker log's tail is kept for
    the caller's assertion message as ``body["_worker_log"]`` when the job did not succeed.
    """
    deadline = time.monotonic() + timeout
    body = created.json()
    while body["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.5)
        body = client.get(created["Location"]).json()
    if body["status"] != "succeeded":
        body["_worker_log"] = log_path.read_text()[-3000:]
    return body


@pytest.fixture
def e2e_model(settings, tiny_backbone_path):
    """The tiny colour-coded catalog and an active model version trained on it (committed rows)."""
    from registry import runtime
    from registry.training import model_version_train

    settings.SNEAKERS_BACKBONE_PATH = tiny_backbone_path
    settings.SNEAKERS_BACKGROUND_METHOD = "none"
    runtime.clear()
    build_tiny_catalog()
    version = model_version_train(seed=0)
    assert version.status == "active"
    return version


@pytest.fixture
def partner_token(django_user_model) -> str:
    """The API token of a partner account."""
    from accounts.services import partner_token_get_or_create

    partner = django_user_model.objects.create_user(username="partner", password="pw-partner-123")
    return partner_token_get_or_create(user=partner).key
