"""catalog.downloads against a real HTTP server on 127.0.0.1: good images, every refusal, retries, redirects,
and the private-address rule (with ``SNEAKERS_FETCH_ALLOW_PRIVATE`` off)."""

from __future__ import annotations

import pytest

from catalog import downloads
from catalog.downloads import DOWNLOAD_ERROR_CODES, DownloadError, FetchedFile, address_is_public, fetch_many, fetch_url
from catalog.images import ImageRejected, inspect_image
from tests.feeds.conftest import BIG_BYTES, GOOD_JPEG, GOOD_PNG


def error_of(url: str, **kwargs) -> DownloadError:
    with pytest.raises(DownloadError) as caught:
        fetch_url(url, **kwargs)
    assert caught.value.code in DOWNLOAD_ERROR_CODES
    assert caught.value.message
    return caught.value


def test_good_jpeg_and_png(server):
    jpeg = fetch_url(server.url("/good.jpg"))
    png = fetch_url(server.url("/good.png"))
    assert jpeg == FetchedFile(server.url("/good.jpg"), server.url("/good.jpg"), GOOD_JPEG, "image/jpeg")
    assert (png.content, png.content_type) == (GOOD_PNG, "image/png")
    assert inspect_image(jpeg.content).format == "JPEG"
    assert inspect_image(png.content).format == "PNG"


def test_an_image_served_as_octet_stream_is_accepted_by_its_bytes(server):
    assert fetch_url(server.url("/no-type.jpg")).content == GOOD_JPEG


def test_redirects_are_followed_to_the_image(server):
    fetched = fetch_url(server.url("/redirect-good"))
    assert fetched.url == server.url("/redirect-good")
    assert fetched.final_url == server.url("/good.png")
    assert fetched.content == GOOD_PNG


def test_404_is_an_http_error_with_its_status(server):
    error = error_of(server.url("/missing.jpg"))
    assert (error.code, error.status) == ("url_http_error", 404)
    assert "404" in error.message
    assert server.hits["/missing.jpg"] == 1  # a 404 is not retried


def test_503_is_retried_then_reported(server):
    error = error_of(server.url("/unavailable.jpg"), retries=2)
    assert (error.code, error.status) == ("url_http_error", 503)
    assert server.hits["/unavailable.jpg"] == 3  # the first attempt and two retries


def test_a_passing_503_is_retried_to_success(server):
    assert fetch_url(server.url("/flaky.jpg"), retries=1).content == GOOD_JPEG
    assert server.hits["/flaky.jpg"] == 2


def test_slow_answer_times_out(server):
    error = error_of(server.url("/slow.jpg"), timeout=0.3, retries=0)
    assert error.code == "url_timeout"


def test_oversize_file_is_refused_by_content_length_and_by_stream(server):
    assert error_of(server.url("/big.jpg"), max_bytes=BIG_BYTES // 2).code == "url_too_large"
    assert error_of(server.url("/big-stream.jpg"), max_bytes=BIG_BYTES // 2).code == "url_too_large"
    # Under a cap that fits, both download whole.
    assert len(fetch_url(server.url("/big-stream.jpg"), max_bytes=2 * BIG_BYTES).content) > BIG_BYTES


def test_html_is_not_an_image_by_type_or_by_bytes(server):
    error = error_of(server.url("/page.html"))
    assert error.code == "url_not_image"
    assert "text/html" in error.message
    assert error_of(server.url("/html-as-jpeg.jpg")).code == "url_not_image"


def test_html_is_fetched_when_images_are_not_required(server):
    assert b"Not an image" in fetch_url(server.url("/page.html"), image_only=False).content


def test_truncated_transfer_is_incomplete(server):
    assert error_of(server.url("/truncated.jpg"), retries=0).code == "url_incomplete"


def test_truncated_image_bytes_download_but_fail_the_image_check(server):
    fetched = fetch_url(server.url("/half.jpg"))
    with pytest.raises(ImageRejected) as caught:
        inspect_image(fetched.content)
    assert caught.value.code == "image_unreadable"


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("", "url_invalid"),
        ("not a url", "url_scheme"),
        ("ftp://example.com/shoe.jpg", "url_scheme"),
        ("file:///etc/passwd", "url_scheme"),
        ("http://", "url_invalid"),
        ("http://example.com:99999/x.jpg", "url_invalid"),
        ("http://example.com/" + "a" * 3000, "url_invalid"),
    ],
)
def test_bad_urls(url, code):
    assert error_of(url).code == code


def test_redirect_to_another_scheme_is_refused(server):
    assert error_of(server.url("/redirect-ftp")).code == "url_scheme"


def test_redirect_loop_stops(server):
    assert error_of(server.url("/redirect-loop")).code == "url_too_many_redirects"
    assert server.hits["/redirect-loop"] == downloads.MAX_REDIRECTS + 1


def test_unreachable_port(server):
    # Port 9 (discard) on 127.0.0.1: nothing listens in the test environment, the connection is refused.
    assert error_of("http://127.0.0.1:9/x.jpg", retries=0).code == "url_unreachable"


def test_unknown_host_is_unreachable():
    assert error_of("http://no-such-host.invalid/x.jpg", retries=0).code == "url_unreachable"


# --- Private addresses (the setting off) -------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "not-an-address",
    ],
)
def test_non_public_addresses(address):
    assert not address_is_public(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses(address):
    assert address_is_public(address)


def test_private_addresses_are_refused_when_the_setting_is_off(server, settings):
    settings.SNEAKERS_FETCH_ALLOW_PRIVATE = False
    for url in (server.url("/good.jpg"), server.url("/good.jpg").replace("127.0.0.1", "localhost")):
        assert error_of(url).code == "url_private_address"
    assert error_of("http://[::1]/x.jpg").code == "url_private_address"
    assert server.hits["/good.jpg"] == 0  # refused before any request


def test_a_redirect_to_a_private_address_is_refused(server, settings, monkeypatch):
    # The test server stands in for a public host: only its own address counts as public here.
    real = downloads.address_is_public
    monkeypatch.setattr(downloads, "address_is_public", lambda address: address == "127.0.0.1" or real(address))
    settings.SNEAKERS_FETCH_ALLOW_PRIVATE = False
    assert fetch_url(server.url("/good.jpg")).content == GOOD_JPEG  # the first hop passes
    error = error_of(server.url("/redirect-private"))
    assert error.code == "url_private_address"
    assert "169.254.169.254" in error.message
    assert error.url.startswith("http://169.254.169.254/")


def test_the_connected_address_is_checked_again(server, settings, monkeypatch):
    # DNS rebinding: the name passed the check, the connection reached a private address.
    monkeypatch.setattr(downloads, "_check_host", lambda host, port, url: None)
    settings.SNEAKERS_FETCH_ALLOW_PRIVATE = False
    error = error_of(server.url("/good.jpg"), retries=0)
    assert error.code == "url_private_address"
    assert error.url == server.url("/good.jpg")
    assert server.hits["/good.jpg"] == 0  # nothing was sent


def test_the_connected_address_is_checked_before_the_tls_handshake(server, settings, monkeypatch):
    # The same guard on https: refused after connecting, before any TLS byte (the test server speaks plain HTTP,
    # so a handshake would fail with another error).
    monkeypatch.setattr(downloads, "_check_host", lambda host, port, url: None)
    settings.SNEAKERS_FETCH_ALLOW_PRIVATE = False
    url = server.url("/good.jpg").replace("http://", "https://")
    assert error_of(url, retries=0).code == "url_private_address"


# --- fetch_many ---------------------------------------------------------------------------------------------


def test_fetch_many_keeps_order_and_reports_each_failure(server):
    urls = [
        server.url("/good.jpg"),
        server.url("/missing.jpg"),
        server.url("/good.png"),
        server.url("/page.html"),
        server.url("/good.jpg"),
        "ftp://example.com/x.jpg",
    ]
    done: list[int] = []
    results = fetch_many(urls, workers=3, on_done=lambda index, result: done.append(index))
    assert [r.content if isinstance(r, FetchedFile) else r.code for r in results] == [
        GOOD_JPEG,
        "url_http_error",
        GOOD_PNG,
        "url_not_image",
        GOOD_JPEG,
        "url_scheme",
    ]
    assert server.hits["/good.jpg"] == 1  # a URL named twice is downloaded once
    assert sorted(done) == [0, 1, 2, 3, 5]


def test_fetch_many_of_nothing():
    assert fetch_many([]) == []
