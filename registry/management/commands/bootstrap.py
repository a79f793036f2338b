"""``manage.py bootstrap``: make a fresh install usable, quickly; does nothing that is done or under way.

Run by ``make run`` after ``migrate``, before the site starts, so it only does what takes a moment (a few
queries): it finds the shared catalog sets the catalog lacks (``SNEAKERS_DATASET_DIR``: shop listings;
``SNEAKERS_MODELS_DATASET_DIR``: named shoe models) and whether a model is needed (none active, or the
active one lacks a catalog brand), and hands that work to the ``jobs`` worker as one ``bootstrap``
``TrainingRun`` (``registry.jobs``: import, then train and activate). The site shows the job's progress
while it runs and keeps uploads made meanwhile until the model is active.

It starts nothing when a model job is already pending or running (a pending one's message is sent again:
one lost with the broker is replaced, a duplicate does nothing), and first fails the running jobs whose
worker is gone (``training_run_fail_stale``: an interrupted ``make run``). ``--here`` does the work in this
process with progress bars instead (no worker needed; takes as long as the job).
"""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.models import Product
from catalog.selectors import brand_slugs_with_images, catalog_is_empty, product_kind_exists
from registry.jobs import run_options, training_run_execute
from registry.management.bars import StageBars
from registry.models import TrainingRun
from registry.selectors import model_version_get_active, training_run_live
from registry.services import training_run_enqueue, training_run_fail_stale, training_run_start


class Command(BaseCommand):
    help = "Start the first-run job (import the shared sets the catalog lacks, train a model) unless done or going."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--here", action="store_true", help="Do the work in this process (progress bars) instead of the worker."
        )

    def handle(self, *args, here: bool, **options) -> None:
        failed = training_run_fail_stale()
        if failed:
            self.stdout.write(f"{failed} job(s) interrupted with their worker marked failed.")
        live = training_run_live()
        if live is not None:
            if live.status == TrainingRun.Status.PENDING and not here:
                training_run_enqueue(run=live)
            stage = f", {live.stage} {live.done}/{live.total}" if live.stage else ""
            self.stdout.write(
                f"Job #{live.id} ({live.kind}, {live.status}{stage}) is under way: nothing started. "
                "Progress: the site's banner and admin (Model registry > Training runs)."
            )
            return
        imports = self._imports()
        active = model_version_get_active()
        missing = sorted(brand_slugs_with_images() - set(active.classes)) if active else []
        if not imports and active is not None and not missing:
            self.stdout.write(f"Catalog sets imported and model {active.name} active: nothing to do.")
            return
        if not imports and catalog_is_empty():
            self.stdout.write("The catalog is empty and no shared set was found: nothing to train on.")
            return
        if active is None:
            reason = "no model is active"
        elif missing:
            reason = f"the active model lacks {', '.join(missing)}"
        else:
            reason = "catalog sets are missing"
        opts = run_options(imports=[[str(folder), kind] for folder, kind in imports], activate="always")
        if here:
            self._run_here(TrainingRun.objects.create(kind=TrainingRun.Kind.BOOTSTRAP, options=opts))
            return
        run = training_run_start(kind=TrainingRun.Kind.BOOTSTRAP, options=opts)
        what = " and ".join(
            [*([f"import {', '.join(folder.name for folder, _ in imports)}"] if imports else []), "train a model"]
        )
        self.stdout.write(
            f"Started job #{run.id} ({reason}): the jobs worker will {what}. The site opens now and shows its "
            "progress; photos uploaded meanwhile are answered once the model is active."
        )

    def _imports(self) -> list[tuple[Path, str]]:
        """The shared sets to import: ``[(folder, Product.Kind)]`` of those the catalog lacks and that exist."""
        sets = [
            (Path(settings.SNEAKERS_DATASET_DIR), Product.Kind.LISTING, catalog_is_empty()),
            (
                Path(settings.SNEAKERS_MODELS_DATASET_DIR),
                Product.Kind.MODEL,
                not product_kind_exists(kind=Product.Kind.MODEL),
            ),
        ]
        imports = []
        for directory, kind, needed in sets:
            if not needed:
                self.stdout.write(f"{directory.name}: already in the catalog.")
            elif not (directory / "manifest.csv").is_file():
                self.stderr.write(
                    f"{directory}/manifest.csv is missing: set SNEAKERS_DATASET_DIR / SNEAKERS_MODELS_DATASET_DIR "
                    "or import a catalog with `manage.py import_catalog DIR`."
                )
            else:
                imports.append((directory, kind))
        return imports

    def _run_here(self, run: TrainingRun) -> None:
        """Do the bootstrap job in this process, with progress bars."""
        bars = StageBars(getattr(self.stderr, "_out", self.stderr))
        try:
            training_run_execute(run_id=run.id, echo=bars)
        finally:
            bars.close()
        run.refresh_from_db()
        if run.status != TrainingRun.Status.SUCCEEDED:
            raise CommandError(run.error or f"job #{run.id} ended {run.status}")
        self.stdout.write(self.style.SUCCESS(f"job #{run.id} done: model {run.model_version} active."))
