"""Partner API: batches (``/api/v1/batches/``) and webhook endpoints (``/api/v1/webhooks/``).

Partners authenticate with a token (``Authorization: Token <key>``), as for single predictions.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from partners.models import WEBHOOK_EVENTS, Batch, WebhookDelivery, WebhookEndpoint
from partners.selectors import (
    batch_get_owned,
    batch_items,
    batch_list_owned,
    batch_summary,
    webhook_endpoint_get_owned,
    webhook_endpoint_list_owned,
)
from partners.services import (
    PhotoItem,
    UrlItem,
    batch_create,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_update,
)
from partners.throttling import upload_quota_charge
from predictions.apis import DESCRIPTION_MAX, PredictionOutputSerializer, PredictionPagination
from predictions.idempotency import idempotent
from sneakers.exceptions import ApplicationError
from sneakers.openapi import ERROR_SCHEMA, IDEMPOTENCY_PARAMETER, IDEMPOTENCY_RESPONSES, NOT_FOUND, PAGE_PARAMETERS

# --- Batches ---------------------------------------------------------------------------------------------


class BatchCountsSerializer(serializers.Serializer):
    queued = serializers.IntegerField()
    running = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()


class BatchOutputSerializer(serializers.Serializer):
    """A batch without its items (``partners.selectors.batch_summary``)."""

    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=Batch.Status.choices, help_text="running until every item has ended.")
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    total = serializers.IntegerField(help_text="Number of items.")
    counts = BatchCountsSerializer(help_text="Items per status.")
    progress = serializers.FloatField(help_text="Fraction of items that have ended (succeeded or failed), 0 to 1.")
    url = serializers.URLField()


class BatchItemSerializer(serializers.Serializer):
    position = serializers.IntegerField(help_text="0-based position in the request.")
    prediction = PredictionOutputSerializer()


class BatchDetailSerializer(BatchOutputSerializer):
    """A batch and one page of its items (``?page=``, ``?page_size=``)."""

    items = inline_serializer(
        name="PaginatedBatchItemList",
        fields={
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": BatchItemSerializer(many=True),
        },
    )


BATCH_PAGE = inline_serializer(
    name="PaginatedBatchOutputList",
    fields={
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": BatchOutputSerializer(many=True),
    },
)


class BatchUrlItemSerializer(serializers.Serializer):
    image_url = serializers.URLField(max_length=2000, help_text="http(s) URL of a JPEG, PNG or WebP photo.")
    title = serializers.CharField(required=False, allow_blank=True, max_length=300)
    description = serializers.CharField(required=False, allow_blank=True, max_length=DESCRIPTION_MAX)


class BatchJsonInputSerializer(serializers.Serializer):
    items = BatchUrlItemSerializer(many=True, help_text="Image URLs, fetched by the worker.")


class BatchMultipartInputSerializer(serializers.Serializer):
    images = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True),
        required=False,
        help_text="Photos (JPEG, PNG or WebP), one per part named images.",
    )
    titles = serializers.ListField(
        child=serializers.CharField(allow_blank=True, max_length=300),
        required=False,
        help_text="Optional listing titles, one per photo in the same order.",
    )
    image_urls = serializers.ListField(
        child=serializers.URLField(max_length=2000),
        required=False,
        help_text="Image URLs, fetched by the worker; they follow the photos in the batch's order.",
    )


def _detail(batch: Batch, request: Request) -> dict[str, Any]:
    return BatchOutputSerializer(batch_summary(batch=batch, request=request)).data


class BatchCollectionApi(APIView):
    """``POST``: send up to ``SNEAKERS_BATCH_MAX_ITEMS`` photos and/or image URLs (``202`` + ``Location``).
    ``GET``: the caller's batches, newest first."""

    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(
        operation_id="batches_create",
        request={"application/json": BatchJsonInputSerializer, "multipart/form-data": BatchMultipartInputSerializer},
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={
            202: BatchOutputSerializer,
            **IDEMPOTENCY_RESPONSES,
            400: OpenApiResponse(ERROR_SCHEMA, description="No item, too many items, or an invalid field."),
            401: OpenApiResponse(ERROR_SCHEMA, description="No or bad token."),
            413: OpenApiResponse(ERROR_SCHEMA, description="The request is over SNEAKERS_BATCH_MAX_BYTES."),
            415: OpenApiResponse(ERROR_SCHEMA, description="Neither JSON nor multipart/form-data."),
            429: OpenApiResponse(ERROR_SCHEMA, description="The items would pass the upload rate; see Retry-After."),
        },
    )
    def post(self, request: Request) -> Response:
        declared = request.META.get("CONTENT_LENGTH") or "0"
        limit = settings.SNEAKERS_BATCH_MAX_BYTES
        if declared.isdigit() and int(declared) > limit:
            raise ApplicationError(
                f"The request is {int(declared)} bytes; a batch may be at most {limit} bytes. Send fewer photos "
                "per batch, or image URLs.",
                code="batch_too_large",
                status_code=413,
            )
        return idempotent(request, lambda: self._create(request))

    def _create(self, request: Request) -> Response:
        items = self._items(request)
        maximum = settings.SNEAKERS_BATCH_MAX_ITEMS
        if not items:
            raise ApplicationError(
                "Send at least one photo (multipart field images) or image URL (items or image_urls).",
                code="batch_empty",
            )
        if len(items) > maximum:
            raise ApplicationError(
                f"A batch holds at most {maximum} items; this one has {len(items)}.",
                code="batch_too_many_items",
                extra={"max_items": maximum, "items": len(items)},
            )
        upload_quota_charge(request=request, cost=len(items))
        batch = batch_create(owner=request.user, items=items)
        body = _detail(batch, request)
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})

    @staticmethod
    def _items(request: Request) -> list[PhotoItem | UrlItem]:
        data = request.data
        if not hasattr(data, "getlist"):  # JSON
            serializer = BatchJsonInputSerializer(data=data)
            serializer.is_valid(raise_exception=True)
            return [
                UrlItem(
                    image_url=item["image_url"], title=item.get("title", ""), description=item.get("description", "")
                )
                for item in serializer.validated_data["items"]
            ]
        files = request.FILES.getlist("images")
        titles = data.getlist("titles")
        if titles and len(titles) != len(files):
            raise serializers.ValidationError(
                {"titles": [f"Send one title per photo ({len(files)} photos, {len(titles)} titles), or none."]}
            )
        serializer = BatchMultipartInputSerializer(
            data={"titles": titles, "image_urls": data.getlist("image_urls")}, partial=False
        )
        serializer.is_valid(raise_exception=True)
        titles = serializer.validated_data.get("titles") or [""] * len(files)
        photos: list[PhotoItem | UrlItem] = [
            PhotoItem(upload=upload, title=title) for upload, title in zip(files, titles, strict=True)
        ]
        return photos + [UrlItem(image_url=url) for url in serializer.validated_data.get("image_urls", [])]

    @extend_schema(
        operation_id="batches_list",
        parameters=PAGE_PARAMETERS,
        responses={200: BATCH_PAGE, 404: NOT_FOUND},
    )
    def get(self, request: Request) -> Response:
        paginator = PredictionPagination()
        page = paginator.paginate_queryset(batch_list_owned(owner=request.user), request, view=self)
        return paginator.get_paginated_response([_detail(batch, request) for batch in page])


class BatchDetailApi(APIView):
    """A batch's progress (counts per status, finished fraction) and one page of its items' results."""

    @extend_schema(
        operation_id="batches_retrieve",
        parameters=PAGE_PARAMETERS,
        responses={200: BatchDetailSerializer, 404: NOT_FOUND},
    )
    def get(self, request: Request, batch_id: str) -> Response:
        batch = batch_get_owned(batch_id=batch_id, owner=request.user)
        paginator = PredictionPagination()
        page = paginator.paginate_queryset(batch_items(batch=batch), request, view=self)
        items = paginator.get_paginated_response(
            [
                {
                    "position": item.position,
                    "prediction": PredictionOutputSerializer(item.prediction, context={"request": request}).data,
                }
                for item in page
            ]
        ).data
        return Response({**_detail(batch, request), "items": items})


# --- Webhook endpoints ----------------------------------------------------------------------------------


class WebhookEndpointOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.URLField(help_text="Where events are POSTed.")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WEBHOOK_EVENTS), help_text="Event types sent; empty for all."
    )
    description = serializers.CharField()
    is_active = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    secret_hint = serializers.SerializerMethodField()
    detail_url = serializers.SerializerMethodField()

    @extend_schema_field(serializers.CharField(help_text="The secret's last 4 characters."))
    def get_secret_hint(self, obj: WebhookEndpoint) -> str:
        return f"whsec_…{obj.secret[-4:]}"

    @extend_schema_field(OpenApiTypes.URI)
    def get_detail_url(self, obj: WebhookEndpoint) -> str:
        return self.context["request"].build_absolute_uri(reverse("api:webhook-detail", args=[obj.id]))


class WebhookEndpointWithSecretSerializer(WebhookEndpointOutputSerializer):
    secret = serializers.CharField(
        help_text="The signing secret (whsec_...). Shown only when the endpoint is created or its secret rolled."
    )


class WebhookEndpointInputSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=2000, help_text="http(s) URL on a public address.")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WEBHOOK_EVENTS), required=False, help_text="Empty or absent: all."
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=255)


class WebhookEndpointUpdateSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=2000, required=False)
    events = serializers.ListField(child=serializers.ChoiceField(choices=WEBHOOK_EVENTS), required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=255)
    is_active = serializers.BooleanField(required=False)
    roll_secret = serializers.BooleanField(
        required=False, help_text="true: replace the secret; the answer shows the new one once."
    )


class WebhookAttemptSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    duration_ms = serializers.FloatField()
    status_code = serializers.IntegerField(allow_null=True)
    error = serializers.CharField()


class WebhookDeliverySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    event_id = serializers.CharField()
    event_type = serializers.CharField()
    status = serializers.ChoiceField(choices=WebhookDelivery.Status.choices)
    attempt_count = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    attempts = WebhookAttemptSerializer(many=True, source="attempts.all")


WEBHOOK_PAGE = inline_serializer(
    name="PaginatedWebhookEndpointList",
    fields={
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": WebhookEndpointOutputSerializer(many=True),
    },
)
DELIVERY_PAGE = inline_serializer(
    name="PaginatedWebhookDeliveryList",
    fields={
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": WebhookDeliverySerializer(many=True),
    },
)
BAD_ENDPOINT = OpenApiResponse(
    ERROR_SCHEMA,
    description="invalid, webhook_url_invalid, webhook_url_private, webhook_event_unknown or webhook_endpoint_limit.",
)


class WebhookCollectionApi(APIView):
    """``POST``: register a webhook endpoint (the answer shows its secret, once). ``GET``: the caller's endpoints."""

    parser_classes = [JSONParser, FormParser, MultiPartParser]

    @extend_schema(
        operation_id="webhooks_create",
        request=WebhookEndpointInputSerializer,
        responses={201: WebhookEndpointWithSecretSerializer, 400: BAD_ENDPOINT},
    )
    def post(self, request: Request) -> Response:
        serializer = WebhookEndpointInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = webhook_endpoint_create(owner=request.user, **serializer.validated_data)
        body = WebhookEndpointWithSecretSerializer(endpoint, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["detail_url"]})

    @extend_schema(
        operation_id="webhooks_list", parameters=PAGE_PARAMETERS, responses={200: WEBHOOK_PAGE, 404: NOT_FOUND}
    )
    def get(self, request: Request) -> Response:
        paginator = PredictionPagination()
        page = paginator.paginate_queryset(webhook_endpoint_list_owned(owner=request.user), request, view=self)
        return paginator.get_paginated_response(
            WebhookEndpointOutputSerializer(page, many=True, context={"request": request}).data
        )


class WebhookDetailApi(APIView):
    """One of the caller's webhook endpoints: read, change (``PATCH``; ``roll_secret`` for a new secret), delete."""

    parser_classes = [JSONParser, FormParser, MultiPartParser]

    @extend_schema(operation_id="webhooks_retrieve", responses={200: WebhookEndpointOutputSerializer, 404: NOT_FOUND})
    def get(self, request: Request, endpoint_id: str) -> Response:
        endpoint = webhook_endpoint_get_owned(endpoint_id=endpoint_id, owner=request.user)
        return Response(WebhookEndpointOutputSerializer(endpoint, context={"request": request}).data)

    @extend_schema(
        operation_id="webhooks_partial_update",
        request=WebhookEndpointUpdateSerializer,
        responses={
            200: OpenApiResponse(
                WebhookEndpointWithSecretSerializer,
                description="The endpoint; secret is present only when it was rolled.",
            ),
            400: BAD_ENDPOINT,
            404: NOT_FOUND,
        },
    )
    def patch(self, request: Request, endpoint_id: str) -> Response:
        endpoint = webhook_endpoint_get_owned(endpoint_id=endpoint_id, owner=request.user)
        serializer = WebhookEndpointUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = webhook_endpoint_update(endpoint=endpoint, **serializer.validated_data)
        rolled = serializer.validated_data.get("roll_secret", False)
        output = WebhookEndpointWithSecretSerializer if rolled else WebhookEndpointOutputSerializer
        return Response(output(endpoint, context={"request": request}).data)

    @extend_schema(operation_id="webhooks_destroy", responses={204: None, 404: NOT_FOUND})
    def delete(self, request: Request, endpoint_id: str) -> Response:
        endpoint = webhook_endpoint_get_owned(endpoint_id=endpoint_id, owner=request.user)
        webhook_endpoint_delete(endpoint=endpoint)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookDeliveryListApi(APIView):
    """The deliveries of one of the caller's endpoints, newest first, with every attempt (status, error, time)."""

    @extend_schema(
        operation_id="webhooks_deliveries_list",
        parameters=PAGE_PARAMETERS,
        responses={200: DELIVERY_PAGE, 404: NOT_FOUND},
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        endpoint = webhook_endpoint_get_owned(endpoint_id=endpoint_id, owner=request.user)
        paginator = PredictionPagination()
        page = paginator.paginate_queryset(
            endpoint.deliveries.prefetch_related("attempts").order_by("-created_at"), request, view=self
        )
        return paginator.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)
