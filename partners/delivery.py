"""One HTTP POST of a webhook to a partner's URL, with the safety rules of ``catalog.downloads``.

A partner chooses the URL, so the web of the platform itself must not be reachable through it (SSRF):

- ``http``/``https`` only, with a host, at most ``MAX_URL_LENGTH`` characters;
- the host must resolve to public addresses only (``catalog.downloads.address_is_public``), and the address
  the socket connected to is checked again before a byte is sent (DNS rebinding); private, loopback,
  link-local and reserved addresses are allowed only with ``settings.SNEAKERS_WEBHOOK_ALLOW_PRIVATE``
  (tests, closed networks);
- redirects are never followed: a 3xx answer is a failed attempt (as Stripe's webhooks do);
- proxies and ``.netrc`` from the environment are not used; connect and read timeouts
  (``SNEAKERS_WEBHOOK_TIMEOUT_SECONDS``); only the first ``EXCERPT_CHARS`` characters of the answer are read.

Retries are not made here: each call is one attempt; ``partners.tasks.deliver_webhook`` retries with backoff.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from django.conf import settings

from catalog.downloads import DownloadError, PublicAddressAdapter, address_is_public

MAX_URL_LENGTH = 2000
EXCERPT_CHARS = 500
USER_AGENT = "Sneakers-Webhooks/1.0"


class UnsafeURL(Exception):
    """The URL is not one webhooks are sent to (scheme, host, or a non-public address); ``code`` says which:
    ``webhook_url_invalid`` or ``webhook_url_private``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class PostResult:
    """What one POST gave: the HTTP status (None when no answer came), an error sentence (empty on an
    answer), the first characters of the answer's body, and the time taken in milliseconds."""

    status_code: int | None
    error: str
    excerpt: str
    duration_ms: float

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return self.status_code is not None and 200 <= self.status_code < 300


def url_check(url: str, *, resolve: bool, allow_private: bool | None = None) -> None:
    """Refuse a URL webhooks must not be sent to.

    Args:
        resolve: also resolve the host and require public addresses (at delivery); without it only a host
            written as an IP address or ``localhost`` is judged (at registration, when DNS may be elsewhere).
        allow_private: default ``settings.SNEAKERS_WEBHOOK_ALLOW_PRIVATE``.

    Raises:
        UnsafeURL: ``webhook_url_invalid`` (scheme, host, length) or ``webhook_url_private``.
    """
    allow_private = settings.SNEAKERS_WEBHOOK_ALLOW_PRIVATE if allow_private is None else allow_private
    if not url or len(url) > MAX_URL_LENGTH:
        raise UnsafeURL("webhook_url_invalid", f"The URL must be 1 to {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeURL("webhook_url_invalid", "The URL is not valid.") from None
    if parts.scheme not in ("http", "https") or not host:
        raise UnsafeURL("webhook_url_invalid", "Webhooks are sent to http:// or https:// URLs with a host name.")
    if allow_private:
        return
    private = UnsafeURL(
        "webhook_url_private",
        f"{host} is, or resolves to, a private, loopback or reserved address; webhooks go to public addresses only.",
    )
    if _is_ip(host):
        if not address_is_public(host):
            raise private
    elif host == "localhost" or host.endswith(".localhost"):
        raise private
    elif resolve:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise UnsafeURL("webhook_url_invalid", f"The host {host} could not be found.") from None
        if not infos or not all(address_is_public(str(info[4][0])) for info in infos):
            raise private


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def webhook_post(*, url: str, body: bytes, headers: dict[str, str], timeout: float | None = None) -> PostResult:
    """POST ``body`` to ``url`` once, never following a redirect.

    Returns a ``PostResult``; transport failures (refused, timeout, TLS, a non-public peer) are in ``error``,
    never raised.

    Raises:
        UnsafeURL: the URL itself is refused (``url_check`` with resolution); retrying cannot help.
    """
    url_check(url, resolve=True)
    timeout = settings.SNEAKERS_WEBHOOK_TIMEOUT_SECONDS if timeout is None else timeout
    started = time.monotonic()
    session = requests.Session()
    session.trust_env = False
    if not settings.SNEAKERS_WEBHOOK_ALLOW_PRIVATE:
        for prefix in ("http://", "https://"):
            session.mount(prefix, PublicAddressAdapter(max_retries=0))
    try:
        with session:
            response = session.post(
                url,
                data=body,
                headers={"User-Agent": USER_AGENT, "Content-Type": "application/json", **headers},
                timeout=(timeout, timeout),
                allow_redirects=False,
                stream=True,
            )
            with response:
                raw = response.raw.read(EXCERPT_CHARS * 4, decode_content=True) or b""
                excerpt = raw.decode("utf-8", "replace")[:EXCERPT_CHARS]
                error = ""
                if response.is_redirect:
                    error = f"Answered {response.status_code} (a redirect); webhooks do not follow redirects."
                return PostResult(response.status_code, error, excerpt, _ms(started))
    except DownloadError as exc:  # the socket reached a non-public address (PublicAddressAdapter)
        return PostResult(None, exc.message, "", _ms(started))
    except requests.Timeout:
        return PostResult(None, f"No answer within {timeout:g} s.", "", _ms(started))
    except (requests.RequestException, OSError) as exc:
        cause = exc.__context__ if isinstance(exc.__context__, DownloadError) else None
        if cause is not None:
            return PostResult(None, cause.message, "", _ms(started))
        return PostResult(None, f"Could not connect: {type(exc).__name__}.", "", _ms(started))


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000.0, 1)
