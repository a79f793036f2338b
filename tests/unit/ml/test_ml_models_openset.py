"""Model head, the ``unknown_brand`` rule, class-balanced weights and ``TrainingConfig``, on made-up data."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest

from tests.unit.ml.ml_helpers import draw_shoe, to_bytes
from worker.ml.artifact import ModelArtifact
from worker.ml.backbone import l2_normalise
from worker.ml.embeddings import EmbeddingCache
from worker.ml.heads import BrandHead, ModelHead, class_weights, fit_brand_head
from worker.ml.pipeline import Pipeline
from worker.ml.results import ABSTAIN_REASONS, ModelScore
from worker.ml.training import TrainingConfig, TrainingData, TrainingSample, train_model
from worker.ml.unknown_brand import (
    OPEN_SET_KINDS,
    EnergyScorer,
    UnknownBrandRule,
    choose_known_threshold,
    resolve_kind,
)

COLOURS = {"redco": (210, 30, 30), "greenco": (30, 170, 40), "blueco": (30, 50, 200)}
SHAPES = ("box", "ellipse")

# --- class weights and the model head ------------------------------------------------------------


def test_class_weights_weigh_rare_classes_up():
    labels = ["nike"] * 90 + ["asics"] * 10
    balanced = class_weights(labels, "balanced")
    assert balanced == {"asics": pytest.approx(5.0), "nike": pytest.approx(100 / 180)}
    effective = class_weights(labels, "effective", beta=0.99)
    assert effective["asics"] > effective["nike"]
    # Rows weigh 1 on average, and the effective number is gentler than inverse frequency.
    assert (90 * effective["nike"] + 10 * effective["asics"]) / 100 == pytest.approx(1.0)
    assert effective["asics"] / effective["nike"] < balanced["asics"] / balanced["nike"]
    with pytest.raises(ValueError):
        class_weights(labels, "inverse-sqrt")


def test_balanced_weights_move_the_boundary_towards_the_big_class():
    rng = np.random.default_rng(0)
    big = rng.normal([1.0, 0.0], 0.6, size=(300, 2))
    small = rng.normal([-1.0, 0.0], 0.6, size=(15, 2))
    x = np.vstack([big, small]).astype(np.float32)
    y = ["big"] * 300 + ["small"] * 15
    plain = fit_brand_head(x, y, seed=0, class_weight=None)
    balanced = fit_brand_head(x, y, seed=0, class_weight="balanced")
    probe = np.array([[0.0, 0.0]], np.float32)  # half way between the two means
    small_col = plain.classes.index("small")
    assert balanced.predict_proba(probe)[0, small_col] > plain.predict_proba(probe)[0, small_col]


def test_model_head_top_k_names_models_with_their_brand_and_round_trips():
    classifier = BrandHead(("Air Max 90", "Chuck 70", "Samba"), np.eye(3, dtype=np.float32) * 5, np.zeros(3), 1.0)
    head = ModelHead(classifier=classifier, brands=("nike", "converse", "adidas"), threshold=0.6)
    top = head.top_k(np.array([0.0, 1.0, 0.0], np.float32), k=2)
    assert top[0] == ModelScore("Chuck 70", "converse", pytest.approx(top[0].probability))
    assert top[0].probability > top[1].probability and len(top) == 2
    again = ModelHead.from_arrays(head.to_arrays())
    assert again.brands == head.brands and again.threshold == 0.6 and again.classes == head.classes
    with pytest.raises(ValueError):
        ModelHead(classifier=classifier, brands=("nike",))


# --- the unknown_brand rule ----------------------------------------------------------------------


def test_energy_score_is_logsumexp_and_the_threshold_refuses_the_share_asked():
    from scipy.special import logsumexp

    logits = np.random.default_rng(1).normal(0, 3, size=(200, 4))
    scores = EnergyScorer().score(np.zeros((200, 8)), logits)
    np.testing.assert_allclose(scores, logsumexp(logits, axis=1))
    threshold = choose_known_threshold(scores, max_known_reject=0.05)
    assert np.mean(scores < threshold) == pytest.approx(0.05)
    assert choose_known_threshold(scores[:10], max_known_reject=0.05) is None  # refuses nothing: rule off
    rule = UnknownBrandRule(scorer=EnergyScorer(), threshold=threshold)
    again = UnknownBrandRule.from_arrays(rule.to_arrays())
    assert again.kind == "energy" and again.threshold == threshold
    np.testing.assert_allclose(again.scores(np.zeros((200, 8)), logits), scores)
    assert "unknown_brand" in ABSTAIN_REASONS
    with pytest.raises(ValueError):
        resolve_kind("no-such-score")


def test_a_registered_scorer_replaces_the_baseline(monkeypatch):
    class Zero:
        kind = "zero"

        def score(self, embeddings, logits):
            return np.zeros(len(embeddings))

        def to_arrays(self):
            return {"nothing": np.zeros(1)}

        @classmethod
        def from_arrays(cls, arrays):
            return cls()

    monkeypatch.setitem(OPEN_SET_KINDS, "zero", Zero)
    rule = UnknownBrandRule.from_arrays(UnknownBrandRule(Zero(), 0.5).to_arrays())
    assert isinstance(rule.scorer, Zero) and rule.scores(np.zeros((3, 2)), np.zeros((3, 2))).tolist() == [0, 0, 0]


# --- training with named models, and the pipeline ------------------------------------------------


def _samples() -> list[TrainingSample]:
    """3 colour-coded brands x 2 shape-coded models x 6 photos, each photo its own split group."""
    samples, seed = [], 0
    for brand, colour in COLOURS.items():
        for shape in SHAPES:
            for _ in range(6):
                seed += 1
                data = to_bytes(draw_shoe(colour, seed=seed, shape=shape, size=(96, 64)), "PNG")
                sha = hashlib.sha256(data).hexdigest()
                samples.append(
                    TrainingSample(sha, brand, sha, 100.0, seed, lambda data=data: data, model=f"{brand} {shape}")
                )
    return samples


@pytest.fixture(scope="module")
def with_models(tiny_backbone, tmp_path_factory):
    config = TrainingConfig(seed=0, model_min_photos=2, open_set_max_known_reject=0.3, dedup=False)
    cache = EmbeddingCache(tmp_path_factory.mktemp("cache"), tiny_backbone.fingerprint)
    return train_model(TrainingData(catalog=_samples()), config, backbone=tiny_backbone, cache=cache)


def test_training_fits_a_model_head_and_an_unknown_brand_rule(with_models, tmp_path):
    result = with_models
    json.dumps(result.metrics, allow_nan=False)
    head = result.artifact.model_head
    assert head is not None and set(head.classes) == {f"{b} {s}" for b in COLOURS for s in SHAPES}
    assert dict(zip(head.classes, head.brands, strict=True))["greenco box"] == "greenco"
    model = result.metrics["model"]
    assert {"top1", "top5", "log_loss", "threshold", "C", "temperature", "confusion"} <= set(model)
    assert result.metrics["config"]["model_min_photos"] == 2
    rule = result.artifact.unknown_brand
    assert rule is not None and rule.kind == "openset:energy"  # the default: worker.ml.openset's energy rule
    assert result.metrics["unknown_brand"]["val_known_refused"] <= 0.3
    assert result.artifact.metadata["abstain"]["unknown_brand_threshold"] == rule.threshold
    assert result.artifact.metadata["model_head"]["classes"] == 6
    result.artifact.save(tmp_path)
    loaded = ModelArtifact.load(tmp_path)
    assert loaded.model_head is not None and loaded.model_head.classes == head.classes
    assert loaded.unknown_brand is not None and loaded.unknown_brand.threshold == rule.threshold


def test_pipeline_names_models_and_refuses_unknown_brands(with_models, tiny_backbone):
    artifact = replace(with_models.artifact, unknown_brand=None)
    photo = draw_shoe(COLOURS["blueco"], seed=999, shape="ellipse", size=(96, 64))
    out = Pipeline(artifact, tiny_backbone, None).predict_rgb(photo)
    assert out.brands[0].brand == "blueco" and out.abstain is None
    assert out.models and out.models[0].brand in COLOURS
    assert out.models[0].probability >= out.models[-1].probability
    assert sum(m.probability for m in out.models) <= 1.0 + 1e-5
    assert out.model_uncertain == (
        out.models[0].probability < artifact.model_head.threshold or out.models[0].brand != out.brands[0].brand
    )
    # A rule no photo can pass refuses as unknown_brand (guesses kept, price and similar too).
    strict = replace(artifact, unknown_brand=UnknownBrandRule(EnergyScorer(), threshold=1e9))
    refused = Pipeline(strict, tiny_backbone, None).predict_rgb(photo)
    assert refused.abstain is not None and refused.abstain.reason == "unknown_brand"
    assert refused.model_uncertain and refused.brands and refused.price is not None and refused.similar
    lenient = replace(artifact, unknown_brand=UnknownBrandRule(EnergyScorer(), threshold=-1e9))
    assert Pipeline(lenient, tiny_backbone, None).predict_rgb(photo).abstain is None
    # No model head: no models, never "uncertain".
    plain = Pipeline(replace(artifact, model_head=None), tiny_backbone, None).predict_rgb(photo)
    assert plain.models == [] and plain.model_uncertain is False


def test_too_few_photos_per_model_means_no_model_head(tiny_backbone, tmp_path):
    samples = [replace(s, model=None) if i % 3 else s for i, s in enumerate(_samples())]
    result = train_model(
        samples, TrainingConfig(seed=0, open_set=None, model_min_photos=50), backbone=tiny_backbone, cache=None
    )
    assert result.artifact.model_head is None and "reason" in result.metrics["model"]
    assert result.artifact.unknown_brand is None and result.metrics["unknown_brand"]["kind"] is None


def test_training_config_refuses_bad_values():
    with pytest.raises(ValueError):
        TrainingConfig(brand_c_grid=())
    with pytest.raises(ValueError):
        TrainingConfig(val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError):
        TrainingConfig(class_weight="sqrt")
    with pytest.raises(ValueError):
        TrainingData(catalog=(), wild=(), wild_styles=("real-world",))
    assert (
        TrainingConfig().head_class_weight == "balanced"
        and TrainingConfig(class_weight="none").head_class_weight is None
    )


def test_catalog_split_holds_out_real_world_photos_of_each_brand(tiny_backbone):
    from worker.ml.training import plan_splits

    samples = [replace(s, style="real-world" if i % 2 else "product-shot") for i, s in enumerate(_samples())]
    plan = plan_splits(TrainingData(catalog=samples), TrainingConfig(seed=0, dedup=False))
    for brand in COLOURS:
        held = [samples[i] for i in plan.catalog.test if samples[i].brand == brand]
        assert any(s.style == "real-world" for s in held) and any(s.style == "product-shot" for s in held)
    assert l2_normalise(np.ones((1, 2))).shape == (1, 2)


def test_evaluate_reports_model_figures_and_unknown_brand_refusals(with_models, tiny_backbone):
    from worker.ml.evaluation import EvalItem, evaluate

    def item(brand, shape, seed, **extra):
        colour = COLOURS.get(brand, (230, 210, 20))
        data = to_bytes(draw_shoe(colour, seed=seed, shape=shape, size=(96, 64)), "PNG")
        return EvalItem(load=lambda: data, brand=brand, model=f"{brand} {shape}", source="made", **extra)

    items = [item(b, s, 700 + i) for i, (b, s) in enumerate((b, s) for b in COLOURS for s in SHAPES)]
    items.append(item("yellowco", "box", 800))  # a brand the model does not know
    artifact = replace(with_models.artifact, unknown_brand=None)
    report = evaluate(Pipeline(artifact, tiny_backbone, None), items)
    json.dumps(report, allow_nan=False)
    assert report["model_n"] == 6 and 0.0 <= report["model_top1"] <= report["model_top1_raw"] <= 1.0
    assert report["model_top1_raw"] <= report["model_top5_raw"] <= 1.0
    assert report["unknown_brand"] == 1 and report["unknown_brand_refused"] == 0.0
    assert set(report["by_source"]) == {"made"}
    strict = replace(artifact, unknown_brand=UnknownBrandRule(EnergyScorer(), threshold=1e9))
    refused = evaluate(Pipeline(strict, tiny_backbone, None), items)
    assert refused["unknown_brand_refused"] == 1.0 and refused["known_refused_unknown_brand"] == 1.0
    assert refused["abstained"]["sneakers_by_reason"]["unknown_brand"] == 1.0 and refused["model_top1"] == 0.0
