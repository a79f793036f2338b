"""Batches: photos and image URLs in, 202 + Location, progress and per-item results paged, ownership, limits,
URL items fetched by the worker from a real server on 127.0.0.1, and the batch.finished webhook."""

from __future__ import annotations

import json

import pytest

from partners.models import Batch, BatchItem, WebhookDelivery
from partners.services import webhook_endpoint_create
from predictions.models import Prediction
from predictions.services import prediction_mark_failed, prediction_run
from registry.services import model_version_create
from tests.conftest import image_bytes
from tests.partners.conftest import assert_error, photo

pytestmark = pytest.mark.django_db


def test_a_multipart_batch_is_202_with_its_items_in_order(token_client, user):
    response = token_client.post(
        "/api/v1/batches/",
        {
            "images": [photo("a.jpg"), photo("b.jpg", b"not an image"), photo("c.png", image_bytes("PNG"))],
            "titles": ["Adidas Samba OG", "", "New Balance 550"],
            "image_urls": ["https://shop.example.com/img/550.webp"],
        },
        format="multipart",
    )

    assert response.status_code == 202, response.content
    body = response.json()
    assert response["Location"] == body["url"] and body["url"].endswith(f"/api/v1/batches/{body['id']}/")
    assert body["status"] == "running" and body["total"] == 4
    assert body["counts"] == {"queued": 3, "running": 0, "succeeded": 0, "failed": 1} and body["progress"] == 0.25
    items = list(BatchItem.objects.filter(batch_id=body["id"]).select_related("prediction").order_by("position"))
    predictions = [item.prediction for item in items]
    assert [p.title for p in predictions] == ["Adidas Samba OG", "", "New Balance 550", ""]
    assert [p.status for p in predictions] == ["queued", "failed", "queued", "queued"]
    assert predictions[1].error_code == "image_unreadable"
    assert predictions[3].source_url == "https://shop.example.com/img/550.webp" and not predictions[3].image
    assert all(p.owner == user and p.channel == "api" for p in predictions)


def test_a_json_batch_of_urls(token_client):
    response = token_client.post(
        "/api/v1/batches/",
        {
            "items": [
                {"image_url": "https://shop.example.com/a.jpg", "title": "Nike Dunk Low"},
                {"image_url": "https://shop.example.com/b.jpg"},
            ]
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    assert list(Prediction.objects.order_by("created_at").values_list("source_url", "title")) == [
        ("https://shop.example.com/a.jpg", "Nike Dunk Low"),
        ("https://shop.example.com/b.jpg", ""),
    ]


def test_the_detail_pages_the_items_with_their_results(token_client):
    body = token_client.post(
        "/api/v1/batches/", {"images": [photo(f"{n}.jpg") for n in range(5)]}, format="multipart"
    ).json()
    first = Prediction.objects.get(batch_item__position=0)
    Prediction.objects.filter(id=first.id).update(
        status="succeeded", brand="nike", brands=[{"name": "nike", "probability": 0.9}]
    )

    page1 = token_client.get(f"{body['url']}?page_size=2").json()
    page3 = token_client.get(f"{body['url']}?page_size=2&page=3").json()

    assert page1["counts"]["succeeded"] == 1 and page1["progress"] == 0.2
    assert page1["items"]["count"] == 5 and page1["items"]["next"] and page1["items"]["previous"] is None
    assert [item["position"] for item in page1["items"]["results"]] == [0, 1]
    assert page1["items"]["results"][0]["prediction"]["brand"] == "nike"
    assert page1["items"]["results"][0]["prediction"]["id"] == str(first.id)
    assert [item["position"] for item in page3["items"]["results"]] == [4]
    assert_error(token_client.get(f"{body['url']}?page=9"), 404, "not_found")


def test_batches_are_listed_and_private(token_client, other_token_client):
    url = token_client.post("/api/v1/batches/", {"images": [photo()]}, format="multipart").json()["url"]
    assert token_client.get("/api/v1/batches/").json()["count"] == 1
    assert other_token_client.get("/api/v1/batches/").json()["count"] == 0
    assert_error(other_token_client.get(url), 404, "not_found")


def test_limits_on_items(token_client, settings):
    settings.SNEAKERS_BATCH_MAX_ITEMS = 2
    assert_error(token_client.post("/api/v1/batches/", {}, format="multipart"), 400, "batch_empty")
    assert_error(token_client.post("/api/v1/batches/", {"items": []}, format="json"), 400, "batch_empty")
    error = assert_error(
        token_client.post("/api/v1/batches/", {"images": [photo(), photo(), photo()]}, format="multipart"),
        400,
        "batch_too_many_items",
    )
    assert error["detail"] == {"max_items": 2, "items": 3}
    assert_error(
        token_client.post("/api/v1/batches/", {"images": [photo()], "titles": ["a", "b"]}, format="multipart"),
        400,
        "invalid",
    )
    assert_error(
        token_client.post("/api/v1/batches/", {"items": [{"image_url": "not a url"}]}, format="json"), 400, "invalid"
    )
    assert not Batch.objects.exists() and not Prediction.objects.exists()


def test_a_request_over_the_byte_limit_is_413_before_anything_is_stored(token_client, settings):
    settings.SNEAKERS_BATCH_MAX_BYTES = 1000
    response = token_client.post(
        "/api/v1/batches/", {"images": [photo(data=image_bytes(size=(400, 400)))]}, format="multipart"
    )
    assert_error(response, 413, "batch_too_large")
    assert not Prediction.objects.exists()


def test_each_item_counts_against_the_upload_rate(token_client, settings):
    settings.SNEAKERS_API_RATES = {**settings.SNEAKERS_API_RATES, "upload": "3/min"}
    assert token_client.post("/api/v1/batches/", {"images": [photo(), photo()]}, format="multipart").status_code == 202
    refused = token_client.post("/api/v1/batches/", {"images": [photo(), photo()]}, format="multipart")
    error = assert_error(refused, 429, "throttled")
    assert int(refused["Retry-After"]) >= 1 and error["detail"]["retry_after_seconds"] >= 1
    assert refused["X-RateLimit-Scope"] == "upload" and refused["X-RateLimit-Remaining"] == "1"
    assert Prediction.objects.count() == 2  # nothing of the refused batch was stored
    single = token_client.post("/api/v1/predictions/", {"image": photo()}, format="multipart")
    assert single.status_code == 202 and single["X-RateLimit-Remaining"] == "0"


def _url_item_run(token_client, url: str) -> Prediction:
    """Send one URL item, run its job in this process (an active model version whose files do not exist)."""
    model_version_create(
        name="v-missing",
        artifact_prefix="nowhere/",
        backbone_fingerprint="f",
        classes=["nike"],
        metrics={},
        training_seconds=1,
    )
    token_client.post("/api/v1/batches/", {"items": [{"image_url": url}]}, format="json")
    prediction = Prediction.objects.get()
    prediction_run(prediction_id=str(prediction.id))
    prediction.refresh_from_db()
    return prediction


def test_a_url_item_is_downloaded_by_the_worker_and_stored_like_an_upload(token_client, receiver):
    data = image_bytes("PNG", size=(40, 30))
    receiver.files["/img/shoe.png"] = (data, "image/png")

    prediction = _url_item_run(token_client, receiver.url("/img/shoe.png"))

    # The download and the checks passed; the model's files are missing, so the job fails after that.
    assert prediction.error_code == "model_unavailable"
    assert prediction.image.name.endswith(f"{prediction.id}.png") and prediction.image.read() == data
    assert prediction.size_bytes == len(data) and len(prediction.sha256) == 64
    assert prediction.source_url == receiver.url("/img/shoe.png")


def test_a_failed_download_fails_the_item_with_its_code_and_keeps_the_url(token_client, receiver):
    prediction = _url_item_run(token_client, receiver.url("/missing.jpg"))
    assert (prediction.status, prediction.error_code) == ("failed", "url_http_error")
    assert prediction.source_url == receiver.url("/missing.jpg") and not prediction.image


def test_a_private_url_is_refused_by_the_worker(token_client, receiver, settings):
    settings.SNEAKERS_FETCH_ALLOW_PRIVATE = False
    prediction = _url_item_run(token_client, receiver.url("/img/shoe.png"))
    assert (prediction.status, prediction.error_code) == ("failed", "url_private_address")


def test_downloaded_bytes_that_are_not_a_usable_photo_are_kept_and_refused(token_client, receiver):
    receiver.files["/tiny.png"] = (image_bytes("PNG", size=(8, 8)), "image/png")
    prediction = _url_item_run(token_client, receiver.url("/tiny.png"))
    assert (prediction.status, prediction.error_code) == ("failed", "image_too_small")
    assert prediction.image.name.endswith(".bin")


def test_the_batch_finishes_with_its_last_item_and_sends_batch_finished(
    user, token_client, receiver, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr("sneakers.celery.app.send_task", lambda *a, **k: None)
    webhook_endpoint_create(owner=user, url=receiver.url("/hook"), events=["batch.finished"])
    with django_capture_on_commit_callbacks(execute=True):
        body = token_client.post("/api/v1/batches/", {"images": [photo(), photo()]}, format="multipart").json()
    ids = list(Prediction.objects.values_list("id", flat=True))

    with django_capture_on_commit_callbacks(execute=True):
        prediction_mark_failed(prediction_id=ids[0], code="worker_lost", message="gone")
    assert Batch.objects.get().status == "running" and not WebhookDelivery.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        prediction_mark_failed(prediction_id=ids[1], code="worker_lost", message="gone")

    batch = Batch.objects.get()
    assert batch.status == "finished" and batch.finished_at >= batch.created_at
    delivery = WebhookDelivery.objects.get()
    assert delivery.event_type == "batch.finished"
    event = json.loads(json.dumps(delivery.payload))
    assert event["data"]["object"]["id"] == body["id"]
    assert event["data"]["object"]["counts"] == {"queued": 0, "running": 0, "succeeded": 0, "failed": 2}
    assert event["data"]["object"]["progress"] == 1.0
    detail = token_client.get(body["url"]).json()
    assert detail["status"] == "finished" and detail["finished_at"]


def test_a_batch_of_refused_photos_finishes_at_once(token_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        body = token_client.post("/api/v1/batches/", {"images": [photo(data=b"")]}, format="multipart").json()
    assert body["counts"]["failed"] == 1
    assert token_client.get(body["url"]).json()["status"] == "finished"


def test_the_sweep_finishes_a_batch_whose_signal_was_lost(user):
    from datetime import timedelta

    from django.utils import timezone

    from partners.services import batch_sweep

    batch = Batch.objects.create(owner=user, item_count=1)
    prediction = Prediction.objects.create(owner=user, channel="api", status="failed", error_code="worker_lost")
    BatchItem.objects.create(batch=batch, position=0, prediction=prediction)
    assert batch_sweep() == 0  # too young: its signal may still be on its way
    assert batch_sweep(now=timezone.now() + timedelta(minutes=5)) == 1
    assert Batch.objects.get().status == "finished"
