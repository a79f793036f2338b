"""Shared fixtures: isolated media/cache folders per test, image makers, API clients."""

from __future__ import annotations

import atexit
import io
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from PIL import Image, ImageFile

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"

# prometheus-client's multi-process files of a test run (and of the servers it starts) go to a folder of their own,
# not var/prometheus: prometheus-client reads the variable when first imported, which is after this (monitoring).
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="sneakers-test-prometheus-")
atexit.register(shutil.rmtree, os.environ["PROMETHEUS_MULTIPROC_DIR"], True)


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), color=(200, 30, 30), mode: str = "RGB") -> bytes:
    """Encode a solid-colour image made by the test (no files from outside)."""
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def _isolated_storage(settings, tmp_path: Path) -> None:
    """Media and caches under the test's own temporary folder; nothing touches ``var/``.

    The Django cache (API throttle counters) starts empty in every test. Training sees only the
    catalog a test makes: no wild photos, negatives or ImageNet classifier unless a test sets them.
    """
    from django.core.cache import cache

    settings.MEDIA_ROOT = tmp_path / "media"
    settings.SNEAKERS_CACHE_DIR = tmp_path / "cache"
    settings.SNEAKERS_WILD_DIR = tmp_path / "no-wild"
    settings.SNEAKERS_NEGATIVES_DIR = tmp_path / "no-negatives"
    settings.SNEAKERS_IMAGENET_CLASSIFIER_PATH = tmp_path / "no-classifier.keras"
    cache.clear()


@pytest.fixture
def user(db, django_user_model):
    return django_user_model.objects.create_user(username="shopper", password="pw-123-not-common")


@pytest.fixture
def other_user(db, django_user_model):
    return django_user_model.objects.create_user(username="intruder", password="pw-456-not-common")


@pytest.fixture
def token_client(user):
    """A DRF ``APIClient`` authenticated with ``user``'s partner token."""
    from rest_framework.test import APIClient

    from accounts.services import partner_token_get_or_create

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {partner_token_get_or_create(user=user).key}")
    return client


@pytest.fixture
def other_token_client(other_user):
    from rest_framework.test import APIClient

    from accounts.services import partner_token_get_or_create

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {partner_token_get_or_create(user=other_user).key}")
    return client


@pytest.fixture(scope="session")
def tiny_backbone_path(tmp_path_factory) -> Path:
    """A tiny Keras backbone (16-d embeddings) built by ``worker.ml.testing.build_tiny_backbone``."""
    from worker.ml.testing import build_tiny_backbone

    return build_tiny_backbone(tmp_path_factory.mktemp("weights") / "tiny.keras", dim=16, seed=0)


@pytest.fixture
def decodes(monkeypatch) -> list[tuple[str | None, tuple[int, int]]]:
    """Record ``(format, size)`` each time Pillow decodes pixel data (``ImageFile.load``), in decode order.

    ``size`` is the image's size at decode time: after ``Image.draft`` it is the reduced size the JPEG
    decoder produces (1/2, 1/4 or 1/8 of the stored size; Pillow's ``JpegImageFile.draft``).
    """
    calls: list[tuple[str | None, tuple[int, int]]] = []
    original = ImageFile.ImageFile.load

    def load(self):
        calls.append((self.format, self.size))
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return calls


@pytest.fixture(autouse=True)
def _heads_only_training(settings) -> None:
    """Tests train tiny backbones that have no block to fine-tune: ``train`` fits the heads only.

    Fine-tuning has its own tests (``tests/unit/ml/test_ml_quality.py``, ``test_ml_augment.py``).
    """
    settings.SNEAKERS_FINETUNE = False


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """The embedded default cache backend (``sneakers.cache.OpenDiskCache``) in this test session's own
    folder, so that test runs never share or clear each other's rate-limit counters (nor ``var/``'s)."""
    from django.test import override_settings

    override = override_settings(
        CACHES={
            "default": {
                "BACKEND": "sneakers.cache.OpenDiskCache",
                "LOCATION": str(tmp_path_factory.mktemp("diskcache")),
            }
        }
    )
    override.enable()
    yield
    override.disable()
