"""Predictions are private: every cross-access between visitors, users and partner tokens is a 404.

Seven callers: anonymous sessions A and B, site users U1 and U2 (logged in with a session), partner
tokens T1 and T2, and a caller with no credentials at all. Each of the first six uploads one photo (A,
B, U1, U2 on the site; T1, T2 through the API). Then every caller tries every prediction that is not
its own on the site (``/p/<id>/``, ``/p/<id>/status/``, ``/history/``) and the API
(``GET /api/v1/predictions/<id>/`` and the list). Cross-access must be 404 (the API's JSON
``not_found``), an anonymous caller of the API gets 401 whoever owns the id, and own access is 200.

What is asserted about uploads made before login: they stay bound to the anonymous session key they
were made with and are not adopted by the account at login, so neither the user's API token nor the
user's signed-in site session can read them (404); a partner token never reads site uploads.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from accounts.services import partner_token_get_or_create
from predictions.models import Prediction
from tests.conftest import image_bytes

pytestmark = pytest.mark.django_db

SITE_KINDS = ("anonymous", "user")
API_URL = "/api/v1/predictions/"


@pytest.fixture(autouse=True)
def _fast_hasher_and_no_throttling(settings) -> None:
    """MD5 passwords (speed) and rates that these few dozen requests cannot reach."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.SNEAKERS_API_RATES = {"upload": "100000/min", "read": "100000/min", "anon": "100000/min"}


@dataclass
class Caller:
    """One caller: its client, how it authenticates, and the prediction it uploaded (if any)."""

    name: str
    kind: str  # "anonymous", "user", "token", "none"
    client: Any
    own: str | None = None
    checks: list[str] = field(default_factory=list)


def _photo(name: str = "shoe.jpg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, image_bytes(), content_type="image/jpeg")


def _site_upload(client: Client) -> str:
    response = client.post("/", {"image": _photo()})
    assert response.status_code == 302, response.content
    return response["Location"].split("/")[2]


def _api_upload(client: APIClient) -> str:
    response = client.post(API_URL, {"image": _photo()}, format="multipart")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def _user(username: str):
    return get_user_model().objects.create_user(username=username, password=f"pw-{username}-12345")


@pytest.fixture
def callers() -> dict[str, Caller]:
    """The seven callers; all but ``none`` have uploaded one photo."""
    result = {}
    for name in ("A", "B"):
        client = Client()
        result[name] = Caller(name, "anonymous", client, _site_upload(client))
    for name in ("U1", "U2"):
        client = Client()
        client.force_login(_user(name.lower()))
        result[name] = Caller(name, "user", client, _site_upload(client))
    for name in ("T1", "T2"):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {partner_token_get_or_create(user=_user(name.lower())).key}")
        result[name] = Caller(name, "token", client, _api_upload(client))
    result["none"] = Caller("none", "none", APIClient())
    assert Prediction.objects.count() == 6
    return result


def assert_api_error(response, status: int, code: str) -> None:
    """The API's one error shape with ``code``."""
    assert response.status_code == status, (response.status_code, response.content[:200])
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "detail"}
    assert body["error"]["code"] == code and body["error"]["message"]


class Matrix:
    """Runs and counts cross-access checks; failures are collected, then reported all at once."""

    def __init__(self) -> None:
        self.cross = 0
        self.own = 0
        self.failures: list[str] = []

    def check(self, label: str, is_own: bool, assertion: Callable[[], None]) -> None:
        if is_own:
            self.own += 1
        else:
            self.cross += 1
        try:
            assertion()
        except AssertionError as exc:
            self.failures.append(f"{label}: {exc}")


def test_every_cross_access_is_404_and_own_access_is_200(callers):
    matrix = Matrix()
    owners = [c for c in callers.values() if c.own]
    for viewer in callers.values():
        client = viewer.client
        for owner in owners:
            pid, mine = owner.own, viewer is owner
            tag = f"{viewer.name} -> {owner.name}'s {pid}"

            # Site pages read the session (a token header is ignored there: it is an anonymous visit).
            site_ok = mine and viewer.kind in SITE_KINDS
            for path in (f"/p/{pid}/", f"/p/{pid}/status/"):
                if mine and not site_ok:
                    continue  # a partner token on a site page: not an access path at all
                matrix.check(
                    f"site {path} {tag}",
                    mine,
                    lambda c=client, path=path, ok=site_ok: _expect_status(c.get(path), 200 if ok else 404),
                )
            matrix.check(
                f"site /history/ {tag}",
                mine,
                lambda c=client, pid=pid, ok=site_ok: _expect_listed(c.get("/history/"), pid, ok),
            )

            # API: token or site session authenticate; anonymous callers get 401 whatever the id.
            if viewer.kind in ("anonymous", "none"):
                matrix.check(
                    f"api detail {tag}",
                    mine,
                    lambda c=client, pid=pid: assert_api_error(c.get(f"{API_URL}{pid}/"), 401, "not_authenticated"),
                )
                matrix.check(
                    f"api list {tag}", mine, lambda c=client: assert_api_error(c.get(API_URL), 401, "not_authenticated")
                )
                continue
            if mine:
                matrix.check(f"api detail {tag}", True, lambda c=client, pid=pid: _expect_detail(c, pid))
            else:
                matrix.check(
                    f"api detail {tag}",
                    False,
                    lambda c=client, pid=pid: assert_api_error(c.get(f"{API_URL}{pid}/"), 404, "not_found"),
                )
            matrix.check(f"api list {tag}", mine, lambda c=client, pid=pid, mine=mine: _expect_api_listed(c, pid, mine))

    assert matrix.failures == []
    # 6 owners x 7 viewers minus own = 36 cross pairs; per pair: 2 site pages + history + API detail + list.
    assert (matrix.cross, matrix.own) == (36 * 5, 4 * 5 + 2 * 3)
    print(f"IDOR matrix: {matrix.cross} cross-access checks, {matrix.own} own-access checks")


def _expect_status(response, status: int) -> None:
    assert response.status_code == status, response.status_code


def _expect_listed(response, pid: str, listed: bool) -> None:
    assert response.status_code == 200, response.status_code
    assert (pid in response.content.decode()) is listed


def _expect_detail(client, pid: str) -> None:
    response = client.get(f"{API_URL}{pid}/")
    assert response.status_code == 200 and response.json()["id"] == pid, response.status_code


def _expect_api_listed(client, pid: str, listed: bool) -> None:
    response = client.get(API_URL)
    assert response.status_code == 200, response.status_code
    assert (pid in {item["id"] for item in response.json()["results"]}) is listed


def test_ids_are_random_uuids_and_other_id_shapes_are_not_routes(callers):
    for prediction in Prediction.objects.all():
        assert isinstance(prediction.id, uuid.UUID) and prediction.id.version == 4
    owner = callers["T1"].client
    for path in ("1", "0", "-1", "..%2f..%2fetc%2fpasswd", "00000000-0000-0000-0000-000000000000"):
        assert_api_error(owner.get(f"{API_URL}{path}/"), 404, "not_found")
        assert callers["A"].client.get(f"/p/{path}/").status_code == 404
    # No enumeration through the unauthenticated API: an existing id and a made-up one answer the same.
    existing = callers["none"].client.get(f"{API_URL}{callers['T1'].own}/")
    missing = callers["none"].client.get(f"{API_URL}{uuid.uuid4()}/")
    assert (existing.status_code, existing.json()) == (missing.status_code, missing.json())
    # A bad token is refused as such, not treated as anonymous.
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert_api_error(bad.get(f"{API_URL}{callers['T1'].own}/"), 401, "authentication_failed")


def test_uploads_made_before_login_move_to_that_account_and_no_one_else_reads_them():
    user = _user("shopper2")
    token = APIClient()
    token.credentials(HTTP_AUTHORIZATION=f"Token {partner_token_get_or_create(user=user).key}")
    browser, stranger = Client(), Client()
    before_login = _site_upload(browser)
    prediction = Prediction.objects.get(id=before_login)
    assert prediction.owner is None and prediction.session_key

    assert browser.get(f"/p/{before_login}/").status_code == 200  # the anonymous session reads it
    assert stranger.get(f"/p/{before_login}/").status_code == 404
    assert_api_error(token.get(f"{API_URL}{before_login}/"), 404, "not_found")  # not the account's yet
    assert before_login not in {item["id"] for item in token.get(API_URL).json()["results"]}

    browser.force_login(user)  # the same browser signs in (Django cycles the session key): the upload moves
    assert Prediction.objects.get(id=before_login).owner == user
    assert browser.get(f"/p/{before_login}/").status_code == 200
    assert before_login in browser.get("/history/").content.decode()
    assert _expect_detail(token, before_login) is None
    assert stranger.get(f"/p/{before_login}/").status_code == 404
    after_login = _site_upload(browser)
    assert Prediction.objects.get(id=after_login).owner == user
    assert _expect_detail(token, after_login) is None  # what the account uploads after login, its token reads
