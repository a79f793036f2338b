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


def _ranked_by_brute_force(index: NumpyIndex, query: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Every product's best image score, sorted by score descending then product id: the contract, in plain Python."""
    scores = index.embeddings @ (query / np.linalg.norm(query))
    best: dict[int, float] = {}
    for product, score in zip(index.product_ids.tolist(), scores.tolist(), strict=True):
        best[product] = max(best.get(product, -np.inf), score)
    return sorted(best.items(), key=lambda pair: (-pair[1], pair[0]))[:k]


def test_search_equals_brute_force_ranking_with_ties_and_unsorted_product_ids():
    """The per-product maximum (``np.maximum.reduceat`` over rows grouped once) and the partial top-k give exactly
    the ranking of scoring every image: ties broken by the smaller product id, also at the k-th place."""
    rng = np.random.default_rng(3)
    vectors = l2_normalise(rng.normal(size=(40, 5))).astype(np.float32)
    vectors[[11, 23, 31]] = vectors[4]  # the same image under four products: a four-way tie wherever it ranks
    products = rng.permutation(np.repeat(np.arange(100, 120), 2))  # 20 products, two images each, shuffled
    index = NumpyIndex(vectors, products)
    queries = [vectors[4], vectors[0], *l2_normalise(rng.normal(size=(30, 5)))]
    for query in queries:
        for k in (1, 2, 3, 5, 19, 20, 25):
            hits = [(hit.product_id, hit.score) for hit in index.search(query, k=k)]
            expected = _ranked_by_brute_force(index, query, k)
            assert [product for product, _ in hits] == [product for product, _ in expected]
            assert [score for _, score in hits] == pytest.approx([score for _, score in expected], abs=1e-6)
    tied = [hit.product_id for hit in index.search(vectors[4], k=4)]
    assert tied == sorted(products[[4, 11, 23, 31]].tolist())


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
