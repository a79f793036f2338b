"""Listing text through the job: the prediction's title and description reach the pipeline, the answer says which
inputs it was made from (API field ``inputs``), and the embedding goes to the ``prediction_finished`` receivers."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from predictions.models import Prediction
from predictions.services import prediction_create, prediction_run
from registry.models import ModelVersion
from tests.conftest import image_bytes
from worker.inference import InferenceOutcome

pytestmark = pytest.mark.django_db

PAYLOAD = {
    "brand": "adidas",
    "brands": [{"name": "adidas", "probability": 0.91}, {"name": "nike", "probability": 0.09}],
    "abstain": None,
    "model": None,
    "models": [],
    "price_usd": None,
    "similar": [],
    "timings_ms": {"decode": 1.0, "embed": 2.0, "total": 3.0},
}


def test_title_reaches_the_pipeline_and_the_answer_names_its_inputs(
    user, token_client, django_capture_on_commit_callbacks
):
    ModelVersion.objects.create(name="v-text", status=ModelVersion.Status.ACTIVE, artifact_prefix="models/v-text")
    prediction = prediction_create(
        upload=SimpleUploadedFile("a.jpg", image_bytes()),
        channel="api",
        owner=user,
        title="adidas Samba OG",
        description="worn twice",
    )
    outcome = InferenceOutcome(
        payload=PAYLOAD,
        cutout_jpeg=image_bytes("JPEG"),
        background="skipped",
        embedding=np.ones(4, np.float32) / 2,
        inputs=("image", "title", "description"),
    )
    received = []

    def receiver(sender, prediction, embedding=None, **kwargs):
        received.append((prediction.inputs, None if embedding is None else embedding.tolist()))

    from predictions.signals import prediction_finished

    prediction_finished.connect(receiver, dispatch_uid="test-listing-text")
    try:
        with (
            mock.patch("worker.inference.inference_run", return_value=outcome) as run,
            django_capture_on_commit_callbacks(execute=True),
        ):
            prediction_run(prediction_id=str(prediction.id))
    finally:
        prediction_finished.disconnect(dispatch_uid="test-listing-text")
    assert run.call_args.kwargs["title"] == "adidas Samba OG" and run.call_args.kwargs["description"] == "worn twice"
    prediction.refresh_from_db()
    assert prediction.status == Prediction.Status.SUCCEEDED and prediction.inputs == ["image", "title", "description"]
    assert received == [(["image", "title", "description"], [0.5, 0.5, 0.5, 0.5])]
    body = token_client.get(f"/api/v1/predictions/{prediction.id}/").json()
    assert body["inputs"] == ["image", "title", "description"] and body["title"] == "adidas Samba OG"
    # A queued prediction has made no answer yet.
    other = prediction_create(upload=SimpleUploadedFile("b.jpg", image_bytes()), channel="api", owner=user)
    assert token_client.get(f"/api/v1/predictions/{other.id}/").json()["inputs"] == []
