"""Feed ingest end to end against the test HTTP server: runs, idempotency, unlisting, failure reasons, the
kept file, progress, the Celery tasks and the schedule."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from catalog import feeds
from catalog.feeds import feed_get_or_create, feed_run_create, feed_run_execute, feeds_ingest_scheduled
from catalog.models import Brand, Feed, FeedRun, Product, ProductImage
from catalog.tasks import ingest_feed, ingest_scheduled_feeds
from tests.factories import ProductFactory
from tests.feeds.conftest import GOOD_JPEG, GOOD_PNG, make_image

pytestmark = pytest.mark.django_db

HEADER = "id\ttitle\tbrand\tprice\timage_link\tadditional_image_link\tlink\n"


def tsv(*rows: tuple[str, ...]) -> bytes:
    return (HEADER + "".join("\t".join(row) + "\n" for row in rows)).encode()


@pytest.fixture
def photos(server):
    """Three distinct photos published on the server: ``{name: url}``."""
    return {
        "a": server.publish("/img/a.jpg", make_image("JPEG", (255, 0, 0)), "image/jpeg"),
        "b": server.publish("/img/b.png", make_image("PNG", (0, 255, 0)), "image/png"),
        "c": server.publish("/img/c.webp", make_image("WEBP", (0, 0, 255)), "image/webp"),
    }


def run_file(feed: Feed, data: bytes, filename: str = "feed.txt") -> FeedRun:
    run = feed_run_create(feed=feed, origin=FeedRun.Origin.COMMAND, data=data, filename=filename)
    return feed_run_execute(run_id=run.pk)


def counts(run: FeedRun) -> dict[str, int]:
    return {name: getattr(run, name) for name in ("added", "updated", "unchanged", "failed", "unlisted")}


def test_first_run_adds_products_photos_and_brands(server, photos):
    feed = feed_get_or_create(name="shop")
    data = tsv(
        ("A1", "Nike Air Max 90", "Nike", "89.99 USD", photos["a"], photos["b"], "https://shop.example/a1"),
        ("A2", "Hoka Clifton 9", "Hoka One One", "145", photos["c"], "", ""),
    )
    run = run_file(feed, data)
    assert run.status == FeedRun.Status.SUCCEEDED
    assert counts(run) == {"added": 2, "updated": 0, "unchanged": 0, "failed": 0, "unlisted": 0}
    assert (run.rows_total, run.rows_done, run.images_added, run.failures) == (2, 2, 3, [])

    a1 = Product.objects.get(feed=feed, external_id="A1")
    assert (a1.name, a1.brand.slug, a1.price_usd, a1.link) == (
        "Nike Air Max 90",
        "nike",
        Decimal("89.99"),
        "https://shop.example/a1",
    )
    assert (a1.price_kind, a1.kind, a1.is_listed) == ("list", "listing", True)
    assert "shop" in a1.price_source
    images = list(a1.images.order_by("source_path"))
    assert [image.source_path for image in images] == [photos["a"], photos["b"]]
    assert [(image.width, image.height, image.brand_id) for image in images] == [(48, 40, a1.brand_id)] * 2
    for image in images:
        with image.image.open("rb") as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == image.sha256
    assert Brand.objects.get(slug="hoka-one-one").name == "Hoka One One"  # unknown brand created
    # The file read is kept on the run.
    with run.file.open("rb") as handle:
        assert handle.read() == data
    assert run.file_sha256 == hashlib.sha256(data).hexdigest()


def test_a_second_run_of_the_same_feed_changes_nothing(server, photos):
    feed = feed_get_or_create(name="shop")
    data = tsv(
        ("A1", "Nike Air Max 90", "Nike", "89.99 USD", photos["a"], photos["b"], "https://shop.example/a1"),
        ("A2", "Vans Old Skool", "Vans", "65", photos["c"], "", ""),
    )
    run_file(feed, data)
    before = {p.pk: p.updated_at for p in Product.objects.all()}
    second = run_file(feed, data)
    assert counts(second) == {"added": 0, "updated": 0, "unchanged": 2, "failed": 0, "unlisted": 0}
    assert second.images_added == 0
    assert ProductImage.objects.count() == 3
    assert Product.objects.count() == 2
    assert {p.pk: p.updated_at for p in Product.objects.all()} == before


def test_changes_are_updates_and_gone_products_are_unlisted_then_relisted(server, photos):
    feed = feed_get_or_create(name="shop")
    run_file(
        feed,
        tsv(
            ("A1", "Nike Air Max 90", "Nike", "89.99", photos["a"], "", ""),
            ("A2", "Vans Old Skool", "Vans", "65", photos["b"], "", ""),
            ("A3", "Puma Suede", "Puma", "70", photos["c"], "", ""),
        ),
    )
    other_feed_product = ProductFactory(name="Not from this feed")
    second = run_file(
        feed,
        tsv(
            ("A1", "Nike Air Max 90", "Nike", "79.99", photos["a"], "", ""),  # price changed
            ("A2", "Vans Old Skool", "Vans", "65", photos["b"], photos["c"], ""),  # A3's photo: not A2's
        ),
    )
    assert counts(second) == {"added": 0, "updated": 1, "unchanged": 1, "failed": 0, "unlisted": 1}
    assert second.warnings and "already in the catalog" in second.warnings[0]["reason"]  # A3's photo stays A3's
    a1, a3 = Product.objects.get(external_id="A1"), Product.objects.get(external_id="A3")
    assert a1.price_usd == Decimal("79.99")
    assert (a3.is_listed, a3.images.count()) == (False, 1)  # unlisted, not deleted
    other_feed_product.refresh_from_db()
    assert other_feed_product.is_listed

    new_photo = server.publish("/img/d.jpg", make_image("JPEG", (9, 9, 9)), "image/jpeg")
    third = run_file(
        feed,
        tsv(
            ("A1", "Nike Air Max 90", "Nike", "79.99", photos["a"], "", ""),
            ("A2", "Vans Old Skool", "Vans", "65", photos["b"], new_photo, ""),
            ("A3", "Puma Suede", "Puma", "70", photos["c"], "", ""),
        ),
    )
    assert counts(third) == {"added": 0, "updated": 2, "unchanged": 1, "failed": 0, "unlisted": 0}
    a3.refresh_from_db()
    assert a3.is_listed
    assert Product.objects.get(external_id="A2").images.count() == 2


def test_bad_rows_are_counted_with_reasons_and_do_not_stop_the_feed(server, photos):
    ProductFactory(brand__slug="vans", brand__name="Vans", name="Taken Title", price_usd=Decimal("50.00"))
    feed = feed_get_or_create(name="shop")
    run = run_file(
        feed,
        tsv(
            ("B1", "No brand", "", "10", photos["a"], "", ""),  # line 2
            ("B2", "Bad price", "Nike", "ten", photos["a"], "", ""),  # 3
            ("B3", "All photos fail", "Nike", "10", server.url("/missing.jpg"), server.url("/page.html"), ""),  # 4
            ("B4", "Truncated photo", "Nike", "10", server.url("/half.jpg"), "", ""),  # 5
            ("B5", "Taken Title", "Vans", "50", photos["b"], "", ""),  # 6: a title the catalog has: its own product
            ("B6", "Good one", "Nike", "10", photos["a"], server.url("/missing.jpg"), ""),  # 7
            ("B7", "Private", "Nike", "10", "ftp://example.com/x.jpg", "", ""),  # 8
        ),
    )
    assert run.status == FeedRun.Status.SUCCEEDED
    assert counts(run) == {"added": 2, "updated": 0, "unchanged": 0, "failed": 5, "unlisted": 0}
    reasons = {failure["id"]: failure["reason"] for failure in run.failures}
    assert reasons["B1"] == "brand is empty"
    assert reasons["B2"] == "price 'ten' is not a number with an optional currency code"
    assert reasons["B3"].startswith("no usable photo: ")
    assert "url_http_error" in reasons["B3"] and "url_not_image" in reasons["B3"]
    assert "image_unreadable" in reasons["B4"]
    assert "url_scheme" in reasons["B7"]
    assert [failure["line"] for failure in run.failures] == [2, 3, 4, 5, 8]
    # The good row with one missing photo is ingested, the missing photo reported as a warning.
    assert Product.objects.get(external_id="B6").images.count() == 1
    assert [(w["id"], "url_http_error" in w["reason"]) for w in run.warnings] == [("B6", True)]
    # A failed row leaves nothing behind.
    assert not Product.objects.filter(external_id__in=["B1", "B2", "B3", "B4", "B7"]).exists()
    # The shop's listing of a title the catalog already has at that price is a product of its own.
    assert Product.objects.filter(brand__slug="vans", name="Taken Title", price_usd=Decimal("50.00")).count() == 2


def test_variants_with_the_same_brand_title_and_price_are_products_of_their_own(server, photos):
    feed = feed_get_or_create(name="shop")
    run = run_file(
        feed,
        tsv(
            ("V-41", "Nike Air Max 90", "Nike", "89.99", photos["a"], "", ""),
            ("V-42", "Nike Air Max 90", "Nike", "89.99", photos["b"], "", ""),
        ),
    )
    assert (run.added, run.failed) == (2, 0)
    assert sorted(Product.objects.filter(name="Nike Air Max 90").values_list("external_id", flat=True)) == [
        "V-41",
        "V-42",
    ]


def test_an_unreadable_file_fails_the_run_keeps_the_file_and_unlists_nothing(server, photos):
    feed = feed_get_or_create(name="shop")
    run_file(feed, tsv(("A1", "Nike Air Max 90", "Nike", "89.99", photos["a"], "", "")))
    bad = b"<html><body>Sorry, the feed moved</body></html>"
    run = run_file(feed, bad, filename="feed.csv")
    assert (run.status, run.error_code) == (FeedRun.Status.FAILED, "feed_columns")
    assert "lacks column(s)" in run.error_message
    with run.file.open("rb") as handle:
        assert handle.read() == bad
    assert Product.objects.get(external_id="A1").is_listed


def test_a_feed_by_url_is_downloaded_and_kept(server, photos):
    data = json.dumps(
        {"id": "J1", "title": "Puma Suede", "brand": "Puma", "price": "70 USD", "image_link": photos["a"]}
    ).encode()
    url = server.publish("/feeds/products.jsonl", data, "application/x-ndjson")
    feed = feed_get_or_create(source=url)
    assert (feed.name, feed.source) == ("127.0.0.1/products.jsonl", url)
    run = feed_run_execute(run_id=feed_run_create(feed=feed, origin=FeedRun.Origin.SCHEDULE).pk)
    assert (run.status, run.added) == (FeedRun.Status.SUCCEEDED, 1)
    assert run.source == url
    with run.file.open("rb") as handle:
        assert handle.read() == data


def test_a_feed_url_that_fails_fails_the_run(server):
    feed = feed_get_or_create(source=server.url("/missing.txt"))
    run = feed_run_execute(run_id=feed_run_create(feed=feed, origin=FeedRun.Origin.ADMIN).pk)
    assert (run.status, run.error_code) == (FeedRun.Status.FAILED, "feed_unreadable")
    assert "404" in run.error_message


def test_a_server_path_is_read_only_for_the_operator(tmp_path, photos, settings):
    path = tmp_path / "feed.txt"
    path.write_bytes(tsv(("A1", "Nike Air Max 90", "Nike", "89.99", photos["a"], "", "")))
    feed = feed_get_or_create(name="shop")
    refused = feed_run_execute(run_id=feed_run_create(feed=feed, origin=FeedRun.Origin.ADMIN, source=str(path)).pk)
    assert (refused.status, refused.error_code) == (FeedRun.Status.FAILED, "feed_source")
    settings.SNEAKERS_FEEDS = [str(path)]
    allowed = feed_run_execute(run_id=feed_run_create(feed=feed, origin=FeedRun.Origin.SCHEDULE, source=str(path)).pk)
    assert (allowed.status, allowed.added) == (FeedRun.Status.SUCCEEDED, 1)


def test_progress_is_recorded_in_the_run_while_it_runs(server, monkeypatch):
    monkeypatch.setattr(feeds, "CHUNK_URLS", 2)
    urls = [server.publish(f"/p/{n}.png", make_image("PNG", (n, 1, 2)), "image/png") for n in range(5)]
    feed = feed_get_or_create(name="shop")
    run = feed_run_create(
        feed=feed,
        origin=FeedRun.Origin.COMMAND,
        data=tsv(*[(f"P{n}", f"Shoe {n}", "Nike", "10", url, "", "") for n, url in enumerate(urls)]),
    )
    seen: list[tuple[str, int, int]] = []

    def watch(report) -> None:
        row = FeedRun.objects.get(pk=run.pk)
        seen.append((row.status, row.rows_done, row.rows_total))

    feed_run_execute(run_id=run.pk, progress=watch)
    assert seen[0] == ("running", 0, 5)
    assert [done for _, done, _ in seen] == sorted(done for _, done, _ in seen)
    assert {done for _, done, _ in seen} >= {2, 4, 5}  # a chunk of two photos at a time
    assert FeedRun.objects.get(pk=run.pk).progress_percent == 100


def test_a_run_is_done_once(server, photos):
    feed = feed_get_or_create(name="shop")
    run = feed_run_create(
        feed=feed, origin=FeedRun.Origin.COMMAND, data=tsv(("A1", "T", "Nike", "1", photos["a"], "", ""))
    )
    assert ingest_feed(run.pk) == "succeeded"
    assert ingest_feed(run.pk) == "skipped"  # a redelivered message changes nothing
    assert FeedRun.objects.get(pk=run.pk).added == 1


def test_the_schedule_starts_configured_and_scheduled_feeds(server, photos, settings, monkeypatch):
    sent: list[int] = []
    monkeypatch.setattr(feeds, "feed_run_enqueue", lambda *, run_id: sent.append(run_id) or True)
    configured = server.publish("/feeds/a.txt", tsv(("A1", "T", "Nike", "1", photos["a"], "", "")), "text/plain")
    settings.SNEAKERS_FEEDS = [configured]
    marked = Feed.objects.create(name="marked", source=server.url("/feeds/b.txt"), scheduled=True)
    Feed.objects.create(name="not scheduled", source=server.url("/feeds/c.txt"))

    runs = feeds_ingest_scheduled()
    assert sorted(run.feed.name for run in runs) == ["127.0.0.1/a.txt", "marked"]
    assert sorted(sent) == sorted(run.pk for run in runs)
    assert Feed.objects.get(source=configured).scheduled
    # A feed with a run pending is not started twice.
    assert feeds_ingest_scheduled() == []
    # A run lost by its worker is failed and the feed started again.
    FeedRun.objects.filter(feed=marked).update(
        status=FeedRun.Status.RUNNING, started_at=timezone.now() - timedelta(hours=3)
    )
    again = feeds_ingest_scheduled()
    assert [run.feed_id for run in again] == [marked.pk]
    assert FeedRun.objects.filter(feed=marked, error_code="worker_lost").count() == 1


def test_the_beat_task_sends_each_run_to_the_ingest_task(server, photos, settings, monkeypatch):
    from sneakers.celery import app

    sent: list[tuple[str, list]] = []
    monkeypatch.setattr(app, "send_task", lambda name, args=None, **kwargs: sent.append((name, args)))
    configured = server.publish("/feeds/a.txt", tsv(("A1", "T", "Nike", "1", photos["a"], "", "")), "text/plain")
    settings.SNEAKERS_FEEDS = [configured]
    [run_id] = ingest_scheduled_feeds()
    assert sent == [("catalog.tasks.ingest_feed", [run_id])]
    # What the worker then does with that message:
    assert ingest_feed(*sent[0][1]) == "succeeded"
    run = FeedRun.objects.get(pk=run_id)
    assert (run.status, run.origin, run.added) == (FeedRun.Status.SUCCEEDED, "schedule", 1)


def test_a_run_the_broker_refuses_stays_queued(monkeypatch):
    from sneakers.celery import app

    def refuse(*args, **kwargs):
        raise OSError("broker down")

    monkeypatch.setattr(app, "send_task", refuse)
    run = feed_run_create(feed=feed_get_or_create(name="shop"), origin=FeedRun.Origin.ADMIN, data=b"x")
    assert feeds.feed_run_enqueue(run_id=run.pk) is False
    assert FeedRun.objects.get(pk=run.pk).status == FeedRun.Status.QUEUED


def test_routes_and_beat_entry(settings):
    assert settings.CELERY_TASK_ROUTES["catalog.tasks.ingest_feed"] == {"queue": "ingest"}
    assert settings.CELERY_TASK_ROUTES["catalog.tasks.ingest_scheduled_feeds"] == {"queue": "ingest"}
    entry = settings.CELERY_BEAT_SCHEDULE["ingest-feeds"]
    assert entry["task"] == "catalog.tasks.ingest_scheduled_feeds"
    assert entry["schedule"] == settings.SNEAKERS_FEED_INTERVAL_SECONDS


def test_same_photo_bytes_under_two_urls_are_stored_once(server):
    first = server.publish("/x/1.jpg", GOOD_JPEG, "image/jpeg")
    second = server.publish("/x/2.jpg", GOOD_JPEG, "image/jpeg")
    png = server.publish("/x/3.png", GOOD_PNG, "image/png")
    feed = feed_get_or_create(name="shop")
    run = run_file(feed, tsv(("A1", "T", "Nike", "1", first, f"{second},{png}", "")))
    assert (run.added, run.images_added) == (1, 2)
    assert ProductImage.objects.filter(sha256=hashlib.sha256(GOOD_JPEG).hexdigest()).count() == 1
