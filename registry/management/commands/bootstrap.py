"""``manage.py bootstrap``: make a fresh install usable; does nothing that is already done.

Imports ``SNEAKERS_DATASET_DIR`` when the catalog is empty, and trains when no model is active.
Used by ``make run`` (the README's first command) after ``migrate``.
"""

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from catalog.selectors import catalog_is_empty
from registry.selectors import model_version_get_active


class Command(BaseCommand):
    help = "Import the shared dataset if the catalog is empty; train if no model version is active."

    def handle(self, *args, **options) -> None:
        dataset = settings.SNEAKERS_DATASET_DIR
        if catalog_is_empty():
            if not (dataset / "manifest.csv").is_file():
                self.stderr.write(
                    f"The catalog is empty and {dataset}/manifest.csv is missing: set SNEAKERS_DATASET_DIR "
                    "or import a catalog with `manage.py import_catalog DIR`."
                )
                return
            self.stdout.write(f"Importing the catalog from {dataset} ...")
            call_command("import_catalog", str(dataset), stdout=self.stdout, stderr=self.stderr)
        else:
            self.stdout.write("Catalog present: import skipped.")
        active = model_version_get_active()
        if active is None:
            self.stdout.write("No active model: training one (embeddings are cached for next time) ...")
            call_command("train", stdout=self.stdout, stderr=self.stderr)
        else:
            self.stdout.write(f"Model {active.name} is active: training skipped.")
