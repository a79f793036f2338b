"""``manage.py train``: train a model version on the catalog and print its test metrics."""

import argparse
import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry.services import model_version_activate
from registry.training import model_version_train
from worker.ml.errors import ModelError


class Command(BaseCommand):
    help = "Train brand and price heads and the similarity index on the catalog; register a ModelVersion."

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
        parser.add_argument("--activate", action="store_true", help="Activate the new version even if one is active.")

    def handle(self, *args, seed: int | None, no_flip: bool, finetune: bool | None, activate: bool, **options) -> None:
        step = {"next": 0}

        def progress(done: int, total: int) -> None:
            if done >= step["next"] or done == total:  # about every 10 %
                self.stdout.write(f"  embeddings {done}/{total}")
                step["next"] = done + max(total // 10, 1)

        try:
            version = model_version_train(
                seed=seed,
                flip_augment=False if no_flip else None,
                finetune=finetune,
                progress=progress,
            )
        except (ValueError, ModelError) as exc:
            raise CommandError(str(exc)) from exc
        if activate and version.status != version.Status.ACTIVE:
            model_version_activate(model_version=version)
        self.stdout.write(json.dumps(version.metrics, indent=2))
        self.stdout.write(
            self.style.SUCCESS(
                f"model version {version.name} ({version.status}) trained in {version.training_seconds} s"
            )
        )
