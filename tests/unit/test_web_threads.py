"""Every way of starting the web process runs gunicorn with threads to spare beyond the long polls.

A status read with ``?wait=`` holds its thread for up to ``SNEAKERS_LONG_POLL_MAX_SECONDS``; a sync gunicorn worker
(one request at a time) would be taken by a single waiting result page. So the Procfile, the Dockerfile and
docker-compose run gthread workers whose thread count exceeds ``SNEAKERS_LONG_POLL_WAITERS``, and settings refuse a
``SNEAKERS_WEB_THREADS`` (the Procfile's) that does not.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def _threads(command: str) -> int:
    """``--threads`` of a gunicorn command line, shell defaults (``${VAR:-8}``) taken as written."""
    words = shlex.split(re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", command))
    assert "gunicorn" in words, command
    return int(words[words.index("--threads") + 1]) if "--threads" in words else 1


def _commands() -> dict[str, str]:
    procfile = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if ":" in line)
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert cmd, "Dockerfile has no CMD"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    web = compose["services"]["web"]["command"]
    web = web if isinstance(web, str) else " ".join(web)
    return {
        "Procfile": procfile["web"],
        "Dockerfile": " ".join(yaml.safe_load(cmd.group(1))),
        "docker-compose.yml": web[web.index("gunicorn") :].rstrip().rstrip('"'),
    }


@pytest.mark.parametrize("where", ["Procfile", "Dockerfile", "docker-compose.yml"])
def test_the_web_process_has_more_threads_than_long_poll_slots(where):
    assert _threads(_commands()[where]) > settings.SNEAKERS_LONG_POLL_WAITERS


def test_settings_refuse_web_threads_that_long_polls_could_fill():
    import os
    import subprocess
    import sys

    env = {**os.environ, "SNEAKERS_WEB_THREADS": "4", "SNEAKERS_LONG_POLL_WAITERS": "5"}
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode != 0 and "must be below SNEAKERS_WEB_THREADS" in done.stderr
