"""Writes of the monitoring app: an ``UploadSignal`` per finished prediction, a ``DriftReference`` per model version.

Runs where ``prediction_finished`` is sent: in workers (results and failures, with the photo's embedding) and in the
web process (refused uploads, no embedding). Embedding figures need the version's catalog embeddings: the similarity
index of its artifact (``registry.runtime.artifact_local_dir``), read once per process and version and kept in memory
(M x D float32, about 65 MB for the shared catalog's 9,807 photos at 1,664 dimensions) beside the pipeline's own copy.
Only processes that receive embeddings (workers) ever read it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import IntegrityError

from monitoring.drift import CatalogStats, novelty, reference_scores
from monitoring.models import DriftReference, UploadSignal
from predictions.models import Prediction
from registry.models import ModelVersion

logger = logging.getLogger(__name__)

TIMING_COLUMNS = {
    "decode": "decode_ms",
    "background": "background_ms",
    "embed": "embed_ms",
    "heads": "heads_ms",
    "search": "search_ms",
    "total": "pipeline_ms",
}
"""``Prediction.timings_ms`` keys -> ``UploadSignal`` columns."""


@dataclass(frozen=True, eq=False)
class CatalogEmbeddings:
    """A model version's catalog embeddings (``(M, D) float32``, L2-normalised) and their statistics."""

    matrix: np.ndarray
    stats: CatalogStats


_lock = threading.Lock()
_catalogs: dict[int, CatalogEmbeddings | None] = {}


def catalog_embeddings_get(*, model_version: ModelVersion) -> CatalogEmbeddings | None:
    """The version's catalog embeddings from its artifact's similarity index, read once per process (the latest
    version only is kept); None when the artifact cannot be read or its index keeps no embeddings. Makes the version's
    ``DriftReference`` when it has none yet.
    """
    with _lock:
        if model_version.id in _catalogs:
            return _catalogs[model_version.id]
    catalog: CatalogEmbeddings | None = None
    try:
        import json

        from registry.runtime import artifact_local_dir
        from worker.ml.similarity import index_class

        folder = artifact_local_dir(model_version)
        metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
        index = index_class(metadata.get("similarity_index")).load(folder)
        matrix = getattr(index, "embeddings", None)
        if matrix is not None and len(matrix):
            catalog = CatalogEmbeddings(matrix=np.asarray(matrix, np.float32), stats=CatalogStats.of(matrix))
            drift_reference_ensure(model_version=model_version, embeddings=matrix, product_ids=index.product_ids)
    except Exception:  # a broken artifact is the pipeline's to report; monitoring goes on without embedding figures
        logger.warning("no catalog embeddings for drift of version %s", model_version.name, exc_info=True)
    with _lock:
        _catalogs.clear()
        _catalogs[model_version.id] = catalog
    return catalog


def drift_reference_ensure(*, model_version: ModelVersion, embeddings: np.ndarray, product_ids: np.ndarray) -> None:
    """Store the version's ``DriftReference`` (``monitoring.drift.reference_scores``) unless it exists."""
    if DriftReference.objects.filter(model_version=model_version).exists():
        return
    scores = reference_scores(embeddings, product_ids)
    try:
        DriftReference.objects.create(
            model_version=model_version,
            novelty=scores["novelty"],
            mean_z=scores["mean_z"],
            catalog_rows=scores["catalog_rows"],
        )
    except IntegrityError:  # another worker stored it first
        pass


def _ms(later: Any, earlier: Any) -> float | None:
    """Milliseconds from ``earlier`` to ``later`` (None when either is missing)."""
    if later is None or earlier is None:
        return None
    return round((later - earlier).total_seconds() * 1000.0, 1)


def upload_signal_record(
    *, prediction: Prediction, embedding: Any = None, nearest_similarity: float | None = None
) -> UploadSignal:
    """Store (or replace) the ``UploadSignal`` of a terminal prediction.

    Args:
        prediction: the prediction as saved with its terminal status.
        embedding: its ``(D,) float32`` backbone embedding, or None (no embedding figures then).
        nearest_similarity: the embedding's largest cosine similarity to the version's catalog embeddings, as the
            worker's similarity search found it (``PipelineResult.nearest_similarity``); novelty is then 1 minus it
            instead of a second scan of the catalog (``monitoring.drift.novelty``). None: scanned here.
    """
    abstain = prediction.abstain if isinstance(prediction.abstain, dict) else None
    brands = prediction.brands if isinstance(prediction.brands, list) else []
    timings = prediction.timings_ms if isinstance(prediction.timings_ms, dict) else {}
    fields: dict[str, Any] = {
        "created_at": prediction.created_at,
        "finished_at": prediction.finished_at or prediction.created_at,
        "status": prediction.status,
        "channel": prediction.channel,
        "error_code": prediction.error_code,
        "abstain_reason": str(abstain.get("reason", ""))[:32] if abstain else "",
        "brand": prediction.brand,
        "top_probability": float(brands[0]["probability"]) if brands and "probability" in brands[0] else None,
        "with_text": bool((prediction.title or "").strip() or (prediction.description or "").strip()),
        "model_version_id": prediction.model_version_id,
        "queue_ms": _ms(prediction.started_at, prediction.created_at),
        "end_to_end_ms": _ms(prediction.finished_at, prediction.created_at),
        "embedding_norm": None,
        "novelty": None,
        "mean_z": None,
    }
    for key, column in TIMING_COLUMNS.items():
        value = timings.get(key)
        fields[column] = float(value) if isinstance(value, int | float) else None
    if embedding is not None:
        vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
        fields["embedding_norm"] = float(np.linalg.norm(vector))
        catalog = (
            catalog_embeddings_get(model_version=prediction.model_version)
            if prediction.model_version is not None
            else None
        )
        if catalog is not None and catalog.matrix.shape[1] == vector.size:
            fields["novelty"] = (
                1.0 - float(nearest_similarity) if nearest_similarity is not None else novelty(vector, catalog.matrix)
            )
            fields["mean_z"] = float(catalog.stats.mean_z(vector[None])[0])
    signal, _ = UploadSignal.objects.update_or_create(prediction=prediction, defaults=fields)
    return signal
