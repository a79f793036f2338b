"""Nearest catalog products by cosine similarity of image embeddings (brute force, NumPy).

With L2-normalised rows the cosine similarity is a dot product; one matrix-vector product over M
catalog images costs ~M x D multiply-adds (6,000 x 1,280 in about a millisecond). An approximate index
(or pgvector) is the step up when the catalog grows to millions of images.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from worker.ml.results import SimilarItem


@dataclass(frozen=True, eq=False)
class SimilarityIndex:
    """Catalog image embeddings with the product each image shows.

    Attributes:
        embeddings: ``(M, D) float32``, L2-normalised rows.
        product_ids: ``(M,) int64``; several images may share a product.
    """

    embeddings: np.ndarray
    product_ids: np.ndarray

    def __post_init__(self) -> None:
        """Coerce dtypes and check shapes; raise ValueError when inconsistent."""
        embeddings = np.ascontiguousarray(self.embeddings, dtype=np.float32)
        product_ids = np.asarray(self.product_ids, dtype=np.int64).reshape(-1)
        if embeddings.ndim != 2 or embeddings.shape[0] != product_ids.shape[0]:
            raise ValueError(
                f"embeddings must be (M, D) with M = len(product_ids); got {embeddings.shape} "
                f"and {product_ids.shape[0]} ids"
            )
        object.__setattr__(self, "embeddings", embeddings)
        object.__setattr__(self, "product_ids", product_ids)

    def __len__(self) -> int:
        """Number of images M."""
        return int(self.embeddings.shape[0])

    @property
    def dim(self) -> int:
        """Embedding width D."""
        return int(self.embeddings.shape[1])

    def search(self, query: np.ndarray, *, k: int = 5) -> list[SimilarItem]:
        """The ``k`` products whose best image is most similar to the query.

        Cosine similarity = dot product of L2-normalised vectors (the query is normalised here).
        A product scores by its best-matching image; each product appears once.

        Args:
            query: ``(D,)`` float embedding.
            k: number of distinct products wanted.

        Returns:
            Up to ``k`` ``SimilarItem`` values, score descending (ties: smaller product id first);
            ``[]`` for an empty index.

        Raises:
            ValueError: ``query`` is not ``(D,)`` or ``k < 1``.
        """
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        vector = np.asarray(query, dtype=np.float32).reshape(-1)
        if len(self) == 0:
            return []
        if vector.shape != (self.dim,):
            raise ValueError(f"expected a query of shape ({self.dim},), got {np.shape(query)}")
        norm = float(np.linalg.norm(vector))
        if norm > 0:
            vector = vector / norm
        scores = self.embeddings @ vector
        # Best image per product: sort by (product, -score), keep the first row of each product.
        order = np.lexsort((-scores, self.product_ids))
        ids_sorted = self.product_ids[order]
        first = np.ones(order.shape[0], dtype=bool)
        first[1:] = ids_sorted[1:] != ids_sorted[:-1]
        best_rows = order[first]
        best_scores = scores[best_rows]
        best_ids = self.product_ids[best_rows]
        ranked = np.lexsort((best_ids, -best_scores))[:k]
        return [SimilarItem(product_id=int(best_ids[i]), score=float(best_scores[i])) for i in ranked]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez``: ``embeddings`` ``(M, D) float32``, ``product_ids`` ``(M,) int64``."""
        return {"embeddings": self.embeddings, "product_ids": self.product_ids}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> SimilarityIndex:
        """Inverse of ``to_arrays``.

        Raises:
            KeyError: a key is missing.
            ValueError: inconsistent shapes.
        """
        return cls(
            embeddings=np.asarray(arrays["embeddings"]),
            product_ids=np.asarray(arrays["product_ids"]),
        )

    @classmethod
    def empty(cls, dim: int) -> SimilarityIndex:
        """An index with no images and embedding width ``dim``."""
        return cls(np.zeros((0, dim), dtype=np.float32), np.zeros((0,), dtype=np.int64))
