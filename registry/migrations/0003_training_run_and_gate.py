# TrainingRun (progress of training, evaluation and first-run jobs); a version's previous version (roll
# back), catalog fingerprint (scheduled retraining skips an unchanged catalog) and activation gate.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("registry", "0002_own_table"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="modelversion",
            name="catalog_fingerprint",
            field=models.CharField(
                blank=True,
                help_text="SHA-256 of the catalog rows it was trained on; scheduled retraining skips an unchanged catalog.",
                max_length=64,
            ),
        ),
        migrations.AddField(
            model_name="modelversion",
            name="gate",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="Activation gate of a retrained candidate: decision, reason and both versions' figures on the candidate's held-out photos (registry.gate.gate_decide).",
            ),
        ),
        migrations.AddField(
            model_name="modelversion",
            name="previous_version",
            field=models.ForeignKey(
                blank=True,
                help_text="The version that was active when this one was activated; rolling back re-activates it.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="registry.modelversion",
            ),
        ),
        migrations.CreateModel(
            name="TrainingRun",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("bootstrap", "first run (import and train)"),
                            ("train", "train"),
                            ("retrain", "scheduled retraining"),
                            ("evaluate", "evaluate"),
                        ],
                        max_length=16,
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "pending"),
                            ("running", "running"),
                            ("succeeded", "succeeded"),
                            ("failed", "failed"),
                            ("skipped", "skipped"),
                        ],
                        db_index=True,
                        default="pending",
                        max_length=16,
                    ),
                ),
                (
                    "options",
                    models.JSONField(blank=True, default=dict, help_text="What the job was asked to do (seed, sets, ...)."),
                ),
                ("stage", models.CharField(blank=True, max_length=32)),
                ("done", models.PositiveIntegerField(default=0)),
                ("total", models.PositiveIntegerField(default=0)),
                (
                    "eta_seconds",
                    models.FloatField(blank=True, help_text="Seconds left in the current stage.", null=True),
                ),
                ("stage_started_at", models.DateTimeField(blank=True, null=True)),
                ("stages", models.JSONField(blank=True, default=list)),
                ("log", models.TextField(blank=True)),
                ("error", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("heartbeat_at", models.DateTimeField(blank=True, null=True)),
                (
                    "worker",
                    models.CharField(blank=True, help_text="host:pid of the process running the job.", max_length=255),
                ),
                (
                    "model_version",
                    models.ForeignKey(
                        blank=True,
                        help_text="The version trained (train, bootstrap, retrain) or evaluated (evaluate).",
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="runs",
                        to="registry.modelversion",
                    ),
                ),
                (
                    "requested_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"ordering": ["-created_at", "-id"]},
        ),
    ]
