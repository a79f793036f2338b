"""prediction_sweep: stale queued jobs are enqueued again; jobs of dead workers retried, then failed."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from predictions.models import Prediction
from predictions.services import prediction_claim, prediction_create, prediction_enqueue, prediction_sweep
from tests.conftest import image_bytes

pytestmark = pytest.mark.django_db


def new_prediction() -> Prediction:
    return prediction_create(upload=SimpleUploadedFile("a.jpg", image_bytes()), channel="web", session_key="s")


def test_successful_enqueue_is_recorded_and_not_swept_again_soon():
    prediction = new_prediction()
    with mock.patch("sneakers.celery.app.send_task") as send_task:
        assert prediction_enqueue(prediction_id=prediction.id)
        assert prediction_sweep().requeued == 0  # just enqueued: the message is in the broker
        send_task.assert_called_once()
    assert Prediction.objects.get(id=prediction.id).enqueued_at is not None


def test_upload_the_broker_never_accepted_is_enqueued_by_the_sweeper(settings):
    settings.SNEAKERS_REQUEUE_AFTER_SECONDS = 60
    prediction = new_prediction()  # in this test the on_commit enqueue never runs: like a broker outage
    with mock.patch("sneakers.celery.app.send_task") as send_task:
        assert prediction_sweep().requeued == 0  # too fresh
        later = timezone.now() + timedelta(seconds=61)
        report = prediction_sweep(now=later)
    assert report.requeued == 1
    send_task.assert_called_once_with("predictions.tasks.predict", args=[str(prediction.id)])


def test_an_accepted_job_still_waiting_in_the_queue_is_not_sent_twice_until_presumed_lost(settings):
    settings.SNEAKERS_REQUEUE_AFTER_SECONDS = 60
    settings.SNEAKERS_REQUEUE_LOST_AFTER_SECONDS = 1800
    prediction = new_prediction()
    waiting = mock.patch("predictions.services.inference_queue_length", return_value=250)
    with waiting, mock.patch("sneakers.celery.app.send_task") as send_task:
        prediction_enqueue(prediction_id=prediction.id)  # the broker took it; a long queue is ahead of it
        assert prediction_sweep(now=timezone.now() + timedelta(seconds=600)).requeued == 0
        assert prediction_sweep(now=timezone.now() + timedelta(seconds=1801)).requeued == 1  # message lost
    assert send_task.call_count == 2


def test_an_accepted_job_is_sent_again_soon_when_nothing_waits_in_the_queue(settings):
    # A worker reserved its message and died before starting it: the queue is empty, the row queued.
    settings.SNEAKERS_REQUEUE_AFTER_SECONDS = 60
    prediction = new_prediction()
    empty = mock.patch("predictions.services.inference_queue_length", return_value=0)
    with empty, mock.patch("sneakers.celery.app.send_task") as send_task:
        prediction_enqueue(prediction_id=prediction.id)
        assert prediction_sweep(now=timezone.now() + timedelta(seconds=30)).requeued == 0
        assert prediction_sweep(now=timezone.now() + timedelta(seconds=61)).requeued == 1
    assert send_task.call_count == 2


def test_queue_length_is_read_from_the_real_broker():
    from predictions.services import inference_queue_length

    assert isinstance(inference_queue_length(), int)


def test_broker_still_down_keeps_it_queued_for_the_next_sweep():
    prediction = new_prediction()
    later = timezone.now() + timedelta(hours=1)
    with mock.patch("sneakers.celery.app.send_task", side_effect=ConnectionError("down")):
        assert prediction_sweep(now=later).requeued == 0
    prediction.refresh_from_db()
    assert prediction.status == Prediction.Status.QUEUED and prediction.enqueued_at is None


def test_running_job_of_a_dead_worker_is_retried_then_failed_after_max_attempts(settings):
    settings.SNEAKERS_STUCK_AFTER_SECONDS = 600
    settings.SNEAKERS_MAX_ATTEMPTS = 2
    prediction = new_prediction()
    with mock.patch("sneakers.celery.app.send_task") as send_task:
        for attempt in (1, 2):
            claimed = prediction_claim(prediction_id=prediction.id)
            assert claimed.attempts == attempt
            assert prediction_sweep(now=timezone.now() + timedelta(seconds=300)).retried == 0  # still in time
            report = prediction_sweep(now=timezone.now() + timedelta(seconds=601))
            if attempt == 1:
                assert (report.retried, report.failed) == (1, 0)
                assert Prediction.objects.get(id=prediction.id).status == Prediction.Status.QUEUED
            else:
                assert (report.retried, report.failed) == (0, 1)
    prediction.refresh_from_db()
    assert prediction.status == Prediction.Status.FAILED and prediction.error_code == "worker_lost"
    assert send_task.call_count == 1


def test_finished_jobs_are_never_touched():
    prediction = new_prediction()
    Prediction.objects.filter(id=prediction.id).update(status="succeeded", started_at=timezone.now())
    with mock.patch("sneakers.celery.app.send_task") as send_task:
        report = prediction_sweep(now=timezone.now() + timedelta(days=1))
    assert report == type(report)(requeued=0, retried=0, failed=0)
    send_task.assert_not_called()
