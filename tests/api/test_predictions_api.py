"""Prediction API: token auth, 202 + Location, ownership (404 for others), one error shape."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from predictions.models import Prediction
from tests.conftest import image_bytes

pytestmark = pytest.mark.django_db


def photo(name: str = "shoe.jpg", data: bytes | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data if data is not None else image_bytes(), content_type="image/jpeg")


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "detail"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def test_upload_requires_a_token():
    response = APIClient().post("/api/v1/predictions/", {"image": photo()}, format="multipart")
    assert_error(response, 401, "not_authenticated")


def test_bad_token_is_refused():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert_error(client.get("/api/v1/predictions/"), 401, "authentication_failed")


def test_upload_answers_202_with_location_and_the_detail_is_pollable(token_client, user):
    response = token_client.post("/api/v1/predictions/", {"image": photo()}, format="multipart")

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["brand"] is None and body["error"] is None
    assert response["Location"] == body["url"] and body["url"].endswith(f"/api/v1/predictions/{body['id']}/")
    prediction = Prediction.objects.get(id=body["id"])
    assert prediction.owner == user and prediction.channel == "api"

    detail = token_client.get(f"/api/v1/predictions/{body['id']}/")
    assert detail.status_code == 200 and detail.json()["id"] == body["id"]


def test_bad_image_is_400_with_code_and_the_failed_prediction_is_kept(token_client):
    response = token_client.post(
        "/api/v1/predictions/", {"image": photo(data=b"%PDF-1.4 not an image")}, format="multipart"
    )
    error = assert_error(response, 400, "image_unreadable")
    prediction = Prediction.objects.get(id=error["detail"]["prediction_id"])
    assert prediction.status == "failed"
    detail = token_client.get(f"/api/v1/predictions/{prediction.id}/").json()
    assert detail["error"] == {"code": "image_unreadable", "message": prediction.error_message}


def test_missing_file_field_is_400(token_client):
    assert_error(token_client.post("/api/v1/predictions/", {}, format="multipart"), 400, "invalid")


def test_two_files_are_refused(token_client):
    response = token_client.post(
        "/api/v1/predictions/", {"image": [photo("a.jpg"), photo("b.jpg")]}, format="multipart"
    )
    assert_error(response, 400, "invalid")
    assert Prediction.objects.count() == 0


def test_json_body_is_415(token_client):
    assert_error(
        token_client.post("/api/v1/predictions/", {"image": "x"}, format="json"), 415, "unsupported_media_type"
    )


def test_nobody_reads_or_lists_another_partners_predictions(token_client, other_token_client):
    mine = token_client.post("/api/v1/predictions/", {"image": photo()}, format="multipart").json()

    assert_error(other_token_client.get(f"/api/v1/predictions/{mine['id']}/"), 404, "not_found")
    assert other_token_client.get("/api/v1/predictions/").json()["count"] == 0
    listed = token_client.get("/api/v1/predictions/").json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == mine["id"]


def test_unknown_id_and_unknown_path_are_json_404(token_client):
    assert_error(token_client.get("/api/v1/predictions/00000000-0000-0000-0000-000000000000/"), 404, "not_found")
    assert_error(token_client.get("/api/v1/nothing-here/"), 404, "not_found")


def test_list_is_paginated(token_client):
    for _ in range(3):
        token_client.post("/api/v1/predictions/", {"image": photo()}, format="multipart")
    page = token_client.get("/api/v1/predictions/?page_size=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]


def test_schema_and_docs_are_served():
    client = APIClient()
    schema = client.get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {
        "/api/v1/predictions/",
        "/api/v1/predictions/{prediction_id}/",
        "/api/v1/products/",
        "/api/v1/brands/",
    } <= set(paths)
    assert client.get("/api/docs/").status_code == 200


def test_openapi_schema_generates_without_warnings_and_validates(tmp_path):
    from django.core.management import call_command

    target = tmp_path / "schema.yml"
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(target))
    assert "/api/v1/predictions/" in target.read_text()


def test_uploads_over_the_rate_get_429_with_retry_after_per_token(settings, token_client, other_token_client):
    settings.SNEAKERS_API_RATES = {**settings.SNEAKERS_API_RATES, "upload": "2/min"}
    for _ in range(2):
        assert token_client.post("/api/v1/predictions/", {"image": photo()}, format="multipart").status_code == 202

    refused = token_client.post("/api/v1/predictions/", {"image": photo()}, format="multipart")

    error = assert_error(refused, 429, "throttled")
    assert 0 < int(refused["Retry-After"]) <= 60 and error["detail"]["retry_after_seconds"] > 0
    assert Prediction.objects.count() == 2  # refused before anything was stored
    # Another partner's token has its own budget; reads are not counted as uploads.
    assert other_token_client.post("/api/v1/predictions/", {"image": photo()}, format="multipart").status_code == 202
    assert token_client.get("/api/v1/predictions/").status_code == 200


def test_an_abstained_result_has_no_brand_but_keeps_the_guesses(token_client):
    body = token_client.post("/api/v1/predictions/", {"image": photo()}, format="multipart").json()
    Prediction.objects.filter(id=body["id"]).update(
        status="succeeded",
        brand="",
        abstain={"reason": "low_confidence", "score": 0.4},
        brands=[{"name": "nike", "probability": 0.4}],
    )
    detail = token_client.get(f"/api/v1/predictions/{body['id']}/").json()
    assert detail["brand"] is None and detail["abstain"] == {"reason": "low_confidence", "score": 0.4}
    assert detail["brands"] == [{"name": "nike", "probability": 0.4}]


def test_a_result_carries_the_named_model_and_its_candidates(token_client):
    body = token_client.post("/api/v1/predictions/", {"image": photo()}, format="multipart").json()
    candidates = [
        {"name": "Nike Air Jordan 1 High", "brand": "nike", "probability": 0.81},
        {"name": "Nike Dunk High", "brand": "nike", "probability": 0.1},
    ]
    Prediction.objects.filter(id=body["id"]).update(
        status="succeeded", brand="nike", shoe_model="Nike Air Jordan 1 High", shoe_models=candidates
    )
    detail = token_client.get(f"/api/v1/predictions/{body['id']}/").json()
    assert detail["model"] == "Nike Air Jordan 1 High" and detail["models"] == candidates

    Prediction.objects.filter(id=body["id"]).update(shoe_model="")  # the model head is not sure
    detail = token_client.get(f"/api/v1/predictions/{body['id']}/").json()
    assert detail["model"] is None and detail["models"] == candidates


def test_similar_products_link_to_their_product_pages(token_client):
    body = token_client.post("/api/v1/predictions/", {"image": photo()}, format="multipart").json()
    item = {"product_id": 871, "name": "Vans Old Skool - Men's", "brand": "vans", "price_usd": 60.0, "score": 0.9}
    Prediction.objects.filter(id=body["id"]).update(
        status="succeeded", brand="vans", similar=[{**item, "image_url": None}]
    )
    detail = token_client.get(f"/api/v1/predictions/{body['id']}/").json()
    assert detail["similar"][0]["product_url"] == "http://testserver/products/871/"
