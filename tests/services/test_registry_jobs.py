"""Model jobs (registry.jobs): progress on the TrainingRun row, the first-run bootstrap as a job, uploads that
wait for the first model, the public status endpoint and banner, admin's job buttons, roll back, the
activation gate and scheduled retraining. Tiny backbone, heads-only training (tests/conftest.py)."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from catalog.models import Brand, Product, ProductImage
from catalog.services import catalog_import_manifest
from predictions.models import Prediction
from predictions.services import prediction_create, prediction_run, prediction_sweep
from registry.jobs import training_run_execute
from registry.models import ModelVersion, TrainingRun
from registry.progress import RunProgress, stage_eta
from registry.services import (
    model_version_activate,
    model_version_create,
    model_version_roll_back,
    training_run_fail_stale,
)
from tests.tiny_catalog import BRAND_COLOURS, build_tiny_catalog, shoe_photo

pytestmark = pytest.mark.django_db

HEADER = ["image_path", "brand", "product_name", "price_usd"]


@pytest.fixture
def tiny_backbone(settings, tiny_backbone_path):
    """Training and inference on the tiny backbone, no background removal, progress written on every call."""
    from registry import runtime

    settings.SNEAKERS_BACKBONE_PATH = tiny_backbone_path
    settings.SNEAKERS_BACKGROUND_METHOD = "none"
    settings.SNEAKERS_TRAINING_PROGRESS_SECONDS = 0
    runtime.clear()
    yield
    runtime.clear()


@pytest.fixture
def send_task():
    """The broker: every task sent is recorded here instead."""
    with mock.patch("sneakers.celery.app.send_task") as sent:
        yield sent


def write_shoe_set(root: Path, *, per_brand: int = 12, seed: int = 0, title: str = "model") -> Path:
    """A shared-format catalog set of the tiny colour-coded brands (named products of two photos each)."""
    rows = []
    for brand, colour in BRAND_COLOURS.items():
        (root / "images" / brand).mkdir(parents=True)
        for i in range(per_brand):
            name = f"images/{brand}/{i}.png"
            (root / name).write_bytes(shoe_photo(colour, seed + 100 * len(rows) + i))
            rows.append([name, brand, f"{brand} {title} {i // 2}", str(60 + 10 * (i // 2))])
    with (root / "manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return root


def version(name: str, classes=tuple(BRAND_COLOURS), **fields) -> ModelVersion:
    """A registered version with no artifact (enough for activation and admin)."""
    return model_version_create(
        name=name,
        artifact_prefix=f"models/{name}",
        backbone_fingerprint="f",
        classes=list(classes),
        metrics={},
        training_seconds=1.0,
        **fields,
    )


def run_job(kind: str, **options) -> TrainingRun:
    """Create a pending run and execute it in this process (what the jobs worker does)."""
    run = TrainingRun.objects.create(kind=kind, options={"finetune": False, **options})
    training_run_execute(run_id=run.id)
    run.refresh_from_db()
    return run


# --- Progress ---------------------------------------------------------------------------------------------


def test_training_progress_reaches_the_run_row(tiny_backbone):
    build_tiny_catalog(unnamed_per_brand=20)  # 56 photos: two embedding batches of up to 32
    photos = ProductImage.objects.count()
    seen: list[tuple[str, int, int, str]] = []
    original = RunProgress.flush

    def flush(self):  # what each write puts in the row, read back from the database
        original(self)
        row = TrainingRun.objects.get(id=self.run.id)
        seen.append((row.stage, row.done, row.total, row.status))

    run = TrainingRun.objects.create(kind=TrainingRun.Kind.TRAIN, options={"finetune": False, "seed": 0})
    with mock.patch.object(RunProgress, "flush", flush):
        training_run_execute(run_id=run.id)
    run.refresh_from_db()

    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.model_version is not None and run.model_version.status == ModelVersion.Status.ACTIVE
    assert {status for *_, status in seen} == {"running"}  # written while the job ran
    stages = [stage for stage, *_ in seen]
    assert stages.index("splitting") < stages.index("embedding") < stages.index("fitting") < stages.index("saving")
    assert ("embedding", photos, photos, "running") in seen  # photos done of total, to the end
    assert any(stage == "embedding" and 0 < done < photos for stage, done, _, _ in seen)  # and on the way
    finished = [entry["stage"] for entry in run.stages]
    assert finished == ["splitting", "embedding", "preparing", "fitting", "finishing", "saving"]
    assert all(entry["seconds"] >= 0 for entry in run.stages)
    assert "trained" in run.log and run.eta_seconds is None and run.finished_at is not None


def test_progress_writes_are_throttled_but_every_stage_change_is_written():
    run = TrainingRun.objects.create(kind=TrainingRun.Kind.TRAIN, status=TrainingRun.Status.RUNNING)
    now = [100.0]
    progress = RunProgress(run, min_interval=2.0, clock=lambda: now[0])
    writes = []
    with mock.patch.object(TrainingRun.objects, "filter", wraps=TrainingRun.objects.filter) as query:
        progress("embedding", 0, 100)  # new stage: written
        writes.append(query.call_count)
        now[0] += 1.0
        progress("embedding", 10, 100)  # 1 s later: held back
        writes.append(query.call_count)
        now[0] += 1.5
        progress("embedding", 25, 100)  # 2.5 s after the last write: written
        writes.append(query.call_count)
        progress("fitting", 0, 1)  # new stage: written at once
        writes.append(query.call_count)
    assert writes == [1, 1, 2, 3]
    row = TrainingRun.objects.get(id=run.id)
    assert (row.stage, row.done, row.total) == ("fitting", 0, 1)
    assert row.stages == [{"stage": "embedding", "total": 100, "seconds": 2.5}]
    assert stage_eta(done=25, total=100, seconds=2.5) == 7.5  # 10 photos a second, 75 to go
    assert stage_eta(done=0, total=100, seconds=2.5) is None and stage_eta(done=5, total=5, seconds=1) == 0.0


def test_a_failing_job_ends_failed_with_its_error_and_the_worker_goes_on(tiny_backbone):
    run = run_job(TrainingRun.Kind.TRAIN)  # empty catalog: nothing to train on
    assert run.status == TrainingRun.Status.FAILED
    assert "at least two brands" in run.error and "failed" in run.log
    assert training_run_execute(run_id=run.id) is None  # a second message for it does nothing


# --- First run --------------------------------------------------------------------------------------------


def test_bootstrap_enqueues_one_job_instead_of_working_and_is_idempotent(
    settings, tmp_path, send_task, django_capture_on_commit_callbacks
):
    settings.SNEAKERS_DATASET_DIR = write_shoe_set(tmp_path / "sneakers")
    settings.SNEAKERS_MODELS_DATASET_DIR = write_shoe_set(tmp_path / "models", seed=5000, title="runner")
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("bootstrap", stdout=out, stderr=io.StringIO())

    run = TrainingRun.objects.get()
    assert (run.kind, run.status) == ("bootstrap", "pending")
    sets = [[str(tmp_path / "sneakers"), "listing"], [str(tmp_path / "models"), "model"]]
    assert run.options["imports"] == sets and run.options["activate"] == "always"
    send_task.assert_called_once_with("registry.tasks.bootstrap", kwargs={"run_id": run.id})
    assert not ProductImage.objects.exists() and not ModelVersion.objects.exists()  # nothing done here
    assert f"Started job #{run.id}" in out.getvalue()

    out = io.StringIO()
    call_command("bootstrap", stdout=out)  # again: the pending job's message is sent again, nothing new
    assert TrainingRun.objects.count() == 1 and send_task.call_count == 2
    assert "under way" in out.getvalue()

    # make run interrupted while the job ran: its process is gone, so the next bootstrap starts afresh.
    TrainingRun.objects.filter(id=run.id).update(status="running", heartbeat_at=timezone.now(), worker=dead_worker())
    with django_capture_on_commit_callbacks(execute=True):
        call_command("bootstrap", stdout=io.StringIO())
    run.refresh_from_db()
    assert run.status == "failed" and "stopped" in run.error
    assert TrainingRun.objects.filter(status="pending", kind="bootstrap").count() == 1

    # Both sets imported and a model active that knows every brand: later runs start nothing.
    TrainingRun.objects.update(status="succeeded")
    for folder in sets:
        catalog_import_manifest(manifest_path=Path(folder[0]) / "manifest.csv", kind=folder[1])
    version("v-1")  # the first version: active, knows both brands
    send_task.reset_mock()
    out = io.StringIO()
    call_command("bootstrap", stdout=out)
    assert "nothing to do" in out.getvalue() and send_task.call_count == 0
    assert TrainingRun.objects.filter(status="pending").count() == 0

    # A new brand in the catalog that the active model lacks: a job to train (and nothing to import).
    Brand.objects.create(slug="greenshoe", name="Greenshoe").images.create(sha256="a" * 64, width=1, height=1)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("bootstrap", stdout=out)
    assert "lacks greenshoe" in out.getvalue()
    assert TrainingRun.objects.get(status="pending").options["imports"] == []


def dead_worker() -> str:
    """``host:pid`` of a process of this host that has exited."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return f"{socket.gethostname()}:{pid}"


def test_a_running_job_of_a_lost_host_fails_after_its_heartbeat_stops(settings):
    settings.SNEAKERS_TRAINING_STALE_SECONDS = 300
    old = timezone.now() - timedelta(seconds=301)
    lost = TrainingRun.objects.create(kind="train", status="running", heartbeat_at=old, worker="elsewhere:1")
    alive = TrainingRun.objects.create(
        kind="train", status="running", heartbeat_at=timezone.now(), worker=f"{socket.gethostname()}:{os.getpid()}"
    )
    assert training_run_fail_stale() == 1
    assert TrainingRun.objects.get(id=lost.id).status == "failed"
    assert TrainingRun.objects.get(id=alive.id).status == "running"


def test_bootstrap_job_imports_then_trains_and_activates(tmp_path, tiny_backbone):
    imports = [
        [str(write_shoe_set(tmp_path / "sneakers")), Product.Kind.LISTING],
        [str(write_shoe_set(tmp_path / "models", per_brand=6, seed=5000, title="runner")), Product.Kind.MODEL],
    ]

    run = run_job(TrainingRun.Kind.BOOTSTRAP, imports=imports, activate="always", seed=0)

    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert ProductImage.objects.count() == 36
    assert Product.objects.filter(kind=Product.Kind.MODEL).count() == 6
    assert run.stages[0] == {"stage": "importing", "total": 36, "seconds": run.stages[0]["seconds"]}
    assert run.model_version.status == ModelVersion.Status.ACTIVE
    assert sorted(run.model_version.classes) == sorted(BRAND_COLOURS)
    assert "24 images added" in run.log and "12 images added" in run.log


# --- Uploads made before the first model ------------------------------------------------------------------


def test_uploads_made_with_no_model_wait_queued_and_are_answered_after_activation(
    settings, tiny_backbone, send_task, django_capture_on_commit_callbacks
):
    build_tiny_catalog()
    upload = SimpleUploadedFile("blue.jpg", shoe_photo(BRAND_COLOURS["blueshoe"], 999, fmt="JPEG"))
    prediction = prediction_create(upload=upload, channel="web", session_key="s")

    prediction_run(prediction_id=str(prediction.id))  # the worker gets it before any model exists
    prediction.refresh_from_db()
    assert (prediction.status, prediction.attempts, prediction.error_code) == ("queued", 0, "")
    later = timezone.now() + timedelta(seconds=settings.SNEAKERS_STUCK_AFTER_SECONDS * 10)
    prediction_sweep(now=later)  # the sweeper may send it again, never fails it
    prediction.refresh_from_db()
    assert prediction.status == "queued"

    send_task.reset_mock()
    with django_capture_on_commit_callbacks(execute=True):
        run = run_job(TrainingRun.Kind.TRAIN, seed=0)  # the first version becomes active
    assert run.model_version.status == ModelVersion.Status.ACTIVE
    send_task.assert_any_call("predictions.tasks.predict", args=[str(prediction.id)])

    prediction_run(prediction_id=str(prediction.id))  # what that message does on the inference worker
    prediction.refresh_from_db()
    assert prediction.status == Prediction.Status.SUCCEEDED and prediction.brand == "blueshoe"


def test_activating_a_later_version_does_not_resend_queued_uploads(send_task, django_capture_on_commit_callbacks):
    version("v-1")
    second = version("v-2")
    Prediction.objects.create(session_key="s", channel="web")
    with django_capture_on_commit_callbacks(execute=True):
        model_version_activate(model_version=second)
    assert send_task.call_count == 0  # uploads made while a model is active never waited


# --- Status endpoint and banner ---------------------------------------------------------------------------


def test_status_endpoint_and_banner_show_the_first_training_and_go_quiet_once_a_model_is_active():
    client = Client()
    body = client.get("/models/status.json").json()
    assert body == {"ready": False, "active": None, "run": None}

    run = TrainingRun.objects.create(
        kind="bootstrap",
        status="running",
        stage="embedding",
        done=1234,
        total=9807,
        eta_seconds=400.0,
        options={"finetune": True, "imports": [["/sets/sneakers", "listing"]]},
        error="a path /secret/somewhere",
        log="secret log",
        started_at=timezone.now(),
    )
    response = client.get("/models/status.json")
    assert response["Cache-Control"] == "no-store"
    progress = response.json()["run"]
    assert progress["stage"] == "embedding" and (progress["done"], progress["total"]) == (1234, 9807)
    assert progress["unit"] == "photos" and progress["eta_seconds"] == 400.0 and progress["percent"] == 12.6
    assert (progress["step"], progress["steps"]) == (3, 9)  # importing, splitting, embedding, ... saving
    assert "secret" not in response.content.decode()  # no error text, log or paths

    page = client.get("/").content.decode()
    assert "still being trained" in page and "1234 of 9807 photos" in page and "about 7 minutes left" in page
    assert "js/model_status.js" in page

    TrainingRun.objects.filter(id=run.id).update(status="failed")
    assert "its training stopped" in client.get("/").content.decode()

    version("v-1")
    body = client.get("/models/status.json").json()
    assert body["ready"] is True and body["active"]["name"] == "v-1" and body["run"] is None
    assert "model-status" not in client.get("/").content.decode()


# --- Admin ------------------------------------------------------------------------------------------------


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("staff", "staff@example.com", "pw-staff-123")
    client.force_login(user)
    client.user = user
    return client


def test_admin_train_button_enqueues_a_run_and_opens_it(staff_client, send_task, django_capture_on_commit_callbacks):
    page = staff_client.get("/admin/registry/modelversion/").content.decode()
    assert "Train a new version" in page

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post("/admin/registry/modelversion/train/", {"activate": "gate", "finetune": "no"})
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/admin/registry/trainingrun/{run.id}/change/"
    assert (run.kind, run.status, run.requested_by, run.options["activate"]) == (
        "train",
        "pending",
        staff_client.user,
        "gate",
    )
    assert run.options["finetune"] is False
    send_task.assert_called_once_with("registry.tasks.train", kwargs={"run_id": run.id})

    again = staff_client.post("/admin/registry/modelversion/train/", {"activate": "always"})
    assert again["Location"] == f"/admin/registry/trainingrun/{run.id}/change/" and TrainingRun.objects.count() == 1

    TrainingRun.objects.filter(id=run.id).update(
        status="running", stage="embedding", done=10, total=40, log="12:00:00 started"
    )
    html = staff_client.get(f"/admin/registry/trainingrun/{run.id}/change/").content.decode()
    assert "10 of 40 photos" in html and "12:00:00 started" in html and 'http-equiv="refresh"' in html
    listing = staff_client.get("/admin/registry/trainingrun/").content.decode()
    assert "10 of 40 photos (25.0 %)" in listing
    assert "Running now" in staff_client.get("/admin/registry/modelversion/").content.decode()
    assert staff_client.get("/admin/registry/modelversion/train/").status_code == 405  # POST only


def test_admin_train_button_needs_staff(client, django_user_model, send_task):
    django_user_model.objects.create_user("shopper", password="pw-123-not-common")
    client.login(username="shopper", password="pw-123-not-common")
    response = client.post("/admin/registry/modelversion/train/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert not TrainingRun.objects.exists()


def test_admin_evaluate_action_queues_a_held_out_evaluation(
    settings, tmp_path, staff_client, send_task, django_capture_on_commit_callbacks
):
    settings.SNEAKERS_DATASET_DIR = write_shoe_set(tmp_path / "sneakers", per_brand=1)
    settings.SNEAKERS_MODELS_DATASET_DIR = tmp_path / "no-models-set"
    first = version("v-1")
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            "/admin/registry/modelversion/", {"action": "evaluate", "_selected_action": [first.id]}
        )
    run = TrainingRun.objects.get()
    assert response["Location"] == f"/admin/registry/trainingrun/{run.id}/change/"
    assert run.options == {"model": "v-1", "directories": [str(settings.SNEAKERS_DATASET_DIR)], "split": "test"}
    send_task.assert_called_once_with("registry.tasks.evaluate", kwargs={"run_id": run.id})


def test_roll_back_restores_the_previous_version_from_admin(staff_client):
    first = version("v-1")  # active
    second = version("v-2")
    third = version("v-3")
    model_version_activate(model_version=second)
    model_version_activate(model_version=third)
    assert "Roll back to v-2" in staff_client.get("/admin/registry/modelversion/").content.decode()

    response = staff_client.post("/admin/registry/modelversion/roll-back/")
    assert response.status_code == 302
    statuses = dict(ModelVersion.objects.values_list("name", "status"))
    assert statuses == {"v-1": "retired", "v-2": "active", "v-3": "retired"}

    assert model_version_roll_back() == first  # one step further back, not back to v-3
    assert ModelVersion.objects.get(status="active") == first
    with pytest.raises(ValueError, match="no previous version"):
        model_version_roll_back()
    staff_client.post("/admin/registry/modelversion/roll-back/")  # nothing to roll back: a message, no change
    assert ModelVersion.objects.get(status="active") == first


# --- Activation gate and scheduled retraining -------------------------------------------------------------


def test_gate_rule_both_ways():
    from registry.gate import gate_passes

    active = {"top1": 0.90, "log_loss": 0.40}
    assert gate_passes({"top1": 0.90, "log_loss": 0.35}, active)[0] is True  # same top-1, lower loss
    assert gate_passes({"top1": 0.95, "log_loss": 0.30}, active)[0] is True
    passes, reason = gate_passes({"top1": 0.89, "log_loss": 0.10}, active)
    assert not passes and "top-1 is lower" in reason
    passes, reason = gate_passes({"top1": 0.99, "log_loss": 0.40}, active)
    assert not passes and "log loss is not lower" in reason
    assert gate_passes({"top1": None, "log_loss": 0.1}, active)[0] is False


def test_retrained_candidate_is_activated_only_when_it_beats_the_active_version(settings, tiny_backbone, staff_client):
    build_tiny_catalog()
    # The active version learnt from a catalog where half the blue shoes were labelled red.
    blue, red = Brand.objects.get(slug="blueshoe"), Brand.objects.get(slug="redshoe")
    mislabelled = list(ProductImage.objects.filter(brand=blue).order_by("id").values_list("id", flat=True)[::2])
    ProductImage.objects.filter(id__in=mislabelled).update(brand=red)
    noisy = run_job(TrainingRun.Kind.TRAIN, seed=0).model_version
    assert noisy.status == ModelVersion.Status.ACTIVE
    ProductImage.objects.filter(id__in=mislabelled).update(brand=blue)  # staff fixed the labels

    better = run_job(TrainingRun.Kind.RETRAIN, activate="gate", seed=0)
    candidate = better.model_version
    assert better.status == "succeeded" and candidate.status == ModelVersion.Status.ACTIVE, candidate.gate
    gate = candidate.gate
    assert gate["decision"] == "activate" and gate["against"] == noisy.name and gate["n"] > 0
    assert gate["candidate"]["n"] == gate["active"]["n"] == gate["n"]  # the same held-out photos
    assert gate["candidate"]["log_loss"] < gate["active"]["log_loss"]
    assert gate["candidate"]["top1"] >= gate["active"]["top1"]
    assert any(entry["stage"] == "gating" for entry in better.stages)

    # Nothing changed since: the schedule skips retraining.
    skipped = run_job(TrainingRun.Kind.RETRAIN, activate="gate", seed=0)
    assert skipped.status == "skipped" and "has not changed" in skipped.log

    # The same data and seed give the same model: not better, so it stays a candidate, and admin says why.
    same = run_job(TrainingRun.Kind.TRAIN, activate="gate", seed=0).model_version
    same.refresh_from_db()
    assert same.status == ModelVersion.Status.CANDIDATE
    assert same.gate["decision"] == "keep" and "log loss is not lower" in same.gate["reason"]
    assert ModelVersion.objects.get(status="active") == candidate
    html = staff_client.get(f"/admin/registry/modelversion/{same.id}/change/").content.decode()
    assert "kept as a candidate" in html and "log loss is not lower" in html
    listing = staff_client.get("/admin/registry/modelversion/").content.decode()
    assert "kept as candidate: log loss is not lower" in listing


# --- Commands ---------------------------------------------------------------------------------------------


def test_train_command_prints_a_summary_table_and_json_on_request(tiny_backbone, capsys):
    build_tiny_catalog()
    out = io.StringIO()
    call_command("train", "--seed", "0", "--no-finetune", stdout=out, stderr=io.StringIO())
    text = out.getvalue()
    assert "brand test top-1" in text and "embedding" in text and "(active)" in text
    assert "{" not in text  # no raw metric dump

    out = io.StringIO()
    call_command("train", "--seed", "0", "--no-finetune", "--json", stdout=out, stderr=io.StringIO())
    metrics = json.loads(out.getvalue())
    assert {"brand", "price", "counts"} <= set(metrics)
    assert TrainingRun.objects.filter(kind="train", status="succeeded").count() == 2
