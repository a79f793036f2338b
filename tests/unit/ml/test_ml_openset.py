"""Open-set ``unknown_brand`` rules on tiny made-up embeddings (no shared data, no backbone)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from worker.ml.backbone import l2_normalise
from worker.ml.heads import fit_brand_head, fit_temperature
from worker.ml.openset import (
    BASE_FEATURES,
    METHODS,
    OpenSetRule,
    base_scores,
    choose_threshold,
    class_prototypes,
    fit_open_set,
    knn_similarity,
    reference_bank,
)

DIM = 12


def blob(centre_axis: int, n: int, rng: np.random.Generator, spread: float = 0.35) -> np.ndarray:
    """``n`` unit vectors scattered around one axis of R^DIM."""
    centre = np.zeros(DIM)
    centre[centre_axis] = 3.0
    return l2_normalise(centre + rng.normal(0, spread, size=(n, DIM)))


def known_and_unknown(seed: int = 0):
    """Four known brands on axes 0-3 (train and validation draws) and an unknown brand on axis 6."""
    rng = np.random.default_rng(seed)
    brands = ["adidas", "converse", "nike", "vans"]
    train = np.vstack([blob(i, 40, rng) for i in range(4)])
    val = np.vstack([blob(i, 25, rng) for i in range(4)])
    train_y = [b for b in brands for _ in range(40)]
    val_y = [b for b in brands for _ in range(25)]
    unknown = blob(6, 50, rng)
    head = fit_brand_head(train, train_y, seed=0, C=1.0)
    head = head.with_temperature(fit_temperature(head.logits(val), val_y, head.classes))
    return train, train_y, val, val_y, unknown, head


@pytest.mark.parametrize("method", METHODS)
def test_every_method_refuses_a_far_away_brand_and_few_known_photos(method):
    train, train_y, val, val_y, unknown, head = known_and_unknown()
    rule = fit_open_set(train, train_y, val, val_y, head, method=method, max_known_refused=0.05, k=5)
    assert rule.method == method
    refused_val = rule.is_unknown(val, head.logits(val))
    assert refused_val.mean() <= 0.05
    # New known photos from the same brands are mostly accepted; the unseen brand is mostly refused.
    _, _, fresh, _, _, _ = known_and_unknown(seed=1)
    assert rule.is_unknown(fresh, head.logits(fresh)).mean() < 0.2
    assert rule.is_unknown(unknown, head.logits(unknown)).mean() > 0.8


@pytest.mark.parametrize("method", METHODS)
def test_arrays_round_trip_through_npz_without_pickle(method):
    train, train_y, val, val_y, unknown, head = known_and_unknown()
    rule = fit_open_set(train, train_y, val, val_y, head, method=method, k=3)
    buffer = io.BytesIO()
    np.savez(buffer, **rule.to_arrays())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as stored:
        again = OpenSetRule.from_arrays({key: stored[key] for key in stored.files})
    probe = np.vstack([val[:10], unknown[:10]])
    assert again.method == rule.method and again.threshold == rule.threshold and again.k == rule.k
    # The bank is stored as float16, so scores agree to float16 precision.
    np.testing.assert_allclose(again.score(probe, head.logits(probe)), rule.score(probe, head.logits(probe)), atol=2e-3)
    np.testing.assert_array_equal(
        again.is_unknown(probe, head.logits(probe)), rule.is_unknown(probe, head.logits(probe))
    )


def test_choose_threshold_refuses_the_allowed_share():
    scores = np.random.default_rng(3).normal(size=200)
    threshold = choose_threshold(scores, max_known_refused=0.05)
    assert np.sum(scores < threshold) == 10
    assert choose_threshold(scores, max_known_refused=0.0) == scores.min()
    assert choose_threshold(np.zeros(0)) == float("-inf")
    with pytest.raises(ValueError):
        choose_threshold(scores, max_known_refused=1.0)


def test_knn_similarity_is_the_kth_best_cosine():
    rng = np.random.default_rng(4)
    bank = l2_normalise(rng.normal(size=(30, DIM)))
    queries = l2_normalise(rng.normal(size=(7, DIM)))
    for k in (1, 4, 30, 99):
        expected = np.sort(queries @ bank.T, axis=1)[:, ::-1][:, min(k, 30) - 1]
        np.testing.assert_allclose(knn_similarity(queries, bank, k), expected, rtol=1e-5, atol=1e-6)
    assert np.all(knn_similarity(queries, bank[:0], 3) == -1.0)
    with pytest.raises(ValueError):
        knn_similarity(queries, bank, 0)


def test_prototypes_and_bank_are_unit_rows_of_the_right_classes():
    rng = np.random.default_rng(5)
    x = np.vstack([blob(0, 30, rng), blob(1, 5, rng)])
    y = ["a"] * 30 + ["b"] * 5
    protos = class_prototypes(x, y, ["b", "a", "missing"])
    np.testing.assert_allclose(np.linalg.norm(protos[:2], axis=1), 1.0, rtol=1e-5)
    assert np.argmax(protos[0]) == 1 and np.argmax(protos[1]) == 0 and not protos[2].any()
    bank = reference_bank(x, y, seed=0, max_per_class=10)
    assert bank.shape == (15, DIM)
    np.testing.assert_allclose(np.linalg.norm(bank, axis=1), 1.0, rtol=1e-5)


def test_base_scores_follow_their_definitions():
    train, train_y, val, val_y, unknown, head = known_and_unknown()
    logits = head.logits(val)
    feats = base_scores(
        val,
        logits,
        temperature=head.temperature,
        prototypes=class_prototypes(train, train_y, head.classes),
        bank=reference_bank(train, train_y, seed=0),
        k=3,
    )
    assert set(feats) == set(BASE_FEATURES)
    np.testing.assert_allclose(feats["msp"], head.predict_proba(val).max(axis=1), rtol=1e-5)
    np.testing.assert_allclose(feats["max_logit"], logits.max(axis=1), rtol=1e-5)
    scaled = logits.astype(np.float64) / head.temperature
    np.testing.assert_allclose(feats["energy"], head.temperature * np.log(np.exp(scaled).sum(axis=1)), rtol=1e-6)


def test_bad_inputs_are_refused():
    train, train_y, val, val_y, _, head = known_and_unknown()
    with pytest.raises(ValueError):
        fit_open_set(train, train_y, val, val_y, head, method="mahalanobis")
    two = [i for i, b in enumerate(train_y) if b in ("adidas", "nike")]
    two_head = fit_brand_head(train[two], [train_y[i] for i in two], seed=0)
    with pytest.raises(ValueError):
        fit_open_set(train[two], [train_y[i] for i in two], val, val_y, two_head, method="stacked")
    with pytest.raises(ValueError):
        OpenSetRule(method="knn", threshold=0.0)
    with pytest.raises(ValueError):
        OpenSetRule(method="msp", threshold=0.0, temperature=0.0)


def styled(seed: int):
    """Known brands on axes 0-3 as product shots (tight) and real-world photos (shifted along axis 9, looser), so
    the real-world ones look less known to every score, as measured on the shared data."""
    rng = np.random.default_rng(seed)
    brands = ["adidas", "converse", "nike", "vans"]
    x, y, style = [], [], []
    for i, brand in enumerate(brands):
        for kind, n, spread, shift in (("product-shot", 100, 0.3, 0.0), ("real-world", 30, 1.0, 3.0)):
            centre = np.zeros(DIM)
            centre[i], centre[9] = 3.0, shift
            x.append(centre + rng.normal(0, spread, size=(n, DIM)))
            y += [brand] * n
            style += [kind] * n
    return l2_normalise(np.vstack(x)), y, style


def test_per_style_thresholds_stop_refusing_real_world_photos_of_known_brands():
    train, train_y, train_s = styled(0)
    val, val_y, val_s = styled(1)
    fresh, _, fresh_s = styled(2)
    real = np.asarray(fresh_s) == "real-world"
    head = fit_brand_head(train, train_y, seed=0, C=1.0)
    head = head.with_temperature(fit_temperature(head.logits(val), val_y, head.classes))
    one = fit_open_set(train, train_y, val, val_y, head, method="max_logit")
    per_style = fit_open_set(
        train, train_y, val, val_y, head, method="max_logit", train_styles=train_s, val_styles=val_s
    )
    assert one.style_coef is None and per_style.style_coef is not None
    # The style classifier separates the two kinds of photo.
    assert np.mean(per_style.real_world_like(fresh) == real) > 0.9
    refused_one = one.is_unknown(fresh, head.logits(fresh))
    refused_styled = per_style.is_unknown(fresh, head.logits(fresh))
    assert refused_one[real].mean() > 0.15  # one threshold falls mostly on real-world photos
    assert refused_styled[real].mean() < 0.65 * refused_one[real].mean()
    assert refused_styled.mean() <= 0.12
    buffer = io.BytesIO()
    np.savez(buffer, **per_style.to_arrays())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as stored:
        again = OpenSetRule.from_arrays({key: stored[key] for key in stored.files})
    np.testing.assert_array_equal(again.is_unknown(fresh, head.logits(fresh)), refused_styled)
    # Unlabelled styles only: no style classifier, same as one threshold.
    blank = fit_open_set(
        train, train_y, val, val_y, head, method="max_logit", train_styles=[""] * len(train_y), val_styles=val_s
    )
    assert blank.style_coef is None and blank.threshold == one.threshold


def test_only_the_rules_that_read_them_store_prototypes_and_the_bank():
    train, train_y, val, val_y, _, head = known_and_unknown()
    sizes = {
        method: {
            key: fit_open_set(train, train_y, val, val_y, head, method=method).to_arrays()[key].size
            for key in ("prototypes", "bank")
        }
        for method in METHODS
    }
    for method in ("msp", "max_logit", "energy"):
        assert sizes[method] == {"prototypes": 0, "bank": 0}
    assert sizes["prototype"]["prototypes"] > 0 and sizes["prototype"]["bank"] == 0
    assert sizes["knn"]["bank"] > 0 and sizes["knn"]["prototypes"] == 0
    assert sizes["stacked"]["bank"] > 0 and sizes["stacked"]["prototypes"] > 0
