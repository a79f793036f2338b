"""Brand and price heads on tiny made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from worker.ml.backbone import l2_normalise
from worker.ml.heads import BrandHead, PriceHead, fit_brand_head, fit_price_head, fit_temperature, softmax


def blobs(n_per_class: int, classes: list[str], dim: int = 8, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Well separated Gaussian blobs on the unit sphere, one per class."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[: len(classes)] * 3.0
    points, labels = [], []
    for centre, name in zip(centres, classes, strict=True):
        points.append(centre + rng.normal(0, 0.3, size=(n_per_class, dim)))
        labels += [name] * n_per_class
    return l2_normalise(np.vstack(points)), labels


def test_multiclass_blobs_are_separated_and_probabilities_sum_to_one():
    x, y = blobs(30, ["adidas", "nike", "vans"])
    head = fit_brand_head(x, y, seed=0)
    assert head.classes == ("adidas", "nike", "vans")
    assert head.weights.shape == (8, 3) and head.bias.shape == (3,)
    proba = head.predict_proba(x)
    assert proba.shape == (90, 3) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    predicted = [head.classes[i] for i in proba.argmax(axis=1)]
    assert predicted == y
    top = head.top_k(x[0], k=3)
    assert [s.brand for s in top][0] == "adidas" and len(top) == 3
    assert top[0].probability >= top[1].probability >= top[2].probability
    assert len(head.top_k(x[0], k=10)) == 3


def test_two_classes_still_give_a_two_column_head():
    x, y = blobs(20, ["converse", "vans"])
    head = fit_brand_head(x, y, seed=0)
    assert head.weights.shape == (8, 2) and head.bias.shape == (2,)
    predicted = [head.classes[i] for i in head.predict_proba(x).argmax(axis=1)]
    assert predicted == y
    # Same probabilities as scikit-learn's binary model.
    from sklearn.linear_model import LogisticRegression

    reference = LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000).fit(x, y)
    np.testing.assert_allclose(head.predict_proba(x), reference.predict_proba(x), atol=1e-4)


def test_one_class_is_refused():
    x, _ = blobs(5, ["nike"])
    with pytest.raises(ValueError):
        fit_brand_head(x, ["nike"] * 5, seed=0)
    with pytest.raises(ValueError):
        BrandHead(classes=("nike", "nike"), weights=np.zeros((8, 2)), bias=np.zeros(2))


def test_temperature_flattens_and_softmax_is_stable():
    head = BrandHead(classes=("a", "b"), weights=np.array([[1.0, -1.0]], np.float32), bias=np.zeros(2, np.float32))
    x = np.array([[2.0]], np.float32)
    sharp = head.predict_proba(x)[0, 0]
    flat = head.with_temperature(4.0).predict_proba(x)[0, 0]
    assert 0.5 < flat < sharp
    assert np.allclose(softmax(np.array([[1000.0, 0.0]])), [[1.0, 0.0]])
    with pytest.raises(ValueError):
        head.with_temperature(0.0)


def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, size=(4000, 3))
    proba = softmax(true_logits)
    labels = [str(rng.choice(3, p=p / p.sum())) for p in proba.astype(np.float64)]
    temperature = fit_temperature(true_logits * 2.5, labels, ["0", "1", "2"])  # overconfident by 2.5x
    assert temperature == pytest.approx(2.5, rel=0.1)


def test_brand_head_arrays_round_trip():
    x, y = blobs(10, ["a", "b", "c"])
    head = fit_brand_head(x, y, seed=0).with_temperature(1.7)
    again = BrandHead.from_arrays(head.to_arrays())
    assert again.classes == head.classes and again.temperature == pytest.approx(1.7)
    np.testing.assert_array_equal(again.predict_proba(x), head.predict_proba(x))


def test_price_head_recovers_a_linear_log_price():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    true_coef = np.array([0.3, -0.2, 0.1, 0.0, 0.05, 0.0])
    prices = np.exp(4.5 + x @ true_coef + rng.normal(0, 0.05, size=200))
    head = fit_price_head(x, prices, alpha=1e-3)
    np.testing.assert_allclose(head.coef, true_coef, atol=0.03)
    assert head.intercept == pytest.approx(4.5, abs=0.02)
    estimates = head.predict(x[:20])
    assert all(e.low <= e.estimate <= e.high for e in estimates)
    errors = np.abs(np.log([e.estimate for e in estimates]) - np.log(prices[:20]))
    assert errors.max() < 0.2
    inside = np.mean([e.low <= p <= e.high for e, p in zip(head.predict(x), prices, strict=True)])
    assert 0.7 <= inside <= 0.9  # an 80 % range from out-of-fold residuals


def test_price_head_with_groups_and_round_trip():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    prices = np.exp(4.0 + x[:, 0] * 0.2)
    head = fit_price_head(x, prices, groups=[f"p{i // 4}" for i in range(40)])
    again = PriceHead.from_arrays(head.to_arrays())
    assert again.predict(x[:3]) == head.predict(x[:3])
    with pytest.raises(ValueError):
        fit_price_head(x, -prices)
