"""Prometheus metrics at ``/metrics`` (prometheus-client), for the web processes and the workers.

Two sources, so that every process's figures reach one scrape of the web endpoint:

- **Per request, in the web processes** (``monitoring.middleware.RequestMetricsMiddleware``):
  ``sneakers_http_requests_total{route, method, status}`` and ``sneakers_http_request_duration_seconds{route}``.
  gunicorn runs several processes, so these use prometheus-client's multi-process mode: every process writes its
  values to files under ``PROMETHEUS_MULTIPROC_DIR`` (``SNEAKERS_METRICS_MULTIPROC_DIR``, ``var/prometheus`` by default;
  settings export it before prometheus-client is imported) and the scrape adds them up (``MultiProcessCollector``).
  Empty that folder when the web service (re)starts, as prometheus-client's documentation asks. With the setting empty,
  each process reports its own counts only.
- **Jobs, from the database, on scrape** (``DatabaseCollector``): what the workers did is in ``UploadSignal`` rows, so
  job figures are exact across worker processes and restarts without any worker exposing a port:
  ``sneakers_uploads_total{channel}`` (predictions created), ``sneakers_jobs_total{outcome, code}`` (succeeded /
  abstained with its reason / failed with its error code), ``sneakers_stage_duration_seconds{stage}`` (histograms of
  the queue wait, each pipeline stage and end to end), ``sneakers_predictions_in_progress{status}`` (queued / running)
  and ``sneakers_inference_queue_length`` (``predictions.services.inference_queue_length``; absent when the broker
  cannot say).

Access (``metrics_allowed``): a request carrying ``Authorization: Bearer <SNEAKERS_METRICS_TOKEN>`` (when that is set),
a logged-in staff user, or a client address in ``SNEAKERS_METRICS_ALLOWED_IPS`` (addresses or networks; default
loopback only: ``127.0.0.1``, ``::1``). Anyone else gets 403.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterator
from typing import Any, Final

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from monitoring.models import STAGES, UploadSignal
from predictions.models import Prediction

LOCAL = CollectorRegistry()
"""This process's request metrics (collected directly when multi-process mode is off)."""

REQUESTS = Counter(
    "sneakers_http_requests",
    "HTTP requests answered, by URL route (the pattern, not the path), method and status code.",
    ["route", "method", "status"],
    registry=LOCAL,
)
REQUEST_SECONDS = Histogram(
    "sneakers_http_request_duration_seconds",
    "Time to answer an HTTP request, by URL route.",
    ["route"],
    registry=LOCAL,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
STAGE_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Upper bounds (seconds) of the stage-duration histograms."""


class DatabaseCollector(Collector):
    """Job metrics read from the database at each scrape (module docstring)."""

    def collect(self) -> Iterator[Any]:
        """Yield the metric families (a few aggregate queries)."""
        uploads = CounterMetricFamily("sneakers_uploads", "Predictions created, by channel.", labels=["channel"])
        for channel, n in Prediction.objects.values_list("channel").annotate(n=Count("pk")).values_list("channel", "n"):
            uploads.add_metric([channel or "unknown"], n)
        yield uploads

        jobs = CounterMetricFamily(
            "sneakers_jobs",
            "Finished prediction jobs by outcome (succeeded, abstained, failed) and code (abstain reason or "
            "error code).",
            labels=["outcome", "code"],
        )
        grouped = UploadSignal.objects.values_list("status", "error_code", "abstain_reason").annotate(n=Count("pk"))
        for status, error_code, reason, n in grouped.values_list("status", "error_code", "abstain_reason", "n"):
            if status == Prediction.Status.FAILED:
                jobs.add_metric(["failed", error_code or "unknown"], n)
            elif reason:
                jobs.add_metric(["abstained", reason], n)
            else:
                jobs.add_metric(["succeeded", ""], n)
        yield jobs

        stages = HistogramMetricFamily(
            "sneakers_stage_duration_seconds",
            "Seconds per stage of finished jobs: queue (waiting for a worker), decode, background, embed, heads, "
            "search, pipeline (its total) and end_to_end (upload to result).",
            labels=["stage"],
        )
        aggregates: dict[str, Any] = {}
        for stage in STAGES:
            column = f"{stage}_ms"
            aggregates[f"{stage}__n"] = Count("pk", filter=Q(**{f"{column}__isnull": False}))
            aggregates[f"{stage}__sum"] = Sum(column)
            for i, bound in enumerate(STAGE_BUCKETS):
                aggregates[f"{stage}__{i}"] = Count("pk", filter=Q(**{f"{column}__lte": bound * 1000.0}))
        values = UploadSignal.objects.aggregate(**aggregates)
        for stage in STAGES:
            buckets = [(str(bound), values[f"{stage}__{i}"]) for i, bound in enumerate(STAGE_BUCKETS)]
            buckets.append(("+Inf", values[f"{stage}__n"]))
            stages.add_metric([stage], buckets, sum_value=(values[f"{stage}__sum"] or 0.0) / 1000.0)
        yield stages

        waiting = GaugeMetricFamily(
            "sneakers_predictions_in_progress", "Predictions not finished yet, by status.", labels=["status"]
        )
        counts = dict(
            Prediction.objects.filter(status__in=[Prediction.Status.QUEUED, Prediction.Status.RUNNING])
            .values_list("status")
            .annotate(n=Count("pk"))
            .values_list("status", "n")
        )
        for status in (Prediction.Status.QUEUED, Prediction.Status.RUNNING):
            waiting.add_metric([status], counts.get(status, 0))
        yield waiting

        from predictions.services import inference_queue_length

        length = inference_queue_length()
        if length is not None:
            yield GaugeMetricFamily(
                "sneakers_inference_queue_length", "Messages waiting in the broker's inference queue.", value=length
            )


def metrics_allowed(request: HttpRequest) -> bool:
    """Whether ``request`` may read ``/metrics`` (module docstring: token, staff, or an allowed address)."""
    token = getattr(settings, "SNEAKERS_METRICS_TOKEN", "")
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip(), token):
        return True
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff:
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    for allowed in getattr(settings, "SNEAKERS_METRICS_ALLOWED_IPS", ()):
        try:
            if address in ipaddress.ip_network(str(allowed).strip(), strict=False):
                return True
        except ValueError:
            continue
    return False


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: the Prometheus text exposition of the request metrics (all web processes) and the job
    metrics (database); 403 for callers ``metrics_allowed`` refuses."""
    if not metrics_allowed(request):
        return HttpResponse(
            "Forbidden: /metrics is for staff, allowed addresses (SNEAKERS_METRICS_ALLOWED_IPS) or the bearer "
            "token (SNEAKERS_METRICS_TOKEN).\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_Local())
    registry.register(DatabaseCollector())
    return HttpResponse(generate_latest(registry), content_type="text/plain; version=0.0.4; charset=utf-8")


class _Local(Collector):
    """This process's request metrics (single-process mode)."""

    def collect(self) -> Iterator[Any]:
        """Yield ``LOCAL``'s families."""
        yield from LOCAL.collect()
