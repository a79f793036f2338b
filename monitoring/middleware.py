"""Request metrics of the web processes (``monitoring.metrics.REQUESTS`` and ``REQUEST_SECONDS``)."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from monitoring.metrics import REQUEST_SECONDS, REQUESTS


class RequestMetricsMiddleware:
    """Counts every answered request by route, method and status, and times it.

    The route is the URL pattern that matched (``api/v1/predictions/<uuid:prediction_id>/``), not the path, so the
    number of label values stays bounded; requests no pattern matched count as ``<unmatched>``.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = (getattr(match, "route", None) or "<unmatched>")[:200] if match is not None else "<unmatched>"
        method = request.method if request.method in {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"} else "OTHER"
        REQUESTS.labels(route=route, method=method, status=str(response.status_code)).inc()
        REQUEST_SECONDS.labels(route=route).observe(time.perf_counter() - started)
        return response
