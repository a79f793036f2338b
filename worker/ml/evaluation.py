"""Evaluating a trained ``Pipeline`` end to end on labelled photos, and calibration error.

``evaluate`` runs exactly ``Pipeline.predict`` on each item (decode, background rule, backbone,
heads, abstain rules), so its figures are those a shopper would see.

Definitions:
- top-1 / top-3: share of sneaker photos whose brand is the first / among the first three guesses.
  ``top1`` and ``top3`` count an abstained sneaker photo as *wrong* (the shopper got no answer);
  ``top1_answered`` is the accuracy on the photos the model did answer; ``top1_raw`` ignores the
  abstain rules (first guess, answered or not).
- log loss: mean negative log-likelihood of the true brand under the calibrated probabilities of
  the returned top-k guesses (brands outside the top-k get the leftover mass spread evenly), clipped
  at 1e-15 as in scikit-learn; computed over all sneaker photos whose brand is a known class.
- ECE: expected calibration error with 15 equal-width confidence bins (Guo et al., "On Calibration of
  Modern Neural Networks", ICML 2017): ``sum_b |B_b|/N * |acc(B_b) - conf(B_b)|``.
- Price MAE (USD) / MAPE (fraction) over sneaker photos with a known price that got a price
  estimate; the baseline predicts the artifact's ``price_baseline`` median of the brand.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from worker.ml.errors import ImageError

if TYPE_CHECKING:
    from worker.ml.pipeline import Pipeline, PipelineResult

ECE_BINS: Final = 15
"""Number of equal-width confidence bins of the expected calibration error (Guo et al. 2017)."""
LOG_LOSS_EPS: Final = 1e-15
"""Probabilities are clipped to [eps, 1 - eps] in the log loss (as scikit-learn's ``log_loss``)."""


def expected_calibration_error(
    confidences: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    n_bins: int = ECE_BINS,
) -> float | None:
    """Expected calibration error with ``n_bins`` equal-width bins over [0, 1].

    Bin b holds the rows with confidence in ``((b-1)/n_bins, b/n_bins]`` (the first bin also takes 0).
    ``ECE = sum_b (n_b / N) * |accuracy_b - mean_confidence_b|`` (Guo et al., ICML 2017, eq. 3).

    Args:
        confidences: N top-1 probabilities in [0, 1].
        correct: N booleans (top-1 right).
        n_bins: number of bins (>= 1).

    Returns:
        ECE in [0, 1], or None for N = 0.

    Raises:
        ValueError: length mismatch, ``n_bins < 1`` or a confidence outside [0, 1].
    """
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    hits = np.asarray(correct, dtype=np.float64).reshape(-1)
    if conf.shape != hits.shape:
        raise ValueError(f"{conf.size} confidences but {hits.size} correctness flags")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if conf.size == 0:
        return None
    if np.any(conf < 0.0) or np.any(conf > 1.0 + 1e-9):
        raise ValueError("confidences must lie in [0, 1]")
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        rows = bins == b
        if rows.any():
            total += rows.mean() * abs(hits[rows].mean() - conf[rows].mean())
    return float(total)


def reliability_bins(
    confidences: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    n_bins: int = ECE_BINS,
) -> dict[str, list[float | int | None]]:
    """Per-bin figures of a reliability diagram (same bins as ``expected_calibration_error``).

    Returns:
        ``{"count": [n_b], "accuracy": [acc_b or None], "confidence": [mean conf_b or None]}``,
        each a list of ``n_bins`` entries.

    Raises:
        ValueError: as ``expected_calibration_error``.
    """
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    hits = np.asarray(correct, dtype=np.float64).reshape(-1)
    if conf.shape != hits.shape or n_bins < 1:
        raise ValueError("length mismatch or n_bins < 1")
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    out: dict[str, list[float | int | None]] = {"count": [], "accuracy": [], "confidence": []}
    for b in range(n_bins):
        rows = bins == b
        out["count"].append(int(rows.sum()))
        out["accuracy"].append(float(hits[rows].mean()) if rows.any() else None)
        out["confidence"].append(float(conf[rows].mean()) if rows.any() else None)
    return out


def per_brand_precision_recall(
    truth: Sequence[str], predicted: Sequence[str | None], labels: Sequence[str]
) -> dict[str, dict[str, float | int | None]]:
    """Precision, recall and support per brand.

    Args:
        truth: N true brands.
        predicted: N predicted brands, None for "no answer" (counts against recall, not precision).
        labels: brands to report.

    Returns:
        ``{brand: {"precision": float | None, "recall": float | None, "support": int}}``; None where
        the denominator is 0.
    """
    true_list = [str(t) for t in truth]
    pred_list = [None if p is None else str(p) for p in predicted]
    out: dict[str, dict[str, float | int | None]] = {}
    for label in labels:
        support = sum(t == label for t in true_list)
        called = sum(p == label for p in pred_list)
        hits = sum(t == label and p == label for t, p in zip(true_list, pred_list, strict=True))
        out[str(label)] = {
            "precision": hits / called if called else None,
            "recall": hits / support if support else None,
            "support": int(support),
        }
    return out


@dataclass(frozen=True)
class EvalItem:
    """One photo to evaluate.

    Attributes:
        load: returns the file bytes.
        brand: the true brand, or None for a photo that must be rejected (not footwear).
        category: for non-footwear photos, their category (e.g. ``"cat"``); reported per category.
        price_usd: true list price in USD, or None.
        style: a label to report figures separately (e.g. ``"real-world"``, ``"product-shot"``).
        name: an identifier for error messages.
    """

    load: Callable[[], bytes]
    brand: str | None
    category: str | None = None
    price_usd: float | None = None
    style: str | None = None
    name: str = ""


def _full_distribution(result: PipelineResult, classes: Sequence[str]) -> np.ndarray:
    """``(C,)`` probabilities from the returned top-k guesses, leftover mass spread evenly."""
    proba = np.zeros(len(classes), dtype=np.float64)
    index = {name: i for i, name in enumerate(classes)}
    for guess in result.brands:
        if guess.brand in index:
            proba[index[guess.brand]] = guess.probability
    missing = [i for i, name in enumerate(classes) if name not in {g.brand for g in result.brands}]
    leftover = max(0.0, 1.0 - float(proba.sum()))
    if missing:
        proba[missing] = leftover / len(missing)
    return proba


def _summary(rows: list[dict[str, Any]], classes: Sequence[str], baseline: dict[str, Any] | None) -> dict[str, Any]:
    """Figures over evaluated rows (see the module docstring)."""
    sneakers = [r for r in rows if r["brand"] is not None]
    negatives = [r for r in rows if r["brand"] is None]
    out: dict[str, Any] = {"n": len(rows), "n_sneakers": len(sneakers), "n_negatives": len(negatives)}
    known = [r for r in sneakers if r["brand"] in classes]
    if known:
        top1_raw = np.array([r["guesses"][0] == r["brand"] for r in known])
        answered = np.array([r["abstain"] is None for r in known])
        top3 = np.array([r["brand"] in r["guesses"][:3] for r in known])
        probs = np.clip(np.array([r["proba"][classes.index(r["brand"])] for r in known]), LOG_LOSS_EPS, 1.0)
        conf = np.array([r["top_probability"] for r in known])
        out["top1"] = float(np.mean(top1_raw & answered))
        out["top3"] = float(np.mean(top3 & answered))
        out["top1_raw"] = float(top1_raw.mean())
        out["top3_raw"] = float(top3.mean())
        out["top1_answered"] = float(top1_raw[answered].mean()) if answered.any() else None
        out["answered"] = float(answered.mean())
        out["log_loss"] = float(np.mean(-np.log(probs)))
        out["ece"] = expected_calibration_error(conf, top1_raw)
        truth = [r["brand"] for r in known]
        out["per_brand"] = per_brand_precision_recall(truth, [r["guesses"][0] for r in known], classes)
        matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
        for r in known:
            matrix[classes.index(r["brand"]), classes.index(r["guesses"][0])] += 1
        out["confusion"] = {"labels": list(classes), "matrix": matrix.tolist()}
    else:
        out.update(top1=None, top3=None, top1_raw=None, top3_raw=None, top1_answered=None, answered=None)
        out.update(log_loss=None, ece=None, per_brand={}, confusion={"labels": list(classes), "matrix": []})
    out["unknown_brand"] = len(sneakers) - len(known)
    priced = [r for r in sneakers if r["price_true"] is not None and r["price_pred"] is not None]
    if priced:
        truth_p = np.array([r["price_true"] for r in priced])
        pred_p = np.array([r["price_pred"] for r in priced])
        out["price_n"] = len(priced)
        out["price_mae"] = float(np.mean(np.abs(pred_p - truth_p)))
        out["price_mape"] = float(np.mean(np.abs(pred_p - truth_p) / truth_p))
        if baseline:
            medians = baseline.get("per_brand", {})
            base = np.array([medians.get(r["brand"], baseline.get("global")) for r in priced], dtype=np.float64)
            out["price_baseline_mae"] = float(np.mean(np.abs(base - truth_p)))
            out["price_baseline_mape"] = float(np.mean(np.abs(base - truth_p) / truth_p))
        else:
            out["price_baseline_mae"] = out["price_baseline_mape"] = None
    else:
        out.update(price_n=0, price_mae=None, price_mape=None, price_baseline_mae=None, price_baseline_mape=None)
    abstained: dict[str, Any] = {}
    if sneakers:
        reasons = Counter(r["abstain"] for r in sneakers if r["abstain"] is not None)
        abstained["sneakers"] = float(sum(reasons.values()) / len(sneakers))
        abstained["sneakers_by_reason"] = {
            reason: reasons[reason] / len(sneakers) for reason in ("not_footwear", "low_confidence")
        }
    if negatives:
        rejected = [r["abstain"] is not None for r in negatives]
        abstained["negatives"] = float(np.mean(rejected))
        abstained["negatives_not_footwear"] = float(np.mean([r["abstain"] == "not_footwear" for r in negatives]))
        by_category: dict[str, list[bool]] = defaultdict(list)
        for r in negatives:
            by_category[r["category"] or "unknown"].append(r["abstain"] is not None)
        abstained["negatives_by_category"] = {k: float(np.mean(v)) for k, v in sorted(by_category.items())}
    out["abstained"] = abstained
    return out


def evaluate(
    pipeline: Pipeline,
    items: Sequence[EvalItem],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run ``pipeline.predict`` on every item and report JSON-ready figures.

    Args:
        pipeline: a loaded pipeline (``load_pipeline``).
        items: photos; ``brand=None`` marks photos that must be rejected (non-footwear).
        progress: ``progress(done, total)`` after each item.

    Returns:
        ``{"n", "n_sneakers", "n_negatives", "errors", "top1", "top3", "top1_raw", "top3_raw",
        "top1_answered", "answered", "log_loss", "ece", "per_brand": {brand: {"precision", "recall",
        "support"}}, "confusion": {"labels", "matrix"}, "price_n", "price_mae", "price_mape",
        "price_baseline_mae", "price_baseline_mape", "abstained": {"sneakers", "sneakers_by_reason",
        "negatives", "negatives_not_footwear", "negatives_by_category"}, "unknown_brand",
        "background": {method: count}, "median_ms": {stage: ms}, "by_style": {style: {same figures}}}``.
        ``top1`` / ``top3`` count abstained sneakers as wrong; ``top1_answered`` is accuracy on the
        answered ones; ``top1_raw`` ignores abstention. Undecodable items count in ``errors`` only.

    Raises:
        Exception: whatever a loader raises (other than ``ImageError``) passes through.
    """
    classes = list(pipeline.artifact.brand_head.classes)
    baseline = pipeline.artifact.metadata.get("price_baseline")
    rows: list[dict[str, Any]] = []
    errors = 0
    methods: Counter[str] = Counter()
    timings: dict[str, list[float]] = defaultdict(list)
    for done, item in enumerate(items, start=1):
        try:
            result = pipeline.predict(item.load())
        except ImageError:
            errors += 1
            if progress is not None:
                progress(done, len(items))
            continue
        methods[result.background] += 1
        for stage, value in result.timings_ms.items():
            timings[stage].append(value)
        rows.append(
            {
                "brand": item.brand,
                "category": item.category,
                "style": item.style,
                "guesses": [g.brand for g in result.brands],
                "top_probability": result.brands[0].probability if result.brands else 0.0,
                "proba": _full_distribution(result, classes),
                "abstain": result.abstain.reason if result.abstain is not None else None,
                "price_true": item.price_usd if item.price_usd and item.price_usd > 0 else None,
                "price_pred": result.price.estimate if result.price is not None else None,
            }
        )
        if progress is not None:
            progress(done, len(items))
    report = _summary(rows, classes, baseline)
    report["errors"] = errors
    report["background"] = dict(methods)
    report["median_ms"] = {stage: float(np.median(v)) for stage, v in timings.items()}
    styles = sorted({r["style"] for r in rows if r["style"] is not None})
    report["by_style"] = {s: _summary([r for r in rows if r["style"] == s], classes, baseline) for s in styles}
    return report
