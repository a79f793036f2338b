"""The one home of evaluation metrics, shared by training (``worker.ml.training``) and ``worker.ml.evaluation``.

Definitions follow their standard forms:
- top-k accuracy: share of rows whose true class is among the k most probable (ties broken by column order);
- log loss: mean negative log-likelihood of the true class, probabilities renormalised per row and clipped to
  ``[LOG_LOSS_EPS, 1]`` as scikit-learn's ``sklearn.metrics.log_loss`` does;
- ECE: expected calibration error with 15 equal-width confidence bins (Guo et al., "On Calibration of Modern
  Neural Networks", ICML 2017, eq. 3): ``sum_b |B_b|/N * |acc(B_b) - conf(B_b)|``;
- precision / recall per class of top-1 predictions (a "no answer" counts against recall, not precision);
- confusion matrix: rows true class, columns predicted class (``sklearn.metrics.confusion_matrix``'s layout);
- MAE (mean absolute error, USD) and MAPE (mean of ``|pred - true| / true``, a fraction, not a percentage).

Pure NumPy; nothing here imports scikit-learn, TensorFlow or Django.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np

ECE_BINS: Final = 15
"""Number of equal-width confidence bins of the expected calibration error (Guo et al. 2017)."""
LOG_LOSS_EPS: Final = 1e-15
"""Probabilities are clipped to [eps, 1] in the log loss (as scikit-learn's ``log_loss``)."""


def _indices(labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """``(N,) int64`` column index of each label; ValueError for a label not among ``classes``."""
    index = {str(name): i for i, name in enumerate(classes)}
    unknown = sorted({str(label) for label in labels} - set(index))
    if unknown:
        raise ValueError(f"labels not among the classes: {unknown}")
    return np.asarray([index[str(label)] for label in labels], dtype=np.int64)


def top_k_accuracy(proba: np.ndarray, truth: np.ndarray, k: int) -> float | None:
    """Share of rows whose true column is among the ``k`` largest probabilities.

    Args:
        proba: ``(N, C)`` float scores (probabilities or logits; only their order matters).
        truth: ``(N,)`` int true column indices.
        k: how many guesses count (capped at C), >= 1.

    Returns:
        Accuracy in [0, 1], or None for N = 0.

    Raises:
        ValueError: shape mismatch or ``k < 1``.
    """
    scores = np.asarray(proba, dtype=np.float64)
    target = np.asarray(truth, dtype=np.int64).reshape(-1)
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    if scores.ndim != 2 or scores.shape[0] != target.size:
        raise ValueError(f"proba {scores.shape} does not match {target.size} labels")
    if target.size == 0:
        return None
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, scores.shape[1])]
    return float(np.mean(np.any(ranked == target[:, None], axis=1)))


def log_loss_rows(proba: np.ndarray, truth: np.ndarray, *, eps: float = LOG_LOSS_EPS) -> np.ndarray:
    """Negative log-likelihood of the true column of each row (rows renormalised, clipped at ``eps``).

    Args:
        proba: ``(N, C)`` non-negative float probabilities.
        truth: ``(N,)`` int true column indices.
        eps: clipping floor (scikit-learn's convention).

    Returns:
        ``(N,) float64`` losses in nats (>= 0); their mean is ``log_loss``.

    Raises:
        ValueError: shape mismatch.
    """
    values = np.asarray(proba, dtype=np.float64)
    target = np.asarray(truth, dtype=np.int64).reshape(-1)
    if values.ndim != 2 or values.shape[0] != target.size:
        raise ValueError(f"proba {values.shape} does not match {target.size} labels")
    values = values / np.maximum(values.sum(axis=1, keepdims=True), eps)
    picked = np.clip(values[np.arange(target.size), target], eps, 1.0)
    return -np.log(picked)


def log_loss(proba: np.ndarray, truth: np.ndarray, *, eps: float = LOG_LOSS_EPS) -> float | None:
    """Mean negative log-likelihood of the true column (``log_loss_rows`` averaged).

    Args:
        proba: ``(N, C)`` non-negative float probabilities.
        truth: ``(N,)`` int true column indices.
        eps: clipping floor (scikit-learn's convention).

    Returns:
        Log loss in nats (>= 0), or None for N = 0.

    Raises:
        ValueError: shape mismatch.
    """
    rows = log_loss_rows(proba, truth, eps=eps)
    return float(np.mean(rows)) if rows.size else None


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """``(C, C) int64`` counts, rows true class, columns predicted class.

    Raises:
        ValueError: length mismatch or an index outside ``[0, n_classes)``.
    """
    true_idx = np.asarray(truth, dtype=np.int64).reshape(-1)
    pred_idx = np.asarray(predicted, dtype=np.int64).reshape(-1)
    if true_idx.shape != pred_idx.shape:
        raise ValueError(f"{true_idx.size} true labels but {pred_idx.size} predictions")
    if true_idx.size and (min(true_idx.min(), pred_idx.min()) < 0 or max(true_idx.max(), pred_idx.max()) >= n_classes):
        raise ValueError(f"class index outside [0, {n_classes})")
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (true_idx, pred_idx), 1)
    return matrix


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
        ValueError: length mismatch or ``n_bins < 1``.
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


def per_class_precision_recall(
    truth: Sequence[str], predicted: Sequence[str | None], labels: Sequence[str]
) -> dict[str, dict[str, float | int | None]]:
    """Precision, recall and support per class of top-1 predictions.

    Args:
        truth: N true classes.
        predicted: N predicted classes, None for "no answer" (counts against recall, not precision).
        labels: classes to report.

    Returns:
        ``{class: {"precision": float | None, "recall": float | None, "support": int}}``; None where
        the denominator is 0.

    Raises:
        ValueError: length mismatch.
    """
    true_list = [str(t) for t in truth]
    pred_list = [None if p is None else str(p) for p in predicted]
    if len(true_list) != len(pred_list):
        raise ValueError(f"{len(true_list)} true labels but {len(pred_list)} predictions")
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


def classification_metrics(proba: np.ndarray, labels: Sequence[str], classes: Sequence[str]) -> dict[str, Any]:
    """Classification metrics of predicted class probabilities (brands or models).

    Args:
        proba: ``(N, C)`` float probabilities, columns in ``classes`` order (rows are renormalised).
        labels: N true classes, each one of ``classes``.
        classes: the C class names.

    Returns:
        ``{"n", "top1", "top3", "top5", "log_loss", "ece", "per_brand_recall": {class: float},
        "per_brand_precision": {class: float | None}, "per_brand_support": {class: int},
        "confusion": {"labels": [...], "matrix": [[int]]}}``; recall and support list only classes
        present in ``labels``, precision every class (None when never predicted); top-k is
        top-min(k, C); with N = 0 the scores are None. (The ``per_brand_`` names are kept for model
        heads too: they are the keys stored in model-version metrics.)

    Raises:
        ValueError: shape mismatch or a label not in ``classes``.
    """
    class_list = [str(c) for c in classes]
    probabilities = np.asarray(proba, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape != (len(labels), len(class_list)):
        raise ValueError(f"proba {probabilities.shape} does not match {len(labels)} x {len(class_list)}")
    truth = _indices(labels, class_list)
    result: dict[str, Any] = {"n": len(labels)}
    if truth.size == 0:
        result.update(top1=None, top3=None, top5=None, log_loss=None, ece=None)
        result.update(per_brand_recall={}, per_brand_precision={}, per_brand_support={})
        result["confusion"] = {"labels": class_list, "matrix": [[0] * len(class_list) for _ in class_list]}
        return result
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    predicted = np.argmax(probabilities, axis=1)
    for k in (1, 3, 5):
        result[f"top{k}"] = top_k_accuracy(probabilities, truth, k)
    result["log_loss"] = log_loss(probabilities, truth)
    result["ece"] = expected_calibration_error(probabilities.max(axis=1), predicted == truth)
    figures = per_class_precision_recall([class_list[i] for i in truth], [class_list[i] for i in predicted], class_list)
    result["per_brand_recall"] = {c: f["recall"] for c, f in figures.items() if f["support"]}
    result["per_brand_precision"] = {c: f["precision"] for c, f in figures.items()}
    result["per_brand_support"] = {c: f["support"] for c, f in figures.items() if f["support"]}
    matrix = confusion_matrix(truth, predicted, len(class_list))
    result["confusion"] = {"labels": class_list, "matrix": matrix.tolist()}
    return result


def price_metrics(
    pred_usd: Sequence[float] | np.ndarray,
    true_usd: Sequence[float] | np.ndarray,
    brands: Sequence[str],
    *,
    train_brands: Sequence[str],
    train_prices: Sequence[float] | np.ndarray,
    low_usd: Sequence[float] | np.ndarray | None = None,
    high_usd: Sequence[float] | np.ndarray | None = None,
) -> dict[str, Any]:
    """Price-regression metrics against a per-brand median baseline.

    The baseline predicts, for each row, the median training price of its brand (the median of all
    training prices for a brand unseen in training).

    Args:
        pred_usd: N predicted prices (USD).
        true_usd: N true prices (USD, > 0).
        brands: N brands of the rows.
        train_brands: brands of the training rows.
        train_prices: prices (USD) of the training rows; at least one.
        low_usd, high_usd: optional N range ends; adds ``range_coverage``, the share of rows with
            ``low <= true <= high``.

    Returns:
        ``{"n", "mae", "mape", "baseline_mae", "baseline_mape"[, "range_coverage"]}``: MAE in USD,
        MAPE as a fraction; None values when N = 0.

    Raises:
        ValueError: length mismatch, no training prices, or a true price <= 0.
    """
    predicted = np.asarray(pred_usd, dtype=np.float64).reshape(-1)
    truth = np.asarray(true_usd, dtype=np.float64).reshape(-1)
    brand_list = [str(b) for b in brands]
    reference = np.asarray(train_prices, dtype=np.float64).reshape(-1)
    if not (predicted.size == truth.size == len(brand_list)) or len(train_brands) != reference.size:
        raise ValueError("pred_usd, true_usd and brands (and train_brands, train_prices) must match")
    if reference.size == 0:
        raise ValueError("need training prices for the baseline")
    if np.any(truth <= 0):
        raise ValueError("true prices must be positive")
    result: dict[str, Any] = {"n": int(truth.size)}
    if truth.size == 0:
        result.update(mae=None, mape=None, baseline_mae=None, baseline_mape=None)
        return result
    global_median = float(np.median(reference))
    train_brand_array = np.asarray([str(b) for b in train_brands])
    medians = {name: float(np.median(reference[train_brand_array == name])) for name in set(train_brand_array)}
    baseline = np.asarray([medians.get(name, global_median) for name in brand_list])
    result.update(regression_errors(predicted, truth))
    base = regression_errors(baseline, truth)
    result["baseline_mae"], result["baseline_mape"] = base["mae"], base["mape"]
    if low_usd is not None and high_usd is not None:
        low = np.asarray(low_usd, dtype=np.float64).reshape(-1)
        high = np.asarray(high_usd, dtype=np.float64).reshape(-1)
        result["range_coverage"] = float(np.mean((low <= truth) & (truth <= high)))
    return result


def regression_errors(predicted: Sequence[float] | np.ndarray, truth: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """``{"mae", "mape"}`` of N predictions (USD): mean ``|p - t|`` and mean ``|p - t| / t`` (None for N = 0).

    Raises:
        ValueError: length mismatch.
    """
    pred = np.asarray(predicted, dtype=np.float64).reshape(-1)
    true = np.asarray(truth, dtype=np.float64).reshape(-1)
    if pred.shape != true.shape:
        raise ValueError(f"{pred.size} predictions but {true.size} true values")
    if true.size == 0:
        return {"mae": None, "mape": None}
    errors = np.abs(pred - true)
    return {"mae": float(np.mean(errors)), "mape": float(np.mean(errors / true))}
