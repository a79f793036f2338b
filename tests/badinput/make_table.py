"""Write ``tests/badinput/TABLE.md``: every bad-input case and what the API and the site answered.

Run by hand from the checkout: ``.venv/bin/python tests/badinput/make_table.py [--output PATH]``.

It uses a throw-away SQLite database, media folder and in-memory broker under a temporary folder (nothing
touches ``var/``), posts every case of ``tests.badinput.corpus`` to ``POST /api/v1/predictions/`` (with a
partner token) and to the site's ``POST /``, and writes one table row per case: the answers (status and
error code; the site's message) next to the documented outcome, and whether they agree.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "TABLE.md"


def _setup_django(workdir: Path) -> None:
    """Configure Django on a private SQLite database and media folder, with rates nobody reaches."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "sneakers.settings",
            "SNEAKERS_VAR_DIR": str(workdir),
            "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
            "CELERY_BROKER_URL": "memory://",
            "CACHE_URL": "locmemcache://",
            "SNEAKERS_API_UPLOAD_RATE": "1000000/min",
            "SNEAKERS_API_READ_RATE": "1000000/min",
            "DJANGO_LOG_LEVEL": "CRITICAL",
            "DJANGO_MEDIA_ROOT": str(workdir / "media"),
        }
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import logging

    logging.disable(logging.CRITICAL)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _cell(text: object, limit: int = 70) -> str:
    value = str(text if text is not None else "")
    value = value if len(value) <= limit else value[: limit - 1] + "…"
    return value.replace("|", "\\|").replace("\n", " ")


def build_rows() -> tuple[list[str], int, int]:
    """Send every case; return the markdown rows, the number of cases and the number that disagree."""
    import warnings

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.test import Client
    from rest_framework.test import APIClient

    from accounts.services import partner_token_get_or_create
    from tests.badinput.corpus import FILE_CASES, REQUEST_CASES, Accepted
    from tests.badinput.harness import send_file_api, send_file_site, send_request_api, send_request_site

    warnings.simplefilter("ignore")
    user = get_user_model().objects.create_user(username="table", password="pw-table-123456")
    api = APIClient(raise_request_exception=False)
    api.credentials(HTTP_AUTHORIZATION=f"Token {partner_token_get_or_create(user=user).key}")
    default_max = settings.SNEAKERS_UPLOAD_MAX_BYTES
    rows, disagree = [], 0

    for case in FILE_CASES.values():
        cache.clear()
        settings.SNEAKERS_UPLOAD_MAX_BYTES = case.max_bytes or default_max
        data = case.build()
        a = send_file_api(api, case, data)
        s = send_file_site(Client(raise_request_exception=False), case, data)
        if isinstance(case.expect, Accepted):
            expected = f"accepted (.{case.expect.stored_ext})"
            ok = a.status == 202 and s.status == 302
        else:
            expected = f"{case.expect.status} {case.expect.code}"
            ok = (a.status, a.code) == (case.expect.status, case.expect.code) and s.status == case.expect.status
        disagree += not ok
        rows.append(
            f"| `{case.name}` | `{_cell(ascii(case.filename)[1:-1], 40)}` | {len(data):,} | {_cell(case.note, 60)} "
            f"| {a.status} {a.code or ''} | {s.status} {_cell(s.message, 60)} | {expected} "
            f"| {'yes' if ok else '**NO**'} |"
        )
    settings.SNEAKERS_UPLOAD_MAX_BYTES = default_max

    for case in REQUEST_CASES.values():
        cache.clear()
        a = send_request_api(api, case)
        raw = case.send(Client(raise_request_exception=False), "/")
        site_message = send_request_site(Client(raise_request_exception=False), case).message or case.site_message
        ok = (a.status, a.code) == (case.api.status, case.api.code) and raw.status_code == case.site_status
        disagree += not ok
        expected = f"API {case.api.status} {case.api.code}; site {case.site_status}"
        rows.append(
            f"| `{case.name}` | (request) | | {_cell(case.note, 60)} | {a.status} {a.code or ''} "
            f"| {raw.status_code} {_cell(site_message, 60)} | {expected} | {'yes' if ok else '**NO**'} |"
        )
    return rows, len(FILE_CASES) + len(REQUEST_CASES), disagree


def main() -> None:
    """Parse arguments, run every case in a temporary sandbox and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="sneakers-badinput-"))
    try:
        _setup_django(workdir)
        rows, total, disagree = build_rows()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    header = [
        "# Bad-input corpus: what the upload endpoints answer",
        "",
        "Generated by `.venv/bin/python tests/badinput/make_table.py` from `tests/badinput/corpus.py`;",
        "`tests/badinput/test_badinput_uploads.py` asserts the same outcomes (and that refused uploads are kept",
        "as `failed` predictions with the code, stored files stay inside MEDIA_ROOT under",
        "`uploads/YYYY/MM/DD/<uuid>.<detected ext>`, and accepted files decode as documented).",
        "API: `POST /api/v1/predictions/` with a partner token (202 = queued). Site: `POST /` (302 = redirect",
        "to the result page; otherwise the message shown on the page). `oversize` runs with",
        "`SNEAKERS_UPLOAD_MAX_BYTES=50000`.",
        "",
        f"{total} cases; answers that differ from the documented outcome: **{disagree}**.",
        "",
        "| case | file name sent | bytes | what | API | site | documented | agrees |",
        "| --- | --- | ---: | --- | --- | --- | --- | --- |",
    ]
    args.output.write_text("\n".join(header + rows) + "\n", encoding="utf-8")
    print(f"wrote {args.output} ({total} cases, {disagree} differ from the documented outcome)")


if __name__ == "__main__":
    main()
