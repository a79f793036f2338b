"""Rate limits: headers on every /api/v1/ answer, 429 with Retry-After, per-partner quotas from admin, the schema
and docs never limited, and counters that separate processes share exactly (the embedded file cache)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from partners.models import PartnerQuota
from partners.throttling import window_count
from tests.partners.conftest import assert_error, photo

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def limits(response) -> tuple[str, int, int, int]:
    return (
        response["X-RateLimit-Scope"],
        int(response["X-RateLimit-Limit"]),
        int(response["X-RateLimit-Remaining"]),
        int(response["X-RateLimit-Reset"]),
    )


def test_every_answer_carries_the_limit_what_remains_and_the_reset(token_client, settings):
    settings.SNEAKERS_API_RATES = {**settings.SNEAKERS_API_RATES, "read": "10/min"}
    first, second = token_client.get("/api/v1/predictions/"), token_client.get("/api/v1/brands/")
    assert first.status_code == second.status_code == 200
    scope, limit, remaining, reset = limits(first)
    assert (scope, limit, remaining) == ("read", 10, 9) and reset % 60 == 0
    assert limits(second)[:3] == ("read", 10, 8)


def test_an_upload_shows_the_tighter_upload_limit(token_client, settings):
    settings.SNEAKERS_API_RATES = {**settings.SNEAKERS_API_RATES, "upload": "5/min", "read": "100/min"}
    response = token_client.post("/api/v1/predictions/", {"image": photo()}, format="multipart")
    assert response.status_code == 202 and limits(response)[:3] == ("upload", 5, 4)


def test_over_the_limit_is_429_with_retry_after_and_the_headers(token_client, settings):
    settings.SNEAKERS_API_RATES = {**settings.SNEAKERS_API_RATES, "read": "2/min"}
    for _ in range(2):
        assert token_client.get("/api/v1/predictions/").status_code == 200
    refused = token_client.get("/api/v1/predictions/")
    error = assert_error(refused, 429, "throttled")
    scope, limit, remaining, reset = limits(refused)
    assert (scope, limit, remaining) == ("read", 2, 0)
    assert 1 <= int(refused["Retry-After"]) <= 60 and error["detail"]["retry_after_seconds"] == int(
        refused["Retry-After"]
    )


def test_a_partner_quota_set_in_admin_replaces_the_default_for_that_partner(
    admin_client, token_client, other_token_client, user, settings
):
    settings.SNEAKERS_API_RATES = {**settings.SNEAKERS_API_RATES, "read": "2/min"}
    added = admin_client.post(
        "/admin/partners/partnerquota/add/",
        {"user": user.pk, "upload_rate": "", "read_rate": "50/min", "note": "big shop"},
    )
    assert added.status_code == 302, added.content
    assert PartnerQuota.objects.get(user=user).read_rate == "50/min"

    assert limits(token_client.get("/api/v1/predictions/"))[1:3] == (50, 49)
    assert limits(other_token_client.get("/api/v1/predictions/"))[1:3] == (2, 1)
    bad = admin_client.post("/admin/partners/partnerquota/add/", {"user": user.pk, "read_rate": "lots"})
    assert bad.status_code == 200 and b"is not a rate like" in bad.content


def test_schema_and_docs_are_never_limited_by_the_anonymous_rate(settings):
    settings.SNEAKERS_API_RATES = {**settings.SNEAKERS_API_RATES, "anon": "2/min"}
    client = APIClient()
    for _ in range(2):
        assert client.get("/api/v1/brands/").status_code == 200
    assert_error(client.get("/api/v1/brands/"), 429, "throttled")
    for _ in range(3):
        assert client.get("/api/schema/?format=json").status_code == 200
        assert client.get("/api/docs/").status_code == 200
        assert client.get("/developers/").status_code == 200


def test_answers_before_throttling_carry_the_headers_without_counting(token_client, settings):
    settings.SNEAKERS_API_RATES = {**settings.SNEAKERS_API_RATES, "anon": "7/min", "read": "9/min"}
    anonymous = APIClient()
    for _ in range(2):
        refused = anonymous.get("/api/v1/predictions/")  # 401 before the throttles run: nothing counted
        assert refused.status_code == 401 and limits(refused)[:3] == ("anon", 7, 7)
    missing = token_client.get("/api/v1/nope/")
    assert missing.status_code == 404 and limits(missing)[:3] == ("read", 9, 9)


COUNTER_SCRIPT = textwrap.dedent(
    """
    import sys
    from sneakers.cache import OpenDiskCache

    cache = OpenDiskCache(sys.argv[1], {"TIMEOUT": 300})
    cache.add("hits", 0, 300)
    for _ in range(int(sys.argv[2])):
        cache.incr("hits")
    """
)


def test_separate_processes_count_exactly_in_the_embedded_cache(tmp_path):
    """Three processes increment one counter 150 times each at the same time; none of the 450 counts is lost."""
    from sneakers.cache import OpenDiskCache

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen([sys.executable, "-c", COUNTER_SCRIPT, str(tmp_path), "150"], env=env) for _ in range(3)
    ]
    assert [worker.wait(timeout=120) for worker in workers] == [0, 0, 0]
    assert OpenDiskCache(str(tmp_path), {}).get("hits") == 450


def test_the_throttle_counts_what_another_web_process_counted(settings, tmp_path):
    """A second Django process (another gunicorn worker, say) counts in the same default cache as this one."""
    settings.CACHES = {"default": {"BACKEND": "sneakers.cache.OpenDiskCache", "LOCATION": str(tmp_path / "diskcache")}}
    now = 1_764_692_400.0
    script = (
        "import django; django.setup();"
        "from partners.throttling import window_count;"
        f"window_count(scope='anon', ident='ip-203.0.113.9', rate='5/min', cost=3, now={now})"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "sneakers.settings",
        "SNEAKERS_VAR_DIR": str(tmp_path),
    }
    env.pop("CACHE_URL", None)
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120)

    counted = window_count(scope="anon", ident="ip-203.0.113.9", rate="5/min", cost=2, now=now + 1)
    refused = window_count(scope="anon", ident="ip-203.0.113.9", rate="5/min", cost=1, now=now + 2)
    assert (counted.remaining, counted.refused) == (0, False)
    assert refused.refused and refused.reset == 1_764_692_460


def test_the_embedded_cache_keeps_its_connections_between_requests(token_client, settings):
    """Django closes every cache when a request finishes; the embedded backend keeps the thread's SQLite
    connections for the next request (opening them cost about half of an API request's time), and still counts."""
    from django.core.cache import caches

    from sneakers.cache import OpenDiskCache

    cache = caches["default"]

    settings.SNEAKERS_API_RATES = {**settings.SNEAKERS_API_RATES, "read": "10/min"}
    assert isinstance(cache, OpenDiskCache)

    def open_connections() -> dict[int, object]:
        shards = cache._cache._shards
        return {index: shard._local.con for index, shard in enumerate(shards) if getattr(shard._local, "con", None)}

    first = token_client.get("/api/v1/predictions/")
    held = open_connections()
    second = token_client.get("/api/v1/predictions/")
    assert held and open_connections() == held  # the same connection objects, not reopened
    assert limits(first)[2] - 1 == limits(second)[2]
    cache.close_connections()
    assert open_connections() == {}


def test_threads_of_one_process_count_exactly_and_the_window_entry_expires(settings, tmp_path):
    """Many web threads counting one caller at once (the embedded cache queues its counter writes per process):
    every request counted once, the limit held exactly, and the window's entry made with an expiry."""
    import threading

    from django.core.cache import caches

    settings.CACHES = {"default": {"BACKEND": "sneakers.cache.OpenDiskCache", "LOCATION": str(tmp_path / "dc")}}
    now = 1_764_692_400.0
    results: list = []

    def count() -> None:
        for i in range(60):
            results.append(window_count(scope="read", ident="user-7", rate="300/min", now=now + i % 30))

    threads = [threading.Thread(target=count) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(not r.refused for r in results) == 300 and sum(r.refused for r in results) == 180
    assert window_count(scope="read", ident="user-7", rate="300/min", cost=0, now=now).remaining == 0
    key = caches["default"].make_key(f"ratelimit:read:user-7:60:{int(now // 60)}")
    _, expires_at = caches["default"]._cache.get(key, expire_time=True)
    assert expires_at is not None  # the entry goes away after its window (+5 s), not never


def test_the_token_query_brings_the_partner_quota_along(user, other_user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.exceptions import AuthenticationFailed
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from accounts.services import partner_token_get_or_create
    from partners.authentication import PartnerTokenAuthentication
    from partners.throttling import partner_quota_for

    PartnerQuota.objects.create(user=user, upload_rate="7/min")
    for who, expected in ((user, "7/min"), (other_user, None)):
        key = partner_token_get_or_create(user=who).key
        request = Request(APIRequestFactory().get("/api/v1/brands/", HTTP_AUTHORIZATION=f"Token {key}"))
        with CaptureQueriesContext(connection) as queries:
            authenticated, _ = PartnerTokenAuthentication().authenticate(request)
            quota = partner_quota_for(request, authenticated)
        assert authenticated == who and len(queries) == 1  # token, user and quota in one query
        assert (quota.upload_rate if quota else None) == expected

    with pytest.raises(AuthenticationFailed, match="Invalid token"):
        PartnerTokenAuthentication().authenticate_credentials("no-such-key")
    other_user.is_active = False
    other_user.save()
    with pytest.raises(AuthenticationFailed, match="inactive"):
        PartnerTokenAuthentication().authenticate_credentials(partner_token_get_or_create(user=other_user).key)
