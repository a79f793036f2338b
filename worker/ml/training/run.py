"""``train_model``: the training stages in order, from photos to a ``ModelArtifact`` and its report.

Stages (each a module of this package, each returning a dataclass):

1. ``splits.plan_splits``: product-grouped, near-duplicate-merged, brand-stratified catalog split;
   wild photos by style (the test part held out); negatives half tuning, half held out.
2. ``augmentation.embed_catalog``: catalog embeddings (cached) and their mirrors; ``photos``: wild,
   negative and validation photos as ``Pipeline`` prepares them under each background rule.
3. ``fitting``: background rule, brand head (C and temperature on validation), variant choice, model
   head, abstain thresholds, ``unknown_brand`` rule, price head.
4. ``finetuning.finetune_variant`` (``config.finetune``): the fine-tuned variant, kept when its
   calibrated validation log loss is lower.
5. ``reporting``: test figures (catalog test side, wild test per style) and plots.

Progress: ``train_model(stage_progress=...)`` is called as ``(stage, done, total)`` with the names of
``STAGES``, so a caller can show how far a long run is (the registry writes it to a ``TrainingRun`` row).

Deterministic for a given seed, backbone, config and data: the split uses a seeded NumPy generator,
lbfgs and Ridge are deterministic, and embeddings do not depend on batch order.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.ml.abstain import load_imagenet_detector
from worker.ml.artifact import ModelArtifact
from worker.ml.background import Remover, remover_cache_key
from worker.ml.embeddings import EmbeddingCache
from worker.ml.preprocessing import FINGERPRINT_LENGTH, PREPROCESSING, BackboneSpec, backbone_fingerprint
from worker.ml.similarity import build_index
from worker.ml.training.augmentation import embed_catalog
from worker.ml.training.config import TrainingConfig, TrainingData, TrainingSample
from worker.ml.training.fitting import (
    VariantFit,
    catalog_training_rows,
    choose_background_rule,
    fit_abstain,
    fit_model_head,
    fit_price,
    fit_unknown_brand,
    fit_variant,
    model_test_metrics,
)
from worker.ml.training.listing import fit_listing_text
from worker.ml.training.photos import embed_squares, photo_squares
from worker.ml.training.reporting import brand_test_report, finite_or_none, report_pngs, wild_test_report
from worker.ml.training.splits import plan_splits

if TYPE_CHECKING:
    from worker.ml.backbone import Backbone


STAGES = ("splitting", "embedding", "preparing", "fitting", "augmenting", "fine-tuning", "finishing")
"""Stage names ``train_model`` reports to ``stage_progress``, in the order they run; ``done`` / ``total`` count:
splitting 0/1 then 1/1; embedding: catalog photos (cache hits included); preparing: wild, negative and
validation photos squared as the pipeline sees them; fitting: the head-only variant (0/1, 1/1);
augmenting: catalog photos whose trunk activations and augmented copies are ready (fine-tuning only);
fine-tuning: epochs run of at most ``config.finetune_epochs`` (fine-tuning only); finishing: steps done
(variant heads, abstain thresholds, unknown-brand rule, model head, price head, reports and index)."""


@dataclass(frozen=True, eq=False)
class TrainingResult:
    """What ``train_model`` returns.

    Attributes:
        artifact: the trained ``ModelArtifact``.
        metrics: JSON-ready report stored on the model version: ``{"brand": {...test
            classification_metrics, "ece_before", "ece_after", "C", "temperature", "val_log_loss",
            "val_log_loss_calibrated"}, "model": {...model head report and test metrics} | None,
            "unknown_brand": {...}, "price": {...test price_metrics, "alpha"}, "variant", "variants",
            "finetune", "wild": {style: {...}} | None, "abstain": {...}, "text": {...} (listing text,
            ``worker.ml.training.listing``), "background_rule", "background_rule_val_log_loss",
            "background_rule_val_standard_error" (of each rule's per-photo loss difference with the lowest),
            "background_masks" (``remover_cache_key`` of the prediction-time remover, e.g. ``u2netp-160-bf16``: the
            masks the thresholds and the rule were chosen on),
            "counts": {...},
            "seconds": {"embed", "fit", "total"}}``.
        split: ``split.json``: ``{"seed", "train", "val", "test": [sha256...], "wild": {...},
            "negatives": {...}, "dedup"}``.
        report: PNG plots by file name: ``confusion.png`` (test), ``reliability.png`` (test, before
            and after temperature scaling), ``training_curves.png`` (fine-tuning epochs, or validation
            log loss per C).
    """

    artifact: ModelArtifact
    metrics: dict[str, Any]
    split: dict[str, Any]
    report: dict[str, bytes] = field(default_factory=dict)


def _models(samples: Sequence[TrainingSample]) -> np.ndarray:
    """``(N,) object``: each sample's model name, or None."""
    out = np.empty(len(samples), dtype=object)
    out[:] = [s.model or None for s in samples]
    return out


def train_model(
    data: TrainingData | Sequence[TrainingSample],
    config: TrainingConfig | None = None,
    *,
    backbone: Backbone,
    cache: EmbeddingCache | None,
    remover: Remover | None = None,
    test_remover: Remover | None = None,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
    stage_progress: Callable[[str, int, int], None] | None = None,
) -> TrainingResult:
    """Train a model version (the stages of the module docstring).

    Args:
        data: the photos (``TrainingData``), or just the catalog samples.
        config: every choice of the run (``TrainingConfig()`` when None).
        backbone: the original embedding model (its ``spec`` is recorded in the artifact).
        cache: embedding cache of this backbone, or None.
        remover: background remover used before embedding catalog images (plain ones skipped), or None.
        test_remover: remover used at prediction time (wild / negatives / validation photos seen by the
            thresholds), default ``remover``.
        progress: ``progress(done, total)`` during catalog embedding.
        log: called with progress lines.
        stage_progress: called as ``stage_progress(stage, done, total)`` with a name of ``STAGES`` when a
            stage starts and as it advances (pure Python; exceptions it raises stop the training).

    Returns:
        ``TrainingResult``.

    Raises:
        ValueError: fewer than two brands in the training side, length mismatches, unknown open-set kind.
        ImageError: an image cannot be decoded (filter first).
        ModelError: ``config.imagenet_classifier_path`` cannot be read.
    """
    data = data if isinstance(data, TrainingData) else TrainingData(catalog=tuple(data))
    config = config if config is not None else TrainingConfig()
    say = log or (lambda message: None)
    report = stage_progress or (lambda stage, done, total: None)
    started = time.perf_counter()
    test_remover = test_remover if test_remover is not None else remover
    samples, wild = data.catalog, data.wild
    labels = np.asarray([s.brand for s in samples])
    wild_labels = np.asarray([s.brand for s in wild])
    styles = data.styles

    # 1. Splits.
    report("splitting", 0, 1)
    plan = plan_splits(data, config)
    report("splitting", 1, 1)
    split = plan.catalog
    train, val, test = split.train, split.val, split.test
    wild_train, wild_val, wild_test = plan.wild_train, plan.wild_val, plan.wild_test

    # 2. Embeddings (catalog with mirrors; wild photos as the pipeline sees them).
    def embedding(done: int, total: int) -> None:
        if progress is not None:
            progress(done, total)
        report("embedding", done, total)

    catalog = embed_catalog(samples, backbone=backbone, cache=cache, remover=remover, config=config, progress=embedding)
    vectors, mirrored = catalog.vectors, catalog.mirrored
    embedded = time.perf_counter()
    say(f"catalog embedded in {embedded - started:.1f} s")
    detector = load_imagenet_detector(config.imagenet_classifier_path) if config.imagenet_classifier_path else None
    if detector is not None and detector.dim != backbone.aux_dim:
        # E.g. a tiny test backbone with the real ImageNet classifier: the rule cannot apply.
        say(f"footwear detector reads {detector.dim}-d features, backbone gives {backbone.aux_dim}: rule off")
        detector = None
    square_dir = Path(config.workdir) / "squares" if config.workdir is not None else None
    to_prepare = len(wild) + (len(data.negatives) + int(val.size) if detector is not None else 0)

    def preparing(offset: int) -> Callable[[int, int], None]:
        return lambda done, _: report("preparing", offset + done, to_prepare)

    report("preparing", 0, to_prepare)
    wild_sq = photo_squares(
        [(s.sha256, s.load) for s in wild], backbone, test_remover, square_dir, progress=preparing(0)
    )
    say(f"wild / negative squares ready at {time.perf_counter() - started:.1f} s")
    wild_raw = embed_squares(backbone, wild_sq)

    # 3. Background rule and the head-only variant.
    rule, rule_losses, rule_errors = "skip-plain", {}, {}
    if test_remover is not None and wild_val.size:
        choice = choose_background_rule(vectors, mirrored, labels, split, wild_raw, wild_labels, wild_val, config)
        rule, rule_losses, rule_errors = choice.rule, choice.losses, choice.standard_errors
        say(
            f"background rule by wild validation log loss: {rule_losses} (standard errors of the difference "
            f"with {choice.lowest}: {rule_errors}) -> {rule}"
        )
    neg_items = [(sha, load) for sha, load in zip(plan.negative_hashes, data.negatives, strict=True)]
    items = [(s.sha256, s.load) for s in samples]
    neg_sq = (
        photo_squares(neg_items, backbone, test_remover, square_dir, rule, progress=preparing(len(wild)))
        if detector
        else None
    )
    val_sq = (
        photo_squares(
            [items[i] for i in val],
            backbone,
            test_remover,
            square_dir,
            rule,
            progress=preparing(len(wild) + len(neg_items)),
        )
        if detector
        else None
    )
    say(f"negative / validation squares ready at {time.perf_counter() - started:.1f} s")
    report("preparing", to_prepare, to_prepare)
    report("fitting", 0, 1)
    variants: dict[str, VariantFit] = {
        "head-only": fit_variant(
            "head-only", vectors, mirrored, labels, split, wild_raw, rule, wild_labels, wild_train, wild_val, config
        )
    }
    curves: dict[str, Any] = {"head-only": variants["head-only"].fit.c_curve}
    report("fitting", 1, 1)

    # 4. Fine-tuning.
    finetune_info: dict[str, Any] = {}
    finetuned_bytes: bytes | None = None
    finishing_steps = 5  # abstain, unknown brand, model head, price head, reports; +1 for the fine-tuned heads
    if config.finetune:
        from worker.ml.training.augmentation import load_scenes
        from worker.ml.training.finetuning import finetune_variant

        scenes = load_scenes(data, plan.negatives_tune, plan.negative_hashes, config)
        say(f"{len(scenes.images)} scene photos ({', '.join(config.scene_categories)}) for the augmented copies")

        fine = finetune_variant(
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
            variants["head-only"].fit.head,
            config=config,
            say=say,
            scenes=scenes,
            progress=report,
        )
        finetune_info = fine.info
        curves["fine-tuned"] = fine.info["history"]
        finishing_steps += 1
        report("finishing", 0, finishing_steps)
        variants["fine-tuned"] = fit_variant(
            "fine-tuned",
            fine.vectors,
            fine.mirrored if config.flip_augment else None,
            labels,
            split,
            fine.wild,
            rule,
            wild_labels,
            wild_train,
            wild_val,
            config,
        )
        finetuned_bytes = fine.keras_bytes
        report("finishing", 1, finishing_steps)
    else:
        report("finishing", 0, finishing_steps)
    finished_steps = finishing_steps - 5
    chosen = min(variants, key=lambda name: (variants[name].val["log_loss"], name != "head-only"))
    if config.keep_variant is not None:
        if config.keep_variant not in variants:
            raise ValueError(f"variant {config.keep_variant!r} was not trained; have {sorted(variants)}")
        chosen = config.keep_variant
    best = variants[chosen]
    say(f"variant by validation log loss: { {k: v.val['log_loss'] for k, v in variants.items()} } -> {chosen}")
    head = best.fit.head
    final_vectors = best.vectors
    wild_vec = best.wild.normalised(rule)
    fitted = time.perf_counter()

    # 3b. Heads and rules on the chosen variant.
    val_x = np.concatenate([final_vectors[val], wild_vec[wild_val]])
    val_y = np.concatenate([labels[val], wild_labels[wild_val]])
    abstain = fit_abstain(
        head,
        val_x,
        val_y,
        detector=detector,
        val_features=(
            np.concatenate([embed_squares(backbone, val_sq).aux(rule), wild_raw.aux(rule)[wild_val]])
            if detector is not None and val_sq is not None
            else None
        ),
        negative_features=embed_squares(backbone, neg_sq).aux(rule) if detector is not None and neg_sq else None,
        negatives_tune=plan.negatives_tune,
        negatives_hold=plan.negatives_hold,
    )
    report("finishing", finished_steps + 1, finishing_steps)
    plain_train_x = np.concatenate([final_vectors[train], wild_vec[wild_train]])
    plain_train_y = np.concatenate([labels[train], wild_labels[wild_train]])
    catalog_styles = np.asarray([s.style for s in samples], dtype=object)
    wild_styles = np.asarray([s if data.wild_styles else "" for s in styles], dtype=object)
    unknown = fit_unknown_brand(
        head,
        plain_train_x,
        plain_train_y,
        val_x,
        val_y,
        config=config,
        train_styles=np.concatenate([catalog_styles[train], wild_styles[wild_train]]),
        val_styles=np.concatenate([catalog_styles[val], wild_styles[wild_val]]),
    )

    report("finishing", finished_steps + 2, finishing_steps)
    models, wild_models = _models(samples), _models(wild)
    photo_counts = Counter(m for m in (*models[train], *wild_models[wild_train]) if m is not None)
    cat_x, cat_models = catalog_training_rows(final_vectors, best.mirrored, models, split)
    _, cat_brands = catalog_training_rows(final_vectors, best.mirrored, labels, split)
    model_fit = fit_model_head(
        np.concatenate([cat_x, wild_vec[wild_train]]),
        np.concatenate([cat_models, wild_models[wild_train]]),
        np.concatenate([cat_brands, wild_labels[wild_train]]),
        val_x,
        np.concatenate([models[val], wild_models[wild_val]]),
        config=config,
        photo_counts=photo_counts,
    )
    model_report: dict[str, Any] | None = None
    if model_fit.head is not None:
        model_report = dict(model_fit.report)
        model_report.update(
            model_test_metrics(
                model_fit.head,
                np.concatenate([final_vectors[test], wild_vec[wild_test]]),
                np.concatenate([models[test], wild_models[wild_test]]),
            )
        )
        say(f"model head: {len(model_fit.head.classes)} models, test top-1 {model_report.get('top1')}")
    report("finishing", finished_steps + 3, finishing_steps)
    price = fit_price(final_vectors, samples, labels, np.asarray(plan.groups), split, config.price_alpha_grid)
    listing = fit_listing_text(samples, split, final_vectors, head, model_fit.head, seed=config.seed)
    report("finishing", finished_steps + 4, finishing_steps)

    # 5. Reports.
    brand_report = {**best.fit.report(), **brand_test_report(head, final_vectors[test], labels[test])}
    by_style = {
        style: brand_test_report(head, final_vectors[rows], labels[rows])
        for style in sorted(set(catalog_styles[test].tolist()) - {""})
        if (rows := test[catalog_styles[test] == style]).size
    }
    if by_style:
        brand_report["by_style"] = {
            style: {k: v for k, v in figures.items() if not k.startswith("reliability")}
            for style, figures in by_style.items()
        }
    wild_report = wild_test_report(
        head,
        best.wild,
        rule,
        wild_labels,
        styles,
        wild_test,
        confidence_threshold=abstain.confidence_threshold,
        detector=detector,
        footwear_threshold=abstain.footwear_threshold,
        unknown_brand=unknown.rule,
    )
    if wild_report:
        wild_report["counts"] = {"train": int(wild_train.size), "val": int(wild_val.size), "test": int(wild_test.size)}
    indexed = np.asarray([i for i, s in enumerate(samples) if s.product_id is not None], dtype=np.int64)
    index = build_index(
        config.similarity_index,
        final_vectors[indexed] if indexed.size else np.zeros((0, final_vectors.shape[1]), np.float32),
        np.asarray([samples[i].product_id for i in indexed], dtype=np.int64),
    )
    finished = time.perf_counter()
    metadata = _metadata(
        backbone.spec,
        backbone.fingerprint,
        config,
        head=head,
        dim=int(final_vectors.shape[1]),
        remover=remover,
        rule=rule,
        brand_c=best.fit.C,
        price_alpha=price.report.get("alpha"),
        price_baseline=price.baseline,
        variant=chosen,
        abstain={
            "footwear_threshold": abstain.footwear_threshold,
            "confidence_threshold": abstain.confidence_threshold,
        },
        counts={"samples": len(samples), "indexed": int(indexed.size), "wild": len(wild)},
    )
    if model_fit.head is not None:
        metadata["model_head"] = {
            "classes": len(model_fit.head.classes),
            "threshold": model_fit.head.threshold,
            "temperature": model_fit.head.classifier.temperature,
            "min_photos": config.model_min_photos,
        }
    if unknown.rule is not None:
        metadata["open_set"] = {"kind": unknown.rule.kind, "threshold": unknown.rule.threshold}
        metadata["abstain"]["unknown_brand_threshold"] = unknown.rule.threshold
    if chosen == "fine-tuned" and finetuned_bytes is not None:
        # As ``Backbone`` fingerprints that file (two outputs: its taps are inside, none added).
        metadata["finetuned_backbone_fingerprint"] = backbone_fingerprint(
            hashlib.sha256(finetuned_bytes).hexdigest()[:FINGERPRINT_LENGTH], backbone.input_size, ()
        )
        metadata["finetune"] = {k: v for k, v in finetune_info.items() if k != "history"}
    artifact = ModelArtifact(
        brand_head=head,
        price_head=price.head,
        index=index,
        metadata=finite_or_none(metadata),
        footwear=detector,
        backbone_keras=finetuned_bytes if chosen == "fine-tuned" else None,
        model_head=model_fit.head,
        unknown_brand=unknown.rule,
        text_model=listing.model,
    )
    metrics = {
        "brand": brand_report,
        "model": model_report if model_report is not None else model_fit.report,
        "unknown_brand": unknown.report,
        "price": price.report,
        "variant": chosen,
        "variants": {name: v.val for name, v in variants.items()},
        "finetune": finetune_info or None,
        "wild": wild_report or None,
        "abstain": abstain.report,
        "text": listing.report,
        "background_rule": rule,
        "background_rule_val_log_loss": rule_losses or None,
        "background_rule_val_standard_error": rule_errors or None,
        "background_masks": remover_cache_key(test_remover),
        "config": _config_record(config),
        "counts": {
            "train": int(train.size),
            "val": int(val.size),
            "test": int(test.size),
            "indexed": int(indexed.size),
            "priced_train": price.priced_train,
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
    result = TrainingResult(
        artifact=artifact,
        metrics=finite_or_none(metrics),
        split=plan.record(data, config),
        report=report_pngs(brand_report, curves),
    )
    report("finishing", finishing_steps, finishing_steps)
    return result


def _config_record(config: TrainingConfig) -> dict[str, Any]:
    """JSON-ready copy of the config (paths as strings)."""
    from dataclasses import asdict

    return {
        k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
        for k, v in asdict(config).items()
    }


def _metadata(
    spec: BackboneSpec,
    fingerprint: str,
    config: TrainingConfig,
    *,
    head: Any,
    dim: int,
    remover: Remover | None,
    rule: str,
    brand_c: float,
    price_alpha: float | None,
    price_baseline: dict[str, Any] | None,
    variant: str,
    abstain: dict[str, Any],
    counts: dict[str, int],
) -> dict[str, Any]:
    """Artifact metadata (keys documented on ``ModelArtifact.metadata``)."""
    return {
        "classes": list(head.classes),
        "backbone": spec.to_metadata(),
        "backbone_fingerprint": fingerprint,
        # Also under the keys older readers know (the spec is the source of truth).
        "backbone_input_size": spec.input_size,
        "backbone_taps": [[name, weight] for name, weight in spec.taps],
        "embedding_dim": dim,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": config.seed,
        "preprocessing": PREPROCESSING,
        "background": remover.name if remover is not None else "none",
        "background_rule": rule,
        "flip_augment": config.flip_augment,
        "class_weight": config.class_weight,
        "brand_C": brand_c,
        "temperature": head.temperature,
        "price_alpha": price_alpha,
        "price_baseline": price_baseline,
        "variant": variant,
        "similarity_index": config.similarity_index,
        "abstain": abstain,
        "counts": counts,
    }
