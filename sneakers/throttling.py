"""API rate limits (DRF throttles) per partner token, counted in Django's cache.

Rates come from ``settings.SNEAKERS_API_RATES`` (``SNEAKERS_API_UPLOAD_RATE``,
``SNEAKERS_API_READ_RATE``, ``SNEAKERS_API_ANON_RATE``), read at request time so they can change
without a restart of the class definitions. Over the limit, DRF answers ``429`` with a
``Retry-After`` header (seconds); the error body carries ``retry_after_seconds``. The counters live in
the ``default`` cache: per process with the embedded local-memory cache, shared across processes and
hosts with Redis (``CACHE_URL``), which production uses.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class _SettingsRateMixin:
    """Look the rate up in ``settings.SNEAKERS_API_RATES`` by ``scope`` (e.g. ``"60/min"``)."""

    scope: str

    def get_rate(self) -> str | None:
        return settings.SNEAKERS_API_RATES.get(self.scope)


class UploadRateThrottle(_SettingsRateMixin, UserRateThrottle):
    """Uploads (``POST /api/v1/predictions/``) per authenticated user/token."""

    scope = "upload"


class ReadRateThrottle(_SettingsRateMixin, UserRateThrottle):
    """Reads (polling, lists, catalog) per authenticated user/token; anonymous callers by IP."""

    scope = "read"


class AnonReadRateThrottle(_SettingsRateMixin, AnonRateThrottle):
    """Reads by anonymous callers (the public catalog API), per client IP address."""

    scope = "anon"
