"""Monitoring: the prediction_finished receiver, drift scores, ``/api/v1/monitor/`` (figures against NumPy, staff
only), Prometheus ``/metrics`` (content and access rule) and the admin dashboard."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from rest_framework.test import APIClient

from monitoring import services
from monitoring.drift import CatalogStats, drift_summary, novelty, psi, reference_scores
from monitoring.models import DriftReference, UploadSignal
from monitoring.selectors import monitor_summary
from predictions.models import Prediction
from registry.models import ModelVersion

pytestmark = pytest.mark.django_db

DIM = 8


@pytest.fixture(autouse=True)
def _fresh_catalog_cache():
    """Catalog embeddings are cached per process and version id; every test starts without."""
    services._catalogs.clear()
    yield
    services._catalogs.clear()


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(username="ops", password="pw-ops-123456", is_staff=True)


@pytest.fixture
def staff_client(staff):
    from accounts.services import partner_token_get_or_create

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {partner_token_get_or_create(user=staff).key}")
    return client


def _catalog(rng: np.random.Generator, rows: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised catalog embeddings around a few product directions, and their product ids."""
    centres = rng.normal(size=(6, DIM))
    ids = np.arange(rows) % 6
    matrix = centres[ids] + 0.3 * rng.normal(size=(rows, DIM))
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix.astype(np.float32), (ids + 100).astype(np.int64)


@pytest.fixture
def version(settings) -> tuple[ModelVersion, np.ndarray]:
    """An active model version whose artifact in storage has a similarity index (and metadata)."""
    from worker.ml.similarity import NumpyIndex

    matrix, ids = _catalog(np.random.default_rng(0))
    buffer = io.BytesIO()
    np.savez(buffer, **NumpyIndex(matrix, ids).to_arrays())
    default_storage.save("models/v-mon/index.npz", ContentFile(buffer.getvalue()))
    default_storage.save("models/v-mon/metadata.json", ContentFile(json.dumps({"similarity_index": "numpy"}).encode()))
    row = ModelVersion.objects.create(
        name="v-mon", status=ModelVersion.Status.ACTIVE, artifact_prefix="models/v-mon", backbone_fingerprint="x"
    )
    return row, matrix


def _prediction(**fields) -> Prediction:
    """A prediction row with the given fields; ``created_at`` may be given too."""
    created = fields.pop("created_at", None)
    prediction = Prediction.objects.create(channel=fields.pop("channel", "api"), session_key="s", **fields)
    if created is not None:
        Prediction.objects.filter(id=prediction.id).update(created_at=created)
        prediction.refresh_from_db()
    return prediction


def _signal(finished, **fields) -> UploadSignal:
    """An ``UploadSignal`` (and its prediction) that finished at ``finished``."""
    prediction = _prediction(status=fields.get("status", "succeeded"))
    defaults = {"created_at": finished - timedelta(seconds=2), "finished_at": finished, "status": "succeeded"}
    return UploadSignal.objects.create(prediction=prediction, **{**defaults, **fields})


# --- receiver --------------------------------------------------------------------------------------


def test_a_failed_prediction_is_recorded_by_the_receiver(django_capture_on_commit_callbacks):
    from predictions.services import prediction_mark_failed

    prediction = _prediction(title="Nike Dunk Low")
    with django_capture_on_commit_callbacks(execute=True):
        prediction_mark_failed(prediction_id=prediction.id, code="image_unreadable", message="not a photo")
    signal = UploadSignal.objects.get(prediction=prediction)
    assert signal.status == "failed" and signal.error_code == "image_unreadable" and signal.with_text
    assert signal.novelty is None and signal.end_to_end_ms is not None and signal.end_to_end_ms >= 0


def test_a_succeeded_prediction_keeps_timings_abstain_reason_and_embedding_figures(version):
    row, matrix = version
    now = timezone.now()
    prediction = _prediction(
        status="succeeded",
        model_version=row,
        brands=[{"name": "nike", "probability": 0.41}],
        abstain={"reason": "low_confidence", "score": 0.41},
        timings_ms={"decode": 3.0, "background": 40.0, "embed": 120.5, "heads": 1.0, "search": 2.0, "total": 166.5},
        created_at=now - timedelta(seconds=5),
        started_at=now - timedelta(seconds=2),
        finished_at=now,
    )
    embedding = (matrix[3] + 0.01).astype(np.float32)
    signal = services.upload_signal_record(prediction=prediction, embedding=embedding)
    assert signal.abstain_reason == "low_confidence" and signal.brand == "" and signal.top_probability == 0.41
    assert signal.embed_ms == 120.5 and signal.pipeline_ms == 166.5
    assert signal.queue_ms == pytest.approx(3000.0) and signal.end_to_end_ms == pytest.approx(5000.0)
    unit = embedding / np.linalg.norm(embedding)
    assert signal.novelty == pytest.approx(1.0 - float(np.max(matrix @ unit)), abs=1e-5)
    assert signal.embedding_norm == pytest.approx(float(np.linalg.norm(embedding)))
    expected_z = np.sqrt(np.mean(((embedding - matrix.mean(0)) / matrix.std(0)) ** 2))
    assert signal.mean_z == pytest.approx(expected_z, rel=1e-4)
    reference = DriftReference.objects.get(model_version=row)
    assert (
        reference.catalog_rows == 60 and len(reference.novelty) == 60 and reference.novelty == sorted(reference.novelty)
    )
    # Recording again replaces the row; an artifact that cannot be read leaves the embedding figures empty.
    services._catalogs.clear()
    broken = ModelVersion.objects.create(name="v-gone", artifact_prefix="models/v-gone", backbone_fingerprint="x")
    Prediction.objects.filter(id=prediction.id).update(model_version=broken)
    prediction.refresh_from_db()
    again = services.upload_signal_record(prediction=prediction, embedding=embedding)
    assert UploadSignal.objects.count() == 1 and again.novelty is None and again.embedding_norm is not None


def test_novelty_comes_from_the_workers_nearest_similarity_when_given(version):
    """The worker's search already scored every catalog image: its nearest similarity gives novelty without a
    second scan of the catalog, and equals what the scan would give."""
    row, matrix = version
    prediction = _prediction(status="succeeded", model_version=row, finished_at=timezone.now())
    embedding = (matrix[5] + 0.02).astype(np.float32)
    unit = embedding / np.linalg.norm(embedding)
    nearest = float(np.max(matrix @ unit))
    scanned = services.upload_signal_record(prediction=prediction, embedding=embedding)
    given = services.upload_signal_record(prediction=prediction, embedding=embedding, nearest_similarity=nearest)
    assert given.novelty == pytest.approx(scanned.novelty, abs=1e-6)
    odd = services.upload_signal_record(prediction=prediction, embedding=embedding, nearest_similarity=0.25)
    assert odd.novelty == pytest.approx(0.75) and odd.mean_z == pytest.approx(scanned.mean_z)


# --- drift -----------------------------------------------------------------------------------------


def test_drift_scores_are_higher_for_shifted_embeddings():
    rng = np.random.default_rng(1)
    matrix, ids = _catalog(rng, rows=300)
    reference = reference_scores(matrix, ids, sample=200, seed=0)
    assert len(reference["novelty"]) == 200 and reference["catalog_rows"] == 300
    # Uploads like the catalog (new photos of its products) and shifted ones (another direction added).
    like = matrix[rng.choice(300, 80)] + 0.1 * rng.normal(size=(80, DIM))
    direction = rng.normal(size=DIM)
    shifted = like + direction / np.linalg.norm(direction)
    like /= np.linalg.norm(like, axis=1, keepdims=True)  # embeddings are L2-normalised, as the backbone's
    shifted /= np.linalg.norm(shifted, axis=1, keepdims=True)
    scores = {}
    for name, rows in (("like", like), ("shifted", shifted)):
        values = np.asarray([novelty(row, matrix) for row in rows])
        scores[name] = drift_summary(values, np.asarray(reference["novelty"]))
    assert scores["shifted"]["mean"] > scores["like"]["mean"]
    assert scores["shifted"]["psi"] > scores["like"]["psi"] and scores["shifted"]["ks"] > scores["like"]["ks"]
    assert scores["shifted"]["status"] == "drift"
    stats = CatalogStats.of(matrix)
    assert stats.mean_z(shifted).mean() > stats.mean_z(like).mean()
    # PSI of a sample against itself is 0; too few recent values give no verdict.
    assert psi(np.asarray(reference["novelty"]), np.asarray(reference["novelty"])) == pytest.approx(0.0)
    assert drift_summary(np.asarray([0.1] * 5), np.asarray(reference["novelty"]))["status"] == "insufficient"


# --- /api/v1/monitor/ ------------------------------------------------------------------------------


def test_monitor_figures_match_numpy(staff_client, version):
    row, _ = version
    rng = np.random.default_rng(7)
    now = timezone.now()
    embed = rng.gamma(2.0, 60.0, size=40)
    recent = rng.uniform(0.05, 0.2, size=40)
    reference = sorted(rng.uniform(0.05, 0.2, 100).tolist())
    queue = rng.gamma(1.5, 300.0, size=40)
    brands = ["nike"] * 20 + ["adidas"] * 12 + [""] * 8
    for i in range(40):
        reason = "unknown_brand" if i >= 35 else "low_confidence" if i >= 32 else ""
        _signal(
            now - timedelta(minutes=10 + 30 * (i % 5)),
            embed_ms=float(embed[i]),
            queue_ms=float(queue[i]),
            brand=brands[i] if not reason else "",
            abstain_reason=reason,
            model_version=row,
            novelty=float(recent[i]),
            mean_z=1.0,
        )
    for code in ("image_unreadable", "image_unreadable", "model_unavailable"):
        _signal(now - timedelta(minutes=5), status="failed", error_code=code)
    _signal(now - timedelta(hours=30), embed_ms=99999.0, brand="vans")  # outside a 24 h window
    DriftReference.objects.create(model_version=row, novelty=reference)

    response = staff_client.get("/api/v1/monitor/", {"hours": 24})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["volume"] == {"total": 43, "succeeded": 40, "failed": 3, "by_channel": {"": 43}, "with_text": 0}
    for stage, values in (("embed", embed), ("queue", queue)):
        expected = np.percentile(values, [50, 90, 99])
        got = body["latency_ms"][stage]
        assert got["n"] == 40
        np.testing.assert_allclose([got["p50"], got["p90"], got["p99"]], expected, rtol=1e-9)
    assert body["latency_ms"]["search"] == {"n": 0, "p50": None, "p90": None, "p99": None, "mean": None}
    assert body["failures"] == {
        "rate": pytest.approx(3 / 43),
        "by_code": {"image_unreadable": 2, "model_unavailable": 1},
    }
    assert body["abstentions"] == {
        "rate": pytest.approx(8 / 40),
        "by_reason": {"low_confidence": 3, "unknown_brand": 5},
    }
    assert body["brands"]["totals"] == {"nike": 20, "adidas": 12}
    assert body["window"]["bucket"] == "hour"
    assert sum(sum(point["counts"].values()) for point in body["brands"]["series"]) == 32
    assert len(body["brands"]["series"]) in (3, 4)  # 10-130 minutes ago: three or four clock hours
    drift = body["drift"]
    assert drift["model_version"] == "v-mon" and drift["novelty"]["n"] == 40
    assert drift["novelty"]["reference"]["n"] == 100
    assert drift["novelty"]["psi"] == pytest.approx(psi(recent, np.asarray(reference)))
    assert drift["novelty"]["mean"] == pytest.approx(recent.mean()) and drift["mean_z"]["status"] == "insufficient"
    # A week: daily buckets, the old row counted.
    week = staff_client.get("/api/v1/monitor/", {"hours": 168}).json()
    assert week["window"]["bucket"] == "day" and week["volume"]["total"] == 44
    assert monitor_summary(hours=1, now=now - timedelta(days=3))["volume"]["total"] == 0


def test_monitor_is_for_staff_only(staff_client, token_client, client, staff):
    assert APIClient().get("/api/v1/monitor/").status_code in (401, 403)
    refused = token_client.get("/api/v1/monitor/")
    assert refused.status_code == 403 and "error" in refused.json()
    assert staff_client.get("/api/v1/monitor/").status_code == 200
    for bad in ("0", "abc", "100000"):
        answer = staff_client.get("/api/v1/monitor/", {"hours": bad})
        assert answer.status_code == 400 and answer.json()["error"]["code"]
    client.force_login(staff)  # the admin's session works too
    assert client.get("/api/v1/monitor/?hours=2").json()["window"]["hours"] == 2


def test_monitor_answers_as_the_schema_says(staff_client, staff, version):
    """The 200 body (which the partner-token fuzzing never sees) matches the served schema."""
    import schemathesis
    from django.core.signals import request_finished, request_started
    from django.core.wsgi import get_wsgi_application
    from django.db import close_old_connections
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    from accounts.services import partner_token_get_or_create

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    _signal(timezone.now() - timedelta(minutes=1), embed_ms=10.0, brand="nike", model_version=version[0], novelty=0.1)
    _signal(timezone.now() - timedelta(minutes=2), status="failed", error_code="image_unreadable")
    key = partner_token_get_or_create(user=staff).key
    # Django's WSGI handler closes the connection at each request; inside the test's transaction it must stay.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
        operation = schema["/api/v1/monitor/"]["GET"]
        for query, status in (({"hours": 24}, 200), ({"hours": 1000}, 400)):
            case = operation.Case(query=query)
            response = case.call(headers={"Authorization": f"Token {key}"})
            assert response.status_code == status
            case.validate_response(response, checks=checks)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


# --- /metrics --------------------------------------------------------------------------------------


def test_metrics_show_requests_jobs_and_stage_latencies(client, token_client):
    now = timezone.now()
    for ms in (40.0, 80.0, 400.0):
        _signal(now, end_to_end_ms=ms, brand="nike")
    _signal(now, status="failed", error_code="image_unreadable")
    _signal(now, abstain_reason="not_footwear")
    _prediction(status="queued", channel="web")
    token_client.get("/api/v1/predictions/")  # counted by the request middleware
    response = client.get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert 'sneakers_jobs_total{code="image_unreadable",outcome="failed"} 1.0' in text
    assert 'sneakers_jobs_total{code="not_footwear",outcome="abstained"} 1.0' in text
    assert 'sneakers_jobs_total{code="",outcome="succeeded"} 3.0' in text
    assert 'sneakers_stage_duration_seconds_bucket{le="0.05",stage="end_to_end"} 1.0' in text
    assert 'sneakers_stage_duration_seconds_bucket{le="0.1",stage="end_to_end"} 2.0' in text
    assert 'sneakers_stage_duration_seconds_bucket{le="+Inf",stage="end_to_end"} 3.0' in text
    assert 'sneakers_stage_duration_seconds_sum{stage="end_to_end"} 0.52' in text
    assert 'sneakers_predictions_in_progress{status="queued"} 1.0' in text
    assert 'sneakers_uploads_total{channel="web"} 1.0' in text
    # The counters are shared by every test of the run (one multi-process folder): find this GET's row.
    line = next(
        row
        for row in text.splitlines()
        if row.startswith('sneakers_http_requests_total{method="GET",route="api/v1/predictions/",status="200"}')
    )
    assert float(line.rsplit(" ", 1)[1]) >= 1.0


def test_metrics_access_rule(client, settings, staff, user):
    outside = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics").status_code == 200  # loopback (the test client's address)
    assert client.get("/metrics", **outside).status_code == 403
    client.force_login(user)
    assert client.get("/metrics", **outside).status_code == 403  # logged in, not staff
    client.force_login(staff)
    assert client.get("/metrics", **outside).status_code == 200
    client.logout()
    settings.SNEAKERS_METRICS_TOKEN = "s3cret-scrape-token"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token", **outside).status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong", **outside).status_code == 403
    settings.SNEAKERS_METRICS_ALLOWED_IPS = ["203.0.113.0/24"]
    assert client.get("/metrics", **outside).status_code == 200
    assert client.get("/metrics").status_code == 403  # loopback no longer listed


# --- admin -----------------------------------------------------------------------------------------


def test_admin_dashboard_renders_plots_for_staff(client, staff, user, version):
    now = timezone.now()
    for i in range(6):
        _signal(now - timedelta(hours=i), embed_ms=50.0 + i, queue_ms=10.0, brand="nike", model_version=version[0])
    _signal(now, status="failed", error_code="image_unreadable")
    client.force_login(user)
    assert client.get("/admin/monitoring/monitordashboard/").status_code == 302  # not staff: to the login
    client.force_login(staff)
    index = client.get("/admin/").content.decode()
    assert "/admin/monitoring/monitordashboard/" in index
    page = client.get("/admin/monitoring/monitordashboard/?hours=72")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Monitoring dashboard" in html and html.count('<div class="plot"><svg') == 4
    assert "image_unreadable" in html and "/api/v1/monitor/?hours=72" in html
    assert client.get("/admin/monitoring/monitordashboard/?hours=nope").status_code == 200


# --- through a real (tiny) model -----------------------------------------------------------------


def test_a_trained_model_reads_titles_and_its_worker_records_drift_figures(
    settings, tiny_backbone_path, user, django_capture_on_commit_callbacks
):
    """Train on a tiny catalog (product names are titles), run a titled upload through ``prediction_run``: the
    version has a text model, the answer names its inputs, and the receiver stores novelty against the version's
    catalog embeddings with the version's drift reference."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from predictions.services import prediction_create, prediction_run
    from registry import runtime
    from registry.training import model_version_train
    from tests.tiny_catalog import BRAND_COLOURS, build_tiny_catalog, shoe_photo

    settings.SNEAKERS_BACKBONE_PATH = tiny_backbone_path
    settings.SNEAKERS_BACKGROUND_METHOD = "none"
    runtime.clear()
    build_tiny_catalog()
    version = model_version_train(seed=0)
    assert default_storage.exists(f"{version.artifact_prefix}/text_model.npz")
    assert (
        2 <= version.metrics["text"]["titles"] <= 8
    )  # the training side's of "redshoe model 0" ... "blueshoe model 3"

    upload = SimpleUploadedFile("blue.jpg", shoe_photo(BRAND_COLOURS["blueshoe"], 999, fmt="JPEG"))
    prediction = prediction_create(upload=upload, channel="api", owner=user, title="blueshoe model 2")
    with django_capture_on_commit_callbacks(execute=True):
        prediction_run(prediction_id=str(prediction.id))
    prediction.refresh_from_db()
    assert prediction.status == Prediction.Status.SUCCEEDED, prediction.error_message
    assert prediction.inputs == ["image", "title"] and prediction.brand == "blueshoe"
    signal = UploadSignal.objects.get(prediction=prediction)
    assert signal.with_text and signal.embedding_norm == pytest.approx(1.0, abs=1e-4)
    assert signal.novelty is not None and 0.0 <= signal.novelty <= 2.0 and signal.mean_z is not None
    # The novelty the worker's search gave equals a scan of the version's catalog embeddings.
    pipeline = runtime.pipeline_get(version)
    stored = default_storage.open(prediction.image.name).read()
    vector = pipeline.predict(stored, title="blueshoe model 2").embedding
    assert signal.novelty == pytest.approx(1.0 - float(np.max(pipeline.artifact.index.embeddings @ vector)), abs=1e-5)
    assert DriftReference.objects.get(model_version=version).catalog_rows > 0
    # Without a title: the photo's answer alone.
    plain = prediction_create(
        upload=SimpleUploadedFile("b.jpg", shoe_photo(BRAND_COLOURS["blueshoe"], 998, fmt="JPEG")),
        channel="api",
        owner=user,
    )
    prediction_run(prediction_id=str(plain.id))
    plain.refresh_from_db()
    assert plain.inputs == ["image"]
