"""Evaluating a trained ``Pipeline`` end to end on labelled photos.

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
- ECE: expected calibration error with 15 equal-width confidence bins (Guo et al. 2017).
Every metric is computed by ``worker.ml.metrics``, the module training uses too.
- Price MAE (USD) / MAPE (fraction) over sneaker photos with a known price that got a price
  estimate; the baseline predicts the artifact's ``price_baseline`` median of the brand.
- Named models (photos whose ``model`` is a class of the artifact's model head): ``model_top1`` counts a
  photo right only when the model is named (brand answered and the model head sure) and is the true
  one; ``model_top1_raw`` / ``model_top5_raw`` look at the first / first five candidates whatever the
  abstain rules say; ``model_top1_answered`` is the accuracy on the photos whose model was named.
- Unknown brands (sneaker photos whose brand is not a class of the brand head, e.g. a brand left out
  of training): ``unknown_brand_refused`` is the share refused as ``unknown_brand``,
  ``unknown_brand_refused_any`` the share refused for any reason; ``known_refused_unknown_brand`` is
  the share of known-brand photos wrongly refused as ``unknown_brand``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.ml.errors import ImageError
from worker.ml.metrics import (
    confusion_matrix,
    expected_calibration_error,
    log_loss,
    per_class_precision_recall,
    regression_errors,
)
from worker.ml.results import ABSTAIN_REASONS

if TYPE_CHECKING:
    from worker.ml.pipeline import Pipeline, PipelineResult


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
        model: the true named model (a product display name, e.g. ``"Nike Air Jordan 1 High"``), or None.
        source: the set the photo comes from (e.g. ``"sneaker_models"``); figures are also reported per source.
    """

    load: Callable[[], bytes]
    brand: str | None
    category: str | None = None
    price_usd: float | None = None
    style: str | None = None
    name: str = ""
    model: str | None = None
    source: str | None = None


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


def _share(flags: Sequence[bool]) -> float | None:
    """Share of True in ``flags``, or None when there are none."""
    return float(np.mean(flags)) if len(flags) else None


def _model_summary(rows: list[dict[str, Any]], model_classes: Sequence[str]) -> dict[str, Any]:
    """Named-model figures over sneaker rows whose true model is a model-head class (module docstring)."""
    scored = [r for r in rows if r["model"] is not None and r["model"] in model_classes]
    out: dict[str, Any] = {"model_n": len(scored)}
    if not scored:
        return {**out, "model_top1": None, "model_top1_raw": None, "model_top5_raw": None, "model_top1_answered": None}
    first = np.array([bool(r["model_guesses"]) and r["model_guesses"][0] == r["model"] for r in scored])
    named = np.array([r["abstain"] is None and not r["model_uncertain"] for r in scored])
    out["model_top1"] = float(np.mean(first & named))
    out["model_top1_raw"] = float(first.mean())
    out["model_top5_raw"] = float(np.mean([r["model"] in r["model_guesses"][:5] for r in scored]))
    out["model_top1_answered"] = float(first[named].mean()) if named.any() else None
    out["model_named"] = float(named.mean())
    return out


def _summary(
    rows: list[dict[str, Any]],
    classes: Sequence[str],
    baseline: dict[str, Any] | None,
    model_classes: Sequence[str] = (),
) -> dict[str, Any]:
    """Figures over evaluated rows (see the module docstring)."""
    sneakers = [r for r in rows if r["brand"] is not None]
    negatives = [r for r in rows if r["brand"] is None]
    out: dict[str, Any] = {"n": len(rows), "n_sneakers": len(sneakers), "n_negatives": len(negatives)}
    known = [r for r in sneakers if r["brand"] in classes]
    if known:
        truth = np.asarray([classes.index(r["brand"]) for r in known], dtype=np.int64)
        proba = np.stack([r["proba"] for r in known])
        top1_raw = np.array([r["guesses"][0] == r["brand"] for r in known])
        answered = np.array([r["abstain"] is None for r in known])
        top3 = np.array([r["brand"] in r["guesses"][:3] for r in known])
        conf = np.array([r["top_probability"] for r in known])
        out["top1"] = float(np.mean(top1_raw & answered))
        out["top3"] = float(np.mean(top3 & answered))
        out["top1_raw"] = float(top1_raw.mean())
        out["top3_raw"] = float(top3.mean())
        out["top1_answered"] = float(top1_raw[answered].mean()) if answered.any() else None
        out["answered"] = float(answered.mean())
        out["log_loss"] = log_loss(proba, truth)
        out["ece"] = expected_calibration_error(conf, top1_raw)
        guesses = [r["guesses"][0] for r in known]
        out["per_brand"] = per_class_precision_recall([r["brand"] for r in known], guesses, classes)
        predicted = np.asarray([classes.index(g) for g in guesses], dtype=np.int64)
        matrix = confusion_matrix(truth, predicted, len(classes))
        out["confusion"] = {"labels": list(classes), "matrix": matrix.tolist()}
    else:
        out.update(top1=None, top3=None, top1_raw=None, top3_raw=None, top1_answered=None, answered=None)
        out.update(log_loss=None, ece=None, per_brand={}, confusion={"labels": list(classes), "matrix": []})
    out["unknown_brand"] = len(sneakers) - len(known)
    unknown = [r for r in sneakers if r["brand"] not in classes]
    out["unknown_brand_refused"] = _share([r["abstain"] == "unknown_brand" for r in unknown])
    out["unknown_brand_refused_any"] = _share([r["abstain"] is not None for r in unknown])
    out["known_refused_unknown_brand"] = _share([r["abstain"] == "unknown_brand" for r in known])
    out.update(_model_summary(sneakers, model_classes))
    priced = [r for r in sneakers if r["price_true"] is not None and r["price_pred"] is not None]
    if priced:
        truth_p = np.array([r["price_true"] for r in priced])
        pred_p = np.array([r["price_pred"] for r in priced])
        out["price_n"] = len(priced)
        errors = regression_errors(pred_p, truth_p)
        out["price_mae"], out["price_mape"] = errors["mae"], errors["mape"]
        if baseline:
            medians = baseline.get("per_brand", {})
            base = np.array([medians.get(r["brand"], baseline.get("global")) for r in priced], dtype=np.float64)
            errors = regression_errors(base, truth_p)
            out["price_baseline_mae"], out["price_baseline_mape"] = errors["mae"], errors["mape"]
        else:
            out["price_baseline_mae"] = out["price_baseline_mape"] = None
    else:
        out.update(price_n=0, price_mae=None, price_mape=None, price_baseline_mae=None, price_baseline_mape=None)
    abstained: dict[str, Any] = {}
    if sneakers:
        reasons = Counter(r["abstain"] for r in sneakers if r["abstain"] is not None)
        abstained["sneakers"] = float(sum(reasons.values()) / len(sneakers))
        abstained["sneakers_by_reason"] = {reason: reasons[reason] / len(sneakers) for reason in ABSTAIN_REASONS}
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
        "unknown_brand_refused", "unknown_brand_refused_any", "known_refused_unknown_brand", "model_n",
        "model_top1", "model_top1_raw", "model_top5_raw", "model_top1_answered", "model_named",
        "background": {method: count}, "median_ms": {stage: ms}, "by_style": {style: {same figures}},
        "by_source": {source: {same figures}}}``.
        ``top1`` / ``top3`` count abstained sneakers as wrong; ``top1_answered`` is accuracy on the
        answered ones; ``top1_raw`` ignores abstention. Undecodable items count in ``errors`` only.

    Raises:
        Exception: whatever a loader raises (other than ``ImageError``) passes through.
    """
    classes = list(pipeline.artifact.brand_head.classes)
    model_head = pipeline.artifact.model_head
    model_classes = [str(name) for name in model_head.classes] if model_head is not None else []
    baseline = pipeline.artifact.metadata.get("price_baseline")
    rows: list[dict[str, Any]] = []
    errors = 0
    methods: Counter[str] = Counter()
    timings: dict[str, list[float]] = defaultdict(list)
    for done, item in enumerate(items, start=1):
        try:
            result = pipeline.predict(item.load(), top_k=5)
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
                "source": item.source,
                "model": item.model,
                "model_guesses": [m.name for m in result.models],
                "model_uncertain": result.model_uncertain,
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
    report = _summary(rows, classes, baseline, model_classes)
    report["errors"] = errors
    report["background"] = dict(methods)
    report["median_ms"] = {stage: float(np.median(v)) for stage, v in timings.items()}
    styles = sorted({r["style"] for r in rows if r["style"] is not None})
    report["by_style"] = {
        s: _summary([r for r in rows if r["style"] == s], classes, baseline, model_classes) for s in styles
    }
    sources = sorted({r["source"] for r in rows if r["source"] is not None})
    report["by_source"] = {
        s: _summary([r for r in rows if r["source"] == s], classes, baseline, model_classes) for s in sources
    }
    return report
