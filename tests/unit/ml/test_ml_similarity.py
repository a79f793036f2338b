"""Cosine k-NN over catalog image embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from worker.ml.backbone import l2_normalise
from worker.ml.similarity import SimilarityIndex


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
    index = SimilarityIndex(vectors, np.array([7, 7, 3, 5, 9]))
    hits = index.search(np.array([2.0, 0.0, 0.0]), k=3)  # the query is normalised
    assert [h.product_id for h in hits] == [7, 3, 9]
    assert hits[0].score == pytest.approx(1.0, abs=1e-6)
    assert hits[0].score >= hits[1].score >= hits[2].score
    assert len(index.search(vectors[0], k=10)) == 4


def test_empty_index_and_round_trip():
    assert SimilarityIndex.empty(3).search(np.ones(3), k=5) == []
    index = SimilarityIndex(l2_normalise(np.eye(3)), np.array([1, 2, 3]))
    again = SimilarityIndex.from_arrays(index.to_arrays())
    assert again.product_ids.dtype == np.int64 and again.search(np.eye(3)[1], k=1)[0].product_id == 2
    with pytest.raises(ValueError):
        index.search(np.ones(4))
    with pytest.raises(ValueError):
        SimilarityIndex(np.eye(3), np.array([1, 2]))
