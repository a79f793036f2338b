"""The developers' page (``/developers/``): quick start, polling, batches, webhooks, limits, error codes."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from partners.errors import ERROR_CATALOGUE


def developers(request: HttpRequest) -> HttpResponse:
    """Render the partner guide with this site's address, its limits and the error catalogue."""
    base = request.build_absolute_uri("/").rstrip("/")
    return render(
        request,
        "partners/developers.html",
        {
            "base": base,
            "errors": ERROR_CATALOGUE,
            "rates": settings.SNEAKERS_API_RATES,
            "batch_max_items": settings.SNEAKERS_BATCH_MAX_ITEMS,
            "max_attempts": settings.SNEAKERS_WEBHOOK_MAX_ATTEMPTS,
            "backoff": settings.SNEAKERS_WEBHOOK_BACKOFF_SECONDS,
            "backoff_max": settings.SNEAKERS_WEBHOOK_BACKOFF_MAX_SECONDS,
            "ttl_hours": settings.SNEAKERS_IDEMPOTENCY_TTL_SECONDS // 3600,
        },
    )
