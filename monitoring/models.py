"""Rows of the monitoring app: one ``UploadSignal`` per finished prediction, one ``DriftReference`` per model version.

An ``UploadSignal`` copies what monitoring needs from a terminal ``Prediction`` (status, error code, abstain reason,
brand, stage timings in milliseconds, queue wait) plus what the prediction row does not keep: a summary of the
photo's embedding (its norm, its novelty against the catalog embeddings of the model version's similarity index, its
standardised distance to their mean). The dashboard and ``/api/v1/monitor/`` read these rows only, with an index on
``finished_at``.
"""

from django.db import models


class UploadSignal(models.Model):
    """What monitoring keeps of one finished prediction (written by ``monitoring.services.upload_signal_record``).

    Times are milliseconds; ``queue_ms`` is ``started_at - created_at`` (waiting in the broker), ``end_to_end_ms`` is
    ``finished_at - created_at``; the stage columns are the pipeline's ``timings_ms`` (``decode``, ``background``,
    ``embed``, ``heads``, ``search``, ``total``). Embedding figures are empty when the worker computed no embedding
    (failed or refused uploads) or the version's index has no embeddings.
    """

    prediction = models.OneToOneField(
        "predictions.Prediction", on_delete=models.CASCADE, related_name="upload_signal", primary_key=True
    )
    created_at = models.DateTimeField(help_text="When the upload arrived (the prediction's created_at).")
    finished_at = models.DateTimeField(db_index=True, help_text="When it reached its terminal status.")
    status = models.CharField(max_length=16, db_index=True)
    channel = models.CharField(max_length=8, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    abstain_reason = models.CharField(max_length=32, blank=True)
    brand = models.CharField(max_length=50, blank=True, help_text="Top-1 brand shown (empty when abstaining).")
    top_probability = models.FloatField(null=True, blank=True, help_text="Probability of the top-1 brand guess.")
    with_text = models.BooleanField(default=False, help_text="A listing title or description came with the photo.")
    model_version = models.ForeignKey(
        "registry.ModelVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    queue_ms = models.FloatField(null=True, blank=True)
    decode_ms = models.FloatField(null=True, blank=True)
    background_ms = models.FloatField(null=True, blank=True)
    embed_ms = models.FloatField(null=True, blank=True)
    heads_ms = models.FloatField(null=True, blank=True)
    search_ms = models.FloatField(null=True, blank=True)
    pipeline_ms = models.FloatField(null=True, blank=True, help_text="The pipeline's own total (timings_ms.total).")
    end_to_end_ms = models.FloatField(null=True, blank=True)

    embedding_norm = models.FloatField(null=True, blank=True, help_text="L2 norm of the embedding (1 when healthy).")
    novelty = models.FloatField(
        null=True, blank=True, help_text="1 - cosine similarity to the nearest catalog embedding of the version."
    )
    mean_z = models.FloatField(
        null=True,
        blank=True,
        help_text="RMS over dimensions of (embedding - catalog mean) / catalog std: distance to the training mean "
        "in units of its standard deviation.",
    )
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-finished_at"]
        indexes = [models.Index(fields=["status", "finished_at"], name="monitoring_signal_status_time")]

    def __str__(self) -> str:
        return f"{self.prediction_id} ({self.status})"


STAGES = ("queue", "decode", "background", "embed", "heads", "search", "pipeline", "end_to_end")
"""Latency columns of ``UploadSignal`` (``<stage>_ms``), in the order a job goes through them."""


class DriftReference(models.Model):
    """The catalog's own distribution of the drift scores, per model version (the "training values" of drift).

    Computed once by a worker from the version's similarity index (``monitoring.drift.reference_scores``): for a
    seeded sample of catalog embeddings, the novelty each would have as an upload (nearest embedding of another
    product) and its ``mean_z``. Uploads are compared with these lists (population stability index, KS statistic).
    """

    model_version = models.OneToOneField("registry.ModelVersion", on_delete=models.CASCADE, related_name="+")
    novelty = models.JSONField(default=list, help_text="Sorted novelty values of the sampled catalog embeddings.")
    mean_z = models.JSONField(default=list, help_text="Sorted mean_z values of the same sample.")
    catalog_rows = models.PositiveIntegerField(default=0, help_text="Embeddings in the version's index.")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"drift reference of version {self.model_version_id}"


class MonitorDashboard(UploadSignal):
    """Proxy of ``UploadSignal`` whose admin page is the monitoring dashboard (plots), listed on the admin index."""

    class Meta:
        proxy = True
        verbose_name = "monitoring dashboard"
        verbose_name_plural = "monitoring dashboard"
