"""``Idempotency-Key`` on API POSTs: a retried request gets the first answer again instead of a second job.

The scheme Stripe documents ("Idempotent requests"): the client sends a key it made up (a UUID is best)
with a POST; the first request with that key runs and its answer (status, JSON body, ``Location``) is
stored; a later request with the same key and the same request gets that stored answer, with the header
``Idempotent-Replayed: true``; the same key with a different request is refused. Here:

- keys are scoped per user (two partners may use the same key) and expire
  ``SNEAKERS_IDEMPOTENCY_TTL_SECONDS`` (24 h) after first use (an expired key is free again; the sweep task
  ``predictions.tasks.idempotency_sweep`` deletes old rows);
- "the same request" means the same method, path, form or JSON fields and file bytes
  (``request_fingerprint``: a SHA-256 over them, file names left out);
- answers below 500 are stored, including refusals that created a failed prediction (a bad photo); an
  error that created nothing (a validation error of the request itself, a 429, a server error) frees the key
  so the retry runs;
- a retry while the first request is still running is answered ``409 idempotency_key_in_use``.

Error codes: ``idempotency_key_invalid`` (400: empty, over 255 characters, or not printable ASCII),
``idempotency_key_reused`` (422: same key, different request), ``idempotency_key_in_use`` (409).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from predictions.models import IdempotencyKey
from sneakers.exceptions import ApplicationError, error_body

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
REPLAYED_HEADER = "Idempotent-Replayed"
KEPT_HEADERS = ("Location",)
"""Headers of the first answer given again with a replay."""


def request_fingerprint(request: Request) -> str:
    """SHA-256 (hex) of what makes a POST "the same request": method, path, fields and file bytes.

    Fields are sorted by name (every value of a repeated field, in order); files are taken by field name,
    order and the SHA-256 of their bytes (their client-side names are left out). A JSON body counts as its
    parsed value with sorted keys, so whitespace and key order do not matter.
    """
    digest = hashlib.sha256()
    digest.update(f"{request.method} {request.path}\n".encode())
    data = request.data
    if hasattr(data, "lists"):  # QueryDict of a form or multipart body
        fields = {key: values for key, values in data.lists() if key not in request.FILES}
    else:
        fields = {"json": data}
    digest.update(json.dumps(fields, sort_keys=True, default=str).encode())
    for name in sorted(request.FILES):
        for upload in request.FILES.getlist(name):
            file_digest = hashlib.sha256()
            upload.seek(0)
            for chunk in upload.chunks():
                file_digest.update(chunk)
            upload.seek(0)
            digest.update(f"\nfile {name} {file_digest.hexdigest()}".encode())
    return digest.hexdigest()


def _key_valid(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY_LENGTH and all(32 <= ord(char) < 127 for char in key)


def idempotency_expired_before(now: datetime | None = None) -> datetime:
    """Keys first used before this instant have expired."""
    return (now or timezone.now()) - timedelta(seconds=settings.SNEAKERS_IDEMPOTENCY_TTL_SECONDS)


def idempotency_key_begin(*, owner: Any, key: str, method: str, path: str, request_hash: str) -> IdempotencyKey:
    """Reserve ``key`` for this request, or return the stored record of its first use.

    Returns a record whose ``response_status`` is None when this call reserved the key (run the request,
    then ``idempotency_key_finish``), or the finished record to replay.

    Raises:
        ApplicationError: ``idempotency_key_reused`` (422) when the key was used with another request,
            ``idempotency_key_in_use`` (409) when its first request has not been answered yet.
    """
    for _ in range(2):
        try:
            with transaction.atomic():
                return IdempotencyKey.objects.create(
                    owner=owner, key=key, method=method, path=path[:255], request_hash=request_hash
                )
        except IntegrityError:
            record = IdempotencyKey.objects.filter(owner=owner, key=key).first()
        if record is None:
            continue  # freed in the meantime
        if record.created_at < idempotency_expired_before():
            IdempotencyKey.objects.filter(id=record.id).delete()  # expired: the key is free again
            continue
        if record.request_hash != request_hash:
            raise ApplicationError(
                f"This {HEADER} was already used with a different request "
                f"({record.method} {record.path}, other fields or files). Use a new key for a new request.",
                code="idempotency_key_reused",
                extra={"key": key},
                status_code=422,
            )
        if record.response_status is None:
            raise ApplicationError(
                f"A request with this {HEADER} is still being processed; retry in a moment.",
                code="idempotency_key_in_use",
                extra={"key": key},
                status_code=409,
            )
        return record
    raise ApplicationError(
        f"A request with this {HEADER} is still being processed; retry in a moment.",
        code="idempotency_key_in_use",
        extra={"key": key},
        status_code=409,
    )


def idempotency_key_finish(*, record: IdempotencyKey, response: Response) -> None:
    """Store the answer given to the request that reserved ``record``."""
    rendered = JSONRenderer().render(response.data)
    record.response_status = response.status_code
    record.response_body = json.loads(rendered) if rendered else None
    record.response_headers = {name: response[name] for name in KEPT_HEADERS if response.has_header(name)}
    record.save(update_fields=["response_status", "response_body", "response_headers"])


def idempotency_key_release(*, record: IdempotencyKey) -> None:
    """Free a key whose request created nothing (so that a retry runs it)."""
    IdempotencyKey.objects.filter(id=record.id, response_status__isnull=True).delete()


def idempotency_sweep(*, now: datetime | None = None) -> int:
    """Delete expired keys; the number deleted."""
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=idempotency_expired_before(now)).delete()
    return deleted


def idempotent(request: Request, handler: Callable[[], Response]) -> Response:
    """Run ``handler`` (the POST) under the request's ``Idempotency-Key`` if it has one.

    Without the header the handler simply runs. With it: a replay answers the stored status, body and
    ``Location`` with ``Idempotent-Replayed: true``; a first use runs the handler and stores its answer. An
    ``ApplicationError`` the handler raises with a status below 500 (e.g. a refused photo, kept as a failed
    prediction) is stored and answered like any other answer; any other exception frees the key and
    propagates.

    Raises:
        ApplicationError: ``idempotency_key_invalid`` (400), ``idempotency_key_reused`` (422),
            ``idempotency_key_in_use`` (409).
    """
    key = request.headers.get(HEADER)
    if key is None or not request.user or not request.user.is_authenticated:
        return handler()
    key = key.strip()
    if not _key_valid(key):
        raise ApplicationError(
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters (a UUID is a good key).",
            code="idempotency_key_invalid",
        )
    record = idempotency_key_begin(
        owner=request.user, key=key, method=request.method, path=request.path, request_hash=request_fingerprint(request)
    )
    if record.response_status is not None:
        return Response(
            record.response_body,
            status=record.response_status,
            headers={**record.response_headers, REPLAYED_HEADER: "true"},
        )
    try:
        response = handler()
    except ApplicationError as exc:
        if exc.status_code >= 500:
            idempotency_key_release(record=record)
            raise
        response = Response(error_body(exc.code, exc.message, exc.extra), status=exc.status_code)
    except BaseException:
        idempotency_key_release(record=record)
        raise
    if response.status_code >= 500 or response.status_code == 429:
        idempotency_key_release(record=record)
    else:
        idempotency_key_finish(record=record, response=response)
    return response
