"""The API's error catalogue: every ``error.code`` a partner can meet, with its HTTP status and meaning.

Codes come from where they are defined (``catalog.images.IMAGE_REJECTION_CODES``,
``catalog.downloads.DOWNLOAD_ERROR_CODES``, ``worker.ml.errors``, ``predictions``, ``partners``, DRF's own
codes); ``tests/partners/test_errors_catalogue.py`` checks that each of those tuples and each code the API
modules raise is listed here. The developers' page (``/developers/``) and the README table are generated
from ``ERROR_CATALOGUE``.

Two places carry a code: the body of an error answer (``{"error": {"code", "message", "detail"}}``, with the
HTTP status), and a ``failed`` prediction's ``error`` (``status`` ``None`` here: the prediction's own answer
is 200).
"""

from __future__ import annotations

from dataclasses import dataclass

from catalog.downloads import DOWNLOAD_ERROR_CODES
from catalog.images import IMAGE_REJECTION_CODES
from worker.ml.errors import IMAGE_ERROR_CODES, MODEL_UNAVAILABLE


@dataclass(frozen=True)
class ErrorCode:
    """One code: ``status`` is the HTTP status of an error answer, or None for a failed prediction's error."""

    code: str
    status: int | None
    meaning: str
    group: str


def _codes(group: str, rows: list[tuple[str, int | None, str]]) -> list[ErrorCode]:
    return [ErrorCode(code=code, status=status, meaning=meaning, group=group) for code, status, meaning in rows]


ERROR_CATALOGUE: tuple[ErrorCode, ...] = tuple(
    _codes(
        "Requests",
        [
            ("not_authenticated", 401, "No token sent, or a scheme other than `Token` (the message says so)."),
            ("authentication_failed", 401, "The token is unknown or its user is inactive."),
            ("permission_denied", 403, "Signed in, but this is not yours to do."),
            ("not_found", 404, "No such path, object, or page; or another partner's object (they look the same)."),
            ("method_not_allowed", 405, "The path exists but not with this HTTP method."),
            ("not_acceptable", 406, "The Accept header asks for something other than JSON."),
            ("unsupported_media_type", 415, "The body is not of a type this path reads (multipart or JSON)."),
            ("parse_error", 400, "The body could not be parsed (broken JSON or multipart)."),
            ("invalid", 400, "A field is missing or wrong; `detail` lists the messages per field."),
            ("throttled", 429, "Over a rate limit; wait `Retry-After` seconds (also `detail.retry_after_seconds`)."),
            (
                "server_error",
                500,
                "Our fault; it has been logged. Retrying later with the same Idempotency-Key is safe.",
            ),
        ],
    )
    + _codes(
        "Idempotency",
        [
            (
                "idempotency_key_invalid",
                400,
                "The Idempotency-Key is empty, over 255 characters or not printable ASCII.",
            ),
            ("idempotency_key_reused", 422, "This key was used with a different request (other fields or files)."),
            ("idempotency_key_in_use", 409, "The first request with this key is still being processed; retry shortly."),
        ],
    )
    + _codes(
        "Photos (single upload, batch photo, or URL item after download)",
        [
            ("image_empty", 400, "The file is empty."),
            ("image_too_large", 413, "The file is over the upload limit (SNEAKERS_UPLOAD_MAX_BYTES)."),
            ("image_unreadable", 400, "Not an image, or a truncated or corrupt one."),
            ("image_format_unsupported", 415, "An image, but not JPEG, PNG or WebP."),
            ("image_too_many_pixels", 400, "Width x height over the pixel limit (decompression bombs)."),
            ("image_too_small", 400, "A side is under 16 pixels."),
        ],
    )
    + _codes(
        "Batches",
        [
            ("batch_empty", 400, "No photo and no image URL."),
            ("batch_too_many_items", 400, "More items than SNEAKERS_BATCH_MAX_ITEMS."),
            ("batch_too_large", 413, "The request is over SNEAKERS_BATCH_MAX_BYTES; send fewer photos, or URLs."),
        ],
    )
    + _codes(
        "Webhooks",
        [
            ("webhook_url_invalid", 400, "Not an http(s) URL with a host, or too long."),
            ("webhook_url_private", 400, "The URL's host is a private, loopback or reserved address."),
            ("webhook_event_unknown", 400, "An event type that does not exist."),
            ("webhook_endpoint_limit", 400, "The account already has SNEAKERS_WEBHOOK_MAX_ENDPOINTS endpoints."),
        ],
    )
    + _codes(
        "Image URLs (a failed URL item's error)",
        [
            ("url_invalid", None, "Not a URL, no host, or over 2048 characters."),
            ("url_scheme", None, "Not http:// or https://."),
            ("url_private_address", None, "The host is or resolves to a private, loopback or reserved address."),
            ("url_unreachable", None, "The host was not found, refused the connection, or TLS failed."),
            ("url_timeout", None, "No answer, or the body took too long."),
            ("url_http_error", None, "The server answered other than 200 (after retries for 429 and 5xx)."),
            ("url_too_many_redirects", None, "More than 5 redirects."),
            ("url_too_large", None, "The file is over the size limit."),
            ("url_incomplete", None, "The connection ended before the whole file arrived."),
            ("url_not_image", None, "The answer is not a JPEG, PNG or WebP image."),
        ],
    )
    + _codes(
        "Jobs (a failed prediction's error)",
        [
            (MODEL_UNAVAILABLE, None, "The model's files are missing or corrupt (staff are alerted by the logs)."),
            ("upload_missing", None, "The stored photo is gone."),
            ("worker_lost", None, "The worker running the job died several times; the job was given up."),
            ("transient_error", None, "Storage or database errors persisted through every retry."),
            ("internal_error", None, "An unexpected error; logged."),
        ],
    )
)
"""Every error code of the API, grouped as the developers' page shows them."""

SOURCE_CODES = frozenset(IMAGE_REJECTION_CODES) | frozenset(DOWNLOAD_ERROR_CODES) | frozenset(IMAGE_ERROR_CODES)
"""Codes defined by the modules that own them; all must be in the catalogue."""


def error_catalogue_markdown() -> str:
    """The catalogue as a Markdown table (code, HTTP status or "prediction error", meaning) for the README."""
    lines = ["| code | answer | meaning |", "| --- | --- | --- |"]
    for entry in ERROR_CATALOGUE:
        answer = str(entry.status) if entry.status is not None else "failed prediction"
        lines.append(f"| `{entry.code}` | {answer} | {entry.meaning.replace('|', '/')} |")
    return "\n".join(lines)
