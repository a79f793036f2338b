"""Signal receivers of the monitoring app (connected in ``MonitoringConfig.ready``)."""

from __future__ import annotations

from typing import Any

from monitoring.services import upload_signal_record


def record_finished_prediction(
    sender: Any, prediction: Any, embedding: Any = None, nearest_similarity: float | None = None, **kwargs: Any
) -> None:
    """``predictions.signals.prediction_finished``: keep the prediction's monitoring signals (``UploadSignal``)."""
    upload_signal_record(prediction=prediction, embedding=embedding, nearest_similarity=nearest_similarity)
