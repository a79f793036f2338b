"""CPU and instructions of one API upload inside the web process, without a server or a network in the way.

Run by hand (prints figures, asserts nothing)::

    .venv/bin/python benchmarks/bench_upload.py                  # CPU ms per upload, 5 rounds of 200
    .venv/bin/python benchmarks/bench_upload.py --instructions   # instructions per upload (needs valgrind)

A fresh var folder with the embedded defaults (SQLite in WAL, the SQLite broker, the disk cache) and the
Procfile's settings (``sneakers.settings``, ``DJANGO_DEBUG`` as ``make run`` leaves it), a partner token,
and one 640 x 480 JPEG (``bench_load.shoe_jpeg``, about 40 KB) posted as ``multipart/form-data`` to
``POST /api/v1/predictions/`` by calling Django's WSGI handler (``sneakers.wsgi.application``) directly, as
gunicorn would, one upload after another on one thread; every answer must be ``202``. Nothing consumes the
queued jobs.

- CPU: ``time.process_time`` around each round of ``--uploads``; best and median of ``--rounds``, in ms per
  upload. The machine's speed shows in it (this project's machines drift by a third within minutes).
- ``--instructions``: the same script under ``valgrind --tool=callgrind`` twice, with ``--small`` and
  ``--small + 100`` uploads after the warm-up, and the difference of the two totals divided by 100: the
  instructions one upload executes, start-up excluded, repeatable to about 1 % (hash seed fixed). Slow
  (valgrind runs Python about 50 times slower: about two minutes); valgrind from Debian's package.

README "Speed", seventh round, has the figures and what they led to.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_speed import UPLOAD_BOUNDARY, multipart_upload, stack_env  # this folder, and the project root on sys.path


def setup(var_dir: Path):
    """Configure Django on ``var_dir`` as ``bench_speed.py`` configures its stack (``stack_env``: a fresh
    checkout's environment, raised API rates), migrate, make a partner token; returns
    ``(application, token, body)``."""
    environment = stack_env(var_dir, 0, None)
    os.environ.clear()
    os.environ.update(environment, DJANGO_SETTINGS_MODULE="sneakers.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from bench_load import shoe_jpeg
    from django.contrib.auth import get_user_model

    from accounts.services import partner_token_get_or_create
    from sneakers.wsgi import application

    user, _ = get_user_model().objects.get_or_create(username="bench-upload")
    body = multipart_upload(shoe_jpeg((640, 480), 0))
    return application, partner_token_get_or_create(user=user).key, body


def uploader(application, token: str, body: bytes):
    """A function that posts ``body`` once through ``application`` and raises unless the answer is 202."""

    def start_response(status: str, headers, exc_info=None) -> None:
        if not status.startswith("202"):
            raise SystemExit(f"upload answered {status}")

    def upload() -> None:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/api/v1/predictions/",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1:8000",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": f"multipart/form-data; boundary={UPLOAD_BOUNDARY}",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_AUTHORIZATION": f"Token {token}",
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
        }
        answer = application(environ, start_response)
        b"".join(answer)
        answer.close()

    return upload


def run_uploads(args: argparse.Namespace) -> None:
    """The in-process part: warm up, then either the timed rounds or ``--count`` uploads (under valgrind)."""
    var_dir = Path(tempfile.mkdtemp(prefix="sneakers-bench-upload-"))
    try:
        upload = uploader(*setup(var_dir))
        for _ in range(args.warm):
            upload()
        if args.count is not None:
            for _ in range(args.count):
                upload()
            return
        per_upload = []
        for _ in range(args.rounds):
            started = time.process_time()
            for _ in range(args.uploads):
                upload()
            per_upload.append(1000 * (time.process_time() - started) / args.uploads)
        print(f"CPU per API upload, in process: best {min(per_upload):.2f} ms, median "
              f"{statistics.median(per_upload):.2f} ms ({args.rounds} rounds of {args.uploads}; "
              f"{' '.join(f'{value:.2f}' for value in per_upload)})")  # fmt: skip
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


def callgrind_total(count: int, warm: int) -> int:
    """Instructions valgrind's callgrind counted for this script with ``count`` uploads after ``warm``."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, __file__, "--count", str(count), "--warm", str(warm)],
        env={**os.environ, "PYTHONHASHSEED": "0"}, capture_output=True, text=True,
    )  # fmt: skip
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode or not found:
        raise SystemExit(f"valgrind run failed:\n{done.stderr[-3000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=200, help="uploads per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warm", type=int, default=20, help="uploads before anything is measured")
    parser.add_argument("--instructions", action="store_true", help="count instructions with valgrind instead")
    parser.add_argument("--small", type=int, default=20, help="uploads of the smaller --instructions run")
    parser.add_argument("--count", type=int, default=None, help=argparse.SUPPRESS)  # one valgrind child run
    args = parser.parse_args()
    if not args.instructions:
        run_uploads(args)
        return
    began = time.monotonic()
    small, large = (callgrind_total(args.small, args.warm), callgrind_total(args.small + 100, args.warm))
    seconds = time.monotonic() - began
    print(f"instructions per API upload, in process: {(large - small) / 100 / 1e6:.2f} million "
          f"(callgrind, {args.small + 100} against {args.small} uploads; {seconds:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
