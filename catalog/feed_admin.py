"""Django admin for product feeds: feeds, a form to start an ingest (upload a file or give a URL), and the runs
with their progress, counts and failed rows (read-only). Imported by ``catalog.admin``."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.validators import URLValidator
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from catalog.feeds import FeedError, feed_get_or_create, feed_run_start, source_is_url
from catalog.models import Feed, FeedRun, Product

_HTTP_URL = URLValidator(schemes=["http", "https"])


class FeedForm(forms.ModelForm):
    """A feed's name, URL and schedule flag; the URL must be http(s) (server paths come from settings only)."""

    class Meta:
        model = Feed
        fields = ("name", "source", "scheduled")
        labels = {"source": "URL"}

    def clean_source(self) -> str:
        source = self.cleaned_data["source"].strip()
        if source and source != (self.instance.source if self.instance.pk else None):
            _HTTP_URL(source)
        return source

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("scheduled") and not cleaned.get("source"):
            self.add_error("scheduled", "A scheduled feed needs a URL to read from.")
        return cleaned


class FeedIngestForm(forms.Form):
    """Start an ingest: a feed name, and a file to upload or a URL to download (one of the two)."""

    name = forms.CharField(max_length=100, label="Feed", help_text="An existing feed's name, or a new one.")
    url = forms.URLField(
        required=False,
        max_length=2000,
        assume_scheme="https",
        label="URL",
        help_text="http(s) URL of the feed file; downloaded by the worker.",
    )
    file = forms.FileField(
        required=False,
        help_text="Or a feed file: Google Merchant Center CSV/TSV (id, title, brand, price, image_link, "
        "additional_image_link, link) or JSON lines.",
    )
    scheduled = forms.BooleanField(
        required=False, help_text="Keep this URL and re-ingest it on the schedule (SNEAKERS_FEED_INTERVAL_SECONDS)."
    )

    def clean_url(self) -> str:
        url = self.cleaned_data["url"].strip()
        if url:
            _HTTP_URL(url)
        return url

    def clean_file(self):
        upload = self.cleaned_data["file"]
        limit = settings.SNEAKERS_FEED_MAX_BYTES
        if upload and upload.size > limit:
            raise forms.ValidationError(f"The file has {upload.size} bytes; the limit is {limit} bytes.")
        return upload

    def clean(self) -> dict:
        cleaned = super().clean()
        url, upload = cleaned.get("url"), cleaned.get("file")
        if "url" in cleaned and "file" in cleaned:
            if bool(url) == bool(upload):
                raise forms.ValidationError("Give either a URL or a file.")
        if cleaned.get("scheduled") and not url:
            self.add_error("scheduled", "Only a URL can be re-ingested on a schedule.")
        return cleaned


def _progress(run: FeedRun) -> str:
    return format_html(
        '<progress max="100" value="{}" title="{} of {} rows">{}%</progress> {} / {}',
        run.progress_percent,
        run.rows_done,
        run.rows_total,
        run.progress_percent,
        run.rows_done,
        run.rows_total,
    )


@admin.register(Feed)
class FeedAdmin(admin.ModelAdmin):
    """Feeds with their latest run; "Ingest a feed" / "Ingest now" open the ingest form."""

    form = FeedForm
    list_display = ("name", "source", "scheduled", "product_count", "latest_run")
    list_filter = ("scheduled",)
    search_fields = ("name", "source")
    actions = ("ingest_now",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Feed]:
        """Feeds with their product count and latest run (correlated subqueries, one query for the list)."""
        latest = FeedRun.objects.filter(feed=OuterRef("pk")).order_by("-created_at", "-pk")
        products = Product.objects.filter(feed=OuterRef("pk")).order_by().values("feed").annotate(n=Count("pk"))
        return (
            super()
            .get_queryset(request)
            .annotate(
                _products=Coalesce(Subquery(products.values("n"), output_field=IntegerField()), 0),
                _run_id=Subquery(latest.values("pk")[:1]),
                _run_status=Subquery(latest.values("status")[:1]),
                _run_created=Subquery(latest.values("created_at")[:1]),
            )
        )

    @admin.display(ordering="_products", description="products")
    def product_count(self, obj: Feed) -> int:
        return obj._products

    @admin.display(ordering="_run_created", description="latest run")
    def latest_run(self, obj: Feed) -> str:
        if obj._run_id is None:
            return "-"
        url = reverse("admin:catalog_feedrun_change", args=[obj._run_id])
        created = timezone.localtime(obj._run_created).strftime("%Y-%m-%d %H:%M")
        return format_html('<a href="{}">{} · {}</a>', url, obj._run_status, created)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("ingest/", view(self.ingest_view), name="catalog_feed_ingest"),
            path("<path:object_id>/ingest/", view(self.ingest_view), name="catalog_feed_ingest_feed"),
            *super().get_urls(),
        ]

    def ingest_view(self, request: HttpRequest, object_id: str | None = None) -> HttpResponse:
        """The ingest form: creates the feed when new, queues a run of the file or URL, shows the run."""
        if not request.user.has_perm("catalog.add_feedrun"):
            raise PermissionDenied
        feed = get_object_or_404(Feed, pk=object_id) if object_id else None
        if request.method == "POST":
            form = FeedIngestForm(request.POST, request.FILES)
            if form.is_valid():
                run = self._start(request, form)
                if run is not None:
                    messages.success(request, f"Ingest of feed “{run.feed.name}” queued (run {run.pk}).")
                    return HttpResponseRedirect(reverse("admin:catalog_feedrun_change", args=[run.pk]))
        else:
            initial = {}
            if feed is not None:
                url = feed.source if source_is_url(feed.source) else ""
                initial = {"name": feed.name, "url": url, "scheduled": feed.scheduled}
            form = FeedIngestForm(initial=initial)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Ingest feed “{feed.name}”" if feed else "Ingest a feed",
            "form": form,
            "feed": feed,
        }
        return TemplateResponse(request, "admin/catalog/feed/ingest.html", context)

    def _start(self, request: HttpRequest, form: FeedIngestForm) -> FeedRun | None:
        """Queue a run from the valid form; a refusal (nothing to read, too large) becomes a form error."""
        data = form.cleaned_data
        upload = data.get("file")
        try:
            feed = feed_get_or_create(
                name=data["name"], source=data["url"], scheduled=True if data.get("scheduled") else None
            )
            if data["url"] and data.get("scheduled") and feed.source != data["url"]:
                feed.source = data["url"]
                feed.save(update_fields=["source", "updated_at"])
            return feed_run_start(
                feed=feed,
                origin=FeedRun.Origin.ADMIN,
                source=data["url"],
                data=upload.read() if upload else None,
                filename=upload.name if upload else "",
            )
        except FeedError as exc:
            form.add_error(None, exc.message)
            return None

    @admin.action(description="Ingest the selected feeds from their URL now")
    def ingest_now(self, request: HttpRequest, queryset: QuerySet[Feed]) -> None:
        if not request.user.has_perm("catalog.add_feedrun"):
            raise PermissionDenied
        started, skipped = [], []
        for feed in queryset:
            if not source_is_url(feed.source):
                skipped.append(feed.name)
                continue
            started.append(feed_run_start(feed=feed, origin=FeedRun.Origin.ADMIN).pk)
        if started:
            messages.success(request, f"{len(started)} ingest(s) queued: run(s) {', '.join(map(str, started))}.")
        if skipped:
            messages.warning(request, f"No URL to read for: {', '.join(skipped)} (use “Ingest a feed” to upload).")


@admin.register(FeedRun)
class FeedRunAdmin(admin.ModelAdmin):
    """Feed runs, read-only: status, progress, counts, the file received and the failed rows with reasons."""

    list_display = (
        "id",
        "feed",
        "status",
        "progress",
        "added",
        "updated",
        "unchanged",
        "failed",
        "unlisted",
        "images_added",
        "origin",
        "created_at",
        "finished_at",
    )
    list_display_links = ("id", "feed")
    list_filter = ("status", "origin", "feed")
    list_select_related = ("feed",)
    fieldsets = (
        (None, {"fields": ("feed", "status", "progress", "origin", "source", "file", "file_sha256")}),
        ("Counts", {"fields": ("rows_total", "added", "updated", "unchanged", "failed", "unlisted", "images_added")}),
        ("Why it failed", {"fields": ("error_code", "error_message")}),
        ("Failed rows", {"fields": ("failures_table",)}),
        ("Photos skipped in ingested rows", {"classes": ("collapse",), "fields": ("warnings_table",)}),
        ("Times", {"fields": ("created_at", "started_at", "finished_at")}),
    )
    readonly_fields = (
        "feed",
        "status",
        "progress",
        "origin",
        "source",
        "file",
        "file_sha256",
        "rows_total",
        "added",
        "updated",
        "unchanged",
        "failed",
        "unlisted",
        "images_added",
        "error_code",
        "error_message",
        "failures_table",
        "warnings_table",
        "created_at",
        "started_at",
        "finished_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs are started from a feed ("Ingest a feed")

    def has_change_permission(self, request: HttpRequest, obj: FeedRun | None = None) -> bool:
        return False  # a report: read-only

    @admin.display(description="progress")
    def progress(self, obj: FeedRun) -> str:
        return _progress(obj)

    @admin.display(description="failed rows")
    def failures_table(self, obj: FeedRun) -> str:
        return _reason_table(obj.failures, obj.failed)

    @admin.display(description="skipped photos")
    def warnings_table(self, obj: FeedRun) -> str:
        return _reason_table(obj.warnings, len(obj.warnings))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = FeedRun.objects.filter(pk=object_id).only("status").first()
        extra_context = {**(extra_context or {}), "refresh_seconds": None if run is None or run.is_finished else 3}
        return super().change_view(request, object_id, form_url, extra_context)


def _reason_table(entries: list[dict], total: int) -> str:
    """An HTML table of ``{"line", "id", "reason"}`` entries (and how many more were not kept)."""
    if not entries:
        return "none"
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
        ((entry.get("line", ""), entry.get("id", ""), entry.get("reason", "")) for entry in entries),
    )
    more = format_html("<p>and {} more (not kept)</p>", total - len(entries)) if total > len(entries) else ""
    return format_html(
        "<table><thead><tr><th>line</th><th>id</th><th>reason</th></tr></thead><tbody>{}</tbody></table>{}",
        rows,
        more,
    )
