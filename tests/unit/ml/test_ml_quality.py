"""Near-duplicate grouping, augmentation, fine-tuning on a tiny backbone, evaluate(), load_pipeline."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.unit.ml.ml_helpers import draw_shoe, to_bytes
from worker.ml.abstain import FootwearDetector
from worker.ml.augment import augment_photo, foreground_mask
from worker.ml.dedup import image_hashes, merge_near_duplicates, near_duplicate_pairs
from worker.ml.embeddings import EmbeddingCache
from worker.ml.errors import ModelError
from worker.ml.evaluation import EvalItem, evaluate
from worker.ml.metrics import per_class_precision_recall as per_brand_precision_recall
from worker.ml.pipeline import Pipeline, load_pipeline
from worker.ml.results import Abstain
from worker.ml.training import TrainingConfig, TrainingData, TrainingSample, train_model

COLOURS = {"redco": (210, 30, 30), "greenco": (30, 170, 40), "blueco": (30, 50, 200)}


def _samples(n_products: int = 4, per: int = 2, offset: int = 0) -> list[TrainingSample]:
    samples, seed = [], offset
    for b, (brand, colour) in enumerate(COLOURS.items()):
        for p in range(n_products):
            for _ in range(per):
                seed += 1
                data = to_bytes(draw_shoe(colour, seed=seed, shape="ellipse" if p % 2 else "box"), "PNG")
                samples.append(
                    TrainingSample(
                        sha256=hashlib.sha256(data).hexdigest(),
                        brand=brand,
                        group=f"{brand}/{p}",
                        price_usd=80.0 + 40 * b + p,
                        product_id=100 * b + p,
                        load=lambda data=data: data,
                    )
                )
    return samples


def _wild() -> tuple[list[TrainingSample], list[str]]:
    wild, styles, seed = [], [], 500
    for brand, colour in COLOURS.items():
        for k in range(4):
            seed += 1
            data = to_bytes(draw_shoe(colour, seed=seed, background="noise" if k % 2 else "white"), "JPEG", quality=90)
            sha = hashlib.sha256(data).hexdigest()
            wild.append(TrainingSample(sha, brand, sha, None, None, lambda data=data: data))
            styles.append("real-world" if k % 2 else "product-shot")
    return wild, styles


# --- dedup ---------------------------------------------------------------------------------------


def test_phash_grouping_joins_near_duplicates_only():
    shoe = draw_shoe((200, 40, 40), seed=1, size=(160, 120))
    resized = np.asarray(Image.fromarray(shoe).resize((150, 112)))
    other = draw_shoe((40, 40, 200), seed=2, size=(160, 120), shape="box")
    hashes = [image_hashes(to_bytes(img, "JPEG", quality=q)) for img, q in ((shoe, 95), (resized, 70), (other, 95))]
    pairs = near_duplicate_pairs([[h[0] for h in hashes], [h[1] for h in hashes]], max_distance=4)
    assert [tuple(p) for p in pairs.tolist()] == [(0, 1)]
    groups = merge_near_duplicates(["a", "b", "c"], [[h[0] for h in hashes], [h[1] for h in hashes]], max_distance=4)
    assert groups == ["a", "a", "c"]
    # Caller groups are joined transitively too.
    assert merge_near_duplicates(["x", "y", "x"], [[0, 2**64 - 1, 1]]) == ["x", "y", "x"]
    assert merge_near_duplicates(["x", "y", "z"], [[0, 1, 2**40 - 1]], max_distance=1) == ["x", "x", "z"]


# --- augmentation --------------------------------------------------------------------------------


def test_augmentation_shapes_dtypes_and_determinism():
    shoe = draw_shoe((30, 50, 200), seed=3, size=(120, 90))
    a = augment_photo(shoe, np.random.default_rng(7), size=64)
    b = augment_photo(shoe, np.random.default_rng(7), size=64)
    c = augment_photo(shoe, np.random.default_rng(8), size=64)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    mask = foreground_mask(shoe)
    assert mask.shape == shoe.shape[:2] and mask.dtype == np.float32
    assert mask[45, 60] > 0.9 and mask[2, 2] < 0.1  # shoe centre vs white corner
    with pytest.raises(ValueError):
        augment_photo(shoe.astype(np.float32), np.random.default_rng(0))


# --- fine-tuning and the wild / negatives path on a tiny backbone --------------------------------


@pytest.fixture(scope="module")
def finetuned(tapped_backbone, tmp_path_factory):
    # The tapped backbone, as in production: fine-tuning must rebuild the multi-level descriptor.
    tiny_backbone = tapped_backbone
    wild, styles = _wild()
    negatives = [lambda i=i: to_bytes(np.full((40, 40, 3), 20 * i, np.uint8), "PNG") for i in range(1, 5)]
    workdir = tmp_path_factory.mktemp("work")
    result = train_model(
        TrainingData(
            catalog=_samples(),
            wild=wild,
            wild_styles=styles,
            negatives=negatives,
            # Scene categories: the fine-tuning copies are pasted on the tuning half of these.
            negative_categories=["landscape", "building_street", "landscape", "plant_fungi"],
        ),
        TrainingConfig(
            seed=0, finetune=True, workdir=workdir, augment_copies=1, finetune_epochs=2, keep_variant="fine-tuned"
        ),
        backbone=tiny_backbone,
        cache=EmbeddingCache(tmp_path_factory.mktemp("cache"), tiny_backbone.fingerprint),
    )
    return result, workdir


def test_finetune_path_reports_both_variants_and_pngs(finetuned):
    result, _ = finetuned
    metrics = result.metrics
    json.dumps(metrics, allow_nan=False)
    assert set(metrics["variants"]) == {"head-only", "fine-tuned"}
    assert metrics["variant"] == "fine-tuned"  # forced by keep_variant
    assert result.artifact.metadata["variant"] == metrics["variant"]
    assert 1 <= len(metrics["finetune"]["history"]) <= 2
    augmentation = metrics["finetune"]["augmentation"]
    assert augmentation["scenes"] == 2  # the tuning half of the four negatives
    assert set(augmentation["copies_per_brand"]) == set(COLOURS)
    assert {"loss", "accuracy", "val_log_loss", "val_accuracy"} <= set(metrics["finetune"]["history"][0])
    assert set(metrics["wild"]) >= {"real-world", "product-shot", "counts"}
    assert sum(metrics["wild"]["counts"].values()) == 12
    held = set(result.split["wild"]["test"])
    assert not held & (set(result.split["wild"]["train"]) | set(result.split["wild"]["val"]))
    assert {"ece_before", "ece_after", "per_brand_precision"} <= set(metrics["brand"])
    assert set(result.report) >= {"confusion.png", "reliability.png", "training_curves.png"}
    for png in result.report.values():
        assert Image.open(io.BytesIO(png)).format == "PNG"


def test_finetuned_artifact_loads_with_its_own_backbone(finetuned, tapped_backbone, tapped_backbone_path, tmp_path):
    from dataclasses import replace

    from worker.ml.images import load_rgb

    result, _ = finetuned
    artifact = result.artifact
    assert artifact.backbone_keras is not None
    assert artifact.metadata["backbone_taps"] == [["block7_add", 0.4], ["block14_add", 0.7]]
    artifact.save(tmp_path / "v")
    pipeline = load_pipeline(tmp_path / "v", backbone_path=tapped_backbone_path, remover=None)
    assert pipeline.backbone.has_aux and pipeline.backbone.fingerprint != tapped_backbone.fingerprint
    assert pipeline.backbone.dim == tapped_backbone.dim == 40
    # The saved model embeds a catalog photo exactly as training did (fine-tuned part + taps).
    sample = _samples()[0]
    square = pipeline.backbone.preprocess(load_rgb(sample.load()))
    row = int(np.flatnonzero(artifact.index.product_ids == sample.product_id)[0])
    np.testing.assert_allclose(pipeline.backbone.embed(square[None])[0], artifact.index.embeddings[row], atol=1e-4)
    out = pipeline.predict(to_bytes(draw_shoe(COLOURS["blueco"], seed=999), "PNG"))
    assert out.brands[0].brand == "blueco"
    (tmp_path / "v" / "backbone.keras").unlink()
    with pytest.raises(ModelError):
        load_pipeline(tmp_path / "v", backbone_path=tapped_backbone_path, remover=None)
    bad = replace(artifact, metadata={**artifact.metadata, "finetuned_backbone_fingerprint": "0" * 16})
    with pytest.raises(ModelError):
        Pipeline(bad, pipeline.backbone, None)


# --- evaluate() ----------------------------------------------------------------------------------


def test_evaluate_reports_figures_and_abstentions(finetuned, tapped_backbone_path, tmp_path):
    from dataclasses import replace

    result, _ = finetuned
    artifact = result.artifact
    # A detector whose footwear mass is ~0.99 for every photo (threshold 0.5: nothing rejected), and one
    # whose mass is ~0.007 (everything rejected).
    dim = 16
    keep = FootwearDetector(weights=np.zeros((dim, 3), np.float32), bias=np.array([0.0, 5.0, 0.0]), classes=(1,))
    thresholds = {"footwear_threshold": 0.5, "confidence_threshold": 0.0}
    artifact = replace(artifact, footwear=keep, metadata={**artifact.metadata, "abstain": thresholds})
    artifact.save(tmp_path / "v")
    pipeline = load_pipeline(tmp_path / "v", backbone_path=tapped_backbone_path, remover=None)
    items = [
        EvalItem(load=lambda c=c, s=s: to_bytes(draw_shoe(c, seed=s), "PNG"), brand=b, price_usd=100.0, style="x")
        for s, (b, c) in enumerate(COLOURS.items(), start=900)
    ]
    items.append(EvalItem(load=lambda: b"not an image", brand="redco"))
    items.append(EvalItem(load=lambda: to_bytes(np.zeros((50, 50, 3), np.uint8), "PNG"), brand=None, category="mug"))
    report = evaluate(pipeline, items)
    json.dumps(report, allow_nan=False)
    assert report["n"] == 4 and report["errors"] == 1 and report["n_negatives"] == 1
    assert {
        "top1",
        "top3",
        "log_loss",
        "ece",
        "per_brand",
        "confusion",
        "price_mae",
        "price_mape",
        "price_baseline_mae",
        "abstained",
        "top1_answered",
        "by_style",
    } <= set(report)
    assert report["top1"] == 1.0 and report["top1_answered"] == 1.0
    assert report["abstained"]["negatives"] == 0.0 and report["abstained"]["negatives_by_category"] == {"mug": 0.0}
    assert report["abstained"]["sneakers"] == 0.0
    reject = FootwearDetector(weights=np.zeros((dim, 3), np.float32), bias=np.array([5.0, 0.0, 0.0]), classes=(1,))
    rejecting = Pipeline(replace(artifact, footwear=reject), pipeline.backbone, None)
    refused = evaluate(rejecting, items)
    assert refused["abstained"]["negatives"] == 1.0 and refused["top1"] == 0.0
    assert refused["abstained"]["sneakers_by_reason"]["not_footwear"] == 1.0
    out = rejecting.predict_rgb(draw_shoe(COLOURS["redco"], seed=1))
    assert out.abstain is not None and out.abstain.reason == "not_footwear" and out.abstain.score < 0.01
    assert out.price is None and out.similar == [] and len(out.brands) == 3
    assert set(report["by_style"]) == {"x"} and report["by_style"]["x"]["n"] == 3
    # With a confidence threshold above 1 every sneaker abstains and counts as wrong in top1.
    strict = replace(
        artifact, metadata={**artifact.metadata, "abstain": {"footwear_threshold": 0.5, "confidence_threshold": 1.01}}
    )
    low = evaluate(Pipeline(strict, pipeline.backbone, None, skip_plain=None), items[:3])
    assert (
        low["top1"] == 0.0
        and low["top1_raw"] == 1.0
        and low["abstained"]["sneakers_by_reason"]["low_confidence"] == 1.0
    )
    out = Pipeline(strict, pipeline.backbone, None).predict_rgb(draw_shoe(COLOURS["redco"], seed=1))
    assert out.abstain == Abstain("low_confidence", out.brands[0].probability) and out.price is not None


def test_per_brand_precision_recall_counts_no_answer_against_recall_only():
    figures = per_brand_precision_recall(["a", "a", "b"], ["a", None, "a"], ["a", "b"])
    assert figures["a"] == {"precision": 0.5, "recall": 0.5, "support": 2}
    assert figures["b"] == {"precision": None, "recall": 0.0, "support": 1}
