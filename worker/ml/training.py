"""Training and evaluation: grouped split, embeddings, heads, calibration, metrics, artifact.

``train_model`` is deterministic for a given seed, backbone and sample list: the split uses a seeded
NumPy generator, lbfgs and Ridge are deterministic, and embeddings do not depend on batch order.

Metric definitions follow their standard forms: top-k accuracy (share of rows whose true class is among
the k most probable), log loss (mean negative log-likelihood, ``sklearn.metrics.log_loss``), recall
per class, confusion matrix (rows true, columns predicted), MAE (mean absolute error, USD) and MAPE
(mean of ``|pred - true| / true``, a fraction, not a percentage).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from worker.ml.abstain import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    MAX_ABSTAIN,
    TARGET_ACCURACY,
    choose_confidence_threshold,
    choose_footwear_threshold,
    load_imagenet_detector,
    rejection_rates,
)
from worker.ml.artifact import ModelArtifact
from worker.ml.backbone import FINGERPRINT_LENGTH, backbone_fingerprint, l2_normalise, tap_scale
from worker.ml.background import Remover, remove_background
from worker.ml.dedup import image_hashes, merge_near_duplicates
from worker.ml.embeddings import PREPROCESSING, EmbeddingCache, embed_images
from worker.ml.evaluation import expected_calibration_error, reliability_bins
from worker.ml.heads import (
    DEFAULT_BRAND_C,
    DEFAULT_PRICE_ALPHA,
    BrandHead,
    PriceHead,
    fit_brand_head,
    fit_price_head,
    fit_temperature,
)
from worker.ml.images import DEFAULT_MAX_SIDE, has_plain_background, load_rgb
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


WILD_VAL_FRACTION: Final = 0.3
"""Share of the wild photos (per style, grouped) used for validation (threshold, rule, variant choice)."""
WILD_TEST_FRACTION: Final = 0.4
"""Share of the wild photos (per style, grouped) held out untouched for evaluation; the rest trains."""
AUGMENT_COPIES: Final = 2
"""Augmented copies per training photo for fine-tuning (``worker.ml.augment``)."""


def train_model(
    samples: Sequence[TrainingSample],
    *,
    backbone: Backbone,
    cache: EmbeddingCache | None,
    seed: int = 42,
    remover: Remover | None = None,
    flip_augment: bool = True,
    progress: Callable[[int, int], None] | None = None,
    finetune: bool = False,
    wild: Sequence[TrainingSample] = (),
    wild_styles: Sequence[str] = (),
    negatives: Sequence[Callable[[], bytes]] = (),
    negative_categories: Sequence[str] = (),
    imagenet_classifier_path: Path | None = None,
    workdir: Path | None = None,
    test_remover: Remover | None = None,
    dedup: bool = True,
    augment_copies: int = AUGMENT_COPIES,
    finetune_epochs: int = 6,
    finetune_budget_s: float = 900.0,
    keep_variant: str | None = None,
    log: Callable[[str], None] | None = None,
    brand_c_grid: Sequence[float] = BRAND_C_GRID,
    price_alpha_grid: Sequence[float] = PRICE_ALPHA_GRID,
) -> TrainingResult:
    """Train a model version: grouped split, embeddings, heads, optional fine-tuning, abstain rules.

    Steps:
    1. Groups = ``sample.group`` merged with near-duplicates (phash and dhash within 2 bits,
       ``worker.ml.dedup``; ``dedup=False`` skips it). ``grouped_split`` 70 / 15 / 15 by brand.
       Wild photos (``wild``, styles ``wild_styles`` e.g. ``real-world`` / ``product-shot``) are split
       by their own groups (merged with near-duplicates), stratified by style: 30 % train, 30 %
       validation, 40 % test (held out, untouched by every choice; seeded).
    2. Embeddings of every catalog sample (cached; mirrored too with ``flip_augment``). Wild and
       negative photos are embedded as ``Pipeline`` sees them: with ``test_remover`` (default
       ``remover``) the background rule (``skip-plain`` / ``always`` / ``never``) is chosen by
       validation log loss of a catalog-only head on wild validation photos.
    3. Head-only variant: brand head on catalog train (+ mirrored) + wild train; C by log loss on the
       validation set (catalog val + wild val); temperature on the same set (Guo et al. 2017).
    4. With ``finetune``: the fine-tuned variant (``worker.ml.finetune``): block 15 and the top
       convolution trained on cached trunk activations of clean, mirrored and ``augment_copies``
       augmented copies, early stopping on validation, then heads re-fitted as in 3. The variant with
       the lower calibrated validation log loss is kept (``metrics["variant"]``).
    5. Abstain thresholds on validation: ``footwear_threshold`` (with ``imagenet_classifier_path``;
       rejects <= 2 % of validation sneakers; negatives split 50/50 seeded into a tuning half and a
       held-out half, both reported) and ``confidence_threshold`` (``choose_confidence_threshold``).
    6. Price head (Ridge on log USD, alpha by validation MAE); baseline = per-brand training medians.
    7. Test metrics (catalog test side) with ECE before/after temperature; wild test by style;
       report PNGs.

    Args:
        samples: labelled catalog images (at least two brands; decodable).
        backbone: the original embedding model.
        cache: embedding cache of this backbone, or None.
        seed: split, augmentation and solver seed.
        remover: background remover used before embedding catalog images (plain ones skipped), or None.
        flip_augment: add mirrored training images.
        progress: ``progress(done, total)`` during catalog embedding.
        finetune: also fine-tune the top of the backbone and keep the better variant.
        wild: labelled phone photos (``price_usd`` / ``product_id`` may be None).
        wild_styles: one style per wild photo (same length), e.g. ``"real-world"``.
        negatives: loaders of non-footwear photos (must be rejected).
        negative_categories: one category per negative (for per-category figures), optional.
        imagenet_classifier_path: ``efficientnet_lite0_imagenet.keras``; enables ``not_footwear`` (ignored
            when its Dense layer does not match the backbone's pooled width).
        workdir: folder for caches of photo squares and trunk activations (reused across runs).
        test_remover: remover used at prediction time (for wild / negatives / catalog validation
            photos seen by the footwear threshold), default ``remover``.
        dedup: merge near-duplicate photos into one split group.
        augment_copies: augmented copies per training photo for fine-tuning.
        finetune_epochs: maximum fine-tuning epochs.
        finetune_budget_s: fine-tuning time budget (seconds, checked after each epoch).
        keep_variant: ``"head-only"`` or ``"fine-tuned"`` to override the validation choice (benchmarks,
            tests); None: the variant with the lower validation log loss.
        log: called with progress lines.
        brand_c_grid: candidate C values.
        price_alpha_grid: candidate Ridge alphas.

    Returns:
        ``TrainingResult``.

    Raises:
        ValueError: fewer than two brands in the training side, empty grids, length mismatches.
        ImageError: an image cannot be decoded (filter first).
        ModelError: ``imagenet_classifier_path`` cannot be read.
    """
    if not brand_c_grid or not price_alpha_grid:
        raise ValueError("hyper-parameter grids must not be empty")
    if wild_styles and len(wild_styles) != len(wild):
        raise ValueError(f"{len(wild)} wild photos but {len(wild_styles)} styles")
    say = log or (lambda message: None)
    started = time.perf_counter()
    test_remover = test_remover if test_remover is not None else remover
    labels = np.asarray([s.brand for s in samples])
    groups = [s.group for s in samples]
    styles = [str(x) for x in wild_styles] if wild_styles else ["wild"] * len(wild)
    wild_groups = [f"wild:{s.group}" for s in wild]
    if dedup:
        hashes = [image_hashes(s.load()) for s in (*samples, *wild)]
        merged = merge_near_duplicates([*groups, *wild_groups], [[h[0] for h in hashes], [h[1] for h in hashes]])
        groups, wild_groups = merged[: len(samples)], merged[len(samples) :]
    split = grouped_split(labels.tolist(), groups, seed=seed)
    train, val, test = split.train, split.val, split.test
    wild_split = grouped_split(
        styles, wild_groups, seed=seed, val_fraction=WILD_VAL_FRACTION, test_fraction=WILD_TEST_FRACTION
    )
    # A wild photo joined to catalog photos by a near-duplicate must not be evaluated on its own side.
    catalog_side = {
        g: side for side, rows in (("train", train), ("val", val), ("test", test)) for g in (groups[i] for i in rows)
    }
    wild_side = np.empty(len(wild), dtype=object)
    for side, rows in (("train", wild_split.train), ("val", wild_split.val), ("test", wild_split.test)):
        for i in rows:
            wild_side[i] = catalog_side.get(wild_groups[i], side)
    wild_train = np.flatnonzero(wild_side == "train")
    wild_val = np.flatnonzero(wild_side == "val")
    wild_test = np.flatnonzero(wild_side == "test")
    wild_labels = np.asarray([s.brand for s in wild])

    items = [(s.sha256, s.load) for s in samples]
    if flip_augment:
        vectors, mirrored = embed_images(
            items, backbone=backbone, cache=cache, remover=remover, flip=True, progress=progress
        )
    else:
        vectors = embed_images(items, backbone=backbone, cache=cache, remover=remover, progress=progress)
        mirrored = None
    embedded = time.perf_counter()
    say(f"catalog embedded in {embedded - started:.1f} s")

    # Photos seen as the pipeline sees them (wild, negatives, catalog validation for the detector).
    detector = load_imagenet_detector(imagenet_classifier_path) if imagenet_classifier_path is not None else None
    if detector is not None and detector.dim != backbone.aux_dim:
        # E.g. a tiny test backbone with the real ImageNet classifier: the rule cannot apply.
        say(f"footwear detector reads {detector.dim}-d features, backbone gives {backbone.aux_dim}: rule off")
        detector = None
    square_dir = Path(workdir) / "squares" if workdir is not None else None
    wild_sq = _photo_squares([(s.sha256, s.load) for s in wild], backbone, test_remover, square_dir)
    say(f"wild / negative squares ready at {time.perf_counter() - started:.1f} s")
    wild_raw = _embed_squares(backbone, wild_sq)
    rule = "skip-plain"
    rule_losses: dict[str, float] = {}
    if test_remover is not None and wild_val.size:
        probe, _ = _fit_brand(vectors, mirrored, labels, split, seed, brand_c_grid, extra=None, calibrate=False)
        rule_losses = {
            r: _val_log_loss(probe, wild_raw.normalised(r)[wild_val], wild_labels[wild_val])
            for r in ("skip-plain", "always", "never")
        }
        rule = min(rule_losses, key=lambda r: (rule_losses[r], r != "skip-plain"))
        say(f"background rule by wild validation log loss: {rule_losses} -> {rule}")

    neg_items = [(hashlib.sha256(load()).hexdigest(), load) for load in negatives]
    neg_sq = _photo_squares(neg_items, backbone, test_remover, square_dir, rule) if detector else None
    val_sq = _photo_squares([items[i] for i in val], backbone, test_remover, square_dir, rule) if detector else None
    say(f"negative / validation squares ready at {time.perf_counter() - started:.1f} s")
    candidates: dict[str, dict[str, Any]] = {}
    candidates["head-only"] = _variant(
        "head-only",
        vectors,
        mirrored,
        labels,
        split,
        wild_raw.normalised(rule),
        wild_labels,
        wild_train,
        wild_val,
        seed,
        brand_c_grid,
    )
    candidates["head-only"]["wild_raw"] = wild_raw
    curves: dict[str, Any] = {"head-only": candidates["head-only"]["c_curve"]}
    finetune_info: dict[str, Any] = {}
    finetuned_bytes: bytes | None = None
    if finetune:
        fine = _finetune_variant(
            samples,
            backbone,
            remover,
            labels,
            split,
            vectors,
            mirrored,
            wild_sq,
            wild_raw,
            rule,
            wild_labels,
            wild_train,
            wild_val,
            candidates["head-only"]["head"],
            seed=seed,
            copies=augment_copies,
            epochs=finetune_epochs,
            budget_s=finetune_budget_s,
            workdir=workdir,
            say=say,
        )
        finetune_info = fine["info"]
        curves["fine-tuned"] = fine["info"]["history"]
        variant_fine = _variant(
            "fine-tuned",
            fine["vectors"],
            fine["mirrored"] if flip_augment else None,
            labels,
            split,
            fine["wild_raw"].normalised(rule),
            wild_labels,
            wild_train,
            wild_val,
            seed,
            brand_c_grid,
        )
        variant_fine.update(wild_raw=fine["wild_raw"], vectors=fine["vectors"])
        candidates["fine-tuned"] = variant_fine
        finetuned_bytes = fine["keras_bytes"]
    candidates["head-only"]["vectors"] = vectors
    chosen = min(candidates, key=lambda name: (candidates[name]["val"]["log_loss"], name != "head-only"))
    if keep_variant is not None:
        if keep_variant not in candidates:
            raise ValueError(f"variant {keep_variant!r} was not trained; have {sorted(candidates)}")
        chosen = keep_variant
    best = candidates[chosen]
    say(f"variant by validation log loss: { {k: v['val']['log_loss'] for k, v in candidates.items()} } -> {chosen}")
    head: BrandHead = best["head"]
    final_vectors: np.ndarray = best["vectors"]
    wild_vec = best["wild_raw"].normalised(rule)
    fitted = time.perf_counter()

    # Abstain thresholds on validation.
    val_vec = np.concatenate([final_vectors[val], wild_vec[wild_val]])
    val_lab = np.concatenate([labels[val], wild_labels[wild_val]])
    known = np.isin(val_lab, head.classes)
    val_proba = head.predict_proba(val_vec[known]) if known.any() else np.zeros((0, len(head.classes)))
    val_correct = np.asarray(head.classes)[val_proba.argmax(1)] == val_lab[known] if known.any() else np.zeros(0, bool)
    confidence_threshold = (
        choose_confidence_threshold(val_proba.max(1), val_correct) if known.any() else DEFAULT_CONFIDENCE_THRESHOLD
    )
    # Footwear threshold 0.0 = the rule rejects nothing (no ImageNet classifier given).
    abstain_report: dict[str, Any] = {"confidence_threshold": confidence_threshold, "footwear_threshold": 0.0}
    if known.any():
        accepted = val_proba.max(1) >= confidence_threshold
        abstain_report["val_low_confidence_share"] = float(1 - accepted.mean())
        abstain_report["val_accuracy_answered"] = float(val_correct[accepted].mean()) if accepted.any() else None
    neg_rng = np.random.default_rng([seed, 7])
    neg_order = neg_rng.permutation(len(neg_items))
    neg_tune, neg_hold = np.sort(neg_order[: len(neg_items) // 2]), np.sort(neg_order[len(neg_items) // 2 :])
    if detector is not None:
        val_scores = np.concatenate(
            [detector.score(_embed_squares(backbone, val_sq).aux(rule)), detector.score(wild_raw.aux(rule)[wild_val])]
        )
        neg_scores = detector.score(_embed_squares(backbone, neg_sq).aux(rule)) if neg_sq is not None else np.zeros(0)
        footwear_threshold = choose_footwear_threshold(val_scores)
        abstain_report.update(
            footwear_threshold=footwear_threshold,
            footwear_classes=list(detector.classes),
            val_sneakers_not_footwear=rejection_rates(val_scores, footwear_threshold),
            negatives_rejected_tune=rejection_rates(neg_scores[neg_tune], footwear_threshold),
            negatives_rejected_holdout=rejection_rates(neg_scores[neg_hold], footwear_threshold),
            negatives_tune_n=int(neg_tune.size),
            negatives_holdout_n=int(neg_hold.size),
            rule="reject when ImageNet footwear mass < footwear_threshold (<= 2 % of validation sneakers)",
        )
    abstain_report["confidence_rule"] = (
        f"low_confidence when calibrated top-1 < threshold: smallest threshold with accepted validation accuracy >= "
        f"{TARGET_ACCURACY}, refusing at most {MAX_ABSTAIN} of validation photos"
    )

    # Test metrics.
    test_proba = head.predict_proba(final_vectors[test])
    brand_report = dict(best["report"])
    brand_report.update(brand_metrics(test_proba, labels[test].tolist(), head.classes))
    brand_report.update(_calibration_figures(head, final_vectors[test], labels[test]))
    brand_report["per_brand_precision"] = _precision(test_proba, labels[test], head.classes)
    wild_report: dict[str, Any] = {}
    wild_known = wild_test[np.isin(wild_labels[wild_test], head.classes)]
    for style in sorted({styles[i] for i in wild_known}):
        rows = wild_known[[styles[i] == style for i in wild_known]]
        figures = brand_metrics(head.predict_proba(wild_vec[rows]), wild_labels[rows].tolist(), head.classes)
        figures.update(_calibration_figures(head, wild_vec[rows], wild_labels[rows]))
        conf = head.predict_proba(wild_vec[rows]).max(1)
        figures["answered"] = float(np.mean(conf >= confidence_threshold))
        if detector is not None:
            scores = detector.score(best["wild_raw"].aux(rule)[rows])
            figures["not_footwear_share"] = rejection_rates(scores, abstain_report["footwear_threshold"])
        wild_report[style] = figures
    if wild_report:
        wild_report["counts"] = {"train": int(wild_train.size), "val": int(wild_val.size), "test": int(wild_test.size)}

    price_head, price_report, priced_train, baseline = _fit_price(
        final_vectors, samples, labels, np.asarray(groups), split, price_alpha_grid
    )

    indexed = np.asarray([i for i, s in enumerate(samples) if s.product_id is not None], dtype=np.int64)
    index = SimilarityIndex(
        embeddings=final_vectors[indexed] if indexed.size else np.zeros((0, final_vectors.shape[1]), np.float32),
        product_ids=np.asarray([samples[i].product_id for i in indexed], dtype=np.int64),
    )
    finished = time.perf_counter()
    metadata: dict[str, Any] = {
        "classes": list(head.classes),
        "backbone_fingerprint": backbone.fingerprint,
        "embedding_dim": int(final_vectors.shape[1]),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "preprocessing": PREPROCESSING,
        "backbone_input_size": backbone.input_size,
        "backbone_taps": backbone.config["taps"],
        "background": remover.name if remover is not None else "none",
        "background_rule": rule,
        "flip_augment": flip_augment,
        "brand_C": brand_report["C"],
        "temperature": head.temperature,
        "price_alpha": price_report.get("alpha"),
        "price_baseline": baseline,
        "variant": chosen,
        "abstain": {
            "footwear_threshold": abstain_report["footwear_threshold"],
            "confidence_threshold": confidence_threshold,
        },
        "counts": {"samples": len(samples), "indexed": int(indexed.size), "wild": len(wild)},
    }
    if chosen == "fine-tuned" and finetuned_bytes is not None:
        # As ``Backbone`` fingerprints that file (two outputs: its taps are inside, none added).
        metadata["finetuned_backbone_fingerprint"] = backbone_fingerprint(
            hashlib.sha256(finetuned_bytes).hexdigest()[:FINGERPRINT_LENGTH], backbone.input_size, ()
        )
        metadata["finetune"] = {k: v for k, v in finetune_info.items() if k != "history"}
    artifact = ModelArtifact(
        brand_head=head,
        price_head=price_head,
        index=index,
        metadata=_finite_or_none(metadata),
        footwear=detector,
        backbone_keras=finetuned_bytes if chosen == "fine-tuned" else None,
    )
    metrics = {
        "brand": brand_report,
        "price": price_report,
        "variant": chosen,
        "variants": {name: c["val"] for name, c in candidates.items()},
        "finetune": finetune_info or None,
        "wild": wild_report or None,
        "abstain": abstain_report,
        "background_rule": rule,
        "background_rule_val_log_loss": rule_losses or None,
        "counts": {
            "train": int(train.size),
            "val": int(val.size),
            "test": int(test.size),
            "indexed": int(indexed.size),
            "priced_train": priced_train,
            "wild_train": int(wild_train.size),
            "wild_val": int(wild_val.size),
            "wild_test": int(wild_test.size),
            "negatives": len(neg_items),
        },
        "seconds": {
            "embed": round(embedded - started, 3),
            "fit": round(fitted - embedded, 3),
            "total": round(finished - started, 3),
        },
    }
    shas = [s.sha256 for s in samples]
    split_record = {
        "seed": seed,
        "train": [shas[i] for i in train],
        "val": [shas[i] for i in val],
        "test": [shas[i] for i in test],
        "wild": {
            side: [wild[i].sha256 for i in rows]
            for side, rows in (("train", wild_train), ("val", wild_val), ("test", wild_test))
        },
        "negatives": {"tune": [neg_items[i][0] for i in neg_tune], "holdout": [neg_items[i][0] for i in neg_hold]},
        "dedup": dedup,
    }
    report = _report_pngs(brand_report, curves)
    return TrainingResult(artifact=artifact, metrics=_finite_or_none(metrics), split=split_record, report=report)


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
    *,
    extra: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
    calibrate: bool = True,
) -> tuple[BrandHead, dict[str, Any]]:
    """Fit the brand head on train (+ mirrored, + extra train rows), choose C and temperature on
    validation (catalog val + extra val rows). ``extra = (train_x, train_y, val_x, val_y)``."""
    train, val = split.train, split.val
    features = vectors[train] if mirrored is None else np.concatenate([vectors[train], mirrored[train]])
    targets = labels[train] if mirrored is None else np.concatenate([labels[train], labels[train]])
    val_x, val_y = vectors[val], labels[val]
    if extra is not None:
        features = np.concatenate([features, extra[0]])
        targets = np.concatenate([targets, extra[1]])
        val_x = np.concatenate([val_x, extra[2]])
        val_y = np.concatenate([val_y, extra[3]])
    if np.unique(targets).size < 2:
        raise ValueError("the training side needs at least two brands")
    best: tuple[float, float, BrandHead] | None = None
    curve: list[dict[str, float]] = []
    for c_value in c_grid if val_y.size else (DEFAULT_BRAND_C,):
        head = fit_brand_head(features, targets.tolist(), seed=seed, C=c_value)
        loss = _val_log_loss(head, val_x, val_y) if val_y.size else float("nan")
        curve.append({"C": c_value, "val_log_loss": loss})
        if best is None or loss < best[0]:
            best = (loss, c_value, head)
    assert best is not None
    val_loss, c_value, head = best
    report: dict[str, Any] = {"C": c_value, "val_log_loss": val_loss, "c_curve": curve}
    known = np.isin(val_y, head.classes)
    if calibrate and known.any():
        temperature = fit_temperature(head.logits(val_x[known]), val_y[known].tolist(), head.classes)
        head = head.with_temperature(temperature)
        report["val_log_loss_calibrated"] = _val_log_loss(head, val_x, val_y)
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
) -> tuple[PriceHead | None, dict[str, Any], int, dict[str, Any] | None]:
    """Fit the price head on priced train rows; choose alpha on priced val rows; test metrics; and
    the baseline ``{"per_brand": {brand: median USD}, "global": median USD}`` of training prices."""
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
        return None, report, int(train.size), None
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
    train_labels = labels[train]
    baseline = {
        "per_brand": {
            str(b): float(np.median(prices[train][train_labels == b])) for b in sorted(set(train_labels.tolist()))
        },
        "global": float(np.median(prices[train])),
    }
    return head, report, int(train.size), baseline


def _precision(proba: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> dict[str, float | None]:
    """Precision per class of the top-1 predictions (None when the class is never predicted)."""
    if proba.shape[0] == 0:
        return {}
    predicted = np.asarray(classes)[proba.argmax(1)]
    out: dict[str, float | None] = {}
    for name in classes:
        called = predicted == name
        out[name] = float(np.mean(labels[called] == name)) if called.any() else None
    return out


def _calibration_figures(head: BrandHead, vectors: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
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


def _report_pngs(brand_report: dict[str, Any], curves: dict[str, Any]) -> dict[str, bytes]:
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


@dataclass(eq=False)
class _Squares:
    """``Backbone.input_size`` squares of photos as the pipeline sees them under each background rule."""

    raw: np.ndarray  # (N, S, S, 3) uint8, no background removal
    removed: np.ndarray | None  # (N, S, S, 3) uint8, remover applied (None: no remover)
    plain: np.ndarray  # (N,) bool, has_plain_background


def _rule_pick(rule: str, plain: np.ndarray, has_removed: bool) -> np.ndarray:
    """``(N,) bool``: True where the rule uses the background-removed square."""
    if not has_removed or rule == "never":
        return np.zeros(plain.shape, dtype=bool)
    if rule == "always":
        return np.ones(plain.shape, dtype=bool)
    return ~plain


def _photo_squares(
    items: Sequence[tuple[str, Callable[[], bytes]]],
    backbone: Backbone,
    remover: Remover | None,
    folder: Path | None,
    rule: str | None = None,
) -> _Squares:
    """Squares of photos without and with background removal (cached as ``.npz`` in ``folder``).

    With ``rule`` given, the remover runs only where that rule uses it (elsewhere ``removed`` is a
    copy of ``raw``), which saves ~0.5 s per plain photo."""
    raws, removeds, plains = [], [], []
    tag = remover.name if remover is not None else "none"
    for sha, load in items:
        path = folder / f"{sha}.{tag}.{rule or 'all'}.npz" if folder is not None else None
        if path is not None and path.exists():
            with np.load(path, allow_pickle=False) as stored:
                raws.append(stored["raw"])
                removeds.append(stored["removed"])
                plains.append(bool(stored["plain"]))
            continue
        rgb = load_rgb(load(), max_side=DEFAULT_MAX_SIDE)
        raw = backbone.preprocess(rgb)
        plain = has_plain_background(rgb)
        needed = remover is not None and (rule is None or rule == "always" or (rule == "skip-plain" and not plain))
        removed = backbone.preprocess(remove_background(rgb, remover, skip_plain=False).image) if needed else raw
        raws.append(raw)
        removeds.append(removed)
        plains.append(plain)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
            with os.fdopen(handle, "wb") as stream:
                np.savez(stream, raw=raw, removed=removed, plain=np.asarray(plain))
            os.replace(temp, path)
    side = backbone.input_size
    empty = np.zeros((0, side, side, 3), np.uint8)
    return _Squares(
        raw=np.stack(raws) if raws else empty,
        removed=(np.stack(removeds) if removeds else empty) if remover is not None else None,
        plain=np.asarray(plains, dtype=bool),
    )


@dataclass(eq=False)
class _Embedded:
    """Raw embeddings and aux (original ImageNet) features of ``_Squares`` under each square kind."""

    raw: dict[str, np.ndarray]
    aux_features: dict[str, np.ndarray]
    plain: np.ndarray

    def _pick(self, table: dict[str, np.ndarray], rule: str) -> np.ndarray:
        use_removed = _rule_pick(rule, self.plain, "removed" in table)
        base = table["raw"].copy()
        if use_removed.any():
            base[use_removed] = table["removed"][use_removed]
        return base

    def descriptors(self, rule: str) -> np.ndarray:
        """``(N, D) float32`` raw (un-normalised) embeddings under ``rule``."""
        return self._pick(self.raw, rule)

    def normalised(self, rule: str) -> np.ndarray:
        """``(N, D) float32`` L2-normalised embeddings under ``rule``."""
        return l2_normalise(self.descriptors(rule))

    def aux(self, rule: str) -> np.ndarray:
        """``(N, D0) float32`` original ImageNet pooled features under ``rule``."""
        return self._pick(self.aux_features, rule)


def _embed_squares(backbone: Backbone, squares: _Squares) -> _Embedded:
    """Raw embeddings and aux features of ``squares`` under each square kind (raw, removed)."""
    raw, aux = backbone.embed_raw(squares.raw)
    tables_raw, tables_aux = {"raw": raw}, {"raw": aux}
    if squares.removed is not None:
        tables_raw["removed"], tables_aux["removed"] = backbone.embed_raw(squares.removed)
    return _Embedded(raw=tables_raw, aux_features=tables_aux, plain=squares.plain)


def _variant(
    name: str,
    vectors: np.ndarray,
    mirrored: np.ndarray | None,
    labels: np.ndarray,
    split: Split,
    wild_vec: np.ndarray,
    wild_labels: np.ndarray,
    wild_train: np.ndarray,
    wild_val: np.ndarray,
    seed: int,
    c_grid: Sequence[float],
) -> dict[str, Any]:
    """Fit the brand head of one variant; validation figures on catalog val + wild val."""
    extra = (wild_vec[wild_train], wild_labels[wild_train], wild_vec[wild_val], wild_labels[wild_val])
    head, report = _fit_brand(vectors, mirrored, labels, split, seed, c_grid, extra=extra)
    val_x = np.concatenate([vectors[split.val], wild_vec[wild_val]])
    val_y = np.concatenate([labels[split.val], wild_labels[wild_val]])
    known = np.isin(val_y, head.classes)
    figures: dict[str, Any] = {"n": int(known.sum()), "log_loss": report["val_log_loss_calibrated"]}
    if known.any():
        proba = head.predict_proba(val_x[known])
        correct = np.asarray(head.classes)[proba.argmax(1)] == val_y[known]
        figures["top1"] = float(correct.mean())
        figures["ece"] = expected_calibration_error(proba.max(1), correct)
        wild_known = wild_val[np.isin(wild_labels[wild_val], head.classes)]
        if wild_known.size:
            wild_proba = head.predict_proba(wild_vec[wild_known])
            figures["wild_top1"] = float(
                np.mean(np.asarray(head.classes)[wild_proba.argmax(1)] == wild_labels[wild_known])
            )
    if figures["log_loss"] is None:
        figures["log_loss"] = float("inf")
    c_curve = report.pop("c_curve")
    return {"name": name, "head": head, "report": report, "val": figures, "c_curve": c_curve}


def _finetune_variant(
    samples: Sequence[TrainingSample],
    backbone: Backbone,
    remover: Remover | None,
    labels: np.ndarray,
    split: Split,
    vectors: np.ndarray,
    mirrored: np.ndarray | None,
    wild_sq: _Squares,
    wild_base: _Embedded,
    rule: str,
    wild_labels: np.ndarray,
    wild_train: np.ndarray,
    wild_val: np.ndarray,
    head: BrandHead,
    *,
    seed: int,
    copies: int,
    epochs: int,
    budget_s: float,
    workdir: Path | None,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Fine-tune the top of the backbone on cached trunk activations (``worker.ml.finetune``).

    ``vectors`` / ``mirrored`` (``(N, D)``, L2-normalised) and ``wild_base`` are the head-only
    embeddings of the same photos: the taps of the multi-level descriptor come from the frozen trunk,
    so their part of the descriptor is taken from there and only the pooled part is recomputed."""
    from worker.ml.augment import augment_photo
    from worker.ml.finetune import (
        build_dual_model,
        clone_top,
        finetune_top,
        split_backbone,
        top_embeddings,
        trunk_activations,
    )

    started = time.perf_counter()
    scale = tap_scale(backbone.taps)
    trunk, top_original, cut = split_backbone(backbone.model)
    top = clone_top(top_original)
    train_set = set(split.train.tolist())
    tag = f"{backbone.fingerprint}-{cut}-k{copies}-s{seed}-{remover.name if remover is not None else 'none'}"
    folder = Path(workdir) / "activations" / tag if workdir is not None else None
    clean, flipped, augmented, augmented_labels = [], [], [], []
    for i, sample in enumerate(samples):
        path = folder / f"{sample.sha256}.{'t' if i in train_set else 'o'}.npy" if folder is not None else None
        if path is not None and path.exists():
            stack = np.load(path, allow_pickle=False)
        else:
            rgb = load_rgb(sample.load(), max_side=DEFAULT_MAX_SIDE)
            if remover is not None:
                rgb = remove_background(rgb, remover, skip_plain=True).image
            square = backbone.preprocess(rgb)
            squares = [square]
            if i in train_set:
                squares.append(np.ascontiguousarray(square[:, ::-1]))
                squares += [
                    augment_photo(rgb, np.random.default_rng([seed, i, k]), size=backbone.input_size)
                    for k in range(copies)
                ]
            stack = trunk_activations(trunk, np.stack(squares))
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, stack)
        clean.append(stack[0])
        if i in train_set:
            flipped.append(stack[1])
            augmented.extend(stack[2:])
            augmented_labels.extend([labels[i]] * (stack.shape[0] - 2))
        if (i + 1) % 500 == 0:
            say(f"  trunk activations {i + 1}/{len(samples)} ({time.perf_counter() - started:.0f} s)")
    clean_acts = np.stack(clean)
    flip_acts = np.stack(flipped) if flipped else clean_acts[:0]
    use_removed = _rule_pick(rule, wild_sq.plain, wild_sq.removed is not None)
    wild_squares = wild_sq.raw.copy()
    if use_removed.any() and wild_sq.removed is not None:
        wild_squares[use_removed] = wild_sq.removed[use_removed]
    wild_acts = trunk_activations(trunk, wild_squares) if len(wild_squares) else clean_acts[:0]
    acts_seconds = time.perf_counter() - started
    say(f"activations ready in {acts_seconds:.0f} s")
    index = {name: i for i, name in enumerate(head.classes)}
    train = split.train[np.isin(labels[split.train], head.classes)]
    train_set_known = set(train.tolist())
    keep_flip = [j for j, i in enumerate(split.train) if i in train_set_known]
    aug_array = np.stack(augmented) if augmented else clean_acts[:0]
    aug_keep = np.isin(np.asarray(augmented_labels), head.classes) if augmented else np.zeros(0, bool)
    wild_train_known = wild_train[np.isin(wild_labels[wild_train], head.classes)]
    train_x = np.concatenate(
        [clean_acts[train], flip_acts[keep_flip], aug_array[aug_keep], wild_acts[wild_train_known]]
    )
    train_y = np.asarray(
        [
            index[b]
            for b in [
                *labels[train],
                *labels[split.train][keep_flip],
                *np.asarray(augmented_labels)[aug_keep],
                *wild_labels[wild_train_known],
            ]
        ],
        dtype=np.int64,
    )
    val_rows = split.val[np.isin(labels[split.val], head.classes)]
    wild_val_known = wild_val[np.isin(wild_labels[wild_val], head.classes)]
    val_x = np.concatenate([clean_acts[val_rows], wild_acts[wild_val_known]])
    val_y = np.asarray([index[b] for b in [*labels[val_rows], *wild_labels[wild_val_known]]], dtype=np.int64)
    fit_started = time.perf_counter()
    report = finetune_top(
        top,
        train_x,
        train_y,
        val_x,
        val_y,
        n_classes=len(head.classes),
        # The softmax layer sees the pooled part only; scaled to its share of the descriptor.
        head_weights=head.weights[: backbone.top_dim] / scale,
        head_bias=head.bias,
        seed=seed,
        epochs=epochs,
        time_budget_s=budget_s,
        progress=say,
    )
    fit_seconds = time.perf_counter() - fit_started
    top_dim = backbone.top_dim

    def joined(tuned: np.ndarray, descriptors: np.ndarray) -> np.ndarray:
        """Fine-tuned pooled part + the taps of raw head-only descriptors, as ``build_dual_model``."""
        return np.concatenate([l2_normalise(tuned), descriptors[:, top_dim:]], axis=1)

    tuned_vectors = l2_normalise(joined(top_embeddings(top, clean_acts), vectors * scale))
    tuned_mirrored = np.zeros_like(tuned_vectors)
    if flipped and mirrored is not None:
        tuned_flips = joined(top_embeddings(top, flip_acts), mirrored[split.train] * scale)
        tuned_mirrored[split.train] = l2_normalise(tuned_flips)
    wild_raw_ft = joined(top_embeddings(top, wild_acts), wild_base.descriptors(rule))
    wild_aux = top_embeddings(top_original, wild_acts)
    # One table under the chosen rule ("raw" kind, whatever the rule picked per photo).
    wild_embedded = _Embedded(raw={"raw": wild_raw_ft}, aux_features={"raw": wild_aux}, plain=wild_sq.plain)
    dual = build_dual_model(backbone.model, cut, top, backbone.taps)
    with tempfile.TemporaryDirectory() as temp:
        model_path = Path(temp) / "backbone.keras"
        dual.save(model_path)
        keras_bytes = model_path.read_bytes()

    info = {
        "cut_layer": cut,
        "augment_copies": copies,
        "train_rows": int(train_x.shape[0]),
        "val_rows": int(val_x.shape[0]),
        "best_epoch": report.best_epoch,
        "stopped": report.stopped,
        "start_val_log_loss": report.start_val_log_loss,
        "history": report.history,
        "seconds_activations": round(acts_seconds, 1),
        "seconds_training": round(fit_seconds, 1),
        "seconds_total": round(time.perf_counter() - started, 1),
    }
    return {
        "vectors": tuned_vectors,
        "mirrored": tuned_mirrored,
        "wild_raw": wild_embedded,
        "keras_bytes": keras_bytes,
        "info": info,
    }
