"""``manage.py bootstrap``: make a fresh install usable; does nothing that is already done.

Imports each shared catalog set that is not in the catalog yet (``SNEAKERS_DATASET_DIR``: shop
listings; ``SNEAKERS_MODELS_DATASET_DIR``: named shoe models), and trains when no model is active or
the catalog has brands the active model does not know. Used by ``make run`` (the README's first
command) after ``migrate``.
"""

from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from catalog.models import Product
from catalog.selectors import brand_slugs_with_images, catalog_is_empty, product_kind_exists
from registry.selectors import model_version_get_active


class Command(BaseCommand):
    help = "Import the shared catalog sets not imported yet; train if no model is active or brands are missing."

    def handle(self, *args, **options) -> None:
        sets = [
            (Path(settings.SNEAKERS_DATASET_DIR), Product.Kind.LISTING, catalog_is_empty()),
            (
                Path(settings.SNEAKERS_MODELS_DATASET_DIR),
                Product.Kind.MODEL,
                not product_kind_exists(kind=Product.Kind.MODEL),
            ),
        ]
        for directory, kind, needed in sets:
            if not needed:
                self.stdout.write(f"{directory.name}: already in the catalog, import skipped.")
            elif not (directory / "manifest.csv").is_file():
                self.stderr.write(
                    f"{directory}/manifest.csv is missing: set SNEAKERS_DATASET_DIR / SNEAKERS_MODELS_DATASET_DIR "
                    "or import a catalog with `manage.py import_catalog DIR`."
                )
            else:
                self.stdout.write(f"Importing {directory} ({kind}s) ...")
                call_command("import_catalog", str(directory), kind=kind, stdout=self.stdout, stderr=self.stderr)
        if catalog_is_empty():
            return
        active = model_version_get_active()
        missing = sorted(brand_slugs_with_images() - set(active.classes)) if active else []
        if active is None or missing:
            reason = "No active model" if active is None else f"The active model lacks {', '.join(missing)}"
            self.stdout.write(f"{reason}: training one (embeddings are cached for next time) ...")
            call_command("train", activate=active is not None, stdout=self.stdout, stderr=self.stderr)
        else:
            self.stdout.write(f"Model {active.name} is active: training skipped.")
