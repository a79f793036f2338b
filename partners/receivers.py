"""Signal receivers of the partners app (connected in ``PartnersConfig.ready``)."""

from __future__ import annotations

from typing import Any

from partners.services import batch_finish_if_done, webhook_event_emit_prediction
from predictions.models import Prediction


def on_prediction_finished(sender: Any, prediction: Prediction, embedding: Any = None, **kwargs: Any) -> None:
    """A prediction reached a terminal status (after commit): notify its owner's webhooks and, when it is a
    batch item, finish its batch if it was the last item."""
    webhook_event_emit_prediction(prediction=prediction)
    batch_finish_if_done(prediction=prediction)
