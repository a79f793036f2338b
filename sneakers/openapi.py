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

PAGE_PARAMETERS = [
    OpenApiParameter("page", int, description="Page number, from 1."),
    OpenApiParameter("page_size", int, description="Items per page (default 20, at most 100)."),
]
