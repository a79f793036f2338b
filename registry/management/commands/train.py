"""``manage.py train``: train a model version on the catalog, with progress bars and a summary table.

The training is a ``TrainingRun`` like the ones admin starts, so admin and the site show its progress too.
By default it runs in this process; ``--queue`` hands it to the ``jobs`` worker (queue ``training``) and
returns at once. ``--json`` prints the version's full metrics as one JSON object instead of the table.
"""

import argparse
import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry.jobs import run_options, training_run_execute
from registry.management.bars import StageBars
from registry.models import ModelVersion, TrainingRun
from registry.reports import summary_rows, text_table
from registry.services import training_run_start


class Command(BaseCommand):
    help = "Train brand, model and price heads and the similarity index on the catalog; register a ModelVersion."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--seed", type=int, default=None, help="Split and fit seed (default SNEAKERS_TRAINING_SEED)."
        )
        parser.add_argument("--no-flip", action="store_true", help="Skip horizontal-flip augmentation.")
        parser.add_argument(
            "--finetune",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="--finetune also fine-tunes the top of the backbone (about 30 minutes on 2 CPU cores) and keeps "
            "the variant that is better on validation; --no-finetune trains the heads only. Default: SNEAKERS_FINETUNE "
            "(true).",
        )
        activation = parser.add_mutually_exclusive_group()
        activation.add_argument(
            "--activate", action="store_true", help="Activate the new version even if one is active."
        )
        activation.add_argument(
            "--gate",
            action="store_true",
            help="Activate it only when it beats the active version on its held-out photos (registry.gate).",
        )
        parser.add_argument(
            "--queue", action="store_true", help="Start the training on the jobs worker and return at once."
        )
        parser.add_argument("--json", action="store_true", help="Print the full metrics as one JSON object.")

    def handle(
        self,
        *args,
        seed: int | None,
        no_flip: bool,
        finetune: bool | None,
        activate: bool,
        gate: bool,
        queue: bool,
        json: bool,
        **options,
    ) -> None:
        mode = "always" if activate else "gate" if gate else "first"
        opts = run_options(seed=seed, finetune=finetune, activate=mode, flip_augment=False if no_flip else None)
        if queue:
            run = training_run_start(kind=TrainingRun.Kind.TRAIN, options=opts)
            self.stdout.write(f"Training job #{run.id} queued; follow it in admin (Model registry > Training runs).")
            return
        run = TrainingRun.objects.create(kind=TrainingRun.Kind.TRAIN, options=opts)
        bars = StageBars(getattr(self.stderr, "_out", self.stderr), disable=True if json else None)
        try:
            training_run_execute(run_id=run.id, echo=bars)
        finally:
            bars.close()
        run.refresh_from_db()
        if run.status != TrainingRun.Status.SUCCEEDED or run.model_version is None:
            raise CommandError(run.error or f"training run #{run.id} ended {run.status}")
        version = run.model_version
        if json:
            self.stdout.write(_dumps(version.metrics))
            return
        self._summary(version, run)

    def _summary(self, version: ModelVersion, run: TrainingRun) -> None:
        """The version's headline figures and the time per stage, as two small tables."""
        self.stdout.write(text_table(summary_rows(version.metrics), header=("test figures", version.name)))
        stages = [(entry["stage"], f"{entry['seconds']:,.1f} s") for entry in run.stages]
        if stages:
            self.stdout.write("")
            self.stdout.write(text_table(stages, header=("stage", "time")))
        gate = version.gate or {}
        if gate.get("reason"):
            self.stdout.write(f"gate: {gate.get('decision')} ({gate['reason']})")
        self.stdout.write(
            self.style.SUCCESS(
                f"model version {version.name} ({version.status}) trained in {version.training_seconds} s; "
                "full metrics: --json or admin"
            )
        )


def _dumps(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=float)
