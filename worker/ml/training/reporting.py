"""Stage 5, reports: test figures of the chosen heads (catalog test side and wild test per style), plots.

Metrics come from ``worker.ml.metrics`` (shared with ``worker.ml.evaluation``); plots from
``worker.ml.reports``. Everything returned is JSON-ready (``finite_or_none``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from worker.ml.abstain import FootwearDetector, rejection_rates
from worker.ml.heads import BrandHead
from worker.ml.metrics import classification_metrics, expected_calibration_error, reliability_bins
from worker.ml.training.photos import Embedded
from worker.ml.unknown_brand import UnknownBrandRule


def finite_or_none(value: Any) -> Any:
    """Copy of nested dicts/lists with NaN and infinite floats replaced by None (strict JSON)."""
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(item) for item in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def calibration_figures(head: BrandHead, vectors: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """ECE (15 bins) of ``head`` before (T = 1) and after its temperature, plus reliability bins."""
    known = np.isin(labels, head.classes)
    if not known.any():
        return {"ece_before": None, "ece_after": None}
    classes = np.asarray(head.classes)
    after = head.predict_proba(vectors[known])
    before = head.with_temperature(1.0).predict_proba(vectors[known])
    truth = labels[known]
    out: dict[str, Any] = {}
    for name, proba in (("before", before), ("after", after)):
        correct = classes[proba.argmax(1)] == truth
        out[f"ece_{name}"] = expected_calibration_error(proba.max(1), correct)
        out[f"reliability_{name}"] = reliability_bins(proba.max(1), correct)
    return out


def report_pngs(brand_report: dict[str, Any], curves: dict[str, Any]) -> dict[str, bytes]:
    """``confusion.png``, ``reliability.png`` and ``training_curves.png`` (see ``worker.ml.reports``)."""
    from worker.ml.reports import confusion_png, curves_png, reliability_png

    confusion = brand_report.get("confusion") or {"labels": [], "matrix": []}
    pngs = {"confusion.png": confusion_png(confusion["labels"], confusion["matrix"])}
    reliability = {}
    for name in ("before", "after"):
        if brand_report.get(f"reliability_{name}") is not None:
            ece = brand_report.get(f"ece_{name}")
            label = f"{name} temperature (ECE {ece:.3f})" if ece is not None else name
            reliability[label] = brand_report[f"reliability_{name}"]
    pngs["reliability.png"] = reliability_png(reliability, title="Reliability on the test split")
    history = curves.get("fine-tuned")
    if history:
        series = {
            "train loss": [h["loss"] for h in history],
            "val log loss": [h["val_log_loss"] for h in history],
            "train accuracy": [h["accuracy"] for h in history],
            "val accuracy": [h["val_accuracy"] for h in history],
        }
        pngs["training_curves.png"] = curves_png(series, x_label="epoch", title="Fine-tuning")
    else:
        c_curve = curves.get("head-only") or []
        pngs["training_curves.png"] = curves_png(
            {"val log loss": [c["val_log_loss"] for c in c_curve]},
            x_label="C (inverse L2 strength)",
            title="Head-only: validation log loss per C",
            x_values=[c["C"] for c in c_curve],
        )
    return pngs


def brand_test_report(head: BrandHead, vectors: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """``classification_metrics`` of the brand head on ``(N, D)`` test rows with their ``(N,)`` brands, with
    ECE and reliability bins before and after its temperature (``calibration_figures``)."""
    proba = head.predict_proba(vectors)
    report = classification_metrics(proba, labels.tolist(), head.classes)
    report.update(calibration_figures(head, vectors, labels))
    return report


def wild_test_report(
    head: BrandHead,
    wild: Embedded,
    rule: str,
    wild_labels: np.ndarray,
    styles: list[str],
    rows: np.ndarray,
    *,
    confidence_threshold: float,
    detector: FootwearDetector | None,
    footwear_threshold: float,
    unknown_brand: UnknownBrandRule | None,
) -> dict[str, Any]:
    """Figures of the held-out wild photos per style: brand metrics (known brands), the share answered
    (calibrated top-1 >= ``confidence_threshold``), refused as ``not_footwear`` and as ``unknown_brand``;
    and, for wild photos of brands the head lacks, the share refused as ``unknown_brand``."""
    vectors = wild.normalised(rule)
    out: dict[str, Any] = {}
    known_rows = rows[np.isin(wild_labels[rows], head.classes)]
    for style in sorted({styles[i] for i in known_rows}):
        picked = known_rows[[styles[i] == style for i in known_rows]]
        figures = brand_test_report(head, vectors[picked], wild_labels[picked])
        figures["answered"] = float(np.mean(head.predict_proba(vectors[picked]).max(1) >= confidence_threshold))
        if detector is not None:
            scores = detector.score(wild.aux(rule)[picked])
            figures["not_footwear_share"] = rejection_rates(scores, footwear_threshold)
        if unknown_brand is not None:
            known = unknown_brand.scores(vectors[picked], head.logits(vectors[picked]))
            figures["unknown_brand_share"] = rejection_rates(known, unknown_brand.threshold)
        out[style] = figures
    unknown_rows = rows[~np.isin(wild_labels[rows], head.classes)]
    if unknown_brand is not None and unknown_rows.size:
        scores = unknown_brand.scores(vectors[unknown_rows], head.logits(vectors[unknown_rows]))
        out["unknown_brands"] = {
            "n": int(unknown_rows.size),
            "refused": rejection_rates(scores, unknown_brand.threshold),
            "brands": sorted(set(wild_labels[unknown_rows].tolist())),
        }
    return out
