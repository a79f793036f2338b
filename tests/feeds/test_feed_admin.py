"""Feed admin: start an ingest from an uploaded file or a URL (the task runs eagerly here), the run's page with
progress, counts and failed rows, form refusals and permissions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from catalog import feeds
from catalog.models import Feed, FeedRun, Product
from catalog.tasks import ingest_feed
from tests.feeds.conftest import make_image

pytestmark = pytest.mark.django_db

HEADER = "id\ttitle\tbrand\tprice\timage_link\n"


@pytest.fixture
def staff_client(client, django_user_model):
    admin = django_user_model.objects.create_superuser(username="staff", password="pw-staff-123", email="s@x.io")
    client.force_login(admin)
    return client


@pytest.fixture
def eager(monkeypatch) -> list[int]:
    """An enqueued ingest runs at once in this process: the task function is called with the run id that
    ``feed_run_enqueue`` would send (``test_feed_ingest`` checks what it sends). Returns the ids sent."""
    sent: list[int] = []

    def enqueue(*, run_id: int) -> bool:
        sent.append(run_id)
        ingest_feed(run_id)
        return True

    monkeypatch.setattr(feeds, "feed_run_enqueue", enqueue)
    return sent


@pytest.fixture
def feed_file(server) -> bytes:
    good = server.publish("/img/good.jpg", make_image("JPEG", (1, 2, 3)), "image/jpeg")
    return (
        HEADER
        + f"A1\tNike Air Max 90\tNike\t89.99 USD\t{good}\n"
        + f"A2\tBroken\tNike\t10\t{server.url('/missing.jpg')}\n"
        + f"A3\t\tNike\t10\t{good}\n"
    ).encode()


def start(client, django_capture_on_commit_callbacks, data: dict, url: str | None = None):
    with django_capture_on_commit_callbacks(execute=True):
        return client.post(url or reverse("admin:catalog_feed_ingest"), data)


def test_the_feed_list_offers_the_ingest_form(staff_client):
    page = staff_client.get(reverse("admin:catalog_feed_changelist")).content.decode()
    assert reverse("admin:catalog_feed_ingest") in page
    form = staff_client.get(reverse("admin:catalog_feed_ingest")).content.decode()
    assert 'enctype="multipart/form-data"' in form and 'name="file"' in form and 'name="url"' in form


def test_ingest_an_uploaded_file(staff_client, eager, feed_file, django_capture_on_commit_callbacks):
    upload = SimpleUploadedFile("products.txt", feed_file, content_type="text/plain")
    response = start(staff_client, django_capture_on_commit_callbacks, {"name": "Shop A", "url": "", "file": upload})
    run = FeedRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:catalog_feedrun_change", args=[run.pk])
    assert (run.feed.name, run.origin, run.status) == ("Shop A", "admin", FeedRun.Status.SUCCEEDED)
    assert (run.added, run.failed) == (1, 2)
    with run.file.open("rb") as handle:
        assert handle.read() == feed_file
    assert Product.objects.get(external_id="A1").feed == run.feed

    page = staff_client.get(response["Location"]).content.decode()
    assert 'http-equiv="refresh"' not in page  # finished: no reload
    assert '<progress max="100" value="100"' in page
    assert "no usable photo" in page and "url_http_error" in page and "title is empty" in page
    runs = staff_client.get(reverse("admin:catalog_feedrun_changelist")).content.decode()
    assert "Shop A" in runs and "succeeded" in runs


def test_ingest_from_a_url_and_schedule_it(staff_client, eager, server, feed_file, django_capture_on_commit_callbacks):
    url = server.publish("/feeds/shop.txt", feed_file, "text/plain")
    response = start(
        staff_client, django_capture_on_commit_callbacks, {"name": "Shop B", "url": url, "scheduled": "on"}
    )
    assert response.status_code == 302
    feed = Feed.objects.get(name="Shop B")
    assert (feed.source, feed.scheduled) == (url, True)
    run = feed.runs.get()
    assert (run.source, run.status, run.added) == (url, FeedRun.Status.SUCCEEDED, 1)
    # The feed list shows its products and latest run.
    page = staff_client.get(reverse("admin:catalog_feed_changelist")).content.decode()
    assert reverse("admin:catalog_feedrun_change", args=[run.pk]) in page


def test_ingest_now_from_a_feed_page(staff_client, eager, server, feed_file, django_capture_on_commit_callbacks):
    url = server.publish("/feeds/shop.txt", feed_file, "text/plain")
    feed = Feed.objects.create(name="Shop C", source=url)
    page = staff_client.get(reverse("admin:catalog_feed_change", args=[feed.pk])).content.decode()
    ingest_url = reverse("admin:catalog_feed_ingest_feed", args=[feed.pk])
    assert ingest_url in page
    form = staff_client.get(ingest_url).content.decode()
    assert f'value="{url}"' in form and 'value="Shop C"' in form
    start(staff_client, django_capture_on_commit_callbacks, {"name": "Shop C", "url": url}, ingest_url)
    assert feed.runs.get().status == FeedRun.Status.SUCCEEDED


def test_the_list_action_ingests_feeds_with_a_url(
    staff_client, eager, server, feed_file, django_capture_on_commit_callbacks
):
    with_url = Feed.objects.create(name="with url", source=server.publish("/feeds/shop.txt", feed_file, "text/plain"))
    without = Feed.objects.create(name="uploads only")
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("admin:catalog_feed_changelist"),
            {"action": "ingest_now", "_selected_action": [with_url.pk, without.pk]},
            follow=True,
        )
    assert with_url.runs.get().status == FeedRun.Status.SUCCEEDED
    assert not without.runs.exists()
    assert "uploads only" in response.content.decode()  # named as skipped


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"name": "X", "url": ""}, "Give either a URL or a file."),
        ({"name": "X", "url": "ftp://example.com/feed.txt"}, "Enter a valid URL."),
        ({"name": "", "url": "https://example.com/feed.txt"}, "This field is required."),
    ],
)
def test_form_refusals(staff_client, data, error):
    response = staff_client.post(reverse("admin:catalog_feed_ingest"), data)
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not FeedRun.objects.exists()


def test_both_a_url_and_a_file_is_refused(staff_client):
    upload = SimpleUploadedFile("f.txt", b"id\ttitle\n", content_type="text/plain")
    response = staff_client.post(
        reverse("admin:catalog_feed_ingest"), {"name": "X", "url": "https://example.com/f.txt", "file": upload}
    )
    assert "Give either a URL or a file." in response.content.decode()


def test_a_file_cannot_be_scheduled(staff_client):
    upload = SimpleUploadedFile("f.txt", b"id\ttitle\n", content_type="text/plain")
    response = staff_client.post(reverse("admin:catalog_feed_ingest"), {"name": "X", "file": upload, "scheduled": "on"})
    assert "Only a URL can be re-ingested on a schedule." in response.content.decode()
    assert not FeedRun.objects.exists()


def test_an_oversize_file_is_refused(staff_client, settings):
    settings.SNEAKERS_FEED_MAX_BYTES = 10
    upload = SimpleUploadedFile("f.txt", b"id\ttitle\tbrand\timage_link\n", content_type="text/plain")
    response = staff_client.post(reverse("admin:catalog_feed_ingest"), {"name": "X", "file": upload})
    assert "the limit is 10 bytes" in response.content.decode()


def test_a_queued_run_page_reloads_and_is_read_only(staff_client):
    run = FeedRun.objects.create(feed=Feed.objects.create(name="F"), status=FeedRun.Status.RUNNING, rows_total=10)
    FeedRun.objects.filter(pk=run.pk).update(rows_done=4)
    page = staff_client.get(reverse("admin:catalog_feedrun_change", args=[run.pk])).content.decode()
    assert 'http-equiv="refresh"' in page
    assert '<progress max="100" value="40"' in page
    assert 'name="_save"' not in page
    assert staff_client.get(reverse("admin:catalog_feedrun_add")).status_code == 403


def test_the_feed_form_takes_only_http_urls(staff_client):
    response = staff_client.post(
        reverse("admin:catalog_feed_add"), {"name": "F", "source": "file:///etc/passwd", "scheduled": "on"}
    )
    assert response.status_code == 200
    assert "Enter a valid URL." in response.content.decode()
    response = staff_client.post(reverse("admin:catalog_feed_add"), {"name": "F", "source": "", "scheduled": "on"})
    assert "A scheduled feed needs a URL" in response.content.decode()
    assert not Feed.objects.exists()


def test_staff_without_the_run_permission_cannot_start_an_ingest(client, django_user_model):
    staff = django_user_model.objects.create_user(username="clerk", password="pw-clerk-123", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_feed", "change_feed"]))
    client.force_login(staff)
    assert client.get(reverse("admin:catalog_feed_ingest")).status_code == 403
    upload = SimpleUploadedFile("f.txt", b"id\ttitle\n", content_type="text/plain")
    assert client.post(reverse("admin:catalog_feed_ingest"), {"name": "X", "file": upload}).status_code == 403
    assert not FeedRun.objects.exists()
