"""Drift scores of upload embeddings against the catalog embeddings a model version was trained with (NumPy only).

Two per-photo scores, both higher for photos unlike the catalog:

- **novelty** = 1 - cosine similarity to the nearest catalog embedding of the version's similarity index (the index
  holds the catalog's L2-normalised training embeddings, ``worker.ml.similarity``). The catalog's own reference values
  are leave-one-out: each sampled catalog photo's nearest *other* photo (copies of itself, cosine >= ``DUPLICATE``,
  left out), as a new photo of a catalogued shoe would see the catalog. Leaving out the whole product instead
  would describe shoes the catalog lacks, and make ordinary uploads of catalogued shoes look like a drift.
- **mean_z** = sqrt(mean_d(((x_d - mu_d) / sigma_d)^2)): the distance to the catalog's mean embedding in units of its
  per-dimension standard deviation (root mean square over dimensions, so about 1 for a typical catalog photo).

Over a window, recent uploads are compared with the reference values by the population stability index over the
reference's deciles (PSI; Siddiqi, "Credit Risk Scorecards", 2006: < 0.1 stable, 0.1-0.25 a moderate shift, > 0.25 a
large one) and the two-sample Kolmogorov-Smirnov statistic (``scipy.stats.ks_2samp``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np

REFERENCE_SAMPLE: Final = 1000
"""Catalog embeddings sampled (seeded) for the reference values."""
PSI_BINS: Final = 10
"""Bins of the PSI: the reference's deciles."""
PSI_FLOOR: Final = 1e-4
"""Smallest bin share in the PSI (empty bins would make it infinite)."""
PSI_WATCH: Final = 0.1
PSI_DRIFT: Final = 0.25
DUPLICATE: Final = 0.999
"""Cosine similarity at or above which a catalog photo counts as a copy of the sampled one (left out)."""
MIN_RECENT: Final = 20
"""Fewest recent uploads with embeddings for a drift verdict."""


@dataclass(frozen=True)
class CatalogStats:
    """Per-dimension mean and standard deviation of the catalog embeddings: ``(D,) float64`` each (std floored)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of(cls, embeddings: np.ndarray) -> CatalogStats:
        """Statistics of ``(M, D)`` embeddings (M >= 1)."""
        matrix = np.asarray(embeddings, dtype=np.float64)
        return cls(mean=matrix.mean(axis=0), std=np.maximum(matrix.std(axis=0), 1e-6))

    def mean_z(self, embeddings: np.ndarray) -> np.ndarray:
        """``(N,)`` RMS standardised distance of ``(N, D)`` embeddings to the mean."""
        z = (np.asarray(embeddings, dtype=np.float64) - self.mean) / self.std
        return np.sqrt(np.mean(z * z, axis=1))


def novelty(embedding: np.ndarray, catalog: np.ndarray) -> float | None:
    """1 - the largest cosine similarity between a ``(D,)`` embedding and the ``(M, D)`` L2-normalised catalog rows;
    None for an empty catalog or a zero embedding."""
    vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    if catalog.shape[0] == 0 or norm == 0.0:
        return None
    return float(1.0 - np.max(catalog @ (vector / norm)))


def reference_scores(
    embeddings: np.ndarray, product_ids: np.ndarray, *, sample: int = REFERENCE_SAMPLE, seed: int = 0
) -> dict[str, Any]:
    """The catalog's own novelty (leave-one-out) and mean_z values, for up to ``sample`` seeded rows.

    Args:
        embeddings: ``(M, D) float32`` L2-normalised catalog embeddings (the similarity index's rows).
        product_ids: ``(M,) int64`` their products (kept for other reference rules; unused by leave-one-out).

    Returns:
        ``{"novelty": sorted list, "mean_z": sorted list, "catalog_rows": M}``; a row with no other photo but copies
        of itself is left out of ``novelty``.
    """
    matrix = np.asarray(embeddings, dtype=np.float32)
    rows = matrix.shape[0]
    if rows == 0:
        return {"novelty": [], "mean_z": [], "catalog_rows": 0}
    chosen = np.sort(np.random.default_rng(seed).choice(rows, size=min(sample, rows), replace=False))
    scores = []
    for start in range(0, chosen.size, 256):
        part = chosen[start : start + 256]
        sims = matrix[part] @ matrix.T
        sims[sims >= DUPLICATE] = -np.inf  # itself and its copies
        best = sims.max(axis=1)
        scores.extend(float(1.0 - b) for b in best if np.isfinite(b))
    stats = CatalogStats.of(matrix)
    return {
        "novelty": sorted(round(s, 6) for s in scores),
        "mean_z": sorted(round(float(z), 6) for z in stats.mean_z(matrix[chosen])),
        "catalog_rows": int(rows),
    }


def psi(recent: np.ndarray, reference: np.ndarray, *, bins: int = PSI_BINS) -> float | None:
    """Population stability index of ``recent`` values against ``reference`` over the reference's quantile bins:
    ``sum((r - e) * ln(r / e))`` with shares floored at ``PSI_FLOOR``; None when either is empty."""
    recent = np.asarray(recent, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if recent.size == 0 or reference.size == 0:
        return None
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    expected = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=edges.size + 1) / reference.size
    actual = np.bincount(np.searchsorted(edges, recent, side="right"), minlength=edges.size + 1) / recent.size
    expected = np.maximum(expected, PSI_FLOOR)
    actual = np.maximum(actual, PSI_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def drift_summary(recent: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Recent values against reference values: ``{"n", "mean", "p50", "p90", "reference": {"n", "mean", "p50",
    "p90"}, "psi", "ks", "ks_pvalue", "status"}``; ``status`` is ``insufficient`` (fewer than ``MIN_RECENT`` recent
    values or no reference), ``stable``, ``watch`` (PSI >= 0.1) or ``drift`` (PSI >= 0.25)."""
    from scipy.stats import ks_2samp

    recent = np.asarray(recent, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)

    def describe(values: np.ndarray) -> dict[str, Any]:
        if values.size == 0:
            return {"n": 0, "mean": None, "p50": None, "p90": None}
        p50, p90 = np.percentile(values, [50, 90])
        return {"n": int(values.size), "mean": float(values.mean()), "p50": float(p50), "p90": float(p90)}

    summary: dict[str, Any] = {**describe(recent), "reference": describe(reference)}
    index = psi(recent, reference)
    summary["psi"] = index
    if recent.size and reference.size:
        test = ks_2samp(recent, reference)
        summary["ks"], summary["ks_pvalue"] = float(test.statistic), float(test.pvalue)
    else:
        summary["ks"], summary["ks_pvalue"] = None, None
    if index is None or recent.size < MIN_RECENT:
        summary["status"] = "insufficient"
    else:
        summary["status"] = "drift" if index >= PSI_DRIFT else "watch" if index >= PSI_WATCH else "stable"
    return summary
