"""Stage 2, augmentation: the catalog embeddings with their mirrored copies, and the augmented copies of
training photos that fine-tuning sees.

Mirroring (horizontal flip) doubles the training rows of the heads; a left and a right shoe are the
same product. The augmented copies imitate phone photos (``worker.ml.augment.phone_photo``: cut-outs
pasted on real scene photos, the tuning half of the negatives of ``TrainingConfig.scene_categories``, with a
contact shadow; random resized crops, rotation, perspective, colour and lighting, blur, noise, thumbnail
round trip, JPEG) at the backbone spec's input size, seeded per photo and copy
(``numpy.random.default_rng([seed, row, copy])``) so a run is reproducible. Rarer brands get more copies
(``copies_per_brand``: class-balanced sampling).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from worker.ml.background import Remover
from worker.ml.embeddings import EmbeddingCache, embed_images
from worker.ml.errors import ImageError
from worker.ml.preprocessing import BackboneSpec
from worker.ml.training.config import TrainingConfig, TrainingData, TrainingSample

if TYPE_CHECKING:
    from worker.ml.backbone import Backbone


@dataclass(frozen=True, eq=False)
class CatalogEmbeddings:
    """Head-only embeddings of the catalog photos.

    Attributes:
        vectors: ``(N, D) float32`` L2-normalised, in catalog order.
        mirrored: ``(N, D) float32`` of the mirrored photos, or None without ``flip_augment``.
    """

    vectors: np.ndarray
    mirrored: np.ndarray | None


def embed_catalog(
    samples: Sequence[TrainingSample],
    *,
    backbone: Backbone,
    cache: EmbeddingCache | None,
    remover: Remover | None,
    config: TrainingConfig,
    progress: Callable[[int, int], None] | None = None,
) -> CatalogEmbeddings:
    """Embed every catalog photo (cached per image hash and backbone; mirrored too with ``config.flip_augment``).

    Raises:
        ImageError: a photo cannot be decoded.
    """
    items = [(s.sha256, s.load) for s in samples]
    if config.flip_augment:
        vectors, mirrored = embed_images(
            items, backbone=backbone, cache=cache, remover=remover, flip=True, progress=progress
        )
        return CatalogEmbeddings(vectors, mirrored)
    return CatalogEmbeddings(
        embed_images(items, backbone=backbone, cache=cache, remover=remover, progress=progress), None
    )


@dataclass(frozen=True, eq=False)
class Scenes:
    """Real scene photos the augmented copies are pasted on, decoded and shrunk once, kept in memory.

    Attributes:
        images: ``(h, w, 3) uint8`` photos, longest side at most ``worker.ml.augment.SCENE_SIDE`` px.
        fingerprint: 12 hex digits naming the set (SHA-256 of the photos' hashes; ``"none"`` when empty),
            part of the fine-tuning activation cache key.
    """

    images: tuple[np.ndarray, ...] = ()
    fingerprint: str = "none"


def load_scenes(data: TrainingData, rows: Sequence[int], hashes: Sequence[str], config: TrainingConfig) -> Scenes:
    """The negatives of ``config.scene_categories`` among ``rows``, decoded and shrunk (``prepare_scenes``).

    ``train_model`` passes the tuning half of the negatives (``SplitPlan.negatives_tune``): the held-out
    half measures non-footwear rejection and must not be seen in training, not even behind a shoe.

    Args:
        data: the run's photos (``negatives`` and ``negative_categories``; no categories: no scenes).
        rows: indices into ``data.negatives`` that may be used.
        hashes: SHA-256 of every negative's bytes (``SplitPlan.negative_hashes``).
        config: ``scene_categories``.

    Returns:
        ``Scenes`` (empty when no negative of those categories is among ``rows``; undecodable photos are
        skipped).
    """
    from worker.ml.augment import prepare_scenes
    from worker.ml.images import DEFAULT_MAX_SIDE, load_rgb

    wanted = set(config.scene_categories)
    if not wanted or len(data.negative_categories) != len(data.negatives):
        return Scenes()
    images, used = [], []
    for row in sorted(int(r) for r in rows):
        if data.negative_categories[row] not in wanted:
            continue
        try:
            images.append(load_rgb(data.negatives[row](), max_side=DEFAULT_MAX_SIDE))
        except ImageError:
            continue
        used.append(hashes[row])
    if not images:
        return Scenes()
    fingerprint = hashlib.sha256("\n".join(used).encode()).hexdigest()[:12]
    return Scenes(images=prepare_scenes(images), fingerprint=fingerprint)


def copies_per_brand(labels: Sequence[str], *, base: int, most: int, balanced: bool = True) -> dict[str, int]:
    """How many augmented copies each training photo of a brand gets (class-balanced sampling).

    With ``balanced``, a brand with ``n_b`` training photos gets ``ceil(base * median_n / n_b)`` copies per
    photo, at least ``base`` and at most ``max(base, most)``: brands rarer than the median brand are
    over-sampled with new augmented views, so their rows number about as many as the median brand's
    (asics, 51 photos in ``sneaker_models``, gets ~3x the copies of nike's, 1,336). Over-sampling the
    minority classes to balance is what Buda et al. ("A systematic study of the class imbalance problem in
    convolutional neural networks", Neural Networks 2018) found best for CNNs; here each extra row is a
    new augmented view, not a repeat. The loss stays class-weighted (``finetune_top``'s ``class_weight``),
    so the extra copies add variety to rare brands without giving them more total weight.

    Args:
        labels: the brand of every training photo.
        base: copies per photo of the most common brands (``TrainingConfig.augment_copies``), >= 0.
        most: cap per photo (``TrainingConfig.max_augment_copies``).
        balanced: False: every brand gets ``base``.

    Returns:
        ``{brand: copies}`` for every brand in ``labels``.

    Raises:
        ValueError: ``base < 0``.
    """
    if base < 0:
        raise ValueError(f"base must be >= 0, got {base}")
    counts = Counter(str(label) for label in labels)
    if not balanced or base == 0 or not counts:
        return {brand: base for brand in counts}
    median = float(np.median(list(counts.values())))
    cap = max(base, most)
    return {brand: int(min(cap, max(base, math.ceil(base * median / n)))) for brand, n in counts.items()}


def training_copies(
    rgb: np.ndarray,
    square: np.ndarray,
    *,
    spec: BackboneSpec,
    seed: int,
    row: int,
    copies: int,
    scenes: Sequence[np.ndarray] = (),
) -> list[np.ndarray]:
    """The extra squares fine-tuning sees for one training photo: its mirror and ``copies`` augmented ones.

    Args:
        rgb: ``(H, W, 3) uint8`` the photo after the background rule (``PreparedPhoto.cutout.image``).
        square: ``(S, S, 3) uint8`` its backbone input (``PreparedPhoto.square``).
        spec: the backbone spec (the augmented squares have its input size and padding fill).
        seed: the run's seed; row: the photo's catalog row; copies: how many augmented copies.
        scenes: ``(h, w, 3) uint8`` scene photos (``Scenes.images``); empty: synthetic backgrounds.

    Returns:
        ``1 + copies`` arrays ``(S, S, 3) uint8``: the mirrored square, then the augmented ones
        (``worker.ml.augment.phone_photo`` with ``numpy.random.default_rng([seed, row, k])``).
    """
    from worker.ml.augment import phone_photo

    out = [np.ascontiguousarray(square[:, ::-1])]
    out += [
        phone_photo(rgb, np.random.default_rng([seed, row, k]), size=spec.input_size, scenes=scenes, fill=spec.fill)
        for k in range(copies)
    ]
    return out
