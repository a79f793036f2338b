"""Split, metrics, embedding cache, artifact storage, training and the prediction pipeline."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

from tests.unit.ml.ml_helpers import draw_shoe, to_bytes
from worker.ml.artifact import ARTIFACT_FILES, ModelArtifact
from worker.ml.background import GrabCutRemover
from worker.ml.embeddings import EmbeddingCache, embed_images
from worker.ml.errors import ImageError, ModelError
from worker.ml.heads import BrandHead, PriceHead
from worker.ml.metrics import classification_metrics as brand_metrics
from worker.ml.metrics import price_metrics
from worker.ml.pipeline import Pipeline
from worker.ml.similarity import NumpyIndex as SimilarityIndex
from worker.ml.training import TrainingConfig, TrainingSample, grouped_split, train_model

BRANDS = {"redco": ((210, 30, 30), 80.0), "greenco": ((30, 170, 40), 120.0), "blueco": ((30, 50, 200), 160.0)}


# --- grouped_split ------------------------------------------------------------------------------


def make_rows(seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    for brand, n_groups in (("nike", 60), ("adidas", 30), ("vans", 12), ("solo", 1)):
        for g in range(n_groups):
            for _ in range(int(rng.integers(1, 6))):
                labels.append(brand)
                groups.append(f"{brand}-{g}")
    return labels, groups


def test_grouped_split_keeps_groups_whole_and_uses_every_row_once():
    labels, groups = make_rows()
    split = grouped_split(labels, groups, seed=3)
    everything = np.concatenate([split.train, split.val, split.test])
    assert sorted(everything.tolist()) == list(range(len(labels)))
    assert all(side.dtype == np.int64 for side in (split.train, split.val, split.test))
    sides = [{groups[i] for i in side} for side in (split.train, split.val, split.test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    # Stratified: each big brand has roughly 15 % of its rows in test and in val.
    for brand in ("nike", "adidas"):
        rows = [i for i, label in enumerate(labels) if label == brand]
        in_test = np.isin(rows, split.test).mean()
        in_val = np.isin(rows, split.val).mean()
        assert 0.08 <= in_test <= 0.22 and 0.08 <= in_val <= 0.22
    # A brand with a single group stays in train.
    assert all(labels[i] != "solo" for i in np.concatenate([split.val, split.test]))


def test_grouped_split_is_deterministic_for_a_seed():
    labels, groups = make_rows()
    a, b = grouped_split(labels, groups, seed=5), grouped_split(labels, groups, seed=5)
    c = grouped_split(labels, groups, seed=6)
    assert np.array_equal(a.test, b.test) and np.array_equal(a.val, b.val)
    assert not np.array_equal(a.test, c.test)
    with pytest.raises(ValueError):
        grouped_split(labels, groups[:-1], seed=0)


# --- metrics ------------------------------------------------------------------------------------


def test_brand_metrics_against_hand_computed_values():
    classes = ["a", "b", "c"]
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.4, 0.1], [0.2, 0.3, 0.5]])
    labels = ["a", "b", "b", "a"]
    m = brand_metrics(proba, labels, classes)
    assert m["n"] == 4
    assert m["top1"] == pytest.approx(0.5)  # rows 0 and 1 right
    assert m["top3"] == pytest.approx(1.0)
    expected = -(math.log(0.7) + math.log(0.6) + math.log(0.4) + math.log(0.2)) / 4
    assert m["log_loss"] == pytest.approx(expected, rel=1e-6)
    assert m["per_brand_recall"] == {"a": 0.5, "b": 0.5}
    assert m["confusion"] == {"labels": classes, "matrix": [[1, 0, 1], [1, 1, 0], [0, 0, 0]]}
    json.dumps(m)
    with pytest.raises(ValueError):
        brand_metrics(proba, ["a", "b", "b", "zzz"], classes)


def test_price_metrics_against_hand_computed_values():
    m = price_metrics(
        [100.0, 50.0, 200.0],
        [110.0, 40.0, 100.0],
        ["nike", "vans", "unknown"],
        train_brands=["nike", "nike", "nike", "vans"],
        train_prices=[90.0, 100.0, 130.0, 60.0],
        low_usd=[90.0, 45.0, 150.0],
        high_usd=[120.0, 60.0, 250.0],
    )
    assert m["n"] == 3
    assert m["mae"] == pytest.approx((10 + 10 + 100) / 3)
    assert m["mape"] == pytest.approx((10 / 110 + 10 / 40 + 100 / 100) / 3)
    # Baseline: nike median 100, vans median 60, unknown brand -> global median 95.
    assert m["baseline_mae"] == pytest.approx((10 + 20 + 5) / 3)
    assert m["baseline_mape"] == pytest.approx((10 / 110 + 20 / 40 + 5 / 100) / 3)
    assert m["range_coverage"] == pytest.approx(1 / 3)


# --- embedding cache ----------------------------------------------------------------------------


class CountingBackbone:
    """Wraps a Backbone and counts embedded images."""

    def __init__(self, inner):
        self.inner = inner
        self.fingerprint = inner.fingerprint
        self.spec = inner.spec
        self.dim = inner.dim
        self.batch_size = 4
        self.embedded = 0

    def preprocess(self, rgb):
        return self.inner.preprocess(rgb)

    def embed(self, images):
        self.embedded += len(images)
        return self.inner.embed(images)


def items_for(photos: list[np.ndarray]):
    datas = [to_bytes(p, "PNG") for p in photos]
    return [(hashlib.sha256(d).hexdigest(), (lambda d=d: d)) for d in datas]


def test_cache_hits_avoid_recomputing(tiny_backbone, tmp_path):
    backbone = CountingBackbone(tiny_backbone)
    cache = EmbeddingCache(tmp_path / "emb", backbone.fingerprint)
    items = items_for([draw_shoe((i * 40, 100, 50), seed=i) for i in range(6)])
    progress: list[tuple[int, int]] = []
    first, first_flip = embed_images(
        items, backbone=backbone, cache=cache, flip=True, progress=lambda *a: progress.append(a)
    )
    assert first.shape == (6, 16) and first_flip.shape == (6, 16)
    assert backbone.embedded == 12 and progress[0] == (0, 6) and progress[-1] == (6, 6)
    assert not np.allclose(first, first_flip)

    def refuse():
        raise AssertionError("loader called despite a cache hit")

    cached_items = [(sha, refuse) for sha, _ in items]
    again, again_flip = embed_images(cached_items, backbone=backbone, cache=cache, flip=True)
    assert backbone.embedded == 12
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(again_flip, first_flip)
    # Plain vectors were cached too; a remover is a different preprocessing (new key).
    np.testing.assert_array_equal(embed_images(cached_items, backbone=backbone, cache=cache), first)
    embed_images(items[:2], backbone=backbone, cache=cache, remover=GrabCutRemover())
    assert backbone.embedded == 14
    assert cache.get(items[0][0]).dtype == np.float32
    assert cache.path_for(items[0][0]).is_relative_to(tmp_path / "emb" / backbone.fingerprint)


def test_cache_rejects_path_tricks_and_survives_corrupt_files(tmp_path):
    cache = EmbeddingCache(tmp_path, "abc123")
    with pytest.raises(ValueError):
        cache.path_for("../../etc/passwd")
    cache.put("ab" * 32, np.ones(4))
    cache.path_for("ab" * 32).write_bytes(b"garbage")
    assert cache.get("ab" * 32) is None
    assert cache.get("cd" * 32) is None


def test_unreadable_image_names_its_sha(tiny_backbone):
    with pytest.raises(ImageError) as info:
        embed_images([("f" * 64, lambda: b"not an image")], backbone=tiny_backbone, cache=None)
    assert info.value.code == "image_unreadable" and "f" * 64 in info.value.message


# --- artifact -----------------------------------------------------------------------------------


def small_artifact(price: bool = True) -> ModelArtifact:
    rng = np.random.default_rng(0)
    return ModelArtifact(
        brand_head=BrandHead(("a", "b"), rng.normal(size=(4, 2)), rng.normal(size=2), 1.5),
        price_head=PriceHead(rng.normal(size=4), 4.0, -0.2, 0.3) if price else None,
        index=SimilarityIndex(rng.normal(size=(3, 4)), np.array([1, 2, 2])),
        metadata={"backbone_fingerprint": "x", "embedding_dim": 4, "classes": ["a", "b"]},
    )


def test_artifact_round_trip(tmp_path):
    artifact = small_artifact()
    artifact.save(tmp_path / "v1")
    # Everything but the optional parts it has none of.
    expected = set(ARTIFACT_FILES) - {
        "footwear.npz",
        "backbone.keras",
        "model_head.npz",
        "open_set.npz",
        "text_model.npz",
    }
    assert sorted(p.name for p in (tmp_path / "v1").iterdir()) == sorted(expected)
    loaded = ModelArtifact.load(tmp_path / "v1")
    assert loaded.metadata == artifact.metadata
    assert loaded.brand_head.classes == ("a", "b") and loaded.brand_head.temperature == 1.5
    np.testing.assert_array_equal(loaded.brand_head.weights, artifact.brand_head.weights)
    np.testing.assert_array_equal(loaded.index.product_ids, [1, 2, 2])
    assert loaded.price_head is not None and loaded.price_head.log_residual_high == pytest.approx(0.3)
    # Saving again without a price head removes the stale file.
    small_artifact(price=False).save(tmp_path / "v1")
    assert not (tmp_path / "v1" / "price_head.npz").exists()
    assert ModelArtifact.load(tmp_path / "v1").price_head is None


def test_artifact_round_trip_keeps_the_footwear_detector(tmp_path):
    from dataclasses import replace

    from worker.ml.abstain import FootwearDetector

    rng = np.random.default_rng(0)
    detector = FootwearDetector(weights=rng.normal(size=(4, 1000)).astype(np.float32), bias=np.zeros(1000, np.float32))
    replace(small_artifact(), footwear=detector).save(tmp_path)
    loaded = ModelArtifact.load(tmp_path)
    assert loaded.footwear is not None and loaded.footwear.classes == detector.classes
    features = rng.normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_allclose(loaded.footwear.score(features), detector.score(features))
    small_artifact().save(tmp_path)  # saving without a detector removes the stale file
    assert ModelArtifact.load(tmp_path).footwear is None


@pytest.mark.parametrize("damage", ["missing", "corrupt", "bad_json"])
def test_broken_artifact_raises_model_error(tmp_path, damage):
    small_artifact().save(tmp_path)
    if damage == "missing":
        (tmp_path / "index.npz").unlink()
    elif damage == "corrupt":
        (tmp_path / "brand_head.npz").write_bytes(b"PK\x03\x04broken")
    else:
        (tmp_path / "metadata.json").write_text("{not json")
    with pytest.raises(ModelError) as info:
        ModelArtifact.load(tmp_path)
    assert info.value.code == "model_unavailable"


# --- train_model + Pipeline ---------------------------------------------------------------------


def catalog_samples() -> list[TrainingSample]:
    """24 made product shots: 3 colour-coded brands x 4 products x 2 photos, priced by brand."""
    samples = []
    seed = 0
    for b, (brand, (colour, price)) in enumerate(BRANDS.items()):
        for p in range(4):
            for _ in range(2):
                seed += 1
                data = to_bytes(draw_shoe(colour, seed=seed, shape="ellipse" if p % 2 else "box"), "PNG")
                samples.append(
                    TrainingSample(
                        sha256=hashlib.sha256(data).hexdigest(),
                        brand=brand,
                        group=f"{brand}/model {p}",
                        price_usd=price + 5 * p,
                        product_id=100 * b + p,
                        load=lambda data=data: data,
                    )
                )
    return samples


@pytest.fixture(scope="module")
def trained(tiny_backbone, tmp_path_factory):
    samples = catalog_samples()
    cache = EmbeddingCache(tmp_path_factory.mktemp("cache"), tiny_backbone.fingerprint)
    return samples, train_model(samples, TrainingConfig(seed=0), backbone=tiny_backbone, cache=cache)


def test_train_model_reports_metrics_split_and_artifact(trained, tmp_path):
    samples, result = trained
    metrics = result.metrics
    json.dumps(metrics, allow_nan=False)
    assert metrics["counts"]["train"] + metrics["counts"]["val"] + metrics["counts"]["test"] == 24
    assert metrics["counts"]["indexed"] == 24
    brand = metrics["brand"]
    assert {"top1", "top3", "log_loss", "per_brand_recall", "confusion", "n", "val_log_loss"} <= set(brand)
    assert brand["top1"] == 1.0  # colour-coded brands
    assert {"mae", "mape", "baseline_mae", "baseline_mape", "n"} <= set(metrics["price"])
    assert metrics["price"]["n"] > 0
    assert set(metrics["seconds"]) >= {"embed", "fit"}
    assert metrics["background_masks"] == "none"  # trained without a remover: the photos as they are
    split = result.split
    assert split["seed"] == 0
    group_of = {s.sha256: s.group for s in samples}
    train_groups = {group_of[s] for s in split["train"]}
    assert not train_groups & {group_of[s] for s in split["test"] + split["val"]}
    artifact = result.artifact
    assert artifact.metadata["classes"] == sorted(BRANDS)
    assert artifact.metadata["embedding_dim"] == 16
    assert len(artifact.index) == 24 and artifact.price_head is not None
    artifact.save(tmp_path / "model")
    assert ModelArtifact.load(tmp_path / "model").metadata == artifact.metadata


def test_training_is_deterministic(trained, tiny_backbone, tmp_path):
    samples, result = trained
    again = train_model(
        samples,
        TrainingConfig(seed=0),
        backbone=tiny_backbone,
        cache=EmbeddingCache(tmp_path, tiny_backbone.fingerprint),
    )
    assert again.split == result.split
    np.testing.assert_allclose(again.artifact.brand_head.weights, result.artifact.brand_head.weights, atol=1e-5)


def test_pipeline_predicts_brand_price_similar_and_cutout(trained, tiny_backbone):
    _, result = trained
    pipeline = Pipeline(result.artifact, tiny_backbone, GrabCutRemover())
    photo = draw_shoe(BRANDS["blueco"][0], seed=999)
    out = pipeline.predict(to_bytes(photo, "JPEG", quality=92))
    assert [b.brand for b in out.brands][0] == "blueco" and len(out.brands) == 3
    assert sum(b.probability for b in out.brands) == pytest.approx(1.0, abs=1e-4)
    assert out.price is not None and out.price.low <= out.price.estimate <= out.price.high
    assert 1 <= len(out.similar) <= 5 and len({s.product_id for s in out.similar}) == len(out.similar)
    assert out.similar[0].product_id // 100 == list(BRANDS).index("blueco")
    assert out.cutout_jpeg.startswith(b"\xff\xd8\xff")
    assert out.background == "skipped"  # white background
    assert set(out.timings_ms) == {"decode", "background", "embed", "heads", "search", "total"}
    assert out.timings_ms["total"] >= out.timings_ms["embed"] > 0

    textured = pipeline.predict_rgb(draw_shoe(BRANDS["redco"][0], seed=5, background="noise"), top_k=1)
    assert textured.background.startswith("grabcut") and len(textured.brands) == 1

    with pytest.raises(ImageError):
        pipeline.predict(b"\x89PNG\r\n\x1a\nbroken")


def test_pipeline_refuses_a_mismatched_backbone(trained, tiny_backbone):
    _, result = trained
    artifact = result.artifact
    wrong = ModelArtifact(
        artifact.brand_head,
        artifact.price_head,
        artifact.index,
        {**artifact.metadata, "backbone_fingerprint": "0" * 16},
    )
    with pytest.raises(ModelError):
        Pipeline(wrong, tiny_backbone, None)
    wrong_dim = ModelArtifact(
        artifact.brand_head, artifact.price_head, artifact.index, {**artifact.metadata, "embedding_dim": 1280}
    )
    with pytest.raises(ModelError):
        Pipeline(wrong_dim, tiny_backbone, None)


def test_pipeline_refuses_an_unknown_background_rule_override(trained, tiny_backbone):
    _, result = trained
    with pytest.raises(ValueError, match="unknown background rule"):
        Pipeline(result.artifact, tiny_backbone, None, skip_plain=None, background_rule="sometimes")


def test_load_pipeline_sets_the_backbone_up_as_the_artifact_was_trained(trained, tiny_backbone, tmp_path):
    from worker.ml.backbone import INPUT_SIZE, file_fingerprint
    from worker.ml.pipeline import load_pipeline

    _, result = trained
    result.artifact.save(tmp_path / "new")
    assert result.artifact.metadata["backbone_input_size"] == tiny_backbone.input_size == 320
    assert load_pipeline(tmp_path / "new", backbone=tiny_backbone, remover=None).backbone is tiny_backbone
    # An artifact from before the multi-level descriptor: no size or taps recorded, the file's own
    # fingerprint. The loaded 320 px backbone is set up again at 224 px rather than refused.
    assert result.artifact.metadata["backbone"]["input_size"] == 320
    # An artifact from before the spec, with the multi-level keys only: set up at its recorded size and taps.
    multi_level = {k: v for k, v in result.artifact.metadata.items() if k != "backbone"}
    ModelArtifact(result.artifact.brand_head, result.artifact.price_head, result.artifact.index, multi_level).save(
        tmp_path / "multi"
    )
    assert load_pipeline(tmp_path / "multi", backbone=tiny_backbone, remover=None).backbone is tiny_backbone
    metadata = {k: v for k, v in result.artifact.metadata.items() if not k.startswith("backbone")}
    metadata["backbone_fingerprint"] = file_fingerprint(tiny_backbone.path)
    old = ModelArtifact(result.artifact.brand_head, result.artifact.price_head, result.artifact.index, metadata)
    old.save(tmp_path / "old")
    pipeline = load_pipeline(tmp_path / "old", backbone=tiny_backbone, remover=None)
    assert pipeline.backbone.input_size == INPUT_SIZE and pipeline.backbone.taps == ()
    assert pipeline.predict_rgb(draw_shoe(BRANDS["blueco"][0], seed=7)).brands


def test_training_reports_calibration_thresholds_baseline_and_plots(trained):
    _, result = trained
    brand = result.metrics["brand"]
    assert 0.0 <= brand["ece_before"] <= 1.0 and 0.0 <= brand["ece_after"] <= 1.0
    assert result.metrics["variant"] == "head-only"
    thresholds = result.artifact.metadata["abstain"]
    assert set(thresholds) == {"confidence_threshold", "footwear_threshold"}
    assert thresholds["footwear_threshold"] == 0.0  # no ImageNet classifier given: the rule is off
    baseline = result.artifact.metadata["price_baseline"]
    assert set(baseline["per_brand"]) <= set(BRANDS) and baseline["global"] > 0
    assert set(result.report) >= {"reliability.png", "confusion.png"}
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in result.report.values())


def _with_abstain(artifact, **thresholds):
    from dataclasses import replace

    return replace(artifact, metadata={**artifact.metadata, "abstain": thresholds})


def test_pipeline_abstains_with_low_confidence_but_keeps_guesses_price_and_similar(trained, tiny_backbone):
    samples, result = trained
    artifact = _with_abstain(result.artifact, confidence_threshold=1.01, footwear_threshold=0.0)
    answer = Pipeline(artifact, tiny_backbone, None).predict(samples[0].load())
    assert answer.abstain is not None and answer.abstain.reason == "low_confidence"
    assert answer.abstain.score == pytest.approx(answer.brands[0].probability)
    assert answer.brands and answer.price is not None and answer.similar

    confident = Pipeline(_with_abstain(result.artifact, confidence_threshold=0.0), tiny_backbone, None)
    assert confident.predict(samples[0].load()).abstain is None


def test_pipeline_rejects_what_the_footwear_detector_scores_below_threshold(trained, tiny_backbone):
    from dataclasses import replace

    from worker.ml.abstain import FOOTWEAR_CLASSES, FootwearDetector

    samples, result = trained
    bias = np.zeros(1000, np.float32)
    weights = np.zeros((tiny_backbone.aux_dim, 1000), np.float32)
    never_shoe = FootwearDetector(weights=weights, bias=bias - 50 * np.isin(np.arange(1000), FOOTWEAR_CLASSES))
    artifact = replace(_with_abstain(result.artifact, footwear_threshold=0.5), footwear=never_shoe)
    answer = Pipeline(artifact, tiny_backbone, None).predict(samples[0].load())
    assert answer.abstain is not None and answer.abstain.reason == "not_footwear" and answer.abstain.score < 0.01
    assert answer.brands and answer.price is None and answer.similar == []

    always_shoe = FootwearDetector(weights=weights, bias=bias + 50 * np.isin(np.arange(1000), FOOTWEAR_CLASSES))
    artifact = replace(_with_abstain(result.artifact, footwear_threshold=0.5), footwear=always_shoe)
    assert Pipeline(artifact, tiny_backbone, None).predict(samples[0].load()).abstain is None
