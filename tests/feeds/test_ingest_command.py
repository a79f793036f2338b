"""``manage.py ingest_feed`` (file, URL, --queue, failures) and ``import_catalog``'s progress bar and summary."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from catalog.models import Feed, FeedRun, Product
from tests.feeds.conftest import make_image

pytestmark = pytest.mark.django_db


def run_command(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("ingest_feed", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def feed_path(tmp_path: Path, server) -> Path:
    good = server.publish("/img/good.png", make_image("PNG", (5, 6, 7)), "image/png")
    path = tmp_path / "shop-feed.txt"
    path.write_text(
        "id\ttitle\tbrand\tprice\timage_link\n"
        f"A1\tNike Air Max 90\tNike\t89.99 USD\t{good}\n"
        f"A2\tBad price\tNike\tcheap\t{good}\n"
    )
    return path


def test_ingest_a_file_prints_a_bar_failures_and_a_summary(feed_path):
    out, err = run_command(str(feed_path))
    run = FeedRun.objects.get()
    assert out.strip() == (
        f"feed “shop-feed.txt” run {run.pk}: 2 rows: 1 added, 0 updated, 0 unchanged, 1 failed; 0 unlisted; "
        "1 photos added."
    )
    assert "line 3 (id A2): price 'cheap' is not a number" in err
    assert "2/2" in err and "row" in err  # tqdm's bar, on stderr
    assert (run.origin, run.source) == ("command", str(feed_path.resolve()))

    # Again: the feed reading this file is found; nothing changes.
    out, _ = run_command(str(feed_path))
    assert "0 added, 0 updated, 1 unchanged, 1 failed" in out
    assert Feed.objects.count() == 1 and Product.objects.count() == 1


def test_ingest_a_url(server, feed_path):
    url = server.publish("/feeds/shop.txt", feed_path.read_bytes(), "text/plain")
    out, err = run_command(url, "--feed", "Shop", "--no-progress")
    assert out.startswith("feed “Shop” run") and "1 added" in out
    assert "2/2" not in err
    assert Feed.objects.get().source == url


def test_queue_sends_the_run_to_the_worker(feed_path, monkeypatch):
    sent: list[int] = []
    monkeypatch.setattr(
        "catalog.management.commands.ingest_feed.feed_run_enqueue", lambda *, run_id: sent.append(run_id) or True
    )
    out, _ = run_command(str(feed_path), "--queue")
    run = FeedRun.objects.get()
    assert sent == [run.pk] and run.status == FeedRun.Status.QUEUED
    assert f"run {run.pk}" in out and "ingest queue" in out


def test_a_missing_file_and_a_failed_run_are_command_errors(tmp_path, server):
    with pytest.raises(CommandError, match="neither an http"):
        run_command(str(tmp_path / "nope.txt"))
    with pytest.raises(CommandError, match=r"failed: The feed could not be downloaded: .*404.*\(feed_unreadable\)"):
        run_command(server.url("/missing.txt"))
    assert FeedRun.objects.get().status == FeedRun.Status.FAILED


def test_import_catalog_draws_a_bar_and_prints_a_summary(tmp_path):
    (tmp_path / "a.png").write_bytes(make_image("PNG", (1, 1, 1)))
    (tmp_path / "b.jpg").write_bytes(make_image("JPEG", (200, 1, 1)))
    with (tmp_path / "manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_path", "brand", "product_name", "price_usd"])
        writer.writerow(["a.png", "nike", "Air", "100"])
        writer.writerow(["b.jpg", "vans", "Old Skool", "oops"])
    out, err = io.StringIO(), io.StringIO()
    call_command("import_catalog", str(tmp_path), stdout=out, stderr=err)
    assert out.getvalue().startswith("2 rows: 1 images added")  # the summary only: no "  1/2 rows" lines
    assert out.getvalue().count("\n") == 1
    assert "2/2" in err.getvalue()  # tqdm's bar
    assert "manifest.csv:3: price_usd 'oops' is not a number" in err.getvalue()
