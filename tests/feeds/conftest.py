"""A real HTTP server on 127.0.0.1 (``http.server`` in a thread) for the download and feed tests.

``feed_server`` serves fixed routes (good images, 404, 503, slow answers, oversize files, HTML, truncated
bytes, redirects, including one to a private address) and any bytes a test publishes with
``feed_server.publish(path, body, content_type)``. It counts the requests per path (``feed_server.hits``).
"""

from __future__ import annotations

import http.server
import io
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from PIL import Image

SLOW_SECONDS = 30.0
"""How long ``/slow`` waits before answering; far beyond the tests' timeout (released at teardown)."""


def make_image(fmt: str = "JPEG", color: tuple[int, int, int] = (200, 30, 30), size=(48, 40)) -> bytes:
    """A solid-colour image encoded by Pillow; a different ``color`` gives different bytes (and hash)."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


GOOD_JPEG = make_image("JPEG", (10, 120, 200))
GOOD_PNG = make_image("PNG", (250, 200, 10))
BIG_BYTES = 200_000
"""Size of ``/big.jpg`` and ``/big-stream.jpg``; tests set the byte cap below it."""


@dataclass
class FeedServer:
    """Handle on the running server: its base URL, published files and request counts."""

    base: str
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    hits: Counter = field(default_factory=Counter)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def publish(self, path: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        """Serve ``body`` at ``path`` from now on; returns its URL."""
        self.files[path] = (body, content_type)
        return self.url(path)


def _handler(server: FeedServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, body: bytes, content_type: str, length: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)

        def _redirect(self, location: str) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: C901 - one branch per route
            path = self.path.split("?", 1)[0]
            server.hits[path] += 1
            if path in server.files:
                body, content_type = server.files[path]
                self._send(200, body, content_type)
            elif path == "/good.jpg":
                self._send(200, GOOD_JPEG, "image/jpeg")
            elif path == "/good.png":
                self._send(200, GOOD_PNG, "image/png")
            elif path == "/no-type.jpg":
                self._send(200, GOOD_JPEG, "application/octet-stream")
            elif path == "/page.html":
                self._send(200, b"<!doctype html><html><body>Not an image</body></html>", "text/html; charset=utf-8")
            elif path == "/html-as-jpeg.jpg":
                self._send(200, b"<!doctype html><html><body>Not an image</body></html>", "image/jpeg")
            elif path == "/big.jpg":
                self._send(200, GOOD_JPEG + b"\0" * BIG_BYTES, "image/jpeg")
            elif path == "/big-stream.jpg":
                # No Content-Length: the cap has to stop the stream itself.
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(GOOD_JPEG + b"\0" * BIG_BYTES)
                self.close_connection = True
            elif path == "/truncated.jpg":
                # Announces the whole file, sends half and hangs up.
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(GOOD_JPEG)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(GOOD_JPEG[: len(GOOD_JPEG) // 2])
                self.close_connection = True
            elif path == "/half.jpg":
                # A complete answer whose bytes are half a JPEG: the download works, the image check refuses it.
                self._send(200, GOOD_JPEG[: len(GOOD_JPEG) // 2], "image/jpeg")
            elif path == "/slow.jpg":
                server.release.wait(SLOW_SECONDS)
                self._send(200, GOOD_JPEG, "image/jpeg")
            elif path == "/missing.jpg":
                self._send(404, b"not found", "text/plain")
            elif path == "/unavailable.jpg":
                self._send(503, b"try later", "text/plain")
            elif path == "/flaky.jpg":
                # 503 on the first request, the image afterwards.
                if server.hits[path] == 1:
                    self._send(503, b"try later", "text/plain")
                else:
                    self._send(200, GOOD_JPEG, "image/jpeg")
            elif path == "/redirect-good":
                self._redirect("/good.png")
            elif path == "/redirect-private":
                self._redirect("http://169.254.169.254/latest/meta-data/")
            elif path == "/redirect-loop":
                self._redirect("/redirect-loop")
            elif path == "/redirect-ftp":
                self._redirect("ftp://example.com/shoe.jpg")
            else:
                self._send(404, b"not found", "text/plain")

    return Handler


class _QuietServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server that does not print a traceback when a client hangs up early (cap tests)."""

    def handle_error(self, request, client_address) -> None:
        pass


@pytest.fixture(scope="session")
def feed_server() -> Iterator[FeedServer]:
    """The test HTTP server, one per test session; ``files`` and ``hits`` are emptied by ``_fresh_server``."""
    state = FeedServer(base="")
    httpd = _QuietServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, name="feed-server", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def _fetch_settings(settings) -> None:
    """Downloads in these tests may reach 127.0.0.1 (the test server); small timeout, one retry."""
    settings.SNEAKERS_FETCH_ALLOW_PRIVATE = True
    settings.SNEAKERS_FETCH_TIMEOUT_SECONDS = 1.0
    settings.SNEAKERS_FETCH_RETRIES = 1
    settings.SNEAKERS_FETCH_WORKERS = 4


@pytest.fixture
def server(feed_server: FeedServer) -> FeedServer:
    """``feed_server`` with no published files and zeroed request counts."""
    feed_server.files.clear()
    feed_server.hits.clear()
    return feed_server
