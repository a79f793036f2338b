"""End to end with media on S3: django-storages against a real S3-compatible server started by the tests.

The server is moto's standalone one (``moto.server.ThreadedMotoServer``, HTTP on 127.0.0.1 and a free
port, in a thread of the test process); boto3 talks to it over HTTP exactly as to Amazon S3. The test
process stores media through ``storages.backends.s3.S3Storage``; the Celery worker subprocess gets the
``AWS_*`` environment variables that make ``sneakers/settings.py`` choose the same backend, and its own
empty model cache, so everything it reads (the upload, the model artifact) comes from the bucket.

Needs PostgreSQL and Redis like the other end-to-end tests (skips, or fails under CI, without them).
"""

from __future__ import annotations

import contextlib
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.e2e.conftest import poll_until_terminal, process_env, require_services, worker_process
from tests.tiny_catalog import BRAND_COLOURS, shoe_photo

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 server running for the whole test session (127.0.0.1, a port the OS picks)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(settings, s3_endpoint) -> Iterator[dict[str, str]]:
    """A fresh bucket, with the test process's default storage switched to it (django-storages S3).

    Yields the ``AWS_*`` environment variables that switch a subprocess's settings to the same bucket.
    """
    bucket = f"sneakers-e2e-{uuid.uuid4().hex[:12]}"
    env = {
        "AWS_STORAGE_BUCKET_NAME": bucket,
        "AWS_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_S3_REGION_NAME": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    client = s3_client(s3_endpoint)
    client.create_bucket(Bucket=bucket)
    # What sneakers/settings.py sets when AWS_STORAGE_BUCKET_NAME is set (the worker gets it that way).
    settings.AWS_STORAGE_BUCKET_NAME = bucket
    settings.AWS_S3_ENDPOINT_URL = s3_endpoint
    settings.AWS_S3_REGION_NAME = REGION
    settings.AWS_S3_ACCESS_KEY_ID = "testing"
    settings.AWS_S3_SECRET_ACCESS_KEY = "testing"
    settings.AWS_DEFAULT_ACL = None
    settings.AWS_QUERYSTRING_AUTH = True
    settings.AWS_S3_FILE_OVERWRITE = False
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "storages.backends.s3.S3Storage"}}
    yield env


def s3_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def bucket_objects(endpoint: str, bucket: str) -> dict[str, bytes]:
    """Every object in the bucket, key -> bytes, read with boto3 (not through Django)."""
    client = s3_client(endpoint)
    keys = [
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for item in page.get("Contents", [])
    ]
    return {key: client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


@contextlib.contextmanager
def running_worker(settings, tmp_path: Path, backbone_path: Path, extra_env: dict[str, str]):
    """A real ``celery worker`` process on the inference queue with the given extra environment."""
    env = process_env(tmp_path, backbone_path, settings.CELERY_BROKER_URL, **extra_env)
    with worker_process(env, tmp_path / "worker.log") as process:
        yield process


@pytest.fixture
def s3_model(request, s3_bucket):
    """The tiny catalog and an active model trained on it, with photos and artifact stored in the bucket."""
    return request.getfixturevalue("e2e_model")


def test_upload_to_result_with_media_on_s3(
    settings, s3_endpoint, s3_bucket, s3_model, tiny_backbone_path, tmp_path, partner_token
):
    require_services()
    from django.core.files.storage import storages
    from rest_framework.test import APIClient
    from storages.backends.s3 import S3Storage

    from predictions.models import Prediction

    bucket = s3_bucket["AWS_STORAGE_BUCKET_NAME"]
    assert isinstance(storages["default"], S3Storage)
    artifact_prefix = s3_model.artifact_prefix.rstrip("/")
    stored = bucket_objects(s3_endpoint, bucket)
    artifact_keys = {key for key in stored if key.startswith(f"{artifact_prefix}/")}
    assert artifact_keys, sorted(stored)  # training wrote the artifact to S3

    # The worker's media root and model cache start empty: what it reads can only come from the bucket.
    worker_media, worker_cache = tmp_path / "worker-media", tmp_path / "worker-cache"
    worker_env = {**s3_bucket, "DJANGO_MEDIA_ROOT": str(worker_media), "SNEAKERS_CACHE_DIR": str(worker_cache)}
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {partner_token}")
    with running_worker(settings, tmp_path, tiny_backbone_path, worker_env):
        photo_bytes = shoe_photo(BRAND_COLOURS["redshoe"], 777, fmt="JPEG")
        created = client.post(
            "/api/v1/predictions/", {"image": SimpleUploadedFile("red.jpg", photo_bytes)}, format="multipart"
        )
        assert created.status_code == 202, created.content
        body = poll_until_terminal(client, created, timeout=120, log_path=tmp_path / "worker.log")
        assert body["status"] == "succeeded", body

    assert body["brand"] == "redshoe" and body["model_version"] == s3_model.name
    prediction = Prediction.objects.get(id=body["id"])
    objects = bucket_objects(s3_endpoint, bucket)
    # The upload and the worker's cut-out are objects in the bucket, under the names the rows hold.
    assert objects[prediction.image.name] == photo_bytes
    cutout = objects[prediction.cutout.name]
    assert prediction.cutout.name.startswith("cutouts/") and cutout.startswith(b"\xff\xd8\xff")
    # The API hands out a presigned URL of the S3 server, and it serves the same bytes.
    assert body["cutout_url"].startswith(f"{s3_endpoint}/{bucket}/{prediction.cutout.name}?")
    with urllib.request.urlopen(body["cutout_url"], timeout=10) as response:
        assert response.read() == cutout
    # The worker copied the model artifact from the bucket into its own, initially empty, cache.
    from worker.ml.artifact import ARTIFACT_FILES

    cached = worker_cache / "models" / s3_model.name
    copied = sorted(path.name for path in cached.iterdir())
    assert copied and set(copied) <= set(ARTIFACT_FILES), copied
    for name in copied:
        assert (cached / name).read_bytes() == objects[f"{artifact_prefix}/{name}"], name
    # Nothing went to local disk on either side.
    assert local_files(worker_media) == [] and local_files(Path(settings.MEDIA_ROOT)) == []


def local_files(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []
