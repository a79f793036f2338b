"""Signals of the predictions app, for the apps above it (webhooks in ``partners``, ``monitoring``).

``prediction_finished`` is sent once the database transaction that moved a prediction to a terminal status
(``succeeded`` or ``failed``: a worker result, a worker failure, a refused upload, a failure by the sweeper)
has committed, with keyword arguments:

- ``prediction``: the ``Prediction`` as it was saved (status, result or error fields set);
- ``embedding``: the photo's backbone embedding, a NumPy ``float32`` array of shape ``(D,)`` when the
  worker computed one (succeeded results), else ``None``;
- ``nearest_similarity``: that embedding's largest cosine similarity to a catalog image of the model version's
  similarity index (a float, from the search the worker ran anyway), or ``None`` when no search ran.

It is sent with ``Signal.send_robust``: a receiver that raises is logged and does not undo or break the
state change (the row is already committed).
"""

import django.dispatch

prediction_finished = django.dispatch.Signal()
