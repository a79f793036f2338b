"""/health/: database, broker and model checks; a model a worker could not load shows as degraded."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client

from registry.services import model_version_create, model_version_report_load

pytestmark = pytest.mark.django_db


def make_version(name: str = "v1"):
    version = model_version_create(
        name=name,
        artifact_prefix=f"models/{name}",
        backbone_fingerprint="f",
        classes=["a"],
        metrics={},
        training_seconds=1.0,
    )
    for file_name in ("brand_head.npz", "index.npz", "metadata.json"):
        default_storage.save(f"models/{name}/{file_name}", ContentFile(b"x"))
    return version


def test_healthy_when_database_broker_and_model_are_fine():
    make_version()
    response = Client().get("/health/")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok" and body["checks"]["model"]["name"] == "v1"
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]


def test_degraded_without_an_active_model():
    response = Client().get("/health/")
    assert response.status_code == 503
    assert "no active model" in response.json()["checks"]["model"]["error"]


def test_degraded_when_artifact_files_are_missing():
    version = make_version()
    default_storage.delete(f"{version.artifact_prefix}/index.npz")
    body = Client().get("/health/").json()
    assert body["status"] == "degraded" and "index.npz" in body["checks"]["model"]["error"]


def test_degraded_when_a_worker_reported_a_load_error_and_ok_once_it_loads():
    version = make_version()
    model_version_report_load(model_version=version, error="backbone file is corrupt")
    body = Client().get("/health/").json()
    assert body["status"] == "degraded" and "corrupt" in body["checks"]["model"]["error"]
    model_version_report_load(model_version=version)
    assert Client().get("/health/").status_code == 200


def test_liveness_needs_nothing():
    assert Client().get("/healthz").json() == {"status": "ok"}
