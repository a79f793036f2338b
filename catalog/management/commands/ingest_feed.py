"""``manage.py ingest_feed FILE_OR_URL [--feed NAME]``: ingest a product feed (Google Merchant Center format).

Runs in this process with a progress bar (tqdm, on stderr) and prints a short summary; ``--queue`` hands the
run to the ``ingest`` queue instead. Every run is a ``FeedRun`` row that admin shows, with the file kept.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from catalog.feeds import (
    FeedError,
    FeedReport,
    feed_get_or_create,
    feed_run_create,
    feed_run_enqueue,
    feed_run_execute,
    source_is_url,
)
from catalog.models import FeedRun

SHOWN_FAILURES = 20
"""Failed rows printed; the run in admin lists up to ``catalog.feeds.MAX_REPORTED``."""


class Command(BaseCommand):
    help = (
        "Ingest a product feed (Google Merchant Center CSV/TSV or JSON lines) from a file or an http(s) URL: "
        "products added or updated, photos downloaded, products gone from the feed unlisted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", help="Path of the feed file, or its http(s) URL.")
        parser.add_argument(
            "--feed",
            help="Feed name (created when new); default: the feed already reading this source, or a new "
            "one named after it.",
        )
        parser.add_argument("--queue", action="store_true", help="Send the run to the worker's ingest queue.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args, source: str, feed: str | None, queue: bool, no_progress: bool, **options) -> None:
        data: bytes | None = None
        filename = ""
        if source_is_url(source):
            origin_source = source.strip()
        else:
            path = Path(source).expanduser()
            if not path.is_file():
                raise CommandError(f"{source} is neither an http(s) URL nor a file")
            origin_source, filename = str(path.resolve()), path.name
            data = path.read_bytes()
        feed_row = feed_get_or_create(name=feed, source=origin_source)
        try:
            run = feed_run_create(
                feed=feed_row, origin=FeedRun.Origin.COMMAND, source=origin_source, data=data, filename=filename
            )
        except FeedError as exc:
            raise CommandError(exc.message) from exc
        if queue:
            sent = feed_run_enqueue(run_id=run.pk)
            if not sent:
                raise CommandError(f"run {run.pk} of feed “{feed_row.name}” is queued but the broker refused it")
            self.stdout.write(f"run {run.pk} of feed “{feed_row.name}” sent to the ingest queue")
            return

        bar = tqdm(
            total=0,
            unit="row",
            desc=feed_row.name[:30],
            file=getattr(self.stderr, "_out", None),
            disable=no_progress,
            dynamic_ncols=True,
        )

        def progress(report: FeedReport) -> None:
            if bar.total != report.rows:
                bar.total = report.rows
            bar.set_postfix(added=report.added, updated=report.updated, failed=report.failed, refresh=False)
            bar.update(report.done - bar.n)

        try:
            finished = feed_run_execute(run_id=run.pk, progress=progress)
        finally:
            bar.close()
        run = finished or FeedRun.objects.get(pk=run.pk)
        if run.status == FeedRun.Status.FAILED:
            raise CommandError(f"feed “{feed_row.name}” run {run.pk} failed: {run.error_message} ({run.error_code})")
        for failure in run.failures[:SHOWN_FAILURES]:
            self.stderr.write(f"line {failure['line']} (id {failure['id'] or '?'}): {failure['reason']}")
        if run.failed > SHOWN_FAILURES:
            self.stderr.write(
                f"... and {run.failed - SHOWN_FAILURES} more failed rows (admin: feed runs, run {run.pk})"
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"feed “{feed_row.name}” run {run.pk}: {run.rows_total} rows: {run.added} added, {run.updated} "
                f"updated, {run.unchanged} unchanged, {run.failed} failed; {run.unlisted} unlisted; "
                f"{run.images_added} photos added."
            )
        )
