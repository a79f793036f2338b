"""Rate-limit headers on every answer under ``/api/v1/`` (see ``partners.throttling``)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from partners.throttling import RateLimit, rate_limit_peek, rate_limits_of

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1/"


def rate_limit_pick(states: list[RateLimit]) -> RateLimit:
    """The state to show: a refused one if any, else the one with the fewest requests remaining (on a tie,
    the one that resets last)."""
    refused = [state for state in states if state.refused]
    if refused:
        return refused[0]
    return min(states, key=lambda state: (state.remaining, -state.reset))


class RateLimitHeadersMiddleware:
    """Adds ``X-RateLimit-Limit``, ``X-RateLimit-Remaining``, ``X-RateLimit-Reset`` (Unix seconds) and
    ``X-RateLimit-Scope`` to answers under ``/api/v1/``.

    The values are those the throttles counted for the request; for an answer given before throttling
    (401, or a JSON 404 for an unknown path) they are the caller's current ``read`` or ``anon`` window,
    read without counting. Place after ``AuthenticationMiddleware``.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.startswith(API_PREFIX):
            return response
        states = rate_limits_of(request)
        try:
            state = rate_limit_pick(states) if states else rate_limit_peek(request)
        except Exception:  # a cache outage must not turn an answer into a 500
            logger.warning("could not read the rate-limit state", exc_info=True)
            return response
        if state is not None:
            response["X-RateLimit-Limit"] = str(state.limit)
            response["X-RateLimit-Remaining"] = str(state.remaining)
            response["X-RateLimit-Reset"] = str(state.reset)
            response["X-RateLimit-Scope"] = state.scope
        return response
