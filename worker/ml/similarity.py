"""Similarity search over catalog image embeddings, behind a small interface.

``SimilarityIndex`` is the interface the pipeline and the artifact use (a ``typing.Protocol``):
``search(query, k)``, ``len``, ``dim``, ``save(directory)`` and a ``load(directory)`` class method. The
implementation is chosen by name (``INDEX_KINDS``, artifact metadata ``similarity_index``), the way
background removers are chosen by ``worker.ml.background.make_remover``, so a vector database (pgvector,
FAISS, Qdrant) can replace the default without touching ``Pipeline``: write a class with the same
methods and register it in ``INDEX_KINDS``.

Default: ``NumpyIndex`` (``"numpy"``), exact cosine k-NN by brute force in NumPy. With L2-normalised
rows the cosine similarity is a dot product; one matrix-vector product over M catalog images costs
~M x D multiply-adds (6,000 x 1,664 in about a millisecond). An approximate index is the step up when
the catalog grows to millions of images.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, runtime_checkable

import numpy as np

from worker.ml.results import SimilarItem

INDEX_FILE: Final = "index.npz"
"""File of a ``NumpyIndex`` inside an artifact folder."""
DEFAULT_INDEX_KIND: Final = "numpy"
"""Index kind of artifacts whose metadata names none (every artifact made before the interface)."""


@runtime_checkable
class SimilarityIndex(Protocol):
    """What the pipeline needs from a similarity index over catalog image embeddings.

    Attributes:
        kind: the name it is registered under in ``INDEX_KINDS`` (stored in artifact metadata).
    """

    kind: str

    def __len__(self) -> int:
        """Number of indexed images M."""
        ...

    @property
    def dim(self) -> int:
        """Embedding width D."""
        ...

    def search(self, query: np.ndarray, *, k: int = 5) -> list[SimilarItem]:
        """Up to ``k`` distinct products most similar to a ``(D,) float32`` query, best first.

        Raises:
            ValueError: ``query`` is not ``(D,)`` or ``k < 1``.
        """
        ...

    def save(self, directory: Path) -> None:
        """Write the index's files into an existing artifact folder.

        Raises:
            OSError: a file cannot be written.
        """
        ...

    @classmethod
    def load(cls, directory: Path) -> SimilarityIndex:
        """Read an index written by ``save``.

        Raises:
            OSError, ValueError, KeyError: files missing or inconsistent.
        """
        ...

    @classmethod
    def build(cls, embeddings: np.ndarray, product_ids: np.ndarray) -> SimilarityIndex:
        """An index of ``(M, D) float32`` L2-normalised embeddings and their ``(M,) int64`` product ids.

        Raises:
            ValueError: inconsistent shapes.
        """
        ...


@dataclass(frozen=True, eq=False)
class NumpyIndex:
    """Exact cosine k-NN by brute force in NumPy (``kind == "numpy"``), the default ``SimilarityIndex``.

    Attributes:
        embeddings: ``(M, D) float32``, L2-normalised rows.
        product_ids: ``(M,) int64``; several images may share a product.
    """

    embeddings: np.ndarray
    product_ids: np.ndarray
    kind = "numpy"

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
        # Rows grouped by product, once: a query then takes each product's best row with one
        # ``np.maximum.reduceat`` instead of sorting all M scores (README "Speed", eighth round).
        order = np.argsort(product_ids, kind="stable")
        grouped = product_ids[order]
        starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]]) if grouped.size else grouped
        object.__setattr__(self, "_order", order)
        object.__setattr__(self, "_starts", starts)
        object.__setattr__(self, "_group_ids", grouped[starts])

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
        best_scores = np.maximum.reduceat(scores[self._order], self._starts)  # (P,) each product's best image
        best_ids = self._group_ids
        if best_scores.size > k:  # the k best, and every product tied with the k-th, then sorted exactly
            kth = np.partition(best_scores, best_scores.size - k)[best_scores.size - k]
            candidates = np.flatnonzero(best_scores >= kth)
        else:
            candidates = np.arange(best_scores.size)
        ranked = candidates[np.lexsort((best_ids[candidates], -best_scores[candidates]))][:k]
        return [SimilarItem(product_id=int(best_ids[i]), score=float(best_scores[i])) for i in ranked]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez``: ``embeddings`` ``(M, D) float32``, ``product_ids`` ``(M,) int64``."""
        return {"embeddings": self.embeddings, "product_ids": self.product_ids}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> NumpyIndex:
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
    def empty(cls, dim: int) -> NumpyIndex:
        """An index with no images and embedding width ``dim``."""
        return cls(np.zeros((0, dim), dtype=np.float32), np.zeros((0,), dtype=np.int64))

    @classmethod
    def build(cls, embeddings: np.ndarray, product_ids: np.ndarray) -> NumpyIndex:
        """The index of ``(M, D)`` embeddings and ``(M,)`` product ids (see the class docstring)."""
        return cls(embeddings=embeddings, product_ids=product_ids)

    def save(self, directory: Path) -> None:
        """Write ``index.npz`` (``to_arrays``, uncompressed) atomically into ``directory``.

        Raises:
            OSError: the file cannot be written.
        """
        buffer = io.BytesIO()
        np.savez(buffer, **self.to_arrays())
        target = Path(directory) / INDEX_FILE
        handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{INDEX_FILE}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(buffer.getvalue())
            os.replace(temp_name, target)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, directory: Path) -> NumpyIndex:
        """Read ``index.npz`` from ``directory`` without pickle.

        Raises:
            OSError: missing file; ValueError / KeyError: not an index file.
        """
        with np.load(Path(directory) / INDEX_FILE, allow_pickle=False) as archive:
            return cls.from_arrays({name: archive[name] for name in archive.files})


INDEX_KINDS: Final[dict[str, type[NumpyIndex]]] = {"numpy": NumpyIndex}
"""Registered ``SimilarityIndex`` implementations by name (artifact metadata ``similarity_index``)."""


def index_class(kind: str | None) -> type[SimilarityIndex]:
    """The ``SimilarityIndex`` class registered as ``kind`` (None: ``DEFAULT_INDEX_KIND``).

    Raises:
        ValueError: unknown kind.
    """
    name = kind or DEFAULT_INDEX_KIND
    if name not in INDEX_KINDS:
        raise ValueError(f"unknown similarity index {name!r}; expected one of {sorted(INDEX_KINDS)}")
    return INDEX_KINDS[name]


def build_index(kind: str | None, embeddings: np.ndarray, product_ids: np.ndarray) -> SimilarityIndex:
    """An index of kind ``kind`` (see ``index_class``) over ``(M, D)`` embeddings and ``(M,)`` product ids.

    Raises:
        ValueError: unknown kind or inconsistent shapes.
    """
    return index_class(kind).build(embeddings, product_ids)
