"""Signals of the model registry, for the apps above it (``registry`` never imports them).

``model_activated`` is sent once the transaction that activated a version has committed, from whichever
process activated it (a training job, admin, a command), with ``model_version`` (the now active
``ModelVersion``) and ``previous`` (the version active before, or None for the first model ever). The
predictions app enqueues the uploads that waited for a model (``predictions.receivers``).
"""

from django.dispatch import Signal

model_activated = Signal()
