"""OpenAPI pieces shared by the apps' API views (drf-spectacular)."""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

ERROR_SCHEMA = inline_serializer(
    name="ErrorResponse",
    fields={
        "error": inline_serializer(
            name="ErrorBody",
            fields={
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "detail": serializers.DictField(),
            },
        )
    },
)
"""The one error body: ``{"error": {"code", "message", "detail"}}`` (see ``sneakers.exceptions``)."""

NOT_FOUND = OpenApiResponse(ERROR_SCHEMA, description="No such object, not yours, or a page past the end.")

BAD_FILTER = OpenApiResponse(ERROR_SCHEMA, description="A filter value is invalid (e.g. a price that is not a number).")

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    "Idempotency-Key",
    str,
    location=OpenApiParameter.HEADER,
    required=False,
    description="A key you make up (a UUID) so that a retry of this POST gives the first answer again instead "
    "of a second job. Scoped to your account; expires after 24 hours. The same key with a different request "
    "is refused (422 idempotency_key_reused).",
)
"""The optional ``Idempotency-Key`` header of the API's POSTs (``predictions.idempotency``)."""

IDEMPOTENCY_RESPONSES = {
    409: OpenApiResponse(
        ERROR_SCHEMA, description="idempotency_key_in_use: the first request with this key is still being processed."
    ),
    422: OpenApiResponse(ERROR_SCHEMA, description="idempotency_key_reused: this key was used with another request."),
}
"""Answers an ``Idempotency-Key`` can add to a POST."""

PAGE_PARAMETERS = [
    OpenApiParameter("page", int, description="Page number, from 1."),
    OpenApiParameter("page_size", int, description="Items per page (default 20, at most 100)."),
]
