"""API rate limits: fixed-window counters in Django's ``default`` cache, per partner or per anonymous address.

Three limits (DRF throttles, in ``REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"]``):

- ``read``: every request of an authenticated caller (token or session), per user;
- ``anon``: every request of an anonymous caller, per client address (DRF's ``get_ident``: ``REMOTE_ADDR``,
  or ``X-Forwarded-For`` with ``NUM_PROXIES``);
- ``upload``: photos sent, per user: one per ``POST`` to a view with ``throttle_scope = "upload"`` (the
  single-photo upload), and one per item of a batch (``upload_quota_charge``, called by the batch view once
  it has counted the items).

Rates are ``"<count>/<period>"`` (``60/min``): ``settings.SNEAKERS_API_RATES`` (``SNEAKERS_API_UPLOAD_RATE``,
``SNEAKERS_API_READ_RATE``, ``SNEAKERS_API_ANON_RATE``), read at each request; a partner's ``PartnerQuota``
(set in admin) replaces the upload and read rates for that partner. A window is ``period`` seconds long and
starts at a multiple of it (Unix time), so the reset instant is the same for every process. The count of
the current window lives under one cache key per limit, caller and window; ``cache.add`` then ``cache.incr``
counts it, atomically with Redis (``INCRBY``) and with the embedded default cache (``sneakers.cache.OpenDiskCache``,
diskcache's SQLite transactions), so every web process shares one count. A refused
request gives its count back, so it does not use up the next allowance.

Each throttle that applies records a ``RateLimit`` on the request; ``partners.middleware`` turns the tightest
one into ``X-RateLimit-Limit``, ``X-RateLimit-Remaining``, ``X-RateLimit-Reset`` (Unix time, seconds) and
``X-RateLimit-Scope`` headers, the scheme GitHub's REST API documents. Over a limit DRF answers ``429`` with
``Retry-After`` (seconds to the window's end) and the error body carries ``retry_after_seconds``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework.exceptions import Throttled
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from partners.models import PartnerQuota

PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
"""Window length per period letter (DRF's ``SimpleRateThrottle.parse_rate`` reads the first letter)."""

REQUEST_ATTRIBUTE = "sneakers_rate_limits"
"""Attribute of the Django ``HttpRequest`` holding the ``RateLimit`` list of the request."""


@dataclass(frozen=True)
class RateLimit:
    """One limit's state after a request: ``limit`` per window, ``remaining`` in it (>= 0), ``reset`` (Unix
    seconds when the window ends) and the ``scope`` (``read``, ``anon``, ``upload``)."""

    scope: str
    limit: int
    remaining: int
    reset: int
    refused: bool = False


def rate_parse(rate: str) -> tuple[int, int]:
    """``"60/min"`` -> ``(60, 60)``: requests per window and the window in seconds.

    Raises:
        ValueError: not ``<count>/<period>`` with a period starting with s, m, h or d.
    """
    count, _, period = rate.partition("/")
    period = period.strip()
    if not count.strip().isdigit() or not period or period[0] not in PERIOD_SECONDS:
        raise ValueError(f"{rate!r} is not a rate like 60/min")
    return int(count), PERIOD_SECONDS[period[0]]


def _django_request(request: Any) -> Any:
    return getattr(request, "_request", request)


def _record(request: Any, state: RateLimit) -> None:
    django_request = _django_request(request)
    states = getattr(django_request, REQUEST_ATTRIBUTE, None)
    if states is None:
        states = []
        setattr(django_request, REQUEST_ATTRIBUTE, states)
    states.append(state)


def partner_quota_for(request: Any, user: Any) -> PartnerQuota | None:
    """The caller's ``PartnerQuota`` (None without one): the one token authentication loaded with the user
    (``partners.authentication``), else read once per request (session users)."""
    relation = PartnerQuota.user.field.remote_field  # the reverse side, user.partner_quota
    if relation.is_cached(user):
        return relation.get_cached_value(user)
    django_request = _django_request(request)
    memo = getattr(django_request, "_sneakers_quota", None)
    if memo is None or memo[0] != user.pk:
        memo = (user.pk, PartnerQuota.objects.filter(user_id=user.pk).first())
        django_request._sneakers_quota = memo
    return memo[1]


def window_count(*, scope: str, ident: str, rate: str, cost: int = 1, now: float | None = None) -> RateLimit:
    """Count ``cost`` against ``scope`` for ``ident`` in the current window, giving it back when over the limit.

    ``cost=0`` reads the state without counting. The returned state has ``refused=True`` when the count would
    pass the limit (nothing is counted then).
    """
    limit, window = rate_parse(rate)
    now = time.time() if now is None else now
    index = int(now // window)
    reset = (index + 1) * window
    key = f"ratelimit:{scope}:{ident}:{window}:{index}"
    if cost <= 0:
        used = int(cache.get(key, 0))
        return RateLimit(scope=scope, limit=limit, remaining=max(limit - used, 0), reset=reset)
    try:  # the window's entry exists but for a window's first request: one write, not an add and an incr
        used = cache.incr(key, cost)
    except ValueError:  # first in this window (or expired meanwhile): make the entry, with its expiry
        if cache.add(key, cost, timeout=window + 5):
            used = cost
        else:  # another request made it in between
            used = cache.incr(key, cost)
    if used > limit:
        cache.decr(key, cost)
        return RateLimit(scope=scope, limit=limit, remaining=max(limit - (used - cost), 0), reset=reset, refused=True)
    return RateLimit(scope=scope, limit=limit, remaining=limit - used, reset=reset)


class _WindowThrottle(BaseThrottle):
    """A fixed-window limit; subclasses say whether it applies, to whom and at what rate."""

    scope = ""

    def __init__(self) -> None:
        self.state: RateLimit | None = None

    def key_and_rate(self, request: Request, view: Any) -> tuple[str, str] | None:
        """``(ident, rate)`` when this limit applies to the request, else None."""
        raise NotImplementedError

    def cost(self, request: Request, view: Any) -> int:
        return 1

    def allow_request(self, request: Request, view: Any) -> bool:
        applies = self.key_and_rate(request, view)
        if applies is None:
            return True
        ident, rate = applies
        self.state = window_count(scope=self.scope, ident=ident, rate=rate, cost=self.cost(request, view))
        _record(request, self.state)
        return not self.state.refused

    def wait(self) -> float | None:
        """Seconds until the current window ends (DRF sends it as ``Retry-After``)."""
        if self.state is None:
            return None
        return max(1, math.ceil(self.state.reset - time.time()))


def _user_rate(request: Request, scope: str) -> str:
    quota = partner_quota_for(request, request.user)
    custom = getattr(quota, f"{scope}_rate", "") if quota is not None else ""
    return custom or settings.SNEAKERS_API_RATES[scope]


class ReadRateThrottle(_WindowThrottle):
    """Every request of an authenticated caller, per user (``read`` rate, or the partner's quota)."""

    scope = "read"

    def key_and_rate(self, request: Request, view: Any) -> tuple[str, str] | None:
        if not request.user or not request.user.is_authenticated:
            return None
        return f"user-{request.user.pk}", _user_rate(request, "read")


class AnonRateThrottle(_WindowThrottle):
    """Every request of an anonymous caller, per client address (``anon`` rate)."""

    scope = "anon"

    def key_and_rate(self, request: Request, view: Any) -> tuple[str, str] | None:
        if request.user and request.user.is_authenticated:
            return None
        return f"ip-{self.get_ident(request)}", settings.SNEAKERS_API_RATES["anon"]


class UploadRateThrottle(_WindowThrottle):
    """One photo per ``POST`` to a view with ``throttle_scope = "upload"``, per user (``upload`` rate or quota)."""

    scope = "upload"

    def key_and_rate(self, request: Request, view: Any) -> tuple[str, str] | None:
        if getattr(view, "throttle_scope", None) != "upload" or request.method != "POST":
            return None
        if not request.user or not request.user.is_authenticated:
            return None
        return f"user-{request.user.pk}", _user_rate(request, "upload")


def upload_quota_charge(*, request: Request, cost: int) -> RateLimit:
    """Count ``cost`` photos against the caller's upload limit (a batch's items).

    Raises:
        Throttled: the photos would pass the limit (nothing is counted; ``wait`` is the window's rest).
    """
    state = window_count(scope="upload", ident=f"user-{request.user.pk}", rate=_user_rate(request, "upload"), cost=cost)
    _record(request, state)
    if state.refused:
        raise Throttled(
            wait=max(1, math.ceil(state.reset - time.time())),
            detail=f"These {cost} photos would pass your upload limit of {state.limit} photos per window "
            f"({state.remaining} left in this one).",
        )
    return state


def rate_limits_of(request: Any) -> list[RateLimit]:
    """The ``RateLimit`` states recorded on a request (empty when no throttle applied)."""
    return list(getattr(_django_request(request), REQUEST_ATTRIBUTE, []))


def rate_limit_peek(request: Any) -> RateLimit | None:
    """The ``read`` (authenticated) or ``anon`` state of a request that no throttle counted (an answer given
    before throttling: authentication refused, no such URL). Authenticates with DRF's default
    authenticators, quietly; counts nothing. None when no rate applies."""
    from rest_framework.exceptions import APIException
    from rest_framework.settings import api_settings

    drf_request = Request(request, authenticators=[cls() for cls in api_settings.DEFAULT_AUTHENTICATION_CLASSES])
    try:
        user = drf_request.user
    except APIException:
        user = None
    if user is not None and user.is_authenticated:
        return window_count(scope="read", ident=f"user-{user.pk}", rate=_user_rate(drf_request, "read"), cost=0)
    ident = BaseThrottle().get_ident(drf_request)
    return window_count(scope="anon", ident=f"ip-{ident}", rate=settings.SNEAKERS_API_RATES["anon"], cost=0)
