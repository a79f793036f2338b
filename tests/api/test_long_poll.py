"""Long polling (``?wait=SECONDS``): a status read is held until the prediction finishes, and answers at once
when it already has, when no waiting slot is free, or when the wait is 0.

A second thread (its own database connection, so the tests commit: ``transaction=True``) finishes the
prediction while the request waits, as the worker would.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.test import Client

from predictions import longpoll, selectors
from predictions.models import Prediction

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _rates(settings) -> None:
    settings.SNEAKERS_API_RATES = {"upload": "100000/min", "read": "100000/min", "anon": "100000/min"}


def _update_later(prediction_id, after: float, **fields) -> threading.Thread:
    """Update the prediction's row with ``fields`` ``after`` seconds from now, from another thread and connection
    (as the worker would)."""

    def update() -> None:
        time.sleep(after)
        try:
            Prediction.objects.filter(id=prediction_id).update(**fields)
        finally:
            connection.close()

    thread = threading.Thread(target=update)
    thread.start()
    return thread


def _finish_later(prediction_id, after: float) -> threading.Thread:
    """Mark the prediction succeeded (brand nike) ``after`` seconds from now (``_update_later``)."""
    return _update_later(prediction_id, after, status=Prediction.Status.SUCCEEDED, brand="nike")


def _queued(**fields) -> Prediction:
    return Prediction.objects.create(channel=Prediction.Channel.API, **fields)


def test_api_wait_answers_when_the_prediction_finishes(token_client, user) -> None:
    prediction = _queued(owner=user)
    finisher = _finish_later(prediction.id, 0.4)
    started = time.monotonic()
    response = token_client.get(f"/api/v1/predictions/{prediction.id}/?wait=10")
    elapsed = time.monotonic() - started
    finisher.join()
    assert response.status_code == 200
    assert response.json()["status"] == "succeeded"
    assert response.json()["brand"] == "nike"
    assert 0.35 <= elapsed < 5.0


def test_api_wait_runs_out_with_the_status_as_it_is(token_client, user) -> None:
    prediction = _queued(owner=user)
    started = time.monotonic()
    response = token_client.get(f"/api/v1/predictions/{prediction.id}/?wait=0.3")
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200
    assert response.json()["status"] == "queued"


@pytest.mark.parametrize("wait", ["-1", "abc", "21", "nan"])
def test_api_bad_wait_is_a_400_with_a_json_error(token_client, user, wait) -> None:
    prediction = _queued(owner=user)
    response = token_client.get(f"/api/v1/predictions/{prediction.id}/?wait={wait}")
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["code"] == "invalid"
    assert "wait" in body["error"]["detail"]


def test_api_wait_on_someone_elses_prediction_is_404_at_once(token_client, other_user) -> None:
    prediction = _queued(owner=other_user)
    started = time.monotonic()
    response = token_client.get(f"/api/v1/predictions/{prediction.id}/?wait=5")
    assert response.status_code == 404
    assert time.monotonic() - started < 2.0


def test_no_free_slot_answers_at_once(token_client, user, settings) -> None:
    settings.SNEAKERS_LONG_POLL_WAITERS = 1
    prediction = _queued(owner=user)
    slots = selectors._waiter_slots(1)
    assert slots.acquire(blocking=False)  # another request holds the only slot
    try:
        started = time.monotonic()
        response = token_client.get(f"/api/v1/predictions/{prediction.id}/?wait=5")
        assert time.monotonic() - started < 2.0
        assert response.json()["status"] == "queued"
    finally:
        slots.release()
    # With the slot free again the same read waits.
    finisher = _finish_later(prediction.id, 0.3)
    assert token_client.get(f"/api/v1/predictions/{prediction.id}/?wait=5").json()["status"] == "succeeded"
    finisher.join()


@pytest.mark.parametrize(
    ("query", "waiters"),
    [("", 5), ("?wait=0", 5), ("?wait=5", 0)],
    ids=["no wait", "wait=0", "long polling off (waiters 0)"],
)
def test_a_read_that_may_not_wait_answers_at_once(token_client, user, settings, query, waiters) -> None:
    settings.SNEAKERS_LONG_POLL_WAITERS = waiters
    prediction = _queued(owner=user)
    started = time.monotonic()
    assert token_client.get(f"/api/v1/predictions/{prediction.id}/{query}").json()["status"] == "queued"
    assert time.monotonic() - started < 2.0


def test_result_page_status_json_long_polls(user) -> None:
    client = Client()
    client.force_login(user)
    prediction = _queued(owner=user)
    finisher = _finish_later(prediction.id, 0.3)
    started = time.monotonic()
    response = client.get(f"/p/{prediction.id}/status/?wait=10")
    finisher.join()
    assert response.status_code == 200, response.content
    assert response.json()["terminal"] is True
    assert time.monotonic() - started >= 0.25
    for bad_wait in ("abc", "-2", "60"):
        bad = client.get(f"/p/{prediction.id}/status/?wait={bad_wait}")
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "invalid"


def test_result_page_status_json_also_answers_when_the_status_moves_on(user) -> None:
    """``known=queued``: the page hears of ``running`` at once (to say "Identifying the shoe"); a status that
    already differs from the known one answers without waiting; an unknown ``known`` value is ignored."""
    client = Client()
    client.force_login(user)
    prediction = _queued(owner=user)

    starter = _update_later(prediction.id, 0.3, status=Prediction.Status.RUNNING)
    started = time.monotonic()
    body = client.get(f"/p/{prediction.id}/status/?wait=10&known=queued").json()
    starter.join()
    assert body["status"] == "running" and body["terminal"] is False
    assert 0.25 <= time.monotonic() - started < 5.0

    started = time.monotonic()
    assert client.get(f"/p/{prediction.id}/status/?wait=10&known=queued").json()["status"] == "running"
    assert time.monotonic() - started < 2.0  # already moved on: no wait

    started = time.monotonic()
    body = client.get(f"/p/{prediction.id}/status/?wait=0.3&known=nonsense").json()
    assert body["status"] == "running" and time.monotonic() - started >= 0.3  # waits for the end only


def _wait_in_thread(prediction: Prediction, timeout: float, results: dict, known: str = "") -> threading.Thread:
    """``longpoll.watcher().wait`` for ``prediction`` in a new thread; its answer lands in ``results[id]``."""

    def wait() -> None:
        started = time.monotonic()
        moved = longpoll.watcher().wait(prediction_id=prediction.id, known_status=known, timeout=timeout)
        results[prediction.id] = (moved, time.monotonic() - started)

    thread = threading.Thread(target=wait)
    thread.start()
    return thread


def test_the_watcher_wakes_only_the_request_whose_prediction_finished(user) -> None:
    first, second, third = (_queued(owner=user) for _ in range(3))
    results: dict = {}
    waiting = [_wait_in_thread(p, 1.0, results) for p in (first, second, third)]
    finisher = _finish_later(first.id, 0.2)
    for thread in [*waiting, finisher]:
        thread.join()
    moved, elapsed = results[first.id]
    assert moved and 0.15 <= elapsed < 0.9
    for other in (second, third):
        moved, elapsed = results[other.id]
        assert not moved and elapsed >= 1.0


def test_the_watcher_reads_every_waiting_prediction_in_one_query_per_tick(user, settings, monkeypatch) -> None:
    settings.SNEAKERS_LONG_POLL_INTERVAL = 0.05
    ticks: list[int] = []
    real_tick = longpoll.StatusWatcher._tick
    monkeypatch.setattr(
        longpoll.StatusWatcher, "_tick", staticmethod(lambda waiters: (ticks.append(len(waiters)), real_tick(waiters)))
    )
    predictions = [_queued(owner=user) for _ in range(4)]
    results: dict = {}
    waiting = [_wait_in_thread(p, 0.6, results) for p in predictions]
    for thread in waiting:
        thread.join()
    assert max(ticks) == 4  # four requests, one query
    assert len(ticks) <= 0.6 / 0.05 + 3  # ticks follow the clock, not the number of requests (4 x 12 before)
    assert not any(moved for moved, _ in results.values())


def test_the_watcher_survives_a_failed_read(user, monkeypatch) -> None:
    prediction = _queued(owner=user)
    real_tick = longpoll.StatusWatcher._tick
    failures = []

    def flaky(waiters):
        if not failures:
            failures.append(1)
            raise RuntimeError("database went away")
        return real_tick(waiters)

    monkeypatch.setattr(longpoll.StatusWatcher, "_tick", staticmethod(flaky))
    results: dict = {}
    waiting = _wait_in_thread(prediction, 5.0, results)
    finisher = _finish_later(prediction.id, 0.2)
    waiting.join()
    finisher.join()
    assert failures == [1]
    assert results[prediction.id][0] is True


def test_the_watcher_wakes_a_known_status_wait_when_the_status_moves_on(user) -> None:
    prediction = _queued(owner=user)
    results: dict = {}
    waiting = _wait_in_thread(prediction, 5.0, results, known=Prediction.Status.QUEUED)
    starter = _update_later(prediction.id, 0.2, status=Prediction.Status.RUNNING)
    waiting.join()
    starter.join()
    moved, elapsed = results[prediction.id]
    assert moved and elapsed < 4.0


def _finish_the_next_upload_of(user, after: float, **fields) -> threading.Thread:
    """Mark ``user``'s next new prediction succeeded (and set ``fields``) ``after`` seconds after it appears, from
    another thread and connection (as the worker would finish the job the upload enqueued)."""
    known = set(Prediction.objects.filter(owner=user).values_list("id", flat=True))

    def finish() -> None:
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                new = Prediction.objects.filter(owner=user).exclude(id__in=known).values_list("id", flat=True).first()
                if new is not None:
                    time.sleep(after)
                    Prediction.objects.filter(id=new).update(status=Prediction.Status.SUCCEEDED, brand="vans", **fields)
                    return
                time.sleep(0.02)
        finally:
            connection.close()

    thread = threading.Thread(target=finish)
    thread.start()
    return thread


def _upload(client, query: str = ""):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.conftest import image_bytes

    photo = SimpleUploadedFile("shoe.jpg", image_bytes(), content_type="image/jpeg")
    return client.post(f"/api/v1/predictions/{query}", {"image": photo}, format="multipart")


def test_an_upload_with_wait_answers_201_with_the_result_when_it_finishes_in_time(token_client, user) -> None:
    finisher = _finish_the_next_upload_of(user, 0.3)
    started = time.monotonic()
    response = _upload(token_client, "?wait=10")
    elapsed = time.monotonic() - started
    finisher.join()
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "succeeded" and body["brand"] == "vans"
    assert response["Location"] == body["url"]
    assert 0.25 <= elapsed < 5.0


def test_an_upload_with_wait_reads_its_prediction_once_after_the_wait_with_its_model_version(
    token_client, user
) -> None:
    """The upload's own prediction is not read back before the wait, and the one read after it brings the model
    version the answer names (no third query for it)."""
    from django.test.utils import CaptureQueriesContext

    from registry.models import ModelVersion

    version = ModelVersion.objects.create(name="v-wait", artifact_prefix="models/v-wait", backbone_fingerprint="x")
    finisher = _finish_the_next_upload_of(user, 0.2, model_version=version)
    with CaptureQueriesContext(connection) as queries:  # this thread's queries only (the watcher has its own)
        response = _upload(token_client, "?wait=10")
    finisher.join()
    assert response.status_code == 201, response.content
    assert response.json()["model_version"] == "v-wait" and response.json()["brand"] == "vans"
    reads = [query["sql"] for query in queries.captured_queries if query["sql"].lstrip().upper().startswith("SELECT")]
    prediction_reads = [sql for sql in reads if "predictions_prediction" in sql]
    assert len(prediction_reads) == 1 and "registry_modelversion" in prediction_reads[0], reads
    assert not [sql for sql in reads if "registry_modelversion" in sql and "predictions_prediction" not in sql]


def test_an_idempotent_replay_with_wait_answers_the_finished_result(token_client, user) -> None:
    """A replay's prediction is read back (it was made by an earlier request) and, being finished, answered at once
    with ``201``."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.conftest import image_bytes

    def post(wait: float):  # the query string is not part of the key's request fingerprint
        photo = SimpleUploadedFile("shoe.jpg", image_bytes(), content_type="image/jpeg")
        return token_client.post(
            f"/api/v1/predictions/?wait={wait}", {"image": photo}, format="multipart", HTTP_IDEMPOTENCY_KEY="replay-1"
        )

    first = post(0.2)
    assert first.status_code == 202 and first.json()["status"] == "queued"
    Prediction.objects.filter(id=first.json()["id"]).update(status=Prediction.Status.SUCCEEDED, brand="nike")
    started = time.monotonic()
    again = post(10)
    assert time.monotonic() - started < 5.0  # at once, not after the 10 s wait
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"] and again.json()["brand"] == "nike"
    assert Prediction.objects.filter(owner=user).count() == 1


def test_an_upload_whose_wait_runs_out_answers_202_queued(token_client, user) -> None:
    started = time.monotonic()
    response = _upload(token_client, "?wait=0.3")
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    assert Prediction.objects.filter(owner=user).count() == 1


def test_an_upload_with_a_bad_wait_is_a_400_and_creates_nothing(token_client, user) -> None:
    response = _upload(token_client, "?wait=abc")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert not Prediction.objects.filter(owner=user).exists()


def test_a_refused_upload_with_wait_answers_its_error_at_once(token_client, user) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    started = time.monotonic()
    bad = SimpleUploadedFile("shoe.jpg", b"not an image", content_type="image/jpeg")
    response = token_client.post("/api/v1/predictions/?wait=5", {"image": bad}, format="multipart")
    assert time.monotonic() - started < 2.0
    assert response.status_code == 400 and response.json()["error"]["code"] == "image_unreadable"
