"""The predict task: transient errors release the row and retry with backoff; then fail with a code."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError

from predictions.models import Prediction
from predictions.services import prediction_create
from predictions.tasks import predict
from tests.conftest import image_bytes

pytestmark = pytest.mark.django_db


def new_prediction() -> Prediction:
    return prediction_create(upload=SimpleUploadedFile("a.jpg", image_bytes()), channel="api", session_key="s")


def claim_then_fail(prediction_id: str) -> None:
    from predictions.services import prediction_claim

    prediction_claim(prediction_id=prediction_id)
    raise OperationalError("server closed the connection unexpectedly")


def test_database_blip_puts_the_job_back_and_retries_with_exponential_backoff():
    prediction = new_prediction()
    countdowns = []
    original_retry = predict.retry

    def spy_retry(*args, **kwargs):
        countdowns.append(kwargs["countdown"])
        assert Prediction.objects.get(id=prediction.id).status == Prediction.Status.QUEUED  # released first
        return original_retry(*args, **kwargs)

    # Eager mode runs each retry inline, so one apply() goes through every try.
    with (
        mock.patch("predictions.tasks.prediction_run", side_effect=claim_then_fail),
        mock.patch.object(predict, "retry", side_effect=spy_retry),
    ):
        predict.apply(args=[str(prediction.id)])
    assert countdowns == [1, 2, 4, 8, 16]
    prediction.refresh_from_db()
    assert prediction.attempts == predict.max_retries + 1


def test_after_the_last_retry_the_job_fails_with_transient_error():
    prediction = new_prediction()
    with mock.patch("predictions.tasks.prediction_run", side_effect=claim_then_fail):
        result = predict.apply(args=[str(prediction.id)], retries=predict.max_retries)
    assert result.state == "SUCCESS"  # the task itself ends cleanly
    prediction.refresh_from_db()
    assert (prediction.status, prediction.error_code) == (Prediction.Status.FAILED, "transient_error")


def test_unexpected_error_fails_the_job_instead_of_leaving_it_running():
    prediction = new_prediction()

    def boom(prediction_id: str) -> None:
        from predictions.services import prediction_claim

        prediction_claim(prediction_id=prediction_id)
        raise RuntimeError("bug")

    with mock.patch("predictions.tasks.prediction_run", side_effect=boom):
        predict.apply(args=[str(prediction.id)])
    prediction.refresh_from_db()
    assert (prediction.status, prediction.error_code) == (Prediction.Status.FAILED, "internal_error")
