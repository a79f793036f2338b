"""Training and evaluation: grouped split, embeddings, heads, calibration, metrics, artifact.

``train_model`` is deterministic for a given seed, backbone and sample list: the split uses a seeded
NumPy generator, lbfgs and Ridge are deterministic, and embeddings do not depend on batch order.

Metric definitions follow their standard forms: top-k accuracy (share of rows whose true class is among
the k most probable), log loss (mean negative log-likelihood, ``sklearn.metrics.log_loss``), recall
per class, confusion matrix (rows true, columns predicted), MAE (mean absolute error, USD) and MAPE
(mean of ``|pred - true| / true``, a fraction, not a percentage).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from worker.ml.artifact import ModelArtifact
from worker.ml.background import Remover
from worker.ml.embeddings import PREPROCESSING, EmbeddingCache, embed_images
from worker.ml.errors import ImageError
from worker.ml.heads import (
    DEFAULT_BRAND_C,
    DEFAULT_PRICE_ALPHA,
    BrandHead,
    PriceHead,
    fit_brand_head,
    fit_price_head,
    fit_temperature,
)
from worker.ml.similarity import SimilarityIndex

if TYPE_CHECKING:
    from worker.ml.backbone import Backbone

BRAND_C_GRID: Final = (1.0, 3.0, 10.0, 30.0, 100.0)
"""Inverse L2 strengths tried for the brand head; the one with the lowest validation log loss wins."""
PRICE_ALPHA_GRID: Final = (0.01, 0.03, 0.1, 0.3, 1.0)
"""Ridge strengths tried for the price head; the one with the lowest validation MAE (USD) wins."""
MIN_PRICED_TRAIN: Final = 4
"""Fewest priced training images for which a price head is fitted."""


@dataclass(frozen=True, eq=False)
class Split:
    """Row indices of the three sides of a split: each ``(n_side,) int64``, sorted, disjoint."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def grouped_split(
    labels: Sequence[str],
    groups: Sequence[str],
    *,
    seed: int,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> Split:
    """Split rows into train / validation / test so that no group is on two sides.

    Stratified by label as far as groups allow: each group takes its majority label; for each label the
    groups are shuffled (``numpy.random.default_rng(seed)``) and handed out greedily, to test while that
    brings the label's test image count closer to ``test_fraction`` of its images, then likewise to
    validation, the rest to train. Every label keeps at least one group in train (its largest, if the
    greedy pass left none), so labels with few groups end up in train only.

    Args:
        labels: N labels (brands).
        groups: N group keys (e.g. product names; a unique key per row for ungrouped rows).
        seed: random seed; the same inputs and seed give the same split.
        val_fraction: target share of each label's rows in validation.
        test_fraction: target share of each label's rows in test.

    Returns:
        ``Split`` whose three index arrays together hold every row exactly once.

    Raises:
        ValueError: lengths differ, or fractions are negative or sum to 1 or more.
    """
    label_array = np.asarray([str(label) for label in labels])
    group_array = np.asarray([str(group) for group in groups])
    if label_array.shape != group_array.shape:
        raise ValueError(f"{label_array.size} labels but {group_array.size} groups")
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError("fractions must be >= 0 and sum to less than 1")
    if label_array.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Split(empty, empty.copy(), empty.copy())
    names, group_of_row = np.unique(group_array, return_inverse=True)
    sizes = np.bincount(group_of_row, minlength=names.size)
    majority: list[str] = []
    for group in range(names.size):
        counts = Counter(label_array[group_of_row == group].tolist())
        majority.append(min(counts, key=lambda label: (-counts[label], label)))
    group_label = np.asarray(majority)
    side_of_group = np.zeros(names.size, dtype=np.int64)  # 0 train, 1 val, 2 test
    rng = np.random.default_rng(seed)
    for label in sorted(set(majority)):
        members = rng.permutation(np.flatnonzero(group_label == label))
        total = float(sizes[members].sum())
        targets = {2: test_fraction * total, 1: val_fraction * total}
        filled = {2: 0.0, 1: 0.0}
        for group in members:
            size = float(sizes[group])
            for side in (2, 1):
                if filled[side] + size / 2.0 <= targets[side]:
                    side_of_group[group] = side
                    filled[side] += size
                    break
        if not np.any(side_of_group[members] == 0):
            side_of_group[members[np.argmax(sizes[members])]] = 0
    side_of_row = side_of_group[group_of_row]
    return Split(
        train=np.flatnonzero(side_of_row == 0).astype(np.int64),
        val=np.flatnonzero(side_of_row == 1).astype(np.int64),
        test=np.flatnonzero(side_of_row == 2).astype(np.int64),
    )


def brand_metrics(proba: np.ndarray, labels: Sequence[str], classes: Sequence[str]) -> dict[str, Any]:
    """Classification metrics of predicted brand probabilities.

    Args:
        proba: ``(N, C)`` float probabilities, columns in ``classes`` order (rows are renormalised).
        labels: N true brands, each one of ``classes``.
        classes: the C brand names.

    Returns:
        ``{"n", "top1", "top3", "log_loss", "per_brand_recall": {brand: float},
        "per_brand_support": {brand: int}, "confusion": {"labels": [...], "matrix": [[int]]}}``;
        recall and support list only brands present in ``labels``; top-3 is top-min(3, C); with N = 0
        the scores are None.

    Raises:
        ValueError: shape mismatch or a label not in ``classes``.
    """
    from sklearn.metrics import confusion_matrix, log_loss

    class_list = [str(c) for c in classes]
    index = {name: i for i, name in enumerate(class_list)}
    probabilities = np.asarray(proba, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape != (len(labels), len(class_list)):
        raise ValueError(f"proba {probabilities.shape} does not match {len(labels)} x {len(class_list)}")
    unknown = sorted({str(label) for label in labels} - set(index))
    if unknown:
        raise ValueError(f"labels not among the classes: {unknown}")
    count = len(labels)
    result: dict[str, Any] = {"n": count}
    if count == 0:
        result.update(top1=None, top3=None, log_loss=None, per_brand_recall={}, per_brand_support={})
        result["confusion"] = {
            "labels": class_list,
            "matrix": [[0] * len(class_list)] * len(class_list),
        }
        return result
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    truth = np.asarray([index[str(label)] for label in labels], dtype=np.int64)
    ranked = np.argsort(-probabilities, axis=1, kind="stable")
    k = min(3, len(class_list))
    predicted = ranked[:, 0]
    result["top1"] = float(np.mean(predicted == truth))
    result["top3"] = float(np.mean(np.any(ranked[:, :k] == truth[:, None], axis=1)))
    result["log_loss"] = float(log_loss(truth, probabilities, labels=np.arange(len(class_list))))
    recall: dict[str, float] = {}
    support: dict[str, int] = {}
    for i, name in enumerate(class_list):
        rows = truth == i
        if rows.any():
            recall[name] = float(np.mean(predicted[rows] == i))
            support[name] = int(rows.sum())
    result["per_brand_recall"] = recall
    result["per_brand_support"] = support
    matrix = confusion_matrix(truth, predicted, labels=np.arange(len(class_list)))
    result["confusion"] = {"labels": class_list, "matrix": matrix.astype(int).tolist()}
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
    result["mae"] = float(np.mean(np.abs(predicted - truth)))
    result["mape"] = float(np.mean(np.abs(predicted - truth) / truth))
    result["baseline_mae"] = float(np.mean(np.abs(baseline - truth)))
    result["baseline_mape"] = float(np.mean(np.abs(baseline - truth) / truth))
    if low_usd is not None and high_usd is not None:
        low = np.asarray(low_usd, dtype=np.float64).reshape(-1)
        high = np.asarray(high_usd, dtype=np.float64).reshape(-1)
        result["range_coverage"] = float(np.mean((low <= truth) & (truth <= high)))
    return result


@dataclass(frozen=True)
class TrainingSample:
    """One labelled catalog image for ``train_model``.

    Attributes:
        sha256: hex SHA-256 of the image bytes (embedding-cache key).
        brand: brand label.
        group: split group; photos of one product share it (e.g. brand + product name; the SHA-256 for
            images of unknown product).
        price_usd: list price in USD, or None.
        product_id: catalog product id for similarity search, or None (then not indexed).
        load: returns the image bytes; called only when the embedding is not cached.
    """

    sha256: str
    brand: str
    group: str
    price_usd: float | None
    product_id: int | None
    load: Callable[[], bytes]


@dataclass(frozen=True, eq=False)
class TrainingResult:
    """What ``train_model`` returns.

    Attributes:
        artifact: the trained ``ModelArtifact``.
        metrics: ``{"brand": {...test brand_metrics, "val_log_loss", "val_log_loss_calibrated",
            "C", "temperature"}, "price": {...test price_metrics, "alpha"}, "counts": {"train", "val",
            "test", "indexed", "priced_train"}, "seconds": {"embed", "fit", "total"}}``.
        split: ``{"seed": int, "train": [sha256...], "val": [...], "test": [...]}``.
        report: PNG plots by file name: ``confusion.png`` (test), ``reliability.png`` (test, before
            and after temperature scaling), ``validation_curve.png`` (validation log loss per C).
    """

    artifact: ModelArtifact
    metrics: dict[str, Any]
    split: dict[str, Any]
    report: dict[str, bytes] = field(default_factory=dict)


def train_model(
    samples: Sequence[TrainingSample],
    *,
    backbone: Backbone,
    cache: EmbeddingCache | None,
    seed: int = 42,
    remover: Remover | None = None,
    flip_augment: bool = True,
    progress: Callable[[int, int], None] | None = None,
    brand_c_grid: Sequence[float] = BRAND_C_GRID,
    price_alpha_grid: Sequence[float] = PRICE_ALPHA_GRID,
    negatives: Sequence[Callable[[], bytes]] = (),
    imagenet_classifier_path: Path | None = None,
    abstain_remover: Remover | None = None,
) -> TrainingResult:
    """Train a model version: grouped split, embeddings, brand and price heads, index, test metrics.

    Steps:
    1. ``grouped_split`` by ``sample.group``, stratified by brand (70 / 15 / 15).
    2. Embeddings of every sample (``embed_images``, cached; with ``flip_augment`` also mirrored ones).
    3. Brand head (``fit_brand_head``) on train (+ mirrored train images); C from ``brand_c_grid`` by
       validation log loss; temperature (``fit_temperature``) on validation; metrics on test.
    4. Price head (``fit_price_head``) on priced train images, range from grouped out-of-fold
       residuals; alpha from ``price_alpha_grid`` by validation MAE; metrics on priced test images
       against the per-brand median baseline. Skipped (None) with fewer than ``MIN_PRICED_TRAIN``.
    5. Similarity index over all samples with a product id (the whole catalog, all sides).

    Args:
        samples: the labelled images (at least two brands; images must be decodable).
        backbone: embedding model.
        cache: embedding cache of this backbone, or None.
        seed: split and solver seed.
        remover: background remover used before embedding (plain backgrounds skipped), or None.
        flip_augment: add horizontally mirrored training images to the brand head's training set.
        progress: ``progress(done, total)`` during embedding.
        brand_c_grid: candidate C values.
        price_alpha_grid: candidate Ridge alphas.
        negatives: loaders of photos without footwear; with ``imagenet_classifier_path`` they report
            how many the ``not_footwear`` rule rejects.
        imagenet_classifier_path: the with-top ImageNet model; enables the ``not_footwear`` rule
            (``worker.ml.abstain``), its threshold chosen on the validation sneakers.
        abstain_remover: the background remover the prediction pipeline uses, applied (plain
            backgrounds skipped) to the photos that tune the abstain thresholds, so they see what
            the pipeline sees.

    Returns:
        ``TrainingResult``.

    Raises:
        ValueError: fewer than two brands in the training side, empty grids.
        ImageError: an image cannot be decoded (filter first).
    """
    if not brand_c_grid or not price_alpha_grid:
        raise ValueError("hyper-parameter grids must not be empty")
    started = time.perf_counter()
    labels = np.asarray([s.brand for s in samples])
    groups = np.asarray([s.group for s in samples])
    split = grouped_split(labels.tolist(), groups.tolist(), seed=seed)
    train, val, test = split.train, split.val, split.test

    items = [(s.sha256, s.load) for s in samples]
    if flip_augment:
        vectors, mirrored = embed_images(
            items, backbone=backbone, cache=cache, remover=remover, flip=True, progress=progress
        )
    else:
        vectors = embed_images(items, backbone=backbone, cache=cache, remover=remover, progress=progress)
        mirrored = None
    embedded = time.perf_counter()

    brand_head, brand_report = _fit_brand(vectors, mirrored, labels, split, seed, brand_c_grid)
    test_proba = brand_head.predict_proba(vectors[test])
    brand_report.update(brand_metrics(test_proba, labels[test].tolist(), brand_head.classes))
    report = _calibration_report(brand_head, vectors, labels, split, brand_report)
    abstain = _abstain_thresholds(
        brand_head, vectors, labels, samples, split, negatives, imagenet_classifier_path, abstain_remover, backbone
    )

    price_head, price_report, priced_train = _fit_price(vectors, samples, labels, groups, split, price_alpha_grid)

    indexed = np.asarray([i for i, s in enumerate(samples) if s.product_id is not None], dtype=np.int64)
    index = SimilarityIndex(
        embeddings=vectors[indexed] if indexed.size else np.zeros((0, backbone.dim), np.float32),
        product_ids=np.asarray([samples[i].product_id for i in indexed], dtype=np.int64),
    )
    finished = time.perf_counter()
    metadata: dict[str, Any] = {
        "classes": list(brand_head.classes),
        "backbone_fingerprint": backbone.fingerprint,
        "embedding_dim": backbone.dim,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "preprocessing": PREPROCESSING,
        "background": remover.name if remover is not None else "none",
        "flip_augment": flip_augment,
        "brand_C": brand_report["C"],
        "temperature": brand_head.temperature,
        "price_alpha": price_report.get("alpha"),
        "counts": {"samples": len(samples), "indexed": int(indexed.size)},
        "variant": "head-only",
        "abstain": abstain["thresholds"],
        "price_baseline": _price_baseline(samples, train),
    }
    artifact = ModelArtifact(
        brand_head=brand_head,
        price_head=price_head,
        index=index,
        metadata=_finite_or_none(metadata),
        footwear=abstain["detector"],
    )
    metrics = {
        "variant": "head-only",
        "abstain": abstain["report"],
        "brand": brand_report,
        "price": price_report,
        "counts": {
            "train": int(train.size),
            "val": int(val.size),
            "test": int(test.size),
            "indexed": int(indexed.size),
            "priced_train": priced_train,
        },
        "seconds": {
            "embed": round(embedded - started, 3),
            "fit": round(finished - embedded, 3),
            "total": round(finished - started, 3),
        },
    }
    shas = [s.sha256 for s in samples]
    split_record = {
        "seed": seed,
        "train": [shas[i] for i in train],
        "val": [shas[i] for i in val],
        "test": [shas[i] for i in test],
    }
    return TrainingResult(artifact=artifact, metrics=_finite_or_none(metrics), split=split_record, report=report)


def _calibration_report(
    head: BrandHead, vectors: np.ndarray, labels: np.ndarray, split: Split, brand_report: dict[str, Any]
) -> dict[str, bytes]:
    """ECE on the test split before/after temperature scaling (into ``brand_report``) and the plots."""
    from worker.ml.evaluation import expected_calibration_error, reliability_bins
    from worker.ml.report import confusion_png, curve_png, reliability_png

    test = split.test[np.isin(labels[split.test], head.classes)]
    curves = {}
    for name, model in (("before", head.with_temperature(1.0)), ("after", head)):
        proba = model.predict_proba(vectors[test])
        confidence = proba.max(axis=1) if proba.size else np.zeros(0)
        correct = np.asarray(head.classes)[proba.argmax(axis=1)] == labels[test] if proba.size else np.zeros(0)
        brand_report[f"ece_{name}"] = expected_calibration_error(confidence, correct) if test.size else None
        curves[f"{name} temperature scaling"] = reliability_bins(confidence, correct)
    report = {
        "reliability.png": reliability_png(
            curves,
            title=f"Test reliability: ECE {brand_report['ece_before'] or 0:.3f} -> "
            f"{brand_report['ece_after'] or 0:.3f}",
        )
    }
    confusion = brand_report.get("confusion")
    if confusion:
        report["confusion.png"] = confusion_png(confusion["labels"], confusion["matrix"])
    c_curve = brand_report.get("c_curve") or []
    if len(c_curve) > 1:
        report["validation_curve.png"] = curve_png(
            [c for c, _ in c_curve],
            [loss for _, loss in c_curve],
            xlabel="C (inverse L2 strength)",
            ylabel="validation log loss",
            title="Brand head: choice of C",
            log_x=True,
        )
    return report


def _abstain_thresholds(
    head: BrandHead,
    vectors: np.ndarray,
    labels: np.ndarray,
    samples: Sequence[TrainingSample],
    split: Split,
    negatives: Sequence[Callable[[], bytes]],
    imagenet_classifier_path: Path | None,
    remover: Remover | None,
    backbone: Backbone,
) -> dict[str, Any]:
    """Thresholds of the two abstain rules, chosen on the validation split (``worker.ml.abstain``).

    Returns ``{"thresholds": {"confidence_threshold", "footwear_threshold"}, "detector":
    FootwearDetector | None, "report": {...validation/negatives rejection shares}}``. The footwear
    rule stays off (threshold 0, no detector, the reason in ``report["footwear_rule"]``) without a
    classifier or when its Dense layer does not read this backbone's feature width.

    Raises:
        ModelError: the ImageNet classifier file is missing or unreadable.
    """
    from worker.ml.abstain import (
        choose_confidence_threshold,
        choose_footwear_threshold,
        load_imagenet_detector,
        rejection_rates,
    )

    val = split.val[np.isin(labels[split.val], head.classes)]
    proba = head.predict_proba(vectors[val])
    confidence = proba.max(axis=1) if val.size else np.zeros(0)
    correct = np.asarray(head.classes)[proba.argmax(axis=1)] == labels[val] if val.size else np.zeros(0, bool)
    confidence_threshold = choose_confidence_threshold(confidence, correct)
    report: dict[str, Any] = {
        "confidence_threshold": confidence_threshold,
        "val_low_confidence": rejection_rates(confidence, confidence_threshold),
        "val_answered_top1": float(correct[confidence >= confidence_threshold].mean()) if val.size else None,
    }
    detector = None
    footwear_threshold = 0.0
    if imagenet_classifier_path is not None and val.size:
        detector = load_imagenet_detector(imagenet_classifier_path)
    if detector is not None and detector.dim != backbone.aux_dim:
        # Another backbone (a small test model, say) has no ImageNet head to borrow: rule off.
        report["footwear_rule"] = (
            f"off: the classifier reads {detector.dim}-d features, the backbone gives {backbone.aux_dim}"
        )
        detector = None
    if detector is not None:
        positives = detector.score(_original_features([samples[i].load for i in val], backbone, remover))
        footwear_threshold = choose_footwear_threshold(positives)
        report.update(
            footwear_threshold=footwear_threshold,
            val_sneakers_rejected=rejection_rates(positives, footwear_threshold),
        )
        if negatives:
            scores = detector.score(_original_features(negatives, backbone, remover))
            report.update(negatives_rejected=rejection_rates(scores, footwear_threshold), negatives=len(negatives))
        report["footwear_rule"] = "on"
    thresholds = {"confidence_threshold": confidence_threshold, "footwear_threshold": footwear_threshold}
    return {"thresholds": thresholds, "detector": detector, "report": report}


def _original_features(
    loaders: Sequence[Callable[[], bytes]], backbone: Backbone, remover: Remover | None
) -> np.ndarray:
    """``(N, D0) float32`` un-normalised backbone features, preprocessed as ``Pipeline`` does.

    Unreadable photos are skipped.
    """
    from worker.ml.background import remove_background
    from worker.ml.images import load_rgb

    rows = []
    for load in loaders:
        try:
            rgb = load_rgb(load())
        except ImageError:
            continue
        if remover is not None:
            rgb = remove_background(rgb, remover).image
        rows.append(backbone.preprocess(rgb))
    if not rows:
        return np.zeros((0, backbone.aux_dim), dtype=np.float32)
    return np.concatenate([backbone.embed_raw(np.stack(rows[i : i + 64]))[1] for i in range(0, len(rows), 64)], axis=0)


def _price_baseline(samples: Sequence[TrainingSample], train: np.ndarray) -> dict[str, Any]:
    """Per-brand median list price (USD) of the priced training images, and the global median."""
    priced = [(samples[i].brand, samples[i].price_usd) for i in train if samples[i].price_usd]
    if not priced:
        return {"per_brand": {}, "global": None}
    brands = sorted({brand for brand, _ in priced})
    return {
        "per_brand": {b: float(np.median([p for brand, p in priced if brand == b])) for b in brands},
        "global": float(np.median([p for _, p in priced])),
    }


def _finite_or_none(value: Any) -> Any:
    """Copy of nested dicts/lists with NaN and infinite floats replaced by None (strict JSON)."""
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(item) for item in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _fit_brand(
    vectors: np.ndarray,
    mirrored: np.ndarray | None,
    labels: np.ndarray,
    split: Split,
    seed: int,
    c_grid: Sequence[float],
) -> tuple[BrandHead, dict[str, Any]]:
    """Fit the brand head on train (+ mirrored), choose C and temperature on validation."""
    train, val = split.train, split.val
    features = vectors[train] if mirrored is None else np.concatenate([vectors[train], mirrored[train]])
    targets = labels[train] if mirrored is None else np.concatenate([labels[train], labels[train]])
    if np.unique(targets).size < 2:
        raise ValueError("the training side needs at least two brands")
    best: tuple[float, float, BrandHead] | None = None
    curve = []
    for c_value in c_grid if val.size else (DEFAULT_BRAND_C,):
        head = fit_brand_head(features, targets.tolist(), seed=seed, C=c_value)
        loss = _val_log_loss(head, vectors[val], labels[val]) if val.size else float("nan")
        curve.append([c_value, loss])
        if best is None or loss < best[0]:
            best = (loss, c_value, head)
    assert best is not None
    val_loss, c_value, head = best
    report: dict[str, Any] = {"C": c_value, "val_log_loss": val_loss, "c_curve": curve}
    if val.size:
        known = val[np.isin(labels[val], head.classes)]
        temperature = fit_temperature(head.logits(vectors[known]), labels[known].tolist(), head.classes)
        head = head.with_temperature(temperature)
        report["val_log_loss_calibrated"] = _val_log_loss(head, vectors[val], labels[val])
    else:
        report["val_log_loss_calibrated"] = None
    report["temperature"] = head.temperature
    return head, report


def _val_log_loss(head: BrandHead, vectors: np.ndarray, labels: np.ndarray) -> float:
    """Log loss of ``head`` on rows whose label the head knows (NaN when none)."""
    from sklearn.metrics import log_loss

    known = np.isin(labels, head.classes)
    if not known.any():
        return float("nan")
    index = {name: i for i, name in enumerate(head.classes)}
    truth = np.asarray([index[label] for label in labels[known]])
    proba = head.predict_proba(vectors[known]).astype(np.float64)
    return float(log_loss(truth, proba / proba.sum(axis=1, keepdims=True), labels=np.arange(len(index))))


def _fit_price(
    vectors: np.ndarray,
    samples: Sequence[TrainingSample],
    labels: np.ndarray,
    groups: np.ndarray,
    split: Split,
    alpha_grid: Sequence[float],
) -> tuple[PriceHead | None, dict[str, Any], int]:
    """Fit the price head on priced train rows; choose alpha on priced val rows; test metrics."""
    prices = np.asarray(
        [s.price_usd if s.price_usd is not None and s.price_usd > 0 else np.nan for s in samples],
        dtype=np.float64,
    )
    priced = np.isfinite(prices)
    train = split.train[priced[split.train]]
    val = split.val[priced[split.val]]
    test = split.test[priced[split.test]]
    if train.size < MIN_PRICED_TRAIN:
        report: dict[str, Any] = {"n": 0, "mae": None, "mape": None, "baseline_mae": None, "baseline_mape": None}
        report.update(alpha=None, val_mae=None, reason="too few priced training images")
        return None, report, int(train.size)
    from sklearn.linear_model import Ridge

    best: tuple[float, float] | None = None
    train_x, log_target = vectors[train].astype(np.float64), np.log(prices[train])
    for alpha in alpha_grid if val.size else (DEFAULT_PRICE_ALPHA,):
        error = float("nan")
        if val.size:
            model = Ridge(alpha=alpha).fit(train_x, log_target)
            predicted = np.exp(model.predict(vectors[val].astype(np.float64)))
            error = float(np.mean(np.abs(predicted - prices[val])))
        if best is None or error < best[0]:
            best = (error, alpha)
    assert best is not None
    val_mae, alpha = best
    head = fit_price_head(vectors[train], prices[train], alpha=alpha, groups=groups[train].tolist())
    estimates = head.predict(vectors[test]) if test.size else []
    report = price_metrics(
        [e.estimate for e in estimates],
        prices[test],
        labels[test].tolist(),
        train_brands=labels[train].tolist(),
        train_prices=prices[train],
        low_usd=[e.low for e in estimates],
        high_usd=[e.high for e in estimates],
    )
    report["alpha"] = alpha
    report["val_mae"] = val_mae if val.size else None
    return head, report, int(train.size)
