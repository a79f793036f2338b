"""Send corpus cases to the API and the site and read the answers; shared by the tests and ``make_table.py``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.badinput.corpus import FileCase, RequestCase, post_file

API_URL = "/api/v1/predictions/"
SITE_URL = "/"
STORED_NAME = re.compile(r"^uploads/\d{4}/\d{2}/\d{2}/(?P<id>[0-9a-f-]{36})\.(?P<ext>jpg|png|webp|bin)$")
"""Every stored upload name: date folders, the prediction's UUID and a server-chosen extension."""
ALERT = re.compile(r'role="alert">(?P<message>[^<]*)<')


@dataclass(frozen=True)
class Answer:
    """What an endpoint answered: status, error code (API) and message, and the prediction it names."""

    status: int
    code: str | None
    message: str
    prediction_id: str | None


def api_answer(response: Any) -> Answer:
    """Read an API response: ``202`` body id, or the error shape's code, message and ``prediction_id``."""
    body: dict[str, Any] = {}
    if response.get("Content-Type", "").startswith("application/json"):
        body = response.json()
    if response.status_code == 202:
        return Answer(202, None, "", body.get("id"))
    error = body.get("error") or {}
    detail = error.get("detail") if isinstance(error.get("detail"), dict) else {}
    return Answer(response.status_code, error.get("code"), error.get("message", ""), detail.get("prediction_id"))


def site_answer(response: Any) -> Answer:
    """Read a site response: a redirect to ``/p/<id>/``, or the page's alert message."""
    if response.status_code == 302:
        match = re.fullmatch(r"/p/(?P<id>[0-9a-f-]{36})/", response["Location"])
        return Answer(302, None, "", match["id"] if match else None)
    content = response.content.decode("utf-8", "replace")
    alert = ALERT.search(content)
    return Answer(response.status_code, None, alert["message"] if alert else "", None)


def send_file_api(client: Any, case: FileCase, data: bytes | None = None) -> Answer:
    """POST a file case to ``/api/v1/predictions/``."""
    return api_answer(post_file(client, API_URL, case, data))


def send_file_site(client: Any, case: FileCase, data: bytes | None = None) -> Answer:
    """POST a file case to the site's upload form (``POST /``)."""
    return site_answer(post_file(client, SITE_URL, case, data))


def send_request_api(client: Any, case: RequestCase) -> Answer:
    """Send a malformed-request case to the API."""
    return api_answer(case.send(client, API_URL))


def send_request_site(client: Any, case: RequestCase) -> Answer:
    """Send a malformed-request case to the site."""
    return site_answer(case.send(client, SITE_URL))


def files_under(root: Path) -> list[Path]:
    """Every regular file below ``root`` (recursively), resolved."""
    return sorted(path.resolve() for path in root.rglob("*") if path.is_file())
