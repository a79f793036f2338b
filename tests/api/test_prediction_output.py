"""PredictionOutputSerializer's own to_representation renders exactly what DRF's generic one renders from the
declared fields (the API contract and the OpenAPI schema), for predictions in every state."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from predictions.apis import PredictionOutputSerializer
from predictions.models import Prediction
from predictions.services import prediction_create
from registry.services import model_version_create
from tests.conftest import image_bytes

pytestmark = pytest.mark.django_db


def generic(prediction: Prediction, request: Request) -> dict:
    """DRF's rendering through the declared fields (``Serializer.to_representation``), which ours replaces."""
    serializer = PredictionOutputSerializer(prediction, context={"request": request})
    return serializers.Serializer.to_representation(serializer, prediction)


@pytest.fixture
def request_():
    return Request(APIRequestFactory().get("/api/v1/predictions/", HTTP_HOST="testserver"))


def predictions(user) -> list[Prediction]:
    queued = prediction_create(upload=SimpleUploadedFile("a.jpg", image_bytes()), channel="api", owner=user)
    refused = Prediction.objects.create(
        owner=user, channel="web", status=Prediction.Status.FAILED, error_code="image_corrupt", error_message="Bad."
    )
    version = model_version_create(
        name="v-out",
        artifact_prefix="x",
        backbone_fingerprint="f",
        classes=["nike", "vans"],
        metrics={},
        training_seconds=1,
    )
    succeeded = Prediction.objects.create(
        owner=user,
        channel="api",
        status=Prediction.Status.SUCCEEDED,
        title="Air Max 90",
        description="Worn twice.",
        brand="nike",
        brands=[{"name": "nike", "probability": 0.91}, {"name": "vans", "probability": 0.05}],
        shoe_model="Nike Air Max 90",
        shoe_models=[{"name": "Nike Air Max 90", "brand": "nike", "probability": 0.7}],
        price_estimate_usd=Decimal("120.50"),
        price_low_usd=Decimal("90.00"),
        price_high_usd=Decimal("150.25"),
        similar=[
            {
                "product_id": 7,
                "name": "Air Max",
                "brand": "nike",
                "price_usd": 130.0,
                "score": 0.8,
                "image_url": "/media/catalog/7.jpg",
            },
            {"product_id": 8, "name": "Old Skool", "brand": "vans", "price_usd": None, "score": 0.4, "image_url": None},
        ],  # fmt: skip
        model_version=version,
        timings_ms={"background": 41.5, "classify": 12},
        inputs=["image", "title"],
        finished_at=timezone.now(),
    )
    succeeded.cutout.save("c.jpg", ContentFile(image_bytes()), save=True)
    abstained = Prediction.objects.create(
        session_key="s",
        channel="web",
        status=Prediction.Status.SUCCEEDED,
        brands=[{"name": "nike", "probability": 0.4}],
        abstain={"reason": "low_confidence", "score": 0.4},
        model_version=version,
        inputs=["image"],
        finished_at=timezone.now(),
    )
    url_item = Prediction.objects.create(owner=user, channel="batch", source_url="https://img.example/a.jpg")
    return [queued, refused, succeeded, abstained, url_item, Prediction.objects.get(id=succeeded.id)]


def test_each_state_renders_as_drf_renders_the_declared_fields(user, request_):
    for prediction in predictions(user):
        ours = PredictionOutputSerializer(prediction, context={"request": request_}).data
        assert list(ours) == list(PredictionOutputSerializer().fields)  # every declared field, in order
        assert ours == generic(prediction, request_)
        assert JSONRenderer().render(ours) == JSONRenderer().render(generic(prediction, request_))


def test_a_list_renders_each_item_the_same_way(user, request_):
    items = predictions(user)
    ours = PredictionOutputSerializer(items, many=True, context={"request": request_}).data
    assert [dict(item) for item in ours] == [generic(prediction, request_) for prediction in items]
    assert ours[2]["brands"][0] == {"name": "nike", "probability": 0.91}
    assert ours[2]["price_usd"] == {"estimate": 120.5, "low": 90.0, "high": 150.25}
    assert ours[2]["similar"][0]["image_url"] == "http://testserver/media/catalog/7.jpg"
    assert ours[3]["abstain"] == {"reason": "low_confidence", "score": 0.4} and ours[3]["brand"] is None
    assert ours[1]["error"] == {"code": "image_corrupt", "message": "Bad."}
