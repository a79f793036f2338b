"""Errors: JSON for every path under /api/ (DEBUG on or off), a hint for the Bearer scheme, and an error catalogue
that lists every code the API gives (the developers' page shows it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from catalog.downloads import DOWNLOAD_ERROR_CODES
from catalog.images import IMAGE_REJECTION_CODES
from partners.errors import ERROR_CATALOGUE, SOURCE_CODES, error_catalogue_markdown
from tests.partners.conftest import assert_error
from worker.ml.errors import IMAGE_ERROR_CODES

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
API_MODULES = [
    "predictions/services.py",
    "predictions/tasks.py",
    "predictions/idempotency.py",
    "predictions/apis.py",
    "partners/services.py",
    "partners/apis.py",
    "partners/delivery.py",
]
SITE_ONLY = {"feedback_invalid", "feedback_no_photo"}
"""Codes of the site's correction form (``feedback_create``, admin); no API path gives them."""


@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize(
    "path", ["/api/v1/nope/", "/api/v1/predictions/abc/", "/api/nothing", "/api/v1/batches/not-a-uuid/", "/api/v2/"]
)
def test_unknown_api_paths_are_json_404(token_client, settings, debug, path):
    settings.DEBUG = debug
    assert_error(token_client.get(path), 404, "not_found")


@pytest.mark.parametrize("debug", [True, False])
def test_a_post_without_the_trailing_slash_names_the_right_path(token_client, settings, debug):
    """Not CommonMiddleware's 301 (a client would re-send it as a GET) nor, with DEBUG on, its RuntimeError."""
    settings.DEBUG = debug
    error = assert_error(token_client.post("/api/v1/batches", {}, format="json"), 404, "not_found")
    assert error["detail"] == {"path": "/api/v1/batches/"} and "trailing slash" in error["message"]
    assert token_client.get("/api/v1/batches").status_code == 301  # a GET may still be redirected


def test_site_paths_keep_the_html_404(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


def test_a_bearer_token_gets_a_hint():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b")
    error = assert_error(client.get("/api/v1/predictions/"), 401, "not_authenticated")
    assert "Authorization: Token <key>" in error["message"] and error["detail"]["hint"]


def test_no_hint_without_credentials():
    error = assert_error(APIClient().get("/api/v1/predictions/"), 401, "not_authenticated")
    assert error["detail"] == {}


def _raised_codes() -> set[str]:
    """Every ``code="..."`` literal passed to a call in the API modules (``ApplicationError``, mark_failed...)."""
    codes = set()
    for module in API_MODULES:
        for node in ast.walk(ast.parse((ROOT / module).read_text())):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg == "code" and isinstance(keyword.value, ast.Constant):
                        codes.add(keyword.value.value)
    return codes


def test_the_catalogue_lists_every_code_once():
    listed = [entry.code for entry in ERROR_CATALOGUE]
    assert len(listed) == len(set(listed))
    assert SOURCE_CODES == set(IMAGE_REJECTION_CODES) | set(DOWNLOAD_ERROR_CODES) | set(IMAGE_ERROR_CODES)
    missing = (SOURCE_CODES | _raised_codes()) - SITE_ONLY - set(listed)
    assert not missing, f"codes missing from partners.errors.ERROR_CATALOGUE: {sorted(missing)}"
    assert {"batch_too_many_items", "idempotency_key_reused", "url_http_error", "throttled"} <= set(listed)


def test_the_developers_page_shows_the_guide_and_every_code(client):
    response = client.get("/developers/")
    html = response.content.decode()
    assert response.status_code == 200
    for anchor in ("quick-start", "polling", "batches", "webhooks", "idempotency", "limits", "errors"):
        assert f'id="{anchor}"' in html
    assert "http://testserver/api/v1/predictions/" in html  # the site's own address in the examples
    for entry in ERROR_CATALOGUE:
        assert f"<code>{entry.code}</code>" in html
    assert error_catalogue_markdown().count("\n") == len(ERROR_CATALOGUE) + 1
