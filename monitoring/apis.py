"""Monitoring API: ``GET /api/v1/monitor/?hours=24`` for staff (``IsAdminUser``), the figures of
``monitoring.selectors.monitor_summary`` as JSON."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from monitoring.selectors import MAX_HOURS, monitor_summary
from sneakers.openapi import ERROR_SCHEMA


class _Window(serializers.Serializer):
    hours = serializers.IntegerField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    bucket = serializers.ChoiceField(choices=["hour", "day"], help_text="Bucket of the brand series.")


class _Volume(serializers.Serializer):
    total = serializers.IntegerField(help_text="Predictions that finished in the window.")
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    by_channel = serializers.DictField(child=serializers.IntegerField(), help_text="web / api.")
    with_text = serializers.IntegerField(help_text="Uploads sent with a listing title or description.")


class _Latency(serializers.Serializer):
    n = serializers.IntegerField()
    p50 = serializers.FloatField(allow_null=True)
    p90 = serializers.FloatField(allow_null=True)
    p99 = serializers.FloatField(allow_null=True)
    mean = serializers.FloatField(allow_null=True)


class _Latencies(serializers.Serializer):
    queue = _Latency(help_text="Waiting for a worker: started_at - created_at.")
    decode = _Latency()
    background = _Latency()
    embed = _Latency()
    heads = _Latency()
    search = _Latency()
    pipeline = _Latency(help_text="The pipeline's own total.")
    end_to_end = _Latency(help_text="finished_at - created_at.")


class _Failures(serializers.Serializer):
    rate = serializers.FloatField(allow_null=True, help_text="Failed / finished.")
    by_code = serializers.DictField(child=serializers.IntegerField())


class _Abstentions(serializers.Serializer):
    rate = serializers.FloatField(allow_null=True, help_text="Abstained / succeeded.")
    by_reason = serializers.DictField(child=serializers.IntegerField())


class _BrandBucket(serializers.Serializer):
    start = serializers.DateTimeField()
    counts = serializers.DictField(child=serializers.IntegerField())


class _Brands(serializers.Serializer):
    totals = serializers.DictField(child=serializers.IntegerField(), help_text="Top-1 brands named in the window.")
    series = _BrandBucket(many=True)


class _Described(serializers.Serializer):
    n = serializers.IntegerField()
    mean = serializers.FloatField(allow_null=True)
    p50 = serializers.FloatField(allow_null=True)
    p90 = serializers.FloatField(allow_null=True)


class _DriftScore(serializers.Serializer):
    n = serializers.IntegerField(help_text="Recent uploads with the score.")
    mean = serializers.FloatField(allow_null=True)
    p50 = serializers.FloatField(allow_null=True)
    p90 = serializers.FloatField(allow_null=True)
    reference = _Described(help_text="The catalog's own values (model version's training embeddings).")
    psi = serializers.FloatField(allow_null=True, help_text="Population stability index over reference deciles.")
    ks = serializers.FloatField(allow_null=True, help_text="Two-sample Kolmogorov-Smirnov statistic.")
    ks_pvalue = serializers.FloatField(allow_null=True)
    status = serializers.ChoiceField(choices=["insufficient", "stable", "watch", "drift"])


class _Drift(serializers.Serializer):
    model_version = serializers.CharField(allow_null=True, help_text="Version whose uploads are compared.")
    catalog_rows = serializers.IntegerField(allow_null=True, required=False)
    novelty = _DriftScore(required=False, help_text="1 - cosine similarity to the nearest catalog embedding.")
    mean_z = _DriftScore(required=False, help_text="RMS standardised distance to the catalog's mean embedding.")


class MonitorOutputSerializer(serializers.Serializer):
    """The answer of ``GET /api/v1/monitor/`` (``monitoring.selectors.monitor_summary``)."""

    window = _Window()
    volume = _Volume()
    latency_ms = _Latencies(help_text="Milliseconds per stage: p50 / p90 / p99 over the window.")
    failures = _Failures()
    abstentions = _Abstentions()
    brands = _Brands()
    drift = _Drift()


class MonitorApi(APIView):
    """Staff only: volume, latency per stage, failures, abstentions, brands over time and input drift."""

    permission_classes = [IsAdminUser]

    class FilterSerializer(serializers.Serializer):
        hours = serializers.IntegerField(
            required=False, default=24, min_value=1, max_value=MAX_HOURS, help_text="Window length in hours."
        )

    @extend_schema(
        operation_id="monitor_retrieve",
        parameters=[
            OpenApiParameter(
                "hours", int, description=f"Window: the last N hours (1-{MAX_HOURS}, default 24).", required=False
            )
        ],
        responses={
            200: MonitorOutputSerializer,
            400: OpenApiResponse(ERROR_SCHEMA, description="hours is not a whole number from 1 to the maximum."),
            401: OpenApiResponse(ERROR_SCHEMA, description="No or bad token."),
            403: OpenApiResponse(ERROR_SCHEMA, description="Not a staff account."),
            429: OpenApiResponse(ERROR_SCHEMA, description="Over the read rate; see Retry-After."),
        },
    )
    def get(self, request: Request) -> Response:
        query = self.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(monitor_summary(hours=query.validated_data["hours"]))
