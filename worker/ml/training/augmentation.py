"""Stage 2, augmentation: the catalog embeddings with their mirrored copies, and the augmented copies of
training photos that fine-tuning sees.

Mirroring (horizontal flip) doubles the training rows of the heads; a left and a right shoe are the
same product. The augmented copies imitate phone photos (``worker.ml.augment.augment_photo``: cut-out
pasted on varied backgrounds, perspective, colour, blur, JPEG) at the backbone spec's input size, seeded
per photo and copy (``numpy.random.default_rng([seed, row, copy])``) so a run is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from worker.ml.background import Remover
from worker.ml.embeddings import EmbeddingCache, embed_images
from worker.ml.preprocessing import BackboneSpec
from worker.ml.training.config import TrainingConfig, TrainingSample

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


def training_copies(
    rgb: np.ndarray, square: np.ndarray, *, spec: BackboneSpec, seed: int, row: int, copies: int
) -> list[np.ndarray]:
    """The extra squares fine-tuning sees for one training photo: its mirror and ``copies`` augmented ones.

    Args:
        rgb: ``(H, W, 3) uint8`` the photo after the background rule (``PreparedPhoto.cutout.image``).
        square: ``(S, S, 3) uint8`` its backbone input (``PreparedPhoto.square``).
        spec: the backbone spec (the augmented squares have its input size).
        seed: the run's seed; row: the photo's catalog row; copies: how many augmented copies.

    Returns:
        ``1 + copies`` arrays ``(S, S, 3) uint8``: the mirrored square, then the augmented ones.
    """
    from worker.ml.augment import augment_photo

    out = [np.ascontiguousarray(square[:, ::-1])]
    out += [augment_photo(rgb, np.random.default_rng([seed, row, k]), size=spec.input_size) for k in range(copies)]
    return out
