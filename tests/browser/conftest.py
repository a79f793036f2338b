"""Browser tests: Playwright for Python driving Debian's Chromium against pytest-django's live server.

The site runs in the test process (``live_server``: a thread serving the app, static files and local
media); predictions are answered by a real Celery worker process on the inference queue that shares
the test's PostgreSQL database, Redis broker, media folder and a tiny model trained by the test
(``e2e_model`` from ``tests/e2e/conftest.py``).

Chromium comes from the distribution (``apt-get install chromium``, which ``.ci/run`` does): Playwright's
own browser download does not work on these machines. Without Chromium at ``CHROMIUM`` (or without
the ``playwright`` package) the tests skip with the reason; under CI (``CI=true``) they fail instead,
like the end-to-end tests. ``SNEAKERS_BROWSER_CHROMIUM`` names another Chromium binary.

Each test saves screenshots in its ``tmp_path``; set ``SNEAKERS_BROWSER_SHOTS`` to a folder to keep copies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tests.e2e.conftest import e2e_model, process_env, require_services, worker_process  # noqa: F401 - fixture reused

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("SNEAKERS_BROWSER_CHROMIUM", "/usr/bin/chromium"))
# Headless, no sandbox (containers run as root), and no background traffic to Google's services: the
# machines have no internet. Switches from Chromium's list (https://peter.sh/experiments/chromium-command-line-switches/).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
"""Desktop viewport, CSS pixels."""
PHONE = {"width": 390, "height": 844}
"""Phone viewport, CSS pixels (iPhone 12 to 15 portrait, as in Playwright's device descriptors)."""
TIMEOUT_MS = 60_000
"""Longest wait for a page action or a result, milliseconds (a result waits for the worker; CPUs are shared)."""
EXPECT_TIMEOUT_MS = 20_000
"""Longest wait of an ``expect`` assertion, milliseconds (Playwright's default, 5 s, is tight on busy CPUs)."""


def _skip_or_fail(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="package")
def chromium() -> Iterator[object]:
    """One headless Chromium (a Playwright ``Browser``) for the whole ``tests/browser`` package.

    Playwright's sync API keeps an asyncio event loop running in this thread while it is started, and
    Django's ORM then refuses to run here (``SynchronousOnlyOperation``). Every call stays synchronous,
    so ``DJANGO_ALLOW_ASYNC_UNSAFE`` is set for exactly as long as Playwright runs (Django docs,
    "Asynchronous support", async safety), and the package scope ends it before other packages' tests.
    """
    if not CHROMIUM.exists():
        _skip_or_fail(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _skip_or_fail("browser tests need the playwright package (pip install -r requirements-dev.txt)")
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    playwright = sync_playwright().start()
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def open_page(chromium, live_server):
    """``open_page(viewport) -> Page``: a page in a fresh browser context (own cookies) on the live server.

    Relative URLs go to the live server; waits last up to ``TIMEOUT_MS``. ``page.problems`` (list of
    str) collects script errors and sub-resources (images, styles, scripts, fetches) that failed or
    answered HTTP >= 400, so a test can assert that the page loaded whole.
    """
    contexts = []

    def page_for(viewport: dict[str, int] = DESKTOP):
        context = chromium.new_context(viewport=viewport, base_url=live_server.url)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.problems = problems = []

        def request_failed(request) -> None:
            # A reload cancels requests still in flight (net::ERR_ABORTED): that is the page working.
            if "ERR_ABORTED" not in (request.failure or ""):
                problems.append(f"{request.url}: {request.failure}")

        def response_received(response) -> None:
            if response.status >= 400 and response.request.resource_type != "document":
                problems.append(f"{response.url}: HTTP {response.status}")

        page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
        page.on("requestfailed", request_failed)
        page.on("response", response_received)
        return page

    yield page_for
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot(tmp_path, request):
    """``screenshot(page, name) -> Path``: a full-page PNG in ``tmp_path``, copied to ``SNEAKERS_BROWSER_SHOTS``."""
    keep = os.environ.get("SNEAKERS_BROWSER_SHOTS")

    def take(page, name: str) -> Path:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(keep) / f"{request.node.name}-{name}.png")
        return path

    return take


@pytest.fixture(scope="module")
def _worker_dirs(tmp_path_factory) -> dict[str, Path]:
    """Media, cache and var folders shared by the module's worker process and its tests."""
    base = tmp_path_factory.mktemp("browser-worker")
    return {"media": base / "media", "cache": base / "cache", "var": base}


@pytest.fixture(scope="module")
def _worker_process(django_db_setup, tiny_backbone_path, _worker_dirs) -> Iterator[Path]:
    """A real ``celery worker`` on the inference queue for the whole module; yields its log file.

    Started once per module (importing TensorFlow makes a start take seconds); each test trains its
    own model version into the same media folder, and the worker loads whichever version is active.
    """
    require_services()
    env = process_env(
        _worker_dirs["var"],
        tiny_backbone_path,
        django_settings.CELERY_BROKER_URL,
        DJANGO_MEDIA_ROOT=str(_worker_dirs["media"]),
        SNEAKERS_CACHE_DIR=str(_worker_dirs["cache"]),
    )
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    log_path = _worker_dirs["var"] / "worker.log"
    with worker_process(env, log_path):
        yield log_path


@pytest.fixture
def live_worker(settings, _worker_process, _worker_dirs) -> Path:
    """The module's worker, with this test's media and cache folders set to the worker's.

    Request it before ``e2e_model`` so that the catalog and the model are stored where the worker
    reads them. Returns the worker's log file (for failure messages).
    """
    settings.MEDIA_ROOT = _worker_dirs["media"]
    settings.SNEAKERS_CACHE_DIR = _worker_dirs["cache"]
    return _worker_process


@contextlib.contextmanager
def worker_log_on_failure(log_path: Path) -> Iterator[None]:
    """Re-raise an error from inside the block as an ``AssertionError`` carrying the worker log's tail."""
    try:
        yield
    except Exception as exc:
        raise AssertionError(f"{exc}\n--- worker log (tail)\n{log_path.read_text()[-3000:]}") from exc
