"""Training a model version and running predictions through the worker's services, with a tiny backbone."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from catalog.models import ProductImage
from predictions.models import Prediction
from predictions.services import prediction_create
from registry.models import ModelVersion
from tests.tiny_catalog import BRAND_COLOURS, build_tiny_catalog, shoe_photo

pytestmark = pytest.mark.django_db


@pytest.fixture
def tiny_model(settings, tiny_backbone_path) -> ModelVersion:
    """A catalog of two colour-coded brands and a model version trained on it."""
    from registry import runtime
    from registry.training import model_version_train

    settings.SNEAKERS_BACKBONE_PATH = tiny_backbone_path
    settings.SNEAKERS_BACKGROUND_METHOD = "none"
    runtime.clear()
    build_tiny_catalog()
    return model_version_train(seed=0)


def test_train_registers_an_active_version_with_metrics_and_stored_artifact(tiny_model):
    assert tiny_model.status == ModelVersion.Status.ACTIVE
    assert sorted(tiny_model.classes) == sorted(BRAND_COLOURS)
    brand = tiny_model.metrics["brand"]
    assert {"top1", "top3", "log_loss", "per_brand_recall", "confusion"} <= set(brand)
    assert brand["top1"] >= 0.9  # the two brands differ by colour only: easy for any backbone
    assert {"mae", "mape", "baseline_mae", "baseline_mape"} <= set(tiny_model.metrics["price"])
    for name in ("brand_head.npz", "index.npz", "metadata.json", "split.json"):
        assert default_storage.exists(f"{tiny_model.artifact_prefix}/{name}")
    split = json.loads(default_storage.open(f"{tiny_model.artifact_prefix}/split.json").read())
    assert not set(split["train"]) & set(split["test"])


def test_prediction_run_succeeds_with_the_right_brand_and_similar_products(tiny_model):
    from predictions.services import prediction_run

    upload = SimpleUploadedFile("blue.jpg", shoe_photo(BRAND_COLOURS["blueshoe"], 999, fmt="JPEG"))
    prediction = prediction_create(upload=upload, channel="web", session_key="s")

    prediction_run(prediction_id=str(prediction.id))

    prediction.refresh_from_db()
    assert prediction.status == Prediction.Status.SUCCEEDED, prediction.error_message
    assert prediction.brand == "blueshoe"
    assert prediction.brands[0]["name"] == "blueshoe" and prediction.brands[0]["probability"] > 0.5
    assert abs(sum(b["probability"] for b in prediction.brands) - 1) < 0.01
    assert prediction.price_low_usd <= prediction.price_estimate_usd <= prediction.price_high_usd
    assert 1 <= len(prediction.similar) <= 5
    assert len({s["product_id"] for s in prediction.similar}) == len(prediction.similar)
    assert prediction.similar[0]["brand"] == "blueshoe" and prediction.similar[0]["image_url"]
    assert prediction.cutout.name.endswith(".jpg") and prediction.cutout.read(3) == b"\xff\xd8\xff"
    assert prediction.model_version == tiny_model and prediction.timings_ms["total"] > 0
    # A rerun of a finished job changes nothing.
    prediction_run(prediction_id=str(prediction.id))
    assert Prediction.objects.get(id=prediction.id).attempts == 1


def test_prediction_without_an_active_model_waits_queued(settings):
    # A fresh install while the first model trains: the upload is kept, unclaimed, for when one is active
    # (tests/services/test_registry_jobs.py follows it to its answer).
    from predictions.services import prediction_run

    prediction = prediction_create(
        upload=SimpleUploadedFile("x.png", shoe_photo((1, 2, 3), 1)), channel="web", session_key="s"
    )
    prediction_run(prediction_id=str(prediction.id))
    prediction.refresh_from_db()
    assert (prediction.status, prediction.error_code, prediction.attempts) == ("queued", "", 0)


def test_missing_artifact_fails_with_model_unavailable(tiny_model):
    from predictions.services import prediction_run
    from registry import runtime

    runtime.clear()
    default_storage.delete(f"{tiny_model.artifact_prefix}/brand_head.npz")
    prediction = prediction_create(
        upload=SimpleUploadedFile("x.png", shoe_photo((1, 2, 3), 1)), channel="web", session_key="s"
    )
    prediction_run(prediction_id=str(prediction.id))
    prediction.refresh_from_db()
    assert (prediction.status, prediction.error_code) == ("failed", "model_unavailable")


def test_predict_command_prints_one_json_line_per_image_and_goes_on_after_a_bad_one(tiny_model, tmp_path, capsys):
    good = tmp_path / "red.png"
    good.write_bytes(shoe_photo(BRAND_COLOURS["redshoe"], 4242))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    missing = tmp_path / "missing.jpg"

    call_command("predict", str(good), str(bad), str(missing), "--json")

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert [line["image"] for line in lines] == [str(good), str(bad), str(missing)]
    first = lines[0]
    keys = {"image", "brand", "brands", "abstain", "model", "models", "price_usd", "similar", "timings_ms", "error"}
    assert set(first) == keys
    assert first["error"] is None and first["brand"] == "redshoe"
    assert len(first["brands"]) == 2 and set(first["brands"][0]) == {"name", "probability"}
    assert set(first["price_usd"]) == {"estimate", "low", "high"}
    assert set(first["similar"][0]) >= {"product_id", "name", "brand", "price_usd", "score"}
    assert lines[1]["error"]["code"] == "image_unreadable" and lines[1]["brand"] is None and lines[1]["similar"] is None
    assert lines[2]["error"]["code"] == "file_unreadable"


def test_a_version_that_fails_to_load_is_reported_on_the_row(tiny_model):
    from predictions.services import prediction_run
    from registry import runtime

    runtime.clear()
    default_storage.delete(f"{tiny_model.artifact_prefix}/index.npz")
    prediction = prediction_create(
        upload=SimpleUploadedFile("x.png", shoe_photo((1, 2, 3), 1)), channel="web", session_key="s"
    )
    prediction_run(prediction_id=str(prediction.id))
    tiny_model.refresh_from_db()
    assert tiny_model.load_error and tiny_model.load_checked_at


def test_evaluate_command_scores_sneakers_and_negatives_and_saves_on_the_version(tiny_model, tmp_path, capsys):
    import csv

    sneakers = tmp_path / "held_out"
    (sneakers / "images").mkdir(parents=True)
    (sneakers / "extras").mkdir()
    rows = []
    for i, (brand, colour) in enumerate(sorted(BRAND_COLOURS.items()) * 3):
        name = f"images/{brand}_{i}.png"
        (sneakers / name).write_bytes(shoe_photo(colour, 5000 + i))
        rows.append({"image_path": name, "brand": brand, "price_usd": "70.00" if i % 2 else ""})
    (sneakers / "images" / "broken.png").write_bytes(b"not an image")
    rows.append({"image_path": "images/broken.png", "brand": "redshoe", "price_usd": ""})
    for path, table in ((sneakers / "manifest.csv", rows),):
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["image_path", "brand", "price_usd"])
            writer.writeheader()
            writer.writerows(table)
    with (sneakers / "extras" / "provenance.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_path", "eyeballed_style"])
        writer.writerows([[r["image_path"], "real-world" if i < 3 else "product-shot"] for i, r in enumerate(rows)])

    call_command("evaluate", str(sneakers), "--json")
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    required = {"top1", "top3", "log_loss", "ece", "per_brand", "confusion", "price_mae", "price_mape"}
    assert required | {"price_baseline_mae", "abstained"} <= set(report)
    assert report["n"] == 6 and report["errors"] == 1 and report["top1"] == 1.0
    assert set(report["by_style"]) == {"real-world", "product-shot"}
    assert set(report["per_brand"]["redshoe"]) == {"precision", "recall", "support"}
    tiny_model.refresh_from_db()
    assert tiny_model.metrics["evaluations"]["held_out"]["top1"] == 1.0

    # --split keeps the photos on one side of the version's split.json (none of these were trained on).
    with pytest.raises(CommandError):
        call_command("evaluate", str(sneakers), "--json", "--split", "test")
    catalog = tmp_path / "catalog"
    (catalog / "images").mkdir(parents=True)
    split = json.loads(default_storage.open(f"{tiny_model.artifact_prefix}/split.json").read())
    lines = ["image_path,brand"]
    for number, (image, brand) in enumerate(ProductImage.objects.values_list("image", "brand__slug")):
        (catalog / "images" / f"{number}.png").write_bytes(default_storage.open(image).read())
        lines.append(f"images/{number}.png,{brand}")
    (catalog / "manifest.csv").write_text("\n".join(lines) + "\n")
    call_command("evaluate", str(catalog), "--json", "--split", "test")
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["split"] == "test" and report["n"] == len(split["test"]) > 0
    tiny_model.refresh_from_db()
    assert "catalog:test" in tiny_model.metrics["evaluations"]

    negatives = tmp_path / "negatives"
    (negatives / "images").mkdir(parents=True)
    (negatives / "images" / "mug.png").write_bytes(shoe_photo((90, 90, 90), 1))
    (negatives / "manifest.csv").write_text("image_path,category\nimages/mug.png,kitchen\n")
    call_command("evaluate", str(negatives), "--json", "--no-save")
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["n_negatives"] == 1 and "negatives_by_category" in report["abstained"]


def test_named_models_get_a_model_head_and_results_carry_model_candidates(settings, tiny_backbone_path, tmp_path):
    """Products of kind ``model`` become classes of the model head; a blue photo's candidates are blue models."""
    from catalog.models import Product
    from predictions.services import prediction_run
    from registry import runtime
    from registry.training import model_version_train

    settings.SNEAKERS_BACKBONE_PATH = tiny_backbone_path
    settings.SNEAKERS_BACKGROUND_METHOD = "none"
    settings.SNEAKERS_MODEL_MIN_PHOTOS = 1
    runtime.clear()
    build_tiny_catalog(products_per_brand=3)
    Product.objects.update(kind=Product.Kind.MODEL)
    version = model_version_train(seed=0)
    upload = SimpleUploadedFile("blue.jpg", shoe_photo(BRAND_COLOURS["blueshoe"], 999, fmt="JPEG"))
    prediction = prediction_create(upload=upload, channel="web", session_key="s")

    prediction_run(prediction_id=str(prediction.id))

    prediction.refresh_from_db()
    assert prediction.status == Prediction.Status.SUCCEEDED, prediction.error_message
    names = set(Product.objects.values_list("name", flat=True))
    assert prediction.shoe_models and {m["name"] for m in prediction.shoe_models} <= names
    assert prediction.shoe_models[0]["brand"] == "blueshoe"
    assert sum(m["probability"] for m in prediction.shoe_models) <= 1.0001
    assert prediction.shoe_model in ("", prediction.shoe_models[0]["name"])
    assert "model" in version.metrics

    # evaluate over two folders: named-model figures, unknown-brand refusal and one block per source set.
    products = list(Product.objects.filter(brand__slug="blueshoe"))
    folders = {}
    for name, rows in {
        "models_set": [(f"m{i}.png", "blueshoe", products[i % len(products)].name, 30 + i) for i in range(4)],
        "other_brand": [(f"g{i}.png", "greenshoe", "", 60 + i) for i in range(3)],
    }.items():
        folder = tmp_path / name
        (folder / "images").mkdir(parents=True, exist_ok=True)
        with (folder / "manifest.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image_path", "brand", "product_name"])
            for file_name, brand, model_name, seed in rows:
                colour = BRAND_COLOURS.get(brand, (30, 170, 60))
                (folder / "images" / file_name).write_bytes(shoe_photo(colour, 7000 + seed))
                writer.writerow([f"images/{file_name}", brand, model_name])
        folders[name] = folder
    out = io.StringIO()
    call_command("evaluate", str(folders["models_set"]), str(folders["other_brand"]), "--json", "--no-save", stdout=out)
    report = json.loads(out.getvalue().strip().splitlines()[-1])
    assert report["n"] == 7 and report["unknown_brand"] == 3 and report["model_n"] == 4
    assert 0 <= report["model_top1"] <= report["model_top1_raw"] <= report["model_top5_raw"] <= 1
    assert report["unknown_brand_refused"] is not None and report["known_refused_unknown_brand"] is not None
    assert set(report["by_source"]) == {"models_set", "other_brand"}
    assert report["by_source"]["other_brand"]["model_n"] == 0 and report["by_source"]["models_set"]["model_n"] == 4


def test_the_backbone_precision_setting_reaches_the_served_backbone(tiny_model, settings, monkeypatch):
    from registry import runtime
    from worker.ml import runtimes

    monkeypatch.setattr(runtimes, "cpu_has_bf16", lambda: True)
    settings.SNEAKERS_BACKBONE_PRECISION = "f32"
    runtime.clear()
    assert runtime.backbone_get().precision == "f32"
    settings.SNEAKERS_BACKBONE_PRECISION = "auto"  # the default
    runtime.clear()
    backbone = runtime.backbone_get()
    assert backbone.runtime == "openvino" and backbone.precision == "bf16"
    assert backbone.cache_key == f"{backbone.fingerprint}-bf16"
    assert runtime.pipeline_get(tiny_model).backbone is backbone  # models trained at float32 load at bfloat16
    training = runtime.backbone_get(precision="f32")  # what registry.training embeds the catalog with
    assert training is not backbone and training.precision == "f32" and training.cache_key == training.fingerprint
    assert runtime.backbone_get(precision="f32") is training  # loaded once per process and precision
    runtime.clear()


def test_the_background_cascade_setting_reaches_the_serving_pipeline(tiny_model, settings):
    from registry import runtime

    settings.SNEAKERS_BACKGROUND_SKIP_CONFIDENCE = 0.0  # off
    runtime.clear()
    assert runtime.pipeline_get(tiny_model).skip_removal_above is None
    settings.SNEAKERS_BACKGROUND_SKIP_CONFIDENCE = 0.95
    runtime.clear()
    assert runtime.pipeline_get(tiny_model).skip_removal_above == 0.95
    runtime.clear()


def test_the_background_rule_setting_overrides_the_models_rule(tiny_model, settings):
    from registry import runtime

    try:
        trained = runtime.pipeline_get(tiny_model)
        assert trained.background_rule == trained.artifact.metadata.get("background_rule", "skip-plain")
        for rule, skip_plain in (("always", False), ("skip-plain", True)):
            settings.SNEAKERS_BACKGROUND_RULE = rule
            runtime.clear()
            pipeline = runtime.pipeline_get(tiny_model)
            assert pipeline.background_rule == rule and pipeline.skip_plain is skip_plain
        settings.SNEAKERS_BACKGROUND_RULE = "never"
        runtime.clear()
        assert runtime.pipeline_get(tiny_model).remover.name == "none"
    finally:
        runtime.clear()


@pytest.mark.shared_data
def test_the_serving_remover_takes_its_threads_from_the_hosts_busy_marks(settings, tmp_path):
    """With SNEAKERS_INFERENCE_SHARE_CORES the U^2-Net-p remover asks the host's occupancy before each photo
    (every core alone, its share beside a busy process); turned off it keeps its own thread budget."""
    from registry import runtime
    from worker.ml.occupancy import Occupancy

    if not settings.SNEAKERS_BACKGROUND_MODEL_PATH.is_file():
        pytest.skip(f"U^2-Net-p weights not found at {settings.SNEAKERS_BACKGROUND_MODEL_PATH}")
    settings.SNEAKERS_BACKGROUND_METHOD = "u2netp"
    settings.SNEAKERS_INFERENCE_SLOTS_DIR = tmp_path / "slots"
    runtime.clear()
    try:
        remover = runtime.remover_get()
        occupancy = runtime.occupancy_get()
        assert remover.threads_now == occupancy.threads_now
        assert remover.input_size == settings.SNEAKERS_BACKGROUND_INPUT_SIZE == 160  # the default
        cores = occupancy.cores
        assert remover.threads_now() == cores
        with Occupancy(tmp_path / "slots", cores=cores).held():
            assert remover.threads_now() == max(occupancy.floor, cores // 2)
        settings.SNEAKERS_INFERENCE_SHARE_CORES = False
        settings.SNEAKERS_BACKGROUND_INPUT_SIZE = 320
        assert runtime.remover_get().threads_now is None
        assert runtime.remover_get().input_size == 320
    finally:
        runtime.clear()


def test_workers_run_the_backbone_on_openvino_and_fall_back_to_tensorflow(settings, tiny_backbone_path, tmp_path):
    """``SNEAKERS_INFERENCE_RUNTIME``: ``auto`` puts the worker's backbone on OpenVINO (its frozen graph in the
    cache folder); when OpenVINO cannot take it (here the cache folder cannot be made) ``auto`` keeps TensorFlow,
    which gives the same answers, and ``openvino`` asked for by name fails as a model error."""
    pytest.importorskip("openvino")
    from registry import runtime
    from worker.ml.errors import ModelError

    settings.SNEAKERS_BACKBONE_PATH = tiny_backbone_path
    settings.SNEAKERS_CACHE_DIR = tmp_path / "cache"
    runtime.clear()
    backbone = runtime.backbone_get()
    assert backbone.runtime == "openvino" and list((tmp_path / "cache" / "openvino").glob("backbone-*.pb"))

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    settings.SNEAKERS_CACHE_DIR = blocked
    runtime.clear()
    assert runtime.backbone_get().runtime == "tensorflow"
    settings.SNEAKERS_INFERENCE_RUNTIME = "openvino"
    runtime.clear()
    with pytest.raises(ModelError, match="cannot save the backbone"):
        runtime.backbone_get()
    runtime.clear()
