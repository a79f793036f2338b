"""Cosine k-NN over catalog image embeddings, behind the ``SimilarityIndex`` interface."""

from __future__ import annotations

import numpy as np
import pytest

from worker.ml.backbone import l2_normalise
from worker.ml.similarity import INDEX_KINDS, NumpyIndex, SimilarityIndex, build_index, index_class


def test_search_returns_distinct_products_best_image_first():
    vectors = l2_normalise(
        np.array(
            [
                [1.0, 0.0, 0.0],  # product 7, exact match
                [0.9, 0.1, 0.0],  # product 7 again, worse
                [0.8, 0.3, 0.0],  # product 3
                [0.0, 1.0, 0.0],  # product 5
                [0.6, 0.0, 0.6],  # product 9
            ]
        )
    )
    index = NumpyIndex(vectors, np.array([7, 7, 3, 5, 9]))
    hits = index.search(np.array([2.0, 0.0, 0.0]), k=3)  # the query is normalised
    assert [h.product_id for h in hits] == [7, 3, 9]
    assert hits[0].score == pytest.approx(1.0, abs=1e-6)
    assert hits[0].score >= hits[1].score >= hits[2].score
    assert len(index.search(vectors[0], k=10)) == 4


def test_empty_index_and_round_trip():
    assert NumpyIndex.empty(3).search(np.ones(3), k=5) == []
    index = NumpyIndex(l2_normalise(np.eye(3)), np.array([1, 2, 3]))
    again = NumpyIndex.from_arrays(index.to_arrays())
    assert again.product_ids.dtype == np.int64 and again.search(np.eye(3)[1], k=1)[0].product_id == 2
    with pytest.raises(ValueError):
        index.search(np.ones(4))
    with pytest.raises(ValueError):
        NumpyIndex(np.eye(3), np.array([1, 2]))


def test_numpy_index_is_the_default_similarity_index_and_round_trips_through_a_folder(tmp_path):
    vectors = l2_normalise(np.random.default_rng(0).normal(size=(6, 4)))
    index = build_index(None, vectors, np.array([1, 1, 2, 3, 4, 5]))
    assert isinstance(index, NumpyIndex) and isinstance(index, SimilarityIndex) and index.kind == "numpy"
    assert index_class("numpy") is NumpyIndex and len(index) == 6 and index.dim == 4
    index.save(tmp_path)
    again = index_class(index.kind).load(tmp_path)
    assert again.search(vectors[3], k=2) == index.search(vectors[3], k=2)
    with pytest.raises(ValueError):
        index_class("faiss")


class ReversedIndex:
    """A stand-in "vector database": answers the products in descending id order (enough to tell it is used)."""

    kind = "reversed"

    def __init__(self, embeddings, product_ids):
        self.embeddings, self.product_ids = np.asarray(embeddings, np.float32), np.asarray(product_ids)

    def __len__(self):
        return len(self.product_ids)

    @property
    def dim(self):
        return self.embeddings.shape[1]

    def search(self, query, *, k=5):
        from worker.ml.results import SimilarItem

        return [SimilarItem(int(p), 0.0) for p in sorted(set(self.product_ids.tolist()), reverse=True)[:k]]

    def save(self, directory):
        np.savez(directory / "reversed.npz", embeddings=self.embeddings, product_ids=self.product_ids)

    @classmethod
    def load(cls, directory):
        with np.load(directory / "reversed.npz") as data:
            return cls(data["embeddings"], data["product_ids"])

    @classmethod
    def build(cls, embeddings, product_ids):
        return cls(embeddings, product_ids)


def test_another_index_kind_replaces_the_default_through_the_artifact(tmp_path, monkeypatch):
    from worker.ml.artifact import ModelArtifact
    from worker.ml.heads import BrandHead

    monkeypatch.setitem(INDEX_KINDS, "reversed", ReversedIndex)
    vectors = l2_normalise(np.eye(3))
    index = build_index("reversed", vectors, np.array([1, 2, 3]))
    assert isinstance(index, SimilarityIndex)
    head = BrandHead(("a", "b"), np.zeros((3, 2)), np.zeros(2))
    ModelArtifact(head, None, index, {"similarity_index": "reversed"}).save(tmp_path)
    assert not (tmp_path / "index.npz").exists() and (tmp_path / "reversed.npz").exists()
    loaded = ModelArtifact.load(tmp_path)
    assert isinstance(loaded.index, ReversedIndex)
    assert [h.product_id for h in loaded.index.search(vectors[0], k=2)] == [3, 2]
