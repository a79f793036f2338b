"""Prediction API (``/api/v1/predictions/``): upload a photo, poll its result, list your own.

Partners authenticate with a token (``Authorization: Token <key>``; tokens are managed in admin).
"""

from __future__ import annotations

import copy
from typing import Any

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from predictions.idempotency import idempotent
from predictions.models import Prediction
from predictions.selectors import prediction_get_visible, prediction_list_visible, prediction_wait_terminal
from predictions.services import prediction_create
from sneakers.openapi import ERROR_SCHEMA, IDEMPOTENCY_PARAMETER, IDEMPOTENCY_RESPONSES, NOT_FOUND, PAGE_PARAMETERS

DESCRIPTION_MAX = 10_000
"""Longest listing description accepted, in characters."""


def _absolute(request: Request, url: str) -> str:
    return request.build_absolute_uri(url) if url.startswith("/") else url


class BrandScoreSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="Brand slug.")
    probability = serializers.FloatField()


class PriceSerializer(serializers.Serializer):
    estimate = serializers.FloatField(help_text="USD.")
    low = serializers.FloatField(help_text="USD.")
    high = serializers.FloatField(help_text="USD.")


class SimilarProductSerializer(serializers.Serializer):
    product_id = serializers.IntegerField()
    name = serializers.CharField()
    brand = serializers.CharField()
    price_usd = serializers.FloatField(allow_null=True)
    score = serializers.FloatField(help_text="Cosine similarity in [-1, 1].")
    image_url = serializers.CharField(allow_null=True)
    product_url = serializers.URLField(
        help_text="The product's page on the site (photos, price and its source, shop link)."
    )


class ModelScoreSerializer(serializers.Serializer):
    name = serializers.CharField(help_text='Named shoe model, e.g. "Nike Air Jordan 1 High".')
    brand = serializers.CharField(help_text="Brand slug of that model.")
    probability = serializers.FloatField()


class AbstainSerializer(serializers.Serializer):
    reason = serializers.ChoiceField(choices=["not_footwear", "unknown_brand", "low_confidence"])
    score = serializers.FloatField(
        help_text="Footwear probability (not_footwear), open-set score (unknown_brand: higher is more like a "
        "known brand), or calibrated top-1 probability (low_confidence)."
    )


class PredictionErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class PredictionOutputSerializer(serializers.Serializer):
    """A prediction and, once ``succeeded``, its result; ``error`` is set once ``failed``."""

    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=Prediction.Status.choices)
    channel = serializers.CharField()
    title = serializers.CharField(help_text="Listing title sent with the photo (may be empty).")
    description = serializers.CharField(help_text="Listing description sent with the photo (may be empty).")
    source_url = serializers.CharField(help_text="Image URL of a batch URL item; empty for uploaded photos.")
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    brand = serializers.SerializerMethodField()
    brands = BrandScoreSerializer(many=True, help_text="Top-3 guesses, also when the model abstains.")
    abstain = AbstainSerializer(
        allow_null=True, help_text="Set when no brand is given: not footwear, a brand we don't carry, or not sure."
    )
    model = serializers.SerializerMethodField()
    models = ModelScoreSerializer(
        many=True,
        source="shoe_models",
        help_text="Top named shoe models (calibrated), kept as candidates when not sure.",
    )
    price_usd = serializers.SerializerMethodField()
    similar = serializers.SerializerMethodField()
    image_url = serializers.SerializerMethodField()
    cutout_url = serializers.SerializerMethodField()
    model_version = serializers.SerializerMethodField()
    timings_ms = serializers.DictField(child=serializers.FloatField())
    inputs = serializers.ListField(
        child=serializers.ChoiceField(choices=["image", "title", "description"]),
        help_text='What the answer was made from: ["image"], or with "title" / "description" when the listing text '
        "named a brand or model and was fused with the photo; empty until the prediction succeeds.",
    )
    error = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    def to_representation(self, instance: Prediction) -> dict[str, Any]:
        """The declared fields, in their order, rendered without building a copy of them for this instance.

        DRF's ``Serializer.to_representation`` works through ``self.fields``, a deep copy of the 22 declared
        fields (the nested serializers' fields too), bound to each new serializer: 0.2 of the 0.3 ms this took
        per prediction, a tenth of an API upload's CPU and more of a status read's (README "Speed", seventh round).
        Here plain values are read directly, the nested and container fields are rendered by field instances
        made once (``_RENDER``, unbound and stateless for output) and the method fields by their ``get_`` methods.
        The declared fields stay the contract (the OpenAPI schema is generated from them), and
        ``tests/api/test_prediction_output.py`` checks that this equals DRF's generic rendering of them.
        """
        return {
            "id": str(instance.id),
            "status": str(instance.status),
            "channel": str(instance.channel),
            "title": instance.title,
            "description": instance.description,
            "source_url": instance.source_url,
            "created_at": _render_or_none("created_at", instance.created_at),
            "finished_at": _render_or_none("finished_at", instance.finished_at),
            "brand": self.get_brand(instance),
            "brands": _render_or_none("brands", instance.brands),
            "abstain": _render_or_none("abstain", instance.abstain),
            "model": self.get_model(instance),
            "models": _render_or_none("models", instance.shoe_models),
            "price_usd": self.get_price_usd(instance),
            "similar": self.get_similar(instance),
            "image_url": self.get_image_url(instance),
            "cutout_url": self.get_cutout_url(instance),
            "model_version": self.get_model_version(instance),
            "timings_ms": _render_or_none("timings_ms", instance.timings_ms),
            "inputs": _render_or_none("inputs", instance.inputs),
            "error": self.get_error(instance),
            "url": self.get_url(instance),
        }

    @extend_schema_field(serializers.CharField(allow_null=True, help_text="Top-1 brand slug; null when abstaining."))
    def get_brand(self, obj: Prediction) -> str | None:
        return obj.brand or None

    @extend_schema_field(
        serializers.CharField(allow_null=True, help_text="Top named shoe model; null when not sure or abstaining.")
    )
    def get_model(self, obj: Prediction) -> str | None:
        return obj.shoe_model or None

    @extend_schema_field(PriceSerializer(allow_null=True))
    def get_price_usd(self, obj: Prediction) -> dict[str, float] | None:
        if obj.price_estimate_usd is None:
            return None
        return {
            "estimate": float(obj.price_estimate_usd),
            "low": float(obj.price_low_usd),
            "high": float(obj.price_high_usd),
        }

    @extend_schema_field(SimilarProductSerializer(many=True))
    def get_similar(self, obj: Prediction) -> list[dict[str, Any]]:
        request = self.context["request"]
        return [
            {
                **item,
                "image_url": _absolute(request, item["image_url"]) if item.get("image_url") else None,
                "product_url": request.build_absolute_uri(reverse("catalog:product", args=[item["product_id"]])),
            }
            for item in obj.similar
        ]

    @extend_schema_field(OpenApiTypes.URI)
    def get_image_url(self, obj: Prediction) -> str | None:
        return _absolute(self.context["request"], obj.image.url) if obj.image else None

    @extend_schema_field(OpenApiTypes.URI)
    def get_cutout_url(self, obj: Prediction) -> str | None:
        return _absolute(self.context["request"], obj.cutout.url) if obj.cutout else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_model_version(self, obj: Prediction) -> str | None:
        return obj.model_version.name if obj.model_version_id else None

    @extend_schema_field(PredictionErrorSerializer(allow_null=True))
    def get_error(self, obj: Prediction) -> dict[str, str] | None:
        return {"code": obj.error_code, "message": obj.error_message} if obj.error_code else None

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, obj: Prediction) -> str:
        return self.context["request"].build_absolute_uri(reverse("api:prediction-detail", args=[obj.id]))


_RENDER: dict[str, serializers.Field] = {
    name: copy.deepcopy(PredictionOutputSerializer._declared_fields[name])
    for name in ("created_at", "finished_at", "brands", "abstain", "models", "timings_ms", "inputs")
}
"""Unbound copies of ``PredictionOutputSerializer``'s date-time, nested and container fields, made once and shared by
every instance's ``to_representation``: rendering reads them and changes nothing."""


def _render_or_none(name: str, value: Any) -> Any:
    """``value`` rendered by ``_RENDER[name]``; None stays None, as DRF renders a null attribute."""
    return None if value is None else _RENDER[name].to_representation(value)


PREDICTION_PAGE = inline_serializer(
    name="PaginatedPredictionOutputList",
    fields={
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": PredictionOutputSerializer(many=True),
    },
)


class PredictionPagination(PageNumberPagination):
    """``?page=N``; ``page_size`` from ``REST_FRAMEWORK["PAGE_SIZE"]``, ``?page_size=`` up to 100."""

    page_size_query_param = "page_size"
    max_page_size = 100


class WaitQuerySerializer(serializers.Serializer):
    """``?wait=SECONDS`` of a prediction's status read (the API's detail and the result page's status JSON) and of
    an API upload."""

    wait = serializers.FloatField(
        required=False,
        default=0.0,
        min_value=0.0,
        max_value=settings.SNEAKERS_LONG_POLL_MAX_SECONDS,
        help_text="Seconds to hold the answer while the prediction is queued or running (long polling): it "
        "comes back as soon as the prediction finishes, or after this many seconds with the status as it is "
        "then. 0 (the default) answers at once. Uploads answered with `Location` can be followed with "
        "`?wait=20` in a loop instead of a poll schedule. On an upload (`POST`), the answer is `201` with the "
        "result when the prediction finishes within the wait, else `202` with its status then.",
    )


class PredictionCollectionApi(APIView):
    """``POST``: upload a photo (``202`` + ``Location``; with ``?wait=``, ``201`` and the result when it finishes
    in time). ``GET``: the caller's own predictions, newest first."""

    parser_classes = [MultiPartParser, FormParser]
    throttle_scope = "upload"  # a POST counts one photo against the upload rate, besides the read rate

    class InputSerializer(serializers.Serializer):
        # Empty files reach the service, which keeps them as failed predictions (code image_empty).
        image = serializers.FileField(
            allow_empty_file=True, help_text="A JPEG, PNG or WebP photo (multipart/form-data)."
        )
        title = serializers.CharField(
            required=False, allow_blank=True, max_length=300, help_text="Optional listing title (shop's product name)."
        )
        description = serializers.CharField(
            required=False, allow_blank=True, max_length=DESCRIPTION_MAX, help_text="Optional listing description."
        )

    @extend_schema(
        operation_id="predictions_create",
        request=InputSerializer,
        parameters=[IDEMPOTENCY_PARAMETER, WaitQuerySerializer],
        responses={
            **IDEMPOTENCY_RESPONSES,
            201: OpenApiResponse(
                PredictionOutputSerializer, description="With `?wait=`: the prediction finished within the wait."
            ),
            202: PredictionOutputSerializer,
            400: OpenApiResponse(ERROR_SCHEMA, description="Missing or invalid image, or a bad `wait`."),
            401: OpenApiResponse(ERROR_SCHEMA, description="No or bad token."),
            413: OpenApiResponse(ERROR_SCHEMA, description="File over the size limit."),
            415: OpenApiResponse(ERROR_SCHEMA, description="Not JPEG, PNG or WebP."),
            429: OpenApiResponse(ERROR_SCHEMA, description="Over the upload rate; see Retry-After."),
        },
    )
    def post(self, request: Request) -> Response:
        """Create the prediction (``202``); with ``?wait=SECONDS``, hold the answer until it finishes (``201`` with
        the result) or the wait runs out (``202`` with the status then), as a read with ``?wait=`` would, so a
        client gets its result in one request. The wait follows an idempotent replay's ``202`` too."""
        query = WaitQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)  # before anything is created
        created: list[Prediction] = []
        response = idempotent(request, lambda: self._create(request, created))
        seconds = query.validated_data["wait"]
        if seconds <= 0 or response.status_code != status.HTTP_202_ACCEPTED:
            return response
        # The prediction this request made is at hand; an idempotent replay's is read back.
        if created:
            prediction = created[0]
        else:
            prediction = prediction_get_visible(prediction_id=response.data["id"], user=request.user)
        prediction = prediction_wait_terminal(prediction=prediction, seconds=seconds)
        if not prediction.is_terminal:
            return response
        body = PredictionOutputSerializer(prediction, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["url"]})

    def _create(self, request: Request, created: list[Prediction]) -> Response:
        """Make the prediction (appended to ``created``) and answer ``202`` with it."""
        files = request.FILES.getlist("image")
        if len(files) > 1:
            raise serializers.ValidationError({"image": ["Send exactly one file per request."]})
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        prediction = prediction_create(
            upload=serializer.validated_data["image"],
            channel=Prediction.Channel.API,
            owner=request.user,
            title=serializer.validated_data.get("title", ""),
            description=serializer.validated_data.get("description", ""),
        )
        created.append(prediction)
        body = PredictionOutputSerializer(prediction, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})

    @extend_schema(
        operation_id="predictions_list",
        parameters=PAGE_PARAMETERS,
        responses={200: PREDICTION_PAGE, 404: NOT_FOUND},
    )
    def get(self, request: Request) -> Response:
        paginator = PredictionPagination()
        page = paginator.paginate_queryset(
            prediction_list_visible(user=request.user).select_related("model_version"), request, view=self
        )
        return paginator.get_paginated_response(
            PredictionOutputSerializer(page, many=True, context={"request": request}).data
        )


class PredictionDetailApi(APIView):
    """The status and, when finished, the result of one of the caller's predictions (poll this, or long-poll it
    with ``?wait=SECONDS``)."""

    @extend_schema(
        operation_id="predictions_retrieve",
        parameters=[WaitQuerySerializer],
        responses={
            200: PredictionOutputSerializer,
            400: OpenApiResponse(ERROR_SCHEMA, description="`wait` is not a number from 0 to the most allowed."),
            404: NOT_FOUND,
        },
    )
    def get(self, request: Request, prediction_id: str) -> Response:
        query = WaitQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        prediction = prediction_get_visible(prediction_id=prediction_id, user=request.user)
        prediction = prediction_wait_terminal(prediction=prediction, seconds=query.validated_data["wait"])
        return Response(PredictionOutputSerializer(prediction, context={"request": request}).data)
