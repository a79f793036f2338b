"""End to end: API upload -> Redis -> a real Celery worker process -> PostgreSQL -> poll -> succeeded.

Needs PostgreSQL (``DATABASE_URL``) and Redis (``CELERY_BROKER_URL``), as ``make test`` sets them.
Skips with the reason when they are not configured, except under CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.e2e.conftest import poll_until_terminal, process_env, require_services, worker_process
from tests.tiny_catalog import BRAND_COLOURS, shoe_photo

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@contextlib.contextmanager
def running_worker(settings, tmp_path: Path, backbone_path: Path):
    """A real ``celery worker`` process on the inference queue, sharing the test's database and media."""
    env = process_env(tmp_path, backbone_path, settings.CELERY_BROKER_URL)
    with worker_process(env, tmp_path / "worker.log") as process:
        yield process


def test_api_upload_is_processed_by_a_real_worker(settings, tiny_backbone_path, tmp_path, e2e_model, partner_token):
    require_services()
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {partner_token}")

    with running_worker(settings, tmp_path, tiny_backbone_path):
        photo = SimpleUploadedFile("red.jpg", shoe_photo(BRAND_COLOURS["redshoe"], 777, fmt="JPEG"))
        created = client.post("/api/v1/predictions/", {"image": photo}, format="multipart")
        assert created.status_code == 202, created.content
        body = poll_until_terminal(client, created, timeout=180, log_path=tmp_path / "worker.log")
        assert body["status"] == "succeeded", body
        assert body["brand"] == "redshoe"
        assert body["model_version"] == e2e_model.name
        assert body["similar"] and body["cutout_url"].startswith("http://testserver/media/cutouts/")
        assert body["price_usd"]["low"] <= body["price_usd"]["estimate"] <= body["price_usd"]["high"]
