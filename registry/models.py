"""``ModelVersion``: one trained model artifact in storage, its metrics and its place in the rollout;
``TrainingRun``: one training, evaluation or first-run job of the ``training`` queue and its progress."""

from django.conf import settings
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
    previous_version = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The version that was active when this one was activated; rolling back re-activates it.",
    )
    catalog_fingerprint = models.CharField(
        max_length=64,
        blank=True,
        help_text="SHA-256 of the catalog rows it was trained on; scheduled retraining skips an unchanged catalog.",
    )
    gate = models.JSONField(
        default=dict,
        blank=True,
        help_text="Activation gate of a retrained candidate: decision, reason and both versions' figures on the "
        "candidate's held-out photos (registry.gate.gate_decide).",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["status"], condition=Q(status="active"), name="registry_one_active_model")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"


class TrainingRun(models.Model):
    """One job of the ``training`` queue: a first-run bootstrap (import the shared sets, train, activate), a
    training started by staff or the schedule, or an evaluation; with its progress for admin and the site.

    Progress: ``stage`` (``STAGES``), ``done`` of ``total`` in that stage (photos, rows, epochs or steps, see
    ``worker.ml.training.run.STAGES``), ``eta_seconds`` (time left in the stage at the stage's rate so far),
    ``stages`` (``[{"stage", "total", "seconds"}]`` of the finished stages), ``log`` (the last
    ``LOG_TAIL_CHARS`` characters of its log lines). The worker writes it at most every few seconds
    (``registry.progress.RunProgress``) and touches ``heartbeat_at`` every ``HEARTBEAT_SECONDS``, so a run whose
    worker died is recognised (``registry.services.training_run_fail_stale``; ``worker`` names its host and process).
    """

    class Kind(models.TextChoices):
        BOOTSTRAP = "bootstrap", "first run (import and train)"
        TRAIN = "train", "train"
        RETRAIN = "retrain", "scheduled retraining"
        EVALUATE = "evaluate", "evaluate"

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        SKIPPED = "skipped", "skipped"

    LIVE = (Status.PENDING, Status.RUNNING)
    STAGES = (
        "importing",
        "splitting",
        "embedding",
        "preparing",
        "fitting",
        "augmenting",
        "fine-tuning",
        "finishing",
        "saving",
        "gating",
        "evaluating",
    )
    """Every stage a run can report: ``importing`` (bootstrap: catalog rows), the training stages of
    ``worker.ml.training.run.STAGES``, ``saving`` (artifact files to storage), ``gating`` and ``evaluating``
    (photos through the prediction pipeline)."""
    LOG_TAIL_CHARS = 20_000
    HEARTBEAT_SECONDS = 30

    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    options = models.JSONField(default=dict, blank=True, help_text="What the job was asked to do (seed, sets, ...).")
    stage = models.CharField(max_length=32, blank=True)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    eta_seconds = models.FloatField(null=True, blank=True, help_text="Seconds left in the current stage.")
    stage_started_at = models.DateTimeField(null=True, blank=True)
    stages = models.JSONField(default=list, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    model_version = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
        help_text="The version trained (train, bootstrap, retrain) or evaluated (evaluate).",
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True, help_text="host:pid of the process running the job.")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} ({self.status}{', ' + self.stage if self.stage and self.is_live else ''})"

    @property
    def is_live(self) -> bool:
        """True while pending or running."""
        return self.status in self.LIVE
