"""End to end: API upload -> Redis -> a real Celery worker process -> PostgreSQL -> poll -> succeeded.

Needs PostgreSQL (``DATABASE_URL``) and Redis (``CELERY_BROKER_URL``), as ``make test`` sets them.
Skips with the reason when they are not configured, except under CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.tiny_catalog import BRAND_COLOURS, build_tiny_catalog, shoe_photo

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _require_services() -> None:
    reasons = []
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        reasons.append("DATABASE_URL is not PostgreSQL")
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        reasons.append("CELERY_BROKER_URL is not Redis")
    if reasons:
        message = "end-to-end test needs real services (run `make test`): " + "; ".join(reasons)
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def _database_url() -> str:
    db = settings.DATABASES["default"]
    user, password = db.get("USER") or "", db.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else f"{user}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


@contextlib.contextmanager
def running_worker(settings, tmp_path: Path, backbone_path: Path):
    """A real ``celery worker`` process on the inference queue, sharing the test's database and media."""
    from sneakers.celery import app

    with app.connection_for_write() as connection:  # drop messages other tests left in the test broker
        for queue in ("inference", "default"):
            connection.default_channel.queue_purge(queue)
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "SNEAKERS_CACHE_DIR": str(settings.SNEAKERS_CACHE_DIR),
        "SNEAKERS_BACKBONE_PATH": str(backbone_path),
        "SNEAKERS_BACKGROUND_METHOD": "none",
        "SNEAKERS_VAR_DIR": str(tmp_path / "var"),
    }
    log = (tmp_path / "worker.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "sneakers",
            "worker",
            "--queues",
            "inference",
            "--concurrency",
            "1",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_api_upload_is_processed_by_a_real_worker(settings, tiny_backbone_path, tmp_path):
    _require_services()
    from rest_framework.test import APIClient

    from accounts.services import partner_token_get_or_create
    from worker import runtime
    from worker.services import model_version_train

    settings.SNEAKERS_BACKBONE_PATH = tiny_backbone_path
    settings.SNEAKERS_BACKGROUND_METHOD = "none"
    runtime.clear()
    build_tiny_catalog()
    version = model_version_train(seed=0)
    assert version.status == "active"

    from django.contrib.auth import get_user_model

    partner = get_user_model().objects.create_user(username="partner", password="pw-partner-123")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {partner_token_get_or_create(user=partner).key}")

    with running_worker(settings, tmp_path, tiny_backbone_path):
        photo = SimpleUploadedFile("red.jpg", shoe_photo(BRAND_COLOURS["redshoe"], 777, fmt="JPEG"))
        created = client.post("/api/v1/predictions/", {"image": photo}, format="multipart")
        assert created.status_code == 202, created.content
        location = created["Location"]

        deadline = time.monotonic() + 180
        body = created.json()
        while body["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.5)
            body = client.get(location).json()
        assert body["status"] == "succeeded", (body, (tmp_path / "worker.log").read_text()[-3000:])
        assert body["brand"] == "redshoe"
        assert body["model_version"] == version.name
        assert body["similar"] and body["cutout_url"].startswith("http://testserver/media/cutouts/")
        assert body["price_usd"]["low"] <= body["price_usd"]["estimate"] <= body["price_usd"]["high"]
