"""Prediction services: upload validation keeps refused uploads, claims are exclusive, versions activate."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from predictions.models import Prediction
from predictions.services import (
    prediction_claim,
    prediction_create,
    prediction_enqueue,
    prediction_mark_failed,
    prediction_release,
)
from registry.models import ModelVersion
from registry.services import model_version_activate, model_version_create
from sneakers.exceptions import ApplicationError
from tests.conftest import image_bytes

pytestmark = pytest.mark.django_db


def upload(data: bytes, name: str = "shoe.jpg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="image/jpeg")


def test_valid_upload_is_stored_under_its_uuid_and_enqueued_after_commit(django_capture_on_commit_callbacks):
    data = image_bytes("PNG")
    with mock.patch("sneakers.celery.app.send_task") as send_task, django_capture_on_commit_callbacks(execute=True):
        prediction = prediction_create(upload=upload(data, "../../etc/passwd.jpg"), channel="web", session_key="s1")

    prediction.refresh_from_db()
    assert prediction.status == Prediction.Status.QUEUED
    assert prediction.image.name.endswith(f"{prediction.id}.png")  # detected format, not the client's name
    assert ".." not in prediction.image.name
    assert prediction.image.read() == data
    assert prediction.original_filename == "passwd.jpg"  # Django keeps only the base name
    send_task.assert_called_once_with("predictions.tasks.predict", args=[str(prediction.id)])


def test_refused_upload_is_kept_as_failed_with_its_bytes():
    with pytest.raises(ApplicationError) as caught:
        prediction_create(upload=upload(b"<html>not an image</html>"), channel="api", session_key="s1")

    assert caught.value.code == "image_unreadable" and caught.value.status_code == 400
    prediction = Prediction.objects.get(id=caught.value.extra["prediction_id"])
    assert prediction.status == Prediction.Status.FAILED and prediction.error_code == "image_unreadable"
    assert prediction.image.read() == b"<html>not an image</html>"


def test_oversize_upload_is_refused_with_413_and_not_stored(settings):
    settings.SNEAKERS_UPLOAD_MAX_BYTES = 1000
    with pytest.raises(ApplicationError) as caught:
        prediction_create(
            upload=upload(image_bytes("PNG", size=(300, 300), mode="RGB") + b"\0" * 2000),
            channel="web",
            session_key="s",
        )
    assert caught.value.code == "image_too_large" and caught.value.status_code == 413
    prediction = Prediction.objects.get(id=caught.value.extra["prediction_id"])
    assert prediction.status == Prediction.Status.FAILED and not prediction.image


def test_unsupported_format_is_415():
    with pytest.raises(ApplicationError) as caught:
        prediction_create(upload=upload(image_bytes("GIF"), "anim.gif"), channel="web", session_key="s")
    assert caught.value.code == "image_format_unsupported" and caught.value.status_code == 415


def test_broker_down_keeps_the_prediction_queued():
    prediction = prediction_create(upload=upload(image_bytes()), channel="web", session_key="s")
    with mock.patch("sneakers.celery.app.send_task", side_effect=ConnectionError("broker down")):
        assert prediction_enqueue(prediction_id=prediction.id) is False
    prediction.refresh_from_db()
    assert prediction.status == Prediction.Status.QUEUED


def test_claim_is_exclusive_and_release_requeues():
    prediction = prediction_create(upload=upload(image_bytes()), channel="web", session_key="s")
    first = prediction_claim(prediction_id=prediction.id)
    assert first is not None and first.status == Prediction.Status.RUNNING and first.attempts == 1
    assert prediction_claim(prediction_id=prediction.id) is None
    prediction_release(prediction_id=prediction.id)
    assert prediction_claim(prediction_id=prediction.id).attempts == 2


def test_mark_failed_does_not_touch_terminal_rows():
    prediction = prediction_create(upload=upload(image_bytes()), channel="web", session_key="s")
    prediction_mark_failed(prediction_id=prediction.id, code="image_unreadable", message="bad")
    prediction_mark_failed(prediction_id=prediction.id, code="other", message="later")
    prediction.refresh_from_db()
    assert (prediction.status, prediction.error_code) == (Prediction.Status.FAILED, "image_unreadable")


def test_first_model_version_is_active_and_activation_retires_the_previous():
    kwargs = dict(
        artifact_prefix="models/x", backbone_fingerprint="f", classes=["a", "b"], metrics={}, training_seconds=1.0
    )
    first = model_version_create(name="v1", **kwargs)
    second = model_version_create(name="v2", **kwargs)
    assert first.status == ModelVersion.Status.ACTIVE and second.status == ModelVersion.Status.CANDIDATE

    model_version_activate(model_version=second)

    first.refresh_from_db()
    assert first.status == ModelVersion.Status.RETIRED
    assert list(ModelVersion.objects.filter(status="active")) == [second]


def test_claim_counts_the_attempt_in_the_same_update_that_marks_it_running():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    prediction = prediction_create(upload=upload(image_bytes()), channel="web", session_key="s")
    with CaptureQueriesContext(connection) as queries:
        prediction_claim(prediction_id=prediction.id)
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    # A worker killed right after claiming must not leave a running row with its attempt uncounted.
    assert len(updates) == 1 and '"attempts"' in updates[0] and '"status"' in updates[0]
