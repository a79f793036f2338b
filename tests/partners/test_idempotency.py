"""Idempotency-Key on the API's POSTs: replays give the first answer, another request under the key is refused,
keys are per user and expire after 24 hours."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from partners.models import Batch
from predictions.idempotency import idempotency_sweep
from predictions.models import IdempotencyKey, Prediction
from tests.conftest import image_bytes
from tests.partners.conftest import assert_error, photo

pytestmark = pytest.mark.django_db

KEY = "3f6c1f0e-8d0b-4bb8-9a57-2f0d2f1f4b11"


def upload(client, key: str = KEY, data: bytes | None = None, title: str = "Nike Dunk Low"):
    return client.post(
        "/api/v1/predictions/",
        {"image": photo(data=data), "title": title},
        format="multipart",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def test_the_same_key_and_request_give_the_same_prediction(token_client):
    first = upload(token_client)
    again = upload(token_client)

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again["Location"] == first["Location"]
    assert again["Idempotent-Replayed"] == "true" and not first.has_header("Idempotent-Replayed")
    assert Prediction.objects.count() == 1


def test_the_same_key_with_another_photo_or_field_is_refused(token_client):
    upload(token_client)
    other_photo = upload(token_client, data=image_bytes(color=(0, 0, 255)))
    other_title = upload(token_client, title="Nike Dunk High")

    for refused in (other_photo, other_title):
        error = assert_error(refused, 422, "idempotency_key_reused")
        assert error["detail"] == {"key": KEY}
    assert Prediction.objects.count() == 1


def test_a_key_used_for_a_batch_cannot_upload_a_photo(token_client):
    batch = token_client.post("/api/v1/batches/", {"images": [photo()]}, format="multipart", HTTP_IDEMPOTENCY_KEY=KEY)
    assert batch.status_code == 202
    assert_error(upload(token_client), 422, "idempotency_key_reused")


def test_a_batch_is_created_once(token_client):
    body = {"items": [{"image_url": "https://shop.example.com/a.jpg"}]}
    first = token_client.post("/api/v1/batches/", body, format="json", HTTP_IDEMPOTENCY_KEY=KEY)
    # Same JSON value, other key order and spacing: the same request.
    again = token_client.post(
        "/api/v1/batches/",
        '{ "items" : [ {"image_url": "https://shop.example.com/a.jpg"} ] }',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=KEY,
    )
    assert first.status_code == again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert Batch.objects.count() == 1


def test_keys_are_scoped_per_user(token_client, other_token_client):
    mine, theirs = upload(token_client), upload(other_token_client)
    assert mine.status_code == theirs.status_code == 202 and mine.json()["id"] != theirs.json()["id"]


def test_a_refused_photo_is_replayed_as_the_same_refusal(token_client):
    first = upload(token_client, data=b"%PDF-1.4")
    again = upload(token_client, data=b"%PDF-1.4")
    error = assert_error(first, 400, "image_unreadable")
    assert again.status_code == 400 and again.json() == first.json()
    assert Prediction.objects.get().id.hex == error["detail"]["prediction_id"].replace("-", "")


def test_a_request_that_created_nothing_frees_the_key(token_client):
    refused = token_client.post("/api/v1/predictions/", {}, format="multipart", HTTP_IDEMPOTENCY_KEY=KEY)
    assert_error(refused, 400, "invalid")
    assert upload(token_client).status_code == 202


def test_a_retry_while_the_first_runs_is_409(token_client):
    upload(token_client)
    IdempotencyKey.objects.update(response_status=None, response_body=None)  # as while the first is answered
    assert_error(upload(token_client), 409, "idempotency_key_in_use")


def test_an_expired_key_is_free_again_and_swept(token_client):
    first = upload(token_client).json()
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=24, minutes=1))

    again = upload(token_client, data=image_bytes(color=(0, 255, 0)))

    assert again.status_code == 202 and again.json()["id"] != first["id"]
    assert IdempotencyKey.objects.count() == 1  # the expired record was replaced
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))
    assert idempotency_sweep() == 1 and not IdempotencyKey.objects.exists()


@pytest.mark.parametrize("key", ["", "x" * 256, "clé-unicode"])
def test_malformed_keys_are_refused(token_client, key):
    assert_error(upload(token_client, key=key), 400, "idempotency_key_invalid")
    assert not Prediction.objects.exists()


def test_without_a_key_every_post_is_a_new_prediction(token_client):
    for _ in range(2):
        assert token_client.post("/api/v1/predictions/", {"image": photo()}, format="multipart").status_code == 202
    assert Prediction.objects.count() == 2
