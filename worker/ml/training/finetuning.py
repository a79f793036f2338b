"""Stage 4, fine-tuning: the top of the backbone trained on cached trunk activations (``worker.ml.finetune``)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.ml.backbone import l2_normalise, tap_scale
from worker.ml.background import Remover, remover_cache_key
from worker.ml.heads import BrandHead
from worker.ml.images import DEFAULT_MAX_SIDE, load_rgb
from worker.ml.preprocessing import prepare_photo
from worker.ml.training.augmentation import Scenes, copies_per_brand, training_copies
from worker.ml.training.config import TrainingConfig, TrainingSample
from worker.ml.training.photos import Embedded, PhotoSquares, rule_pick
from worker.ml.training.splits import Split

if TYPE_CHECKING:
    from worker.ml.backbone import Backbone


@dataclass(frozen=True, eq=False)
class FinetuneOutcome:
    """What fine-tuning produced.

    Attributes:
        vectors: ``(N, D) float32`` L2-normalised catalog embeddings through the fine-tuned backbone.
        mirrored: ``(N, D) float32`` of the mirrored training photos (zero rows elsewhere).
        wild: the wild photos' embeddings through it (one table, under the chosen background rule).
        keras_bytes: the saved two-output fine-tuned backbone (``build_dual_model``), a ``.keras`` file.
        info: JSON-ready figures: cut layer, rows, best epoch, stop reason, history, seconds.
    """

    vectors: np.ndarray
    mirrored: np.ndarray
    wild: Embedded
    keras_bytes: bytes
    info: dict[str, Any]


def finetune_variant(
    samples: Sequence[TrainingSample],
    backbone: Backbone,
    remover: Remover | None,
    labels: np.ndarray,
    split: Split,
    vectors: np.ndarray,
    mirrored: np.ndarray | None,
    wild_sq: PhotoSquares,
    wild_base: Embedded,
    rule: str,
    wild_labels: np.ndarray,
    wild_train: np.ndarray,
    wild_val: np.ndarray,
    head: BrandHead,
    *,
    config: TrainingConfig,
    say: Callable[[str], None],
    scenes: Scenes | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> FinetuneOutcome:
    """Fine-tune the top of the backbone on cached trunk activations (``worker.ml.finetune``).

    Trunk activations of each catalog photo (``prepare_photo`` with ``remover``, plain backgrounds
    skipped) and, for training photos, of its mirror and its augmented copies (``training_copies``: phone
    photos on ``scenes``; ``copies_per_brand`` of them, ``config.augment_copies`` for common brands, more
    for rare ones with ``config.balanced_copies``) are computed once and cached under ``config.workdir``
    (keyed by backbone, cut, augmenter, scene set, seed, remover and copy count); the top is trained for
    at most ``config.finetune_epochs`` epochs / ``config.finetune_budget_s`` seconds with early stopping
    on validation (catalog val + wild val under background ``rule``).

    ``vectors`` / ``mirrored`` (``(N, D)``, L2-normalised) and ``wild_base`` are the head-only
    embeddings of the same photos: the taps of the multi-level descriptor come from the frozen trunk,
    so their part of the descriptor is taken from there and only the pooled part is recomputed.

    ``progress(stage, done, total)`` (``worker.ml.training.run.STAGES``): ``"augmenting"`` after each catalog
    photo's activations, ``"fine-tuning"`` after each epoch (of at most ``config.finetune_epochs``)."""
    from worker.ml.finetune import (
        build_dual_model,
        clone_top,
        finetune_top,
        split_backbone,
        top_embeddings,
        trunk_activations,
    )

    seed, workdir = config.seed, config.workdir
    scenes = scenes if scenes is not None else Scenes()
    started = time.perf_counter()
    scale = tap_scale(backbone.taps)
    spec = backbone.spec
    trunk, top_original, cut = split_backbone(backbone.model)
    top = clone_top(top_original)
    train_set = set(split.train.tolist())
    per_brand = copies_per_brand(
        [str(b) for b in labels[split.train]],
        base=config.augment_copies,
        most=config.max_augment_copies,
        balanced=config.balanced_copies,
    )
    say(f"augmented copies per training photo: {per_brand}; {len(scenes.images)} scene photos")
    remover_name = remover_cache_key(remover)
    # "phone1": worker.ml.augment.phone_photo; bump it when the augmentation changes (stale caches).
    tag = f"{backbone.fingerprint}-{cut}-phone1-{scenes.fingerprint}-s{seed}-{remover_name}"
    folder = Path(workdir) / "activations" / tag if workdir is not None else None
    report = progress or (lambda stage, done, total: None)
    report("augmenting", 0, len(samples))
    clean, flipped, augmented, augmented_labels = [], [], [], []
    for i, sample in enumerate(samples):
        copies = per_brand.get(str(labels[i]), 0)
        name = f"{sample.sha256}.t{copies}.npy" if i in train_set else f"{sample.sha256}.o.npy"
        path = folder / name if folder is not None else None
        if path is not None and path.exists():
            stack = np.load(path, allow_pickle=False)
        else:
            prepared = prepare_photo(load_rgb(sample.load(), max_side=DEFAULT_MAX_SIDE), spec, remover=remover)
            squares = [prepared.square]
            if i in train_set:
                squares += training_copies(
                    prepared.cutout.image,
                    prepared.square,
                    spec=spec,
                    seed=seed,
                    row=i,
                    copies=copies,
                    scenes=scenes.images,
                )
            stack = trunk_activations(trunk, np.stack(squares), spec=spec)
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
        report("augmenting", i + 1, len(samples))
    clean_acts = np.stack(clean)
    flip_acts = np.stack(flipped) if flipped else clean_acts[:0]
    use_removed = rule_pick(rule, wild_sq.plain, wild_sq.removed is not None)
    wild_squares = wild_sq.raw.copy()
    if use_removed.any() and wild_sq.removed is not None:
        wild_squares[use_removed] = wild_sq.removed[use_removed]
    wild_acts = trunk_activations(trunk, wild_squares, spec=spec) if len(wild_squares) else clean_acts[:0]
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
    epochs_run = [0]
    report("fine-tuning", 0, config.finetune_epochs)

    def epoch_done(line: str) -> None:
        """``finetune_top`` calls this once per epoch: log the line and count the epoch."""
        say(line)
        epochs_run[0] += 1
        report("fine-tuning", epochs_run[0], config.finetune_epochs)

    tuned = finetune_top(
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
        class_weight=config.head_class_weight,
        epochs=config.finetune_epochs,
        time_budget_s=config.finetune_budget_s,
        progress=epoch_done,
    )
    report("fine-tuning", config.finetune_epochs, config.finetune_epochs)  # early stop: the stage is over
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
    wild_embedded = Embedded(raw={"raw": wild_raw_ft}, aux_features={"raw": wild_aux}, plain=wild_sq.plain)
    dual = build_dual_model(backbone.model, cut, top, backbone.taps)
    with tempfile.TemporaryDirectory() as temp:
        model_path = Path(temp) / "backbone.keras"
        dual.save(model_path)
        keras_bytes = model_path.read_bytes()

    info = {
        "cut_layer": cut,
        "augment_copies": config.augment_copies,
        "augmentation": {
            "kind": "phone_photo",
            "scenes": len(scenes.images),
            "scene_categories": list(config.scene_categories),
            "copies_per_brand": per_brand,
        },
        "train_rows": int(train_x.shape[0]),
        "val_rows": int(val_x.shape[0]),
        "best_epoch": tuned.best_epoch,
        "stopped": tuned.stopped,
        "start_val_log_loss": tuned.start_val_log_loss,
        "history": tuned.history,
        "seconds_activations": round(acts_seconds, 1),
        "seconds_training": round(fit_seconds, 1),
        "seconds_total": round(time.perf_counter() - started, 1),
    }
    return FinetuneOutcome(
        vectors=tuned_vectors,
        mirrored=tuned_mirrored,
        wild=wild_embedded,
        keras_bytes=keras_bytes,
        info=info,
    )
