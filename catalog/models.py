"""Catalog rows: ``Brand``, ``Product``, ``ProductImage``, and the product feeds they come from (``Feed``,
``FeedRun``).

A ``ProductImage`` always has a brand (its training label) and, when the source named the shoe, a
``Product``. Images without a product stay usable for training the brand classifier but are never
shown to shoppers as products.
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone


class Brand(models.Model):
    """A sneaker brand (``nike``, ``adidas`` ...); ``slug`` is the label the models predict."""

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


KNOWN_PRICE_SOURCES = {
    # ../shared/datasets/sneakers/SOURCES.md, section 1: saved footlocker.com listing pages, March 2018.
    "luoken/Shoe-detector": "Foot Locker list price, early 2018 (many items were on sale then)",
}
"""Price words per ``Product.source`` repository, for rows imported from the shared sets."""


class PriceKind(models.TextChoices):
    """What kind of price a product's ``price_usd`` is."""

    LIST = "list", "list price"
    RETAIL = "retail", "retail price"


class Feed(models.Model):
    """A shop's product feed (Google Merchant Center product data), read by ``catalog.feeds``.

    Products it brings carry the feed and their feed item id (``Product.feed``, ``Product.external_id``), so a
    re-run updates them instead of adding copies and can unlist the ones the feed no longer has.
    """

    name = models.CharField(max_length=100, unique=True)
    source = models.CharField(
        max_length=2000,
        blank=True,
        help_text="http(s) URL of the feed file (a path on the server for feeds named in SNEAKERS_FEEDS); "
        "blank when its files are uploaded.",
    )
    scheduled = models.BooleanField(
        default=False, help_text="Re-ingested from its source every SNEAKERS_FEED_INTERVAL_SECONDS by beat."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def feed_run_upload_to(instance: "FeedRun", filename: str) -> str:
    """Storage name of the file a feed run received: ``feeds/<feed id>/<UTC time>-<sha256[:12]>.<ext>``."""
    extension = filename.rsplit(".", 1)[-1].lower()[:8] if "." in filename else "txt"
    stamp = (instance.created_at or timezone.now()).strftime("%Y%m%dT%H%M%S")
    return f"feeds/{instance.feed_id}/{stamp}-{instance.file_sha256[:12]}.{extension}"


class FeedRun(models.Model):
    """One ingest of a feed: the file it read (kept, whatever happened), its progress and its report.

    Counts are of feed rows: ``added`` (a new product), ``updated`` (a field or a new photo), ``unchanged``,
    ``failed`` (the row was skipped; ``failures`` says why); ``unlisted`` counts the feed's products missing from
    the file. ``rows_done`` of ``rows_total`` is the progress while it runs.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"

    class Origin(models.TextChoices):
        COMMAND = "command", "manage.py ingest_feed"
        ADMIN = "admin", "admin"
        SCHEDULE = "schedule", "schedule"

    feed = models.ForeignKey(Feed, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.ADMIN)
    source = models.CharField(max_length=2000, blank=True, help_text="The URL, path or uploaded file name read.")
    file = models.FileField(upload_to=feed_run_upload_to, blank=True, help_text="The feed file as received.")
    file_sha256 = models.CharField(max_length=64, blank=True)
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    added = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    unlisted = models.PositiveIntegerField(default=0)
    images_added = models.PositiveIntegerField(default=0)
    failures = models.JSONField(
        default=list, blank=True, help_text='Failed rows: [{"line": 3, "id": "A1", "reason": "..."}, ...].'
    )
    warnings = models.JSONField(
        default=list, blank=True, help_text="Photos skipped in rows that were still ingested, with reasons."
    )
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True, help_text="Why the whole run failed (file unreadable ...).")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["feed", "status"], name="catalog_feedrun_feed_status")]

    def __str__(self) -> str:
        return f"{self.feed.name} run {self.pk or '-'} ({self.status})"

    @property
    def is_finished(self) -> bool:
        """Whether the run reached ``succeeded`` or ``failed``."""
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)

    @property
    def progress_percent(self) -> int:
        """Rows done as a whole percentage of the rows read (0 before the file is read, 100 when finished)."""
        if self.is_finished:
            return 100
        return int(100 * self.rows_done / self.rows_total) if self.rows_total else 0


class Product(models.Model):
    """A shoe in the catalog with its price in USD.

    ``kind`` says what one product row stands for: a shop ``listing`` (one shoe, a title and its
    photos, e.g. "Vans Old Skool - Men's" at $65) or a named ``model`` (a shoe model across its
    colourways, e.g. "Nike Air Jordan 1 High", with many photos and a model-level retail price). The
    model head is trained on ``model`` products (``catalog.selectors.TrainingRow.model``).
    """

    class Kind(models.TextChoices):
        LISTING = "listing", "shop listing"
        MODEL = "model", "shoe model"

    # The price words of the two shared sets, as their SOURCES.md files describe them
    # (../shared/datasets/sneakers/SOURCES.md section 1, ../shared/datasets/sneaker_models/SOURCES.md "Price").
    DEFAULT_PRICE_SOURCE = {
        Kind.LISTING: "Retailer's list (regular) price on the shop listing",
        Kind.MODEL: "Typical US retail price of the model, from a 2023 resale-market snapshot; "
        "not the price of this colourway",
    }

    brand = models.ForeignKey(Brand, on_delete=models.PROTECT, related_name="products")
    name = models.CharField(max_length=255)
    style_code = models.CharField(max_length=64, blank=True)
    colourway = models.CharField(max_length=255, blank=True)
    price_usd = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    source = models.CharField(max_length=255, blank=True, help_text="Where the row came from (feed or repository).")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.LISTING)
    is_listed = models.BooleanField(default=True, help_text="Shown to shoppers and used as a similarity match.")
    link = models.URLField(max_length=1000, blank=True, help_text="The shop's page of this product (from a feed).")
    price_kind = models.CharField(
        max_length=16,
        choices=PriceKind.choices,
        blank=True,
        help_text="What kind of price price_usd is; blank: the default of the product's kind (see price_kind_shown).",
    )
    price_source = models.CharField(
        max_length=255, blank=True, help_text="Where the price comes from, in words shoppers read; blank: by kind."
    )
    feed = models.ForeignKey(
        Feed,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="products",
        help_text="The product feed that keeps this product up to date (none for imported or hand-made rows).",
    )
    external_id = models.CharField(max_length=255, blank=True, help_text="The product's id in its feed.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["brand__name", "name"]
        constraints = [
            # One row per (brand, title, list price): the same title at another price is another
            # edition. Two partial constraints because NULLs are distinct in a plain unique index.
            # One row per (brand, title, price) among products imported from manifests or made in admin (the
            # importer looks rows up by these); a feed's products are keyed by (feed, item id) instead, so a
            # shop's size/colour variants of one title, or a title the catalog already has, are rows of their own.
            models.UniqueConstraint(
                fields=["brand", "name", "price_usd"],
                condition=Q(price_usd__isnull=False, feed__isnull=True),
                name="catalog_product_unique_brand_name_price",
            ),
            models.UniqueConstraint(
                fields=["brand", "name"],
                condition=Q(price_usd__isnull=True, feed__isnull=True),
                name="catalog_product_unique_brand_name",
            ),
            models.CheckConstraint(
                condition=Q(price_usd__isnull=True) | Q(price_usd__gte=0), name="catalog_product_price_non_negative"
            ),
            # A feed item is one product: re-running a feed updates it.
            models.UniqueConstraint(
                fields=["feed", "external_id"], condition=Q(feed__isnull=False), name="catalog_product_unique_feed_item"
            ),
        ]
        indexes = [models.Index(fields=["brand", "price_usd"], name="catalog_product_brand_price")]

    def __str__(self) -> str:
        return self.name

    @property
    def price_kind_shown(self) -> str:
        """``PriceKind`` of ``price_usd``: the stored one, else ``list`` for listings and ``retail`` for models."""
        if self.price_kind:
            return self.price_kind
        return PriceKind.RETAIL if self.kind == self.Kind.MODEL else PriceKind.LIST

    @property
    def price_kind_label(self) -> str:
        """``"list price"`` or ``"retail price"``."""
        return PriceKind(self.price_kind_shown).label

    @property
    def price_source_shown(self) -> str:
        """Where the price comes from: the stored words, else those of a known source repository, else the
        default of the product's kind."""
        return self.price_source or KNOWN_PRICE_SOURCES.get(self.source) or self.DEFAULT_PRICE_SOURCE.get(self.kind, "")


def product_image_upload_to(instance: "ProductImage", filename: str) -> str:
    """Storage name of a catalog image: ``catalog/<brand>/<sha256[:2]>/<sha256>.<ext>``.

    The content hash names the file, so re-imports are idempotent and client names never reach a path.
    """
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
    return f"catalog/{instance.brand.slug}/{instance.sha256[:2]}/{instance.sha256}.{extension}"


class ProductImage(models.Model):
    """One photo of a product (or, when ``product`` is empty, a brand-labelled training photo)."""

    brand = models.ForeignKey(Brand, on_delete=models.PROTECT, related_name="images")
    product = models.ForeignKey(Product, on_delete=models.SET_NULL, null=True, blank=True, related_name="images")
    image = models.ImageField(upload_to=product_image_upload_to)
    sha256 = models.CharField(max_length=64, unique=True)
    width = models.PositiveIntegerField(help_text="Pixels.")
    height = models.PositiveIntegerField(help_text="Pixels.")
    source_repo = models.CharField(max_length=255, blank=True)
    source_path = models.CharField(max_length=1024, blank=True)
    source_commit = models.CharField(max_length=64, blank=True)
    style = models.CharField(
        max_length=16,
        choices=[("real-world", "real-world"), ("product-shot", "product shot")],
        blank=True,
        help_text="Real-world (on foot, in hand, street) or product shot; blank when nobody labelled it.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(width__gt=0) & Q(height__gt=0), name="catalog_image_positive_size"),
        ]

    def __str__(self) -> str:
        return f"{self.brand.slug}/{self.sha256[:12]}"
