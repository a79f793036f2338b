"""Uploads keep their listing text; every terminal status sends ``prediction_finished`` once, after commit."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from predictions.models import Prediction
from predictions.services import prediction_mark_failed
from predictions.signals import prediction_finished
from tests.conftest import image_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def finished():
    """Calls of ``prediction_finished`` as ``(prediction id, status, embedding)``."""
    calls = []

    def receiver(sender, prediction, embedding, **kwargs):
        calls.append((prediction.id, prediction.status, embedding))

    prediction_finished.connect(receiver, dispatch_uid="test-finished")
    yield calls
    prediction_finished.disconnect(dispatch_uid="test-finished")


def photo(data: bytes | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile("shoe.jpg", image_bytes() if data is None else data, content_type="image/jpeg")


def test_upload_stores_title_and_description(token_client):
    response = token_client.post(
        "/api/v1/predictions/",
        {"image": photo(), "title": "  Nike Air Max 90 White  ", "description": "Size 42, worn twice."},
        format="multipart",
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["title"] == "Nike Air Max 90 White" and body["description"] == "Size 42, worn twice."
    assert body["source_url"] == ""
    prediction = Prediction.objects.get(id=body["id"])
    assert (prediction.title, prediction.description) == ("Nike Air Max 90 White", "Size 42, worn twice.")


def test_title_over_300_characters_is_refused(token_client):
    response = token_client.post("/api/v1/predictions/", {"image": photo(), "title": "x" * 301}, format="multipart")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid"
    assert Prediction.objects.count() == 0


def test_refused_upload_finishes_at_its_creation_and_sends_the_signal_after_commit(
    token_client, finished, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = token_client.post("/api/v1/predictions/", {"image": photo(b"not an image")}, format="multipart")
    assert response.status_code == 400
    prediction = Prediction.objects.get(id=response.json()["error"]["detail"]["prediction_id"])
    assert prediction.finished_at == prediction.created_at
    body = token_client.get(f"/api/v1/predictions/{prediction.id}/").json()
    assert body["finished_at"] == body["created_at"]
    assert finished == [(prediction.id, "failed", None)]


def test_mark_failed_sends_once(user, finished, django_capture_on_commit_callbacks):
    prediction = Prediction.objects.create(owner=user, channel="api")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        prediction_mark_failed(prediction_id=prediction.id, code="worker_lost", message="gone")
        prediction_mark_failed(prediction_id=prediction.id, code="worker_lost", message="again")
    assert len(callbacks) == 1
    assert finished == [(prediction.id, "failed", None)]


def test_the_signal_waits_for_the_commit(user, finished, django_capture_on_commit_callbacks):
    prediction = Prediction.objects.create(owner=user, channel="api")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        prediction_mark_failed(prediction_id=prediction.id, code="worker_lost", message="gone")
        assert finished == []
    for callback in callbacks:
        callback()
    assert finished == [(prediction.id, "failed", None)]


def test_a_succeeded_result_sends_its_embedding(user, finished, django_capture_on_commit_callbacks):
    import numpy as np

    from predictions.services import prediction_claim, prediction_mark_succeeded
    from registry.services import model_version_create

    version = model_version_create(
        name="v-test", artifact_prefix="x", backbone_fingerprint="f", classes=["nike"], metrics={}, training_seconds=1
    )
    prediction = Prediction.objects.create(owner=user, channel="api")
    prediction = prediction_claim(prediction_id=prediction.id)
    embedding = np.arange(4, dtype=np.float32)
    with django_capture_on_commit_callbacks(execute=True):
        prediction_mark_succeeded(
            prediction=prediction,
            model_version=version,
            brands=[{"name": "nike", "probability": 0.9}],
            price=None,
            similar=[],
            cutout_jpeg=image_bytes("JPEG"),
            background_method="none",
            timings_ms={"total": 1.0},
            embedding=embedding,
        )
    [(prediction_id, status, sent)] = finished
    assert (prediction_id, status) == (prediction.id, "succeeded") and sent is embedding
