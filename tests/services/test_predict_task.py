"""The predict task: transient errors (database, storage) release the row and retry with backoff and jitter;
after the last try the job fails with ``transient_error``; other errors fail it once."""

from __future__ import annotations

from unittest import mock

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError

from predictions.models import Prediction
from predictions.services import prediction_create
from predictions.tasks import error_is_transient, predict
from tests.conftest import image_bytes

pytestmark = pytest.mark.django_db


def new_prediction() -> Prediction:
    return prediction_create(upload=SimpleUploadedFile("a.jpg", image_bytes()), channel="api", session_key="s")


def claim_then_fail(prediction_id: str) -> None:
    from predictions.services import prediction_claim

    prediction_claim(prediction_id=prediction_id)
    raise OperationalError("server closed the connection unexpectedly")


def run_with_retries(failure, *, randrange) -> tuple[Prediction, list[int]]:
    """Run ``predict`` eagerly with ``prediction_run`` claiming then raising ``failure`` on every try.

    Returns the prediction (refreshed) and the countdown of each retry. ``randrange`` replaces the
    random draw of Celery's full jitter (``celery.utils.time.random.randrange``).
    """
    prediction = new_prediction()
    countdowns = []
    original_retry = predict.retry

    def spy_retry(*args, **kwargs):
        countdowns.append(kwargs["countdown"])
        assert Prediction.objects.get(id=prediction.id).status == Prediction.Status.QUEUED  # released first
        return original_retry(*args, **kwargs)

    def claim_then_raise(prediction_id: str) -> None:
        from predictions.services import prediction_claim

        prediction_claim(prediction_id=prediction_id)
        raise failure

    # Eager mode runs each retry inline, so one apply() goes through every try.
    with (
        mock.patch("predictions.tasks.prediction_run", side_effect=claim_then_raise),
        mock.patch.object(predict, "retry", side_effect=spy_retry),
        mock.patch("celery.utils.time.random.randrange", side_effect=randrange),
    ):
        predict.apply(args=[str(prediction.id)])
    prediction.refresh_from_db()
    return prediction, countdowns


def test_database_blip_puts_the_job_back_and_retries_with_exponential_backoff():
    # The jitter's draw at its top: the backoff caps, doubling from 1 s.
    prediction, countdowns = run_with_retries(
        OperationalError("server closed the connection unexpectedly"), randrange=lambda n: n - 1
    )
    assert countdowns == [1, 2, 4, 8, 16]
    assert prediction.attempts == predict.max_retries + 1
    assert (prediction.status, prediction.error_code) == (Prediction.Status.FAILED, "transient_error")


def test_retry_waits_are_jittered_below_the_backoff_cap():
    draws = []

    def lowest(n: int) -> int:
        draws.append(n)
        return 0

    _, countdowns = run_with_retries(OperationalError("blip"), randrange=lowest)
    assert draws == [2, 3, 5, 9, 17]  # randrange(cap + 1): a wait anywhere in [0, cap] seconds
    assert countdowns == [0, 0, 0, 0, 0]


def test_storage_endpoint_unreachable_is_retried_then_fails_with_transient_error():
    failure = EndpointConnectionError(endpoint_url="https://bucket.s3.example.com/uploads/a.jpg")
    assert not isinstance(failure, ConnectionError)  # botocore's own class, not the builtin
    prediction, countdowns = run_with_retries(failure, randrange=lambda n: n - 1)
    assert countdowns == [1, 2, 4, 8, 16]
    assert prediction.attempts == predict.max_retries + 1
    assert (prediction.status, prediction.error_code) == (Prediction.Status.FAILED, "transient_error")
    assert "Could not connect to the endpoint URL" in prediction.error_message


def s3_error(code: str, status: int) -> ClientError:
    response = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "GetObject")


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (EndpointConnectionError(endpoint_url="https://s3.example.com"), True),
        (ReadTimeoutError(endpoint_url="https://s3.example.com"), True),
        (s3_error("SlowDown", 503), True),
        (s3_error("RequestTimeout", 400), True),
        (s3_error("InternalError", 500), True),
        (s3_error("SomethingNew", 502), True),
        (s3_error("AccessDenied", 403), False),
        (s3_error("NoSuchKey", 404), False),
        (OperationalError("gone"), True),
        (ValueError("bug"), False),
    ],
)
def test_which_errors_are_transient(error, transient):
    assert error_is_transient(error) is transient


def test_storage_access_denied_is_not_retried():
    prediction, countdowns = run_with_retries(s3_error("AccessDenied", 403), randrange=lambda n: n - 1)
    assert countdowns == []
    assert (prediction.status, prediction.error_code) == (Prediction.Status.FAILED, "internal_error")


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


@pytest.mark.parametrize(
    ("queues", "warmed"),
    [(None, True), (["inference", "default"], True), (["training", "ingest"], False)],
)
def test_only_workers_of_the_inference_queue_warm_the_model(monkeypatch, queues, warmed):
    """The Procfile's jobs worker (training, ingest) no longer loads the prediction model in every process it
    starts; the inference worker does, and so does a worker whose queues were not seen (None)."""
    from types import SimpleNamespace

    from predictions import tasks

    monkeypatch.setattr(tasks, "_consumes_predict_queue", None)
    if queues is not None:  # a worker as `celery worker --queues ...` sets it up: only the queue names matter
        consume_from = dict.fromkeys(queues)
        fake = SimpleNamespace(
            app=SimpleNamespace(amqp=SimpleNamespace(queues=SimpleNamespace(consume_from=consume_from)))
        )
        tasks.note_queues(sender="jobs@host", instance=fake)
    built = []
    monkeypatch.setattr(tasks, "model_version_get_active", lambda: "v1")
    monkeypatch.setattr(tasks.runtime, "pipeline_get", lambda version: built.append(version) or "pipeline")
    monkeypatch.setattr(tasks.runtime, "pipeline_warm", lambda pipeline: built.append(pipeline))
    tasks.warm_models()
    assert built == (["v1", "pipeline"] if warmed else [])
