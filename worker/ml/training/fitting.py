"""Stage 3, fitting: brand and model heads, background rule, abstain thresholds, open-set rule, price head.

Every fitted head is chosen and calibrated on validation photos only (catalog validation + wild
validation); test photos are never seen here. Heads weigh classes by ``TrainingConfig.class_weight``
(balanced by default: asics has 51 photos, nike thousands; ``worker.ml.heads.class_weights``).
Temperature scaling: Guo et al., "On Calibration of Modern Neural Networks", ICML 2017.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from worker.ml.abstain import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    MAX_ABSTAIN,
    TARGET_ACCURACY,
    FootwearDetector,
    choose_confidence_threshold,
    choose_footwear_threshold,
    rejection_rates,
)
from worker.ml.heads import (
    DEFAULT_BRAND_C,
    DEFAULT_PRICE_ALPHA,
    BrandHead,
    ModelHead,
    PriceHead,
    fit_brand_head,
    fit_price_head,
    fit_temperature,
)
from worker.ml.metrics import (
    classification_metrics,
    expected_calibration_error,
    log_loss_rows,
    price_metrics,
)
from worker.ml.pipeline import BACKGROUND_RULES
from worker.ml.training.config import MIN_PRICED_TRAIN, TrainingConfig, TrainingSample
from worker.ml.training.photos import Embedded
from worker.ml.training.splits import Split
from worker.ml.unknown_brand import OPEN_SET_FITTERS, UnknownBrandRule, choose_known_threshold, resolve_kind


def val_log_loss_rows(head: BrandHead, vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(K,) float64`` per-row log loss (``worker.ml.metrics.log_loss_rows``, nats) of ``head`` on the
    ``(N, D)`` rows whose label it knows, in their order (``K = 0`` when none)."""
    known = np.isin(labels, head.classes)
    if not known.any():
        return np.zeros(0, dtype=np.float64)
    index = {name: i for i, name in enumerate(head.classes)}
    truth = np.asarray([index[label] for label in labels[known]], dtype=np.int64)
    return log_loss_rows(head.predict_proba(vectors[known]), truth)


def val_log_loss(head: BrandHead, vectors: np.ndarray, labels: np.ndarray) -> float:
    """Log loss (the mean of ``val_log_loss_rows``) of ``head`` on the ``(N, D)`` rows whose label it knows
    (NaN when none)."""
    rows = val_log_loss_rows(head, vectors, labels)
    return float(rows.mean()) if rows.size else float("nan")


@dataclass(frozen=True, eq=False)
class HeadFit:
    """A softmax head chosen on validation.

    Attributes:
        head: the head, temperature-calibrated when validation rows were available.
        C: the chosen inverse L2 strength.
        val_log_loss: validation log loss before calibration (NaN without validation rows).
        val_log_loss_calibrated: after calibration, or None when not calibrated.
        c_curve: ``[{"C", "val_log_loss"}]`` per C tried.
    """

    head: BrandHead
    C: float
    val_log_loss: float
    val_log_loss_calibrated: float | None
    c_curve: list[dict[str, float]] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        """``{"C", "val_log_loss", "val_log_loss_calibrated", "temperature"}``."""
        return {
            "C": self.C,
            "val_log_loss": self.val_log_loss,
            "val_log_loss_calibrated": self.val_log_loss_calibrated,
            "temperature": self.head.temperature,
        }


def fit_classifier(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    *,
    config: TrainingConfig,
    calibrate: bool = True,
    c_grid: tuple[float, ...] | None = None,
) -> HeadFit:
    """Fit a softmax head (``fit_brand_head``) per C of ``c_grid`` (default ``config.brand_c_grid``), keep the
    lowest validation log loss, then fit its temperature on the validation rows it knows (Guo et al. 2017).

    Args:
        train_x: ``(N, D) float32`` L2-normalised rows; train_y: ``(N,)`` labels.
        val_x: ``(M, D)`` validation rows; val_y: ``(M,)`` labels (labels unknown to the head ignored).
        config: seed, C grid and class weighting.
        calibrate: fit the temperature (False: T = 1).
        c_grid: the C values tried (None: ``config.brand_c_grid``).

    Raises:
        ValueError: fewer than two distinct training labels.
    """
    if np.unique(train_y).size < 2:
        raise ValueError("the training side needs at least two classes")
    best: tuple[float, float, BrandHead] | None = None
    curve: list[dict[str, float]] = []
    for c_value in (c_grid or config.brand_c_grid) if val_y.size else (DEFAULT_BRAND_C,):
        head = fit_brand_head(
            train_x, train_y.tolist(), seed=config.seed, C=c_value, class_weight=config.head_class_weight
        )
        loss = val_log_loss(head, val_x, val_y) if val_y.size else float("nan")
        curve.append({"C": c_value, "val_log_loss": loss})
        if best is None or loss < best[0]:
            best = (loss, c_value, head)
    assert best is not None
    loss, c_value, head = best
    calibrated = None
    known = np.isin(val_y, head.classes)
    if calibrate and known.any():
        head = head.with_temperature(fit_temperature(head.logits(val_x[known]), val_y[known].tolist(), head.classes))
        calibrated = val_log_loss(head, val_x, val_y)
    return HeadFit(head=head, C=c_value, val_log_loss=loss, val_log_loss_calibrated=calibrated, c_curve=curve)


def catalog_training_rows(
    vectors: np.ndarray, mirrored: np.ndarray | None, values: np.ndarray, split: Split
) -> tuple[np.ndarray, np.ndarray]:
    """Catalog training rows and their ``values`` (labels): ``vectors[train]`` plus the mirrored rows."""
    train = split.train
    if mirrored is None:
        return vectors[train], values[train]
    return np.concatenate([vectors[train], mirrored[train]]), np.concatenate([values[train], values[train]])


@dataclass(frozen=True, eq=False)
class VariantFit:
    """The brand head of one embedding variant (``head-only`` or ``fine-tuned``) and its validation figures.

    Attributes:
        name: the variant.
        fit: the brand ``HeadFit``.
        val: ``{"n", "log_loss", "top1", "ece", "wild_top1"}`` on catalog + wild validation rows.
        vectors: ``(N, D) float32`` L2-normalised catalog embeddings of this variant.
        mirrored: ``(N, D)`` mirrored catalog embeddings (train rows), or None without flips.
        wild: the wild photos' embeddings of this variant (``Embedded``).
    """

    name: str
    fit: HeadFit
    val: dict[str, Any]
    vectors: np.ndarray
    mirrored: np.ndarray | None
    wild: Embedded


def fit_variant(
    name: str,
    vectors: np.ndarray,
    mirrored: np.ndarray | None,
    labels: np.ndarray,
    split: Split,
    wild: Embedded,
    rule: str,
    wild_labels: np.ndarray,
    wild_train: np.ndarray,
    wild_val: np.ndarray,
    config: TrainingConfig,
) -> VariantFit:
    """Fit the brand head of one variant on catalog train (+ mirrored) + wild train; validation figures on
    catalog val + wild val (wild photos embedded under background ``rule``)."""
    wild_vec = wild.normalised(rule)
    train_x, train_y = catalog_training_rows(vectors, mirrored, labels, split)
    train_x = np.concatenate([train_x, wild_vec[wild_train]])
    train_y = np.concatenate([train_y, wild_labels[wild_train]])
    val_x = np.concatenate([vectors[split.val], wild_vec[wild_val]])
    val_y = np.concatenate([labels[split.val], wild_labels[wild_val]])
    fit = fit_classifier(train_x, train_y, val_x, val_y, config=config)
    head = fit.head
    known = np.isin(val_y, head.classes)
    figures: dict[str, Any] = {"n": int(known.sum()), "log_loss": fit.val_log_loss_calibrated}
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
    return VariantFit(name=name, fit=fit, val=figures, vectors=vectors, mirrored=mirrored, wild=wild)


@dataclass(frozen=True, eq=False)
class RuleChoice:
    """The test-time background rule and the validation figures that chose it.

    Attributes:
        rule: one of ``BACKGROUND_RULES``.
        losses: ``{rule: mean log loss in nats}`` of the probe head on the wild validation photos.
        standard_errors: ``{rule: standard error of the mean per-photo loss difference with the
            lowest-loss rule}`` (0 for that rule itself).
        lowest: the rule with the lowest mean loss.
    """

    rule: str
    losses: dict[str, float]
    standard_errors: dict[str, float]
    lowest: str


def choose_background_rule(
    vectors: np.ndarray,
    mirrored: np.ndarray | None,
    labels: np.ndarray,
    split: Split,
    wild: Embedded,
    wild_labels: np.ndarray,
    wild_val: np.ndarray,
    config: TrainingConfig,
) -> RuleChoice:
    """The test-time background rule, chosen on the wild validation photos by the log loss of a
    catalog-only, uncalibrated brand head (the probe).

    One-standard-error rule (Breiman, Friedman, Olshen and Stone, "Classification and Regression Trees",
    1984; Hastie, Tibshirani and Friedman, "The Elements of Statistical Learning", 2nd ed., section 7.10):
    ``skip-plain`` is kept instead of ``always`` unless ``always``'s mean loss is lower by more than the
    standard error of the mean per-photo difference (``std(ddof=1) / sqrt(n)``, the photos paired), since
    ``always`` costs one more U^2-Net-p run on every plain-background photo. ``never`` is chosen only when its
    loss is the lowest, since it also gives up the cut-out that the result page shows.

    Args:
        vectors: ``(N, D) float32`` catalog embeddings; ``mirrored`` their flipped copies or None.
        labels: ``(N,)`` brand labels; ``split`` the catalog split.
        wild: the wild photos embedded under each rule; ``wild_labels`` ``(M,)`` their brands,
            ``wild_val`` ``(V,) int`` the validation rows.
        config: training configuration (the probe's C).

    Returns:
        ``RuleChoice``; with no validation photo the probe knows, ``skip-plain`` and NaN losses.
    """
    train_x, train_y = catalog_training_rows(vectors, mirrored, labels, split)
    probe = fit_classifier(train_x, train_y, vectors[split.val], labels[split.val], config=config, calibrate=False).head
    rows = {r: val_log_loss_rows(probe, wild.normalised(r)[wild_val], wild_labels[wild_val]) for r in BACKGROUND_RULES}
    n = rows["skip-plain"].size  # the same photos under every rule
    if n == 0:
        nan = {r: float("nan") for r in BACKGROUND_RULES}
        return RuleChoice("skip-plain", nan, dict(nan), "skip-plain")
    losses = {r: float(v.mean()) for r, v in rows.items()}
    lowest = min(losses, key=lambda r: (losses[r], r != "skip-plain"))
    errors = {r: float(np.std(rows[r] - rows[lowest], ddof=1) / np.sqrt(n)) if n > 1 else 0.0 for r in BACKGROUND_RULES}
    rule = lowest
    if lowest == "always" and losses["skip-plain"] - losses["always"] <= errors["skip-plain"]:
        rule = "skip-plain"
    return RuleChoice(rule, losses, errors, lowest)


@dataclass(frozen=True, eq=False)
class ModelHeadFit:
    """The model head (or None) and its report.

    Attributes:
        head: ``ModelHead`` with its "not sure" threshold, or None (fewer than two models with
            ``config.model_min_photos`` training photos).
        report: ``{"classes", "min_photos", "C", "temperature", "threshold", "val_uncertain_share",
            "val_accuracy_sure", "counts": {model: training photos}}`` (or ``{"reason"}`` without a head).
    """

    head: ModelHead | None
    report: dict[str, Any]


def fit_model_head(
    train_x: np.ndarray,
    train_models: np.ndarray,
    train_brands: np.ndarray,
    val_x: np.ndarray,
    val_models: np.ndarray,
    *,
    config: TrainingConfig,
    photo_counts: Counter[str],
) -> ModelHeadFit:
    """Fit the model head: softmax over named models with at least ``config.model_min_photos`` training
    photos, C (``config.model_c_grid``) and temperature on validation as the brand head, and its "not sure" threshold by
    ``choose_confidence_threshold`` (``config.model_target_accuracy``, ``config.model_max_uncertain``).

    Args:
        train_x: ``(N, D) float32`` training rows (catalog train + mirrored + wild train).
        train_models: ``(N,)`` object, each row's model name or None; train_brands: ``(N,)`` brands.
        val_x: ``(M, D)`` validation rows; val_models: ``(M,)`` their model names or None.
        config: the run's config.
        photo_counts: training photos per model name (un-mirrored), which decide the classes.
    """
    eligible = sorted(m for m, n in photo_counts.items() if n >= config.model_min_photos)
    if len(eligible) < 2:
        reason = f"fewer than two named models with >= {config.model_min_photos} training photos"
        return ModelHeadFit(None, {"reason": reason, "min_photos": config.model_min_photos})
    keep = np.isin(train_models, eligible)
    keep_val = np.isin(val_models, eligible)
    fit = fit_classifier(
        train_x[keep],
        train_models[keep].astype(str),
        val_x[keep_val],
        val_models[keep_val].astype(str),
        config=config,
        c_grid=config.model_c_grid,
    )
    brand_of: dict[str, str] = {}
    for model in fit.head.classes:
        brands = Counter(train_brands[keep][train_models[keep] == model].tolist())
        brand_of[model] = min(brands, key=lambda b: (-brands[b], b))
    report: dict[str, Any] = {**fit.report(), "classes": len(fit.head.classes), "min_photos": config.model_min_photos}
    report["counts"] = {m: int(photo_counts[m]) for m in fit.head.classes}
    threshold = 0.0
    if keep_val.any():
        proba = fit.head.predict_proba(val_x[keep_val])
        correct = np.asarray(fit.head.classes)[proba.argmax(1)] == val_models[keep_val].astype(str)
        threshold = choose_confidence_threshold(
            proba.max(1),
            correct,
            target_accuracy=config.model_target_accuracy,
            max_abstain=config.model_max_uncertain,
        )
        sure = proba.max(1) >= threshold
        report["val_n"] = int(keep_val.sum())
        report["val_top1"] = float(correct.mean())
        report["val_uncertain_share"] = float(1.0 - sure.mean())
        report["val_accuracy_sure"] = float(correct[sure].mean()) if sure.any() else None
    report["threshold"] = threshold
    head = ModelHead(classifier=fit.head, brands=tuple(brand_of[m] for m in fit.head.classes), threshold=threshold)
    return ModelHeadFit(head, report)


def model_test_metrics(head: ModelHead, test_x: np.ndarray, test_models: np.ndarray) -> dict[str, Any]:
    """``classification_metrics`` (top-1/3/5, log loss, ECE, per-model recall, confusion) of the model head on
    the test rows whose model is one of its classes, plus ``uncertain_share`` and ``top1_sure``."""
    known = np.isin(test_models, head.classes)
    proba = head.predict_proba(test_x[known]) if known.any() else np.zeros((0, len(head.classes)), np.float32)
    truth = test_models[known].astype(str).tolist()
    figures = classification_metrics(proba, truth, head.classes)
    if known.any():
        sure = proba.max(1) >= head.threshold
        correct = np.asarray(head.classes)[proba.argmax(1)] == np.asarray(truth)
        figures["uncertain_share"] = float(1.0 - sure.mean())
        figures["top1_sure"] = float(correct[sure].mean()) if sure.any() else None
    return figures


@dataclass(frozen=True, eq=False)
class AbstainFit:
    """Thresholds of the ``not_footwear`` and ``low_confidence`` rules and their validation figures.

    Attributes:
        confidence_threshold: calibrated top-1 brand probability below which ``low_confidence``.
        footwear_threshold: ImageNet footwear mass below which ``not_footwear`` (0.0: rule off).
        report: JSON-ready figures (shares refused on validation, negatives tuned / held out).
    """

    confidence_threshold: float
    footwear_threshold: float
    report: dict[str, Any]


def fit_abstain(
    head: BrandHead,
    val_x: np.ndarray,
    val_y: np.ndarray,
    *,
    detector: FootwearDetector | None,
    val_features: np.ndarray | None,
    negative_features: np.ndarray | None,
    negatives_tune: np.ndarray,
    negatives_hold: np.ndarray,
) -> AbstainFit:
    """Choose the abstain thresholds on validation (``worker.ml.abstain``).

    ``confidence_threshold`` by ``choose_confidence_threshold`` on the validation rows the head knows;
    ``footwear_threshold`` (with a detector) by ``choose_footwear_threshold`` on the validation sneakers'
    original ImageNet features ``val_features`` ``(M, D0)``, reporting the share of the tuning and the
    held-out negatives (``negative_features`` ``(K, D0)``) it rejects.
    """
    known = np.isin(val_y, head.classes)
    val_proba = head.predict_proba(val_x[known]) if known.any() else np.zeros((0, len(head.classes)))
    val_correct = np.asarray(head.classes)[val_proba.argmax(1)] == val_y[known] if known.any() else np.zeros(0, bool)
    confidence_threshold = (
        choose_confidence_threshold(val_proba.max(1), val_correct) if known.any() else DEFAULT_CONFIDENCE_THRESHOLD
    )
    # Footwear threshold 0.0 = the rule rejects nothing (no ImageNet classifier given).
    report: dict[str, Any] = {"confidence_threshold": confidence_threshold, "footwear_threshold": 0.0}
    if known.any():
        accepted = val_proba.max(1) >= confidence_threshold
        report["val_low_confidence_share"] = float(1 - accepted.mean())
        report["val_accuracy_answered"] = float(val_correct[accepted].mean()) if accepted.any() else None
    footwear_threshold = 0.0
    if detector is not None and val_features is not None:
        val_scores = detector.score(val_features)
        neg_scores = detector.score(negative_features) if negative_features is not None else np.zeros(0)
        footwear_threshold = choose_footwear_threshold(val_scores)
        report.update(
            footwear_threshold=footwear_threshold,
            footwear_classes=list(detector.classes),
            val_sneakers_not_footwear=rejection_rates(val_scores, footwear_threshold),
            negatives_rejected_tune=rejection_rates(neg_scores[negatives_tune], footwear_threshold),
            negatives_rejected_holdout=rejection_rates(neg_scores[negatives_hold], footwear_threshold),
            negatives_tune_n=int(negatives_tune.size),
            negatives_holdout_n=int(negatives_hold.size),
            rule="reject when ImageNet footwear mass < footwear_threshold (<= 2 % of validation sneakers)",
        )
    report["confidence_rule"] = (
        f"low_confidence when calibrated top-1 < threshold: smallest threshold with accepted validation accuracy >= "
        f"{TARGET_ACCURACY}, refusing at most {MAX_ABSTAIN} of validation photos"
    )
    return AbstainFit(confidence_threshold, footwear_threshold, report)


@dataclass(frozen=True, eq=False)
class UnknownBrandFit:
    """The ``unknown_brand`` rule (or None) and its validation figures."""

    rule: UnknownBrandRule | None
    report: dict[str, Any]


def fit_unknown_brand(
    head: BrandHead,
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    *,
    config: TrainingConfig,
    train_styles: np.ndarray | None = None,
    val_styles: np.ndarray | None = None,
) -> UnknownBrandFit:
    """Fit the open-set scorer ``config.open_set`` (``OPEN_SET_FITTERS``) on the training rows of known
    brands and choose its threshold on known-brand validation rows so that
    ``config.open_set_max_known_reject`` of them are refused (``choose_known_threshold``).

    Args:
        head: the chosen (calibrated) brand head; its uncalibrated logits feed the scorer.
        train_x: ``(N, D)`` training rows (un-mirrored); train_y: ``(N,)`` brands.
        val_x: ``(M, D)`` validation rows; val_y: ``(M,)`` brands (rows of brands the head lacks are
            reported as unknown-brand photos refused, not used for the threshold).
        config: ``open_set``, ``open_set_max_known_reject``, ``seed``.
        train_styles, val_styles: ``(N,)`` / ``(M,)`` photo styles of the rows (``"real-world"``,
            ``"product-shot"``, ``""``), for scorers with a threshold per style; None: unknown.

    Raises:
        ValueError: ``config.open_set`` is not a registered kind (``resolve_kind``).
    """
    if config.open_set is None:
        return UnknownBrandFit(None, {"kind": None, "reason": "open_set is None"})
    resolve_kind(config.open_set)
    known_train = np.isin(train_y, head.classes)
    known_val = np.isin(val_y, head.classes)
    scorer = OPEN_SET_FITTERS[config.open_set](
        train_x[known_train],
        train_y[known_train],
        val_x[known_val],
        val_y[known_val],
        head,
        seed=config.seed,
        max_known_reject=config.open_set_max_known_reject,
        train_styles=None if train_styles is None else [str(x) for x in train_styles[known_train]],
        val_styles=None if val_styles is None else [str(x) for x in val_styles[known_val]],
    )
    known = np.isin(val_y, head.classes)
    report: dict[str, Any] = {"kind": config.open_set, "max_known_reject": config.open_set_max_known_reject}
    scores = np.asarray(scorer.score(val_x, head.logits(val_x)), dtype=np.float64) if val_y.size else np.zeros(0)
    threshold = choose_known_threshold(scores[known], max_known_reject=config.open_set_max_known_reject)
    report["threshold"] = threshold
    report["val_known_n"] = int(known.sum())
    if threshold is None:
        report["reason"] = "too few known-brand validation photos to refuse any"
        return UnknownBrandFit(None, report)
    report["val_known_refused"] = rejection_rates(scores[known], threshold)
    if (~known).any():
        report["val_unknown_n"] = int((~known).sum())
        report["val_unknown_refused"] = rejection_rates(scores[~known], threshold)
    return UnknownBrandFit(UnknownBrandRule(scorer=scorer, threshold=threshold), report)


@dataclass(frozen=True, eq=False)
class PriceFit:
    """The price head (or None), its test report, priced training rows and the per-brand median baseline."""

    head: PriceHead | None
    report: dict[str, Any]
    priced_train: int
    baseline: dict[str, Any] | None


def fit_price(
    vectors: np.ndarray,
    samples: Sequence[TrainingSample],
    labels: np.ndarray,
    groups: np.ndarray,
    split: Split,
    alpha_grid: Sequence[float],
) -> PriceFit:
    """Fit the price head (Ridge on log USD, ``worker.ml.heads.fit_price_head``) on priced catalog train
    rows; choose alpha by MAE (USD) on priced validation rows; test metrics (``price_metrics``) and the
    baseline ``{"per_brand": {brand: median USD}, "global": median USD}`` of training prices.

    Args:
        vectors: ``(N, D) float32`` L2-normalised catalog embeddings.
        samples: the N catalog samples (their ``price_usd``).
        labels: ``(N,)`` brands; groups: ``(N,)`` split groups; split: the catalog split.
        alpha_grid: Ridge strengths tried.
    """
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
        return PriceFit(None, report, int(train.size), None)
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
    return PriceFit(head, report, int(train.size), baseline)
