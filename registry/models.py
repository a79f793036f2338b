"""``ModelVersion``: one trained model artifact in storage, its metrics and its place in the rollout."""

from django.db import models
from django.db.models import Q


class ModelVersion(models.Model):
    """A trained model: artifact files in storage under ``artifact_prefix`` and its test metrics.

    At most one version is ``active`` (a partial unique constraint); workers serve the active one.
    """

    class Status(models.TextChoices):
        CANDIDATE = "candidate", "candidate"
        ACTIVE = "active", "active"
        RETIRED = "retired", "retired"

    name = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANDIDATE)
    artifact_prefix = models.CharField(max_length=255, help_text="Storage folder of the artifact files.")
    backbone_fingerprint = models.CharField(max_length=64)
    classes = models.JSONField(default=list, help_text="Brand slugs, in the order of the classifier's outputs.")
    metrics = models.JSONField(default=dict, blank=True)
    training_seconds = models.FloatField(null=True, blank=True)
    load_error = models.TextField(blank=True, help_text="Set by a worker that could not load this version.")
    load_checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["status"], condition=Q(status="active"), name="registry_one_active_model")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"
