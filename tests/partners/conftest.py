"""Fixtures of the partner API tests: a real HTTP receiver on 127.0.0.1, partner clients, photos."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import image_bytes


@dataclass
class Received:
    """One request the receiver got: method, path, headers (lower-case names) and the raw body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver: answers each request with the next ``(status, headers, body)`` of ``script`` (the
    last one repeats once the script is used up) and records what it received; also serves ``files`` to GET."""

    base: str
    script: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            if len(self.script) > 1:
                return self.script.pop(0)
            return self.script[0] if self.script else (200, {}, b"ok")


def _handler(receiver: Receiver) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with receiver.lock:
                receiver.received.append(
                    Received("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
            status, headers, answer = receiver.answer()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def do_GET(self) -> None:
            found = receiver.files.get(self.path)
            if found is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data, content_type = found
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture(scope="session")
def receiver_server() -> Iterator[Receiver]:
    state = Receiver(base="")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def receiver(receiver_server: Receiver, settings) -> Receiver:
    """The receiver with an empty script and log; webhooks and downloads may reach 127.0.0.1 in this test."""
    settings.SNEAKERS_WEBHOOK_ALLOW_PRIVATE = True
    settings.SNEAKERS_FETCH_ALLOW_PRIVATE = True
    settings.SNEAKERS_FETCH_RETRIES = 0
    settings.SNEAKERS_FETCH_TIMEOUT_SECONDS = 2.0
    receiver_server.script.clear()
    receiver_server.received.clear()
    receiver_server.files.clear()
    return receiver_server


def photo(name: str = "shoe.jpg", data: bytes | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, image_bytes() if data is None else data, content_type="image/jpeg")


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]
