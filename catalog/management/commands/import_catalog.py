"""``manage.py import_catalog DIR``: import a folder in the shared manifest format into the catalog.

Draws a progress bar (tqdm, on stderr) while it imports and prints a short summary.
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from catalog.models import Product
from catalog.services import catalog_import_manifest


class Command(BaseCommand):
    help = "Import DIR/manifest.csv (image_path, brand, product_name, price_usd, source_*) into the catalog."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", type=Path, help="Folder holding manifest.csv and the images.")
        parser.add_argument("--manifest", default="manifest.csv", help="Manifest file name inside DIR.")
        parser.add_argument(
            "--kind",
            choices=Product.Kind.values,
            default=Product.Kind.LISTING,
            help="What a product row stands for: a shop listing (default) or a named shoe model with many photos "
            "(../shared/datasets/sneaker_models).",
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args, directory: Path, manifest: str, kind: str, no_progress: bool = False, **options) -> None:
        manifest_path = directory / manifest
        if not manifest_path.is_file():
            raise CommandError(f"{manifest_path} does not exist")

        bar = tqdm(
            total=0,
            unit="row",
            desc=f"import {directory.name}"[:30],
            file=getattr(self.stderr, "_out", None),
            disable=no_progress,
            dynamic_ncols=True,
        )

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            report = catalog_import_manifest(manifest_path=manifest_path, kind=kind, progress=progress)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()
        for line, message in report.errors:
            self.stderr.write(f"{manifest_path}:{line}: {message}")
        self.stdout.write(
            self.style.SUCCESS(
                f"{report.rows} rows: {report.images_created} images added, {report.images_unchanged} already present, "
                f"{report.products_created} products and {report.brands_created} brands created, "
                f"{len(report.errors)} bad rows skipped."
            )
        )
