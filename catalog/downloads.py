"""Safe HTTP(S) downloads of catalog images and feed files (``requests`` + urllib3's ``Retry``).

Used by feed ingest (``catalog.feeds``) and by the partner API's batch items that name an image URL. A URL
comes from outside (a feed row, a partner's request), so the download is treated as hostile input:

- only ``http`` and ``https`` URLs, at most ``MAX_URL_LENGTH`` characters, with a host;
- the host is resolved and every address it resolves to must be public (``ipaddress``'s ``is_global``, and not
  multicast, reserved, loopback, link-local or unspecified; an IPv4-mapped IPv6 address is judged by its IPv4
  address), unless ``settings.SNEAKERS_FETCH_ALLOW_PRIVATE`` is true (tests, closed networks). The address the
  socket actually connected to is checked again before a byte of the request is sent, so a name that
  resolves to a public address for the check and a private one for the connection (DNS rebinding) is refused
  too. Proxies from the environment are not used (the connection goes to the host itself);
- redirects are followed by this module, at most ``MAX_REDIRECTS``, each hop checked like the first URL;
- connect and read timeouts (``SNEAKERS_FETCH_TIMEOUT_SECONDS`` each, per socket operation) and a deadline for
  the whole body (``BODY_DEADLINE_FACTOR`` times that timeout), so a server dripping one byte a second cannot
  hold a worker;
- the body is streamed with a byte cap (``SNEAKERS_FETCH_MAX_BYTES``, by default the upload limit); a
  ``Content-Length`` over the cap is refused before the body is read, and a gzip body counts decompressed;
- connection errors, read timeouts before the answer and answers 429, 500, 502, 503 and 504 are retried
  ``SNEAKERS_FETCH_RETRIES`` times with exponential backoff (urllib3 ``Retry``: ``BACKOFF_FACTOR`` x 2^(n-1)
  seconds, at most ``BACKOFF_MAX``; a ``Retry-After`` header is obeyed up to ``BACKOFF_MAX`` seconds);
- with ``image_only`` (the default) the answer must not declare a non-image ``Content-Type`` and its first
  bytes must be a JPEG, PNG or WebP signature. The bytes are not decoded here: callers pass them to
  ``catalog.images.inspect_image``, the same checks as uploads (pixel limit, completeness, minimum side).

Every failure for a bad URL or a bad answer is a ``DownloadError`` with a ``code`` (``DOWNLOAD_ERROR_CODES``)
and a ``message`` fit to show the person who gave the URL; nothing else escapes ``fetch_url``.

Sources: requests documentation ("Advanced usage": transport adapters, streaming, timeouts); urllib3
documentation (``urllib3.util.Retry``: backoff formula, ``status_forcelist``, ``respect_retry_after_header``);
Python ``ipaddress`` reference (``is_global`` follows the IANA special-purpose address registries).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError as Urllib3HTTPError
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError
from urllib3.util.retry import Retry

URL_INVALID: Final = "url_invalid"
URL_SCHEME: Final = "url_scheme"
URL_PRIVATE_ADDRESS: Final = "url_private_address"
URL_UNREACHABLE: Final = "url_unreachable"
URL_TIMEOUT: Final = "url_timeout"
URL_HTTP_ERROR: Final = "url_http_error"
URL_TOO_MANY_REDIRECTS: Final = "url_too_many_redirects"
URL_TOO_LARGE: Final = "url_too_large"
URL_INCOMPLETE: Final = "url_incomplete"
URL_NOT_IMAGE: Final = "url_not_image"

DOWNLOAD_ERROR_CODES: Final = (
    URL_INVALID,
    URL_SCHEME,
    URL_PRIVATE_ADDRESS,
    URL_UNREACHABLE,
    URL_TIMEOUT,
    URL_HTTP_ERROR,
    URL_TOO_MANY_REDIRECTS,
    URL_TOO_LARGE,
    URL_INCOMPLETE,
    URL_NOT_IMAGE,
)
"""Codes of ``DownloadError``: ``url_invalid`` (not a URL, no host, too long), ``url_scheme`` (not http/https),
``url_private_address`` (the host is or resolves to a private, loopback, link-local, multicast or reserved
address), ``url_unreachable`` (name not found, connection refused or reset, TLS failure), ``url_timeout``
(no connection or no data within the timeout, or the body took longer than its deadline), ``url_http_error``
(an answer other than 200, after retries for 429/5xx; ``status`` holds it), ``url_too_many_redirects``,
``url_too_large`` (over the byte cap), ``url_incomplete`` (the connection ended before the announced length),
``url_not_image`` (a non-image ``Content-Type`` or bytes that are not JPEG, PNG or WebP)."""

MAX_URL_LENGTH: Final = 2048
"""Longest URL accepted, in characters (the limit common browsers and CDNs share)."""
MAX_REDIRECTS: Final = 5
"""Redirect hops followed before ``url_too_many_redirects``."""
BACKOFF_FACTOR: Final = 0.5
"""urllib3 ``Retry.backoff_factor``, in seconds: waits of 0 s (urllib3 2 skips the first), 1 s, 2 s, 4 s ..."""
BACKOFF_MAX: Final = 10.0
"""Longest wait between two attempts, in seconds; also the most of a ``Retry-After`` header obeyed."""
BODY_DEADLINE_FACTOR: Final = 4
"""The whole body must arrive within this many times the timeout (seconds), whatever the pace of the bytes."""
RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
"""HTTP statuses retried with backoff (rate limited, or a server error that may pass)."""
CHUNK_BYTES: Final = 64 * 1024
USER_AGENT: Final = "Sneakers-catalog-fetcher/1.0"
_NON_IMAGE_TYPES: Final = ("text/", "application/json", "application/xml", "application/xhtml", "application/pdf")
_IMAGE_SIGNATURES: Final = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")


class DownloadError(Exception):
    """A URL could not be downloaded, or its answer is refused. Permanent for this URL unless ``code`` is
    ``url_unreachable``, ``url_timeout`` or (5xx) ``url_http_error``, which may pass later.

    Attributes:
        code: one of ``DOWNLOAD_ERROR_CODES``.
        message: an English sentence for the person who gave the URL (names the URL's host, not its body).
        url: the URL that failed (the hop that failed, after redirects).
        status: the HTTP status for ``url_http_error``, else ``None``.

    Raises:
        ValueError: on construction with a code outside ``DOWNLOAD_ERROR_CODES``.
    """

    def __init__(self, code: str, message: str, *, url: str = "", status: int | None = None) -> None:
        if code not in DOWNLOAD_ERROR_CODES:
            raise ValueError(f"unknown download error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.url = url
        self.status = status

    def __repr__(self) -> str:
        return f"DownloadError(code={self.code!r}, message={self.message!r})"


@dataclass(frozen=True)
class FetchedFile:
    """A downloaded answer.

    Attributes:
        url: the URL asked for.
        final_url: the URL that answered, after redirects.
        content: the body's bytes (decompressed when sent gzip/deflate), at most the byte cap.
        content_type: the ``Content-Type`` header's media type, lower case, without parameters; ``""`` if none.
    """

    url: str
    final_url: str
    content: bytes = field(repr=False)
    content_type: str = ""


@dataclass(frozen=True)
class _Options:
    """Resolved options of one download (see ``fetch_url``)."""

    max_bytes: int
    timeout: float
    retries: int
    allow_private: bool
    image_only: bool


def _options(
    *, max_bytes: int | None, timeout: float | None, retries: int | None, allow_private: bool | None, image_only: bool
) -> _Options:
    """Fill ``None`` options from settings (``SNEAKERS_FETCH_*``)."""
    return _Options(
        max_bytes=int(max_bytes if max_bytes is not None else settings.SNEAKERS_FETCH_MAX_BYTES),
        timeout=float(timeout if timeout is not None else settings.SNEAKERS_FETCH_TIMEOUT_SECONDS),
        retries=int(retries if retries is not None else settings.SNEAKERS_FETCH_RETRIES),
        allow_private=bool(allow_private if allow_private is not None else settings.SNEAKERS_FETCH_ALLOW_PRIVATE),
        image_only=image_only,
    )


# --- Addresses --------------------------------------------------------------------------------------------


def address_is_public(address: str) -> bool:
    """Whether an IP address (text, IPv4 or IPv6, optionally with a ``%zone``) may be fetched from.

    Public means ``ipaddress``'s ``is_global`` (outside every IANA special-purpose block: private ranges,
    carrier-grade NAT, documentation, benchmarking ...) and not multicast, reserved, loopback, link-local or
    unspecified. An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) is judged by its IPv4 address. Text that is
    not an address is not public.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(
        ip.is_global
        and not (ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local or ip.is_unspecified)
    )


def _refuse_private(host: str, url: str) -> DownloadError:
    return DownloadError(
        URL_PRIVATE_ADDRESS,
        f"The address of {host} is private, loopback or reserved; only public internet addresses are fetched.",
        url=url,
    )


def _check_host(host: str, port: int, url: str) -> None:
    """Resolve ``host`` and refuse it unless every address is public (``address_is_public``).

    Raises:
        DownloadError: ``url_unreachable`` when the name does not resolve, ``url_private_address`` otherwise.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise DownloadError(URL_UNREACHABLE, f"The host {host} could not be found.", url=url) from exc
    addresses = {info[4][0] for info in infos}
    if not addresses or not all(address_is_public(str(address)) for address in addresses):
        raise _refuse_private(host, url)


class _GuardedHTTPConnection(HTTPConnection):
    """urllib3 connection that refuses, before sending anything, a socket connected to a non-public address.

    ``_check_host`` already refused names resolving to such addresses; this catches a name that resolves
    differently at connection time (DNS rebinding).
    """

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        try:
            peer = str(sock.getpeername()[0])
        except OSError:
            peer = ""
        if not address_is_public(peer):
            sock.close()
            raise _refuse_private(str(self.host), "")
        return sock


class _GuardedHTTPSConnection(_GuardedHTTPConnection, HTTPSConnection):
    """HTTPS flavour of ``_GuardedHTTPConnection`` (the address check happens before the TLS handshake)."""


class _GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class PublicAddressAdapter(HTTPAdapter):
    """requests transport adapter that sends nothing to a non-public address (SSRF and DNS-rebinding guard).

    Every connection it opens checks the address the socket actually connected to (``address_is_public``)
    before a byte is sent, and raises ``DownloadError`` (``url_private_address``) otherwise; the exception
    passes through requests unwrapped. Mount it on a ``requests.Session`` for ``http://`` and ``https://``;
    ``fetch_url`` does, and so do webhook deliveries (``partners.delivery``).
    """

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _GuardedHTTPConnectionPool,
            "https": _GuardedHTTPSConnectionPool,
        }


class _CappedRetry(Retry):
    """urllib3 ``Retry`` that obeys a ``Retry-After`` header for at most ``backoff_max`` seconds."""

    def get_retry_after(self, response) -> float | None:
        retry_after = super().get_retry_after(response)
        return None if retry_after is None else min(retry_after, self.backoff_max)


def _session(options: _Options) -> requests.Session:
    """A ``requests.Session`` with retries and, unless private addresses are allowed, the address guard."""
    retry = _CappedRetry(
        total=options.retries,
        connect=options.retries,
        read=options.retries,
        status=options.retries,
        other=0,
        redirect=False,
        allowed_methods=frozenset({"GET"}),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=BACKOFF_FACTOR,
        backoff_max=BACKOFF_MAX,
        raise_on_status=False,
        respect_retry_after_header=True,
    )
    adapter_class = HTTPAdapter if options.allow_private else PublicAddressAdapter
    session = requests.Session()
    session.trust_env = False  # no proxies or .netrc from the environment: connect to the host itself
    session.headers["User-Agent"] = USER_AGENT
    for prefix in ("http://", "https://"):
        session.mount(prefix, adapter_class(max_retries=retry))
    return session


# --- Download ---------------------------------------------------------------------------------------------


def _checked_url(url: str, options: _Options) -> str:
    """Check one URL (or redirect hop): length, scheme, host, port, and (unless allowed) a public address.

    Raises:
        DownloadError: ``url_invalid``, ``url_scheme``, ``url_unreachable`` or ``url_private_address``.
    """
    if not isinstance(url, str) or not url.strip():
        raise DownloadError(URL_INVALID, "The URL is empty.", url=str(url or ""))
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise DownloadError(URL_INVALID, f"The URL is longer than {MAX_URL_LENGTH} characters.", url=url[:200])
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:
        raise DownloadError(URL_INVALID, f"{url[:200]!r} is not a valid URL.", url=url) from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise DownloadError(URL_SCHEME, "Only http:// and https:// URLs are fetched.", url=url)
    if not host:
        raise DownloadError(URL_INVALID, f"{url[:200]!r} has no host name.", url=url)
    if not options.allow_private:
        _check_host(host, port or (443 if parts.scheme.lower() == "https" else 80), url)
    return url


@contextmanager
def _mapped_errors(url: str, host: str) -> Iterator[None]:
    """Map requests/urllib3/socket exceptions to ``DownloadError`` (timeouts, unreachable, incomplete body)."""
    try:
        yield
    except DownloadError as exc:
        exc.url = exc.url or url  # the connection guard does not know the URL
        raise
    except (TimeoutError, requests.Timeout) as exc:
        raise DownloadError(URL_TIMEOUT, f"{host} did not answer in time.", url=url) from exc
    except requests.ConnectionError as exc:
        # Retries exhausted: requests wraps urllib3's MaxRetryError, whose ``reason`` is the last error.
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        # NewConnectionError (refused, name not found) subclasses urllib3's ConnectTimeoutError: test it first.
        if isinstance(reason, (TimeoutError, Urllib3TimeoutError)) and not isinstance(reason, NewConnectionError):
            raise DownloadError(URL_TIMEOUT, f"{host} did not answer in time.", url=url) from exc
        raise DownloadError(URL_UNREACHABLE, f"{host} could not be reached.", url=url) from exc
    except requests.exceptions.ChunkedEncodingError as exc:
        raise DownloadError(URL_INCOMPLETE, f"The download from {host} stopped before the end.", url=url) from exc
    except requests.exceptions.ContentDecodingError as exc:
        raise DownloadError(URL_INCOMPLETE, f"The answer from {host} could not be decompressed.", url=url) from exc
    except requests.exceptions.InvalidURL as exc:
        raise DownloadError(URL_INVALID, f"{url[:200]!r} is not a valid URL.", url=url) from exc
    except (requests.RequestException, Urllib3HTTPError, OSError, ValueError, UnicodeError) as exc:
        # ConnectionError (refused, reset, DNS, TLS, retries exhausted), TooManyRedirects never (allow_redirects
        # is off), and socket-level errors while streaming.
        raise DownloadError(URL_UNREACHABLE, f"{host} could not be reached.", url=url) from exc


def _media_type(response: requests.Response) -> str:
    return response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


def _looks_like_image(head: bytes) -> bool:
    """Whether the first bytes are a JPEG, PNG or WebP signature (``catalog.images.ALLOWED_FORMATS``)."""
    return head.startswith(_IMAGE_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _read_body(response: requests.Response, *, url: str, host: str, options: _Options) -> bytes:
    """Stream the body with the byte cap and the body deadline.

    Raises:
        DownloadError: ``url_too_large``, ``url_timeout``, ``url_not_image`` (first bytes, with ``image_only``).
    """
    too_large = DownloadError(
        URL_TOO_LARGE, f"The file at {host} is larger than the limit of {options.max_bytes} bytes.", url=url
    )
    declared = response.headers.get("Content-Length", "")
    if declared.strip().isdigit() and int(declared) > options.max_bytes:
        raise too_large
    deadline = time.monotonic() + options.timeout * BODY_DEADLINE_FACTOR
    body = bytearray()
    checked_signature = not options.image_only
    for chunk in response.iter_content(chunk_size=CHUNK_BYTES):
        body += chunk
        if len(body) > options.max_bytes:
            raise too_large
        if not checked_signature and len(body) >= 12:
            if not _looks_like_image(bytes(body[:12])):
                raise _not_image(host, url, _media_type(response))
            checked_signature = True
        if time.monotonic() > deadline:
            raise DownloadError(URL_TIMEOUT, f"The download from {host} took too long.", url=url)
    if not checked_signature and not _looks_like_image(bytes(body[:12])):
        raise _not_image(host, url, _media_type(response))
    return bytes(body)


def _not_image(host: str, url: str, media_type: str) -> DownloadError:
    got = f" (it sent {media_type})" if media_type else ""
    return DownloadError(URL_NOT_IMAGE, f"The file at {host} is not a JPEG, PNG or WebP image{got}.", url=url)


def _fetch(session: requests.Session, url: str, options: _Options) -> FetchedFile:
    """Download ``url`` with ``session``, following and checking redirects (see ``fetch_url``)."""
    original = url
    current = _checked_url(url, options)
    for _hop in range(MAX_REDIRECTS + 1):
        host = urlsplit(current).hostname or ""
        with _mapped_errors(current, host):
            response = session.get(
                current, stream=True, allow_redirects=False, timeout=(options.timeout, options.timeout)
            )
            with response:
                if response.is_redirect:
                    location = response.headers.get("Location", "")
                    current = _checked_url(urljoin(current, location), options)
                    continue
                if response.status_code != 200:
                    raise DownloadError(
                        URL_HTTP_ERROR,
                        f"{host} answered HTTP {response.status_code} ({response.reason or 'error'}).",
                        url=current,
                        status=response.status_code,
                    )
                media_type = _media_type(response)
                if options.image_only and media_type.startswith(_NON_IMAGE_TYPES):
                    raise _not_image(host, current, media_type)
                content = _read_body(response, url=current, host=host, options=options)
        return FetchedFile(url=original, final_url=current, content=content, content_type=media_type)
    raise DownloadError(URL_TOO_MANY_REDIRECTS, f"The URL redirected more than {MAX_REDIRECTS} times.", url=current)


def fetch_url(
    url: str,
    *,
    max_bytes: int | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    allow_private: bool | None = None,
    image_only: bool = True,
) -> FetchedFile:
    """Download one http(s) URL safely (the rules are in the module docstring).

    Args:
        url: an ``http://`` or ``https://`` URL.
        max_bytes: byte cap of the body; default ``settings.SNEAKERS_FETCH_MAX_BYTES``.
        timeout: seconds for the connection and for each read; the body has ``BODY_DEADLINE_FACTOR`` times
            that in all. Default ``settings.SNEAKERS_FETCH_TIMEOUT_SECONDS``.
        retries: retries after the first attempt (connection errors, 429/5xx); default
            ``settings.SNEAKERS_FETCH_RETRIES``.
        allow_private: fetch from private/loopback addresses too; default
            ``settings.SNEAKERS_FETCH_ALLOW_PRIVATE``.
        image_only: refuse answers that are not JPEG, PNG or WebP by ``Content-Type`` and first bytes
            (``False`` for feed files). The bytes are not decoded: pass them to ``catalog.images.inspect_image``.

    Returns:
        ``FetchedFile`` with the bytes, the final URL and the media type.

    Raises:
        DownloadError: for every bad URL or bad answer (codes in ``DOWNLOAD_ERROR_CODES``); nothing else.
    """
    options = _options(
        max_bytes=max_bytes, timeout=timeout, retries=retries, allow_private=allow_private, image_only=image_only
    )
    with _session(options) as session:
        return _fetch(session, url, options)


def fetch_many(
    urls: Sequence[str],
    *,
    workers: int | None = None,
    max_bytes: int | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    allow_private: bool | None = None,
    image_only: bool = True,
    on_done: Callable[[int, FetchedFile | DownloadError], None] | None = None,
) -> list[FetchedFile | DownloadError]:
    """Download several URLs concurrently (a ``ThreadPoolExecutor``), each as ``fetch_url`` would.

    Each thread keeps one ``requests.Session`` (connection reuse per host); sessions are closed at the end.

    Args:
        urls: the URLs; duplicates are downloaded once.
        workers: threads; default ``settings.SNEAKERS_FETCH_WORKERS``, at most ``len(urls)``.
        max_bytes, timeout, retries, allow_private, image_only: as ``fetch_url``.
        on_done: called as ``on_done(index, result)`` from a worker thread as each distinct URL finishes (for
            progress); ``index`` is the position of its first occurrence in ``urls``.

    Returns:
        One ``FetchedFile`` or ``DownloadError`` per input URL, in the input's order.
    """
    options = _options(
        max_bytes=max_bytes, timeout=timeout, retries=retries, allow_private=allow_private, image_only=image_only
    )
    if not urls:
        return []
    first_index: dict[str, int] = {}
    for index, url in enumerate(urls):
        first_index.setdefault(url, index)
    local = threading.local()
    sessions: list[requests.Session] = []
    lock = threading.Lock()

    def run(url: str) -> FetchedFile | DownloadError:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = _session(options)
            with lock:
                sessions.append(session)
        try:
            result: FetchedFile | DownloadError = _fetch(session, url, options)
        except DownloadError as exc:
            result = exc
        if on_done is not None:
            on_done(first_index[url], result)
        return result

    count = max(1, min(int(workers or settings.SNEAKERS_FETCH_WORKERS), len(first_index)))
    try:
        with ThreadPoolExecutor(max_workers=count, thread_name_prefix="fetch") as pool:
            distinct = list(first_index)
            results = dict(zip(distinct, pool.map(run, distinct), strict=True))
    finally:
        for session in sessions:
            session.close()
    return [results[url] for url in urls]
