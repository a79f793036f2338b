"""Webhook signatures: HMAC-SHA256 over ``"<timestamp>.<body>"``, sent as ``Sneakers-Signature: t=<unix>,v1=<hex>``.

The scheme Stripe documents for its webhooks ("Verify webhook signatures": ``Stripe-Signature`` with ``t`` and
``v1``). The key is the endpoint's whole secret string (``whsec_...``) as UTF-8 bytes; the message is the Unix
timestamp in seconds, a full stop, and the raw request body bytes exactly as received. A receiver recomputes
the HMAC, compares it in constant time (``hmac.compare_digest``) and refuses a timestamp more than a tolerance
(5 minutes) away from its clock, so a captured request cannot be replayed later. While a secret is being
rolled the header may carry several ``v1`` values; any match is enough.

Pure standard library: the developers' page shows ``signature_verify`` as the receiver's example.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

HEADER = "Sneakers-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300
"""Largest accepted difference between the signature's timestamp and the receiver's clock (Stripe's default)."""
SECRET_PREFIX = "whsec_"


class SignatureError(ValueError):
    """A webhook signature is missing, malformed, wrong or too old."""


def secret_generate() -> str:
    """A new endpoint secret: ``whsec_`` and 32 random bytes as 64 hex characters (``secrets.token_hex``)."""
    return SECRET_PREFIX + secrets.token_hex(32)


def signature_compute(*, secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}.".encode() + body`` keyed with ``secret.encode()``."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(*, secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Sneakers-Signature`` value for ``body`` signed now (or at ``timestamp``, Unix seconds)."""
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={timestamp},{SCHEME}={signature_compute(secret=secret, timestamp=timestamp, body=body)}"


def signature_verify(
    *,
    secret: str,
    body: bytes,
    header: str,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Check a ``Sneakers-Signature`` header against the raw body; the signed timestamp when it is good.

    Raises:
        SignatureError: no ``t`` or no ``v1`` in the header, no ``v1`` matching the body, or a timestamp more
            than ``tolerance`` seconds from ``now`` (default: the current time).
    """
    timestamp = None
    signatures = []
    for part in (header or "").split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == SCHEME and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureError("The signature header has no timestamp or no v1 signature.")
    expected = signature_compute(secret=secret, timestamp=timestamp, body=body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise SignatureError("No signature matches the body.")
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise SignatureError(f"The timestamp is more than {tolerance} seconds away from now (a replay?).")
    return timestamp
