# ModelVersion moves from the predictions app to the registry app. This step only tells Django's
# migration state that the model now lives here, on its old table; 0002 renames the table.

from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("predictions", "0003_prediction_abstain"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ModelVersion",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("name", models.CharField(max_length=64, unique=True)),
                        ("status", models.CharField(choices=[("candidate", "candidate"), ("active", "active"), ("retired", "retired")], default="candidate", max_length=16)),
                        ("artifact_prefix", models.CharField(help_text="Storage folder of the artifact files.", max_length=255)),
                        ("backbone_fingerprint", models.CharField(max_length=64)),
                        ("classes", models.JSONField(default=list, help_text="Brand slugs, in the order of the classifier's outputs.")),
                        ("metrics", models.JSONField(blank=True, default=dict)),
                        ("training_seconds", models.FloatField(blank=True, null=True)),
                        ("load_error", models.TextField(blank=True, help_text="Set by a worker that could not load this version.")),
                        ("load_checked_at", models.DateTimeField(blank=True, null=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("activated_at", models.DateTimeField(blank=True, null=True)),
                    ],
                    options={
                        "ordering": ["-created_at"],
                        "db_table": "predictions_modelversion",
                        "constraints": [models.UniqueConstraint(condition=models.Q(("status", "active")), fields=("status",), name="predictions_one_active_model")],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
