"""Celery tasks of the model registry: thin wrappers around ``registry.training``.

The web process may import this module (to enqueue a training job); ``registry.training`` imports
TensorFlow only inside the functions that train.
"""

from __future__ import annotations

from celery import shared_task

from registry.training import model_version_train


@shared_task(name="registry.tasks.train", acks_late=True, soft_time_limit=3 * 3600, time_limit=3 * 3600 + 300)
def train(seed: int | None = None) -> str:
    """Train a new ``ModelVersion`` on the catalog (queue ``training``); returns its name."""
    return model_version_train(seed=seed).name
