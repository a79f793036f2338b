"""Reads of the monitoring app: the figures of ``/api/v1/monitor/`` and of the admin dashboard, over a time window.

Everything is computed from ``UploadSignal`` rows whose ``finished_at`` falls in the window (``finished_at`` is
indexed); percentiles are NumPy's (``numpy.percentile``, linear interpolation) over the window's values.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np
from django.db.models import Count
from django.utils import timezone

from monitoring.drift import drift_summary
from monitoring.models import STAGES, DriftReference, UploadSignal
from registry.models import ModelVersion
from registry.selectors import model_version_get_active

MAX_HOURS: Final = 24 * 31
"""Longest window, in hours."""
HOURLY_UP_TO: Final = 72
"""Windows up to this many hours count brands per hour; longer ones per day."""
PERCENTILES: Final = (50, 90, 99)


def _percentiles(values: list[float]) -> dict[str, Any]:
    """``{"n", "p50", "p90", "p99", "mean"}`` in milliseconds (None for no values)."""
    if not values:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "mean": None}
    array = np.asarray(values, dtype=np.float64)
    p50, p90, p99 = (float(v) for v in np.percentile(array, PERCENTILES))
    return {"n": int(array.size), "p50": p50, "p90": p90, "p99": p99, "mean": float(array.mean())}


def _bucket_start(moment: datetime, hourly: bool) -> datetime:
    """The UTC hour or day ``moment`` falls in."""
    moment = moment.astimezone(UTC) if timezone.is_aware(moment) else moment
    if hourly:
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def monitor_summary(*, hours: int = 24, now: datetime | None = None) -> dict[str, Any]:
    """Volume, latency, failures, abstentions, brands over time and input drift of the last ``hours`` hours.

    Returns (JSON-ready, see ``monitoring.apis.MonitorApi`` for the schema)::

        {"window": {"hours", "start", "end", "bucket": "hour" | "day"},
         "volume": {"total", "succeeded", "failed", "by_channel": {...}, "with_text"},
         "latency_ms": {stage: {"n", "p50", "p90", "p99", "mean"}} for stage in monitoring.models.STAGES,
         "failures": {"rate", "by_code": {code: n}},
         "abstentions": {"rate", "by_reason": {reason: n}},
         "brands": {"totals": {brand: n}, "series": [{"start", "counts": {brand: n}}]},
         "drift": {"model_version", "novelty": drift_summary, "mean_z": drift_summary} | {"model_version": None}}

    Rates are shares of all finished predictions (failures) and of the succeeded ones (abstentions); None for none.

    Raises:
        ValueError: ``hours`` outside 1..``MAX_HOURS``.
    """
    if not 1 <= hours <= MAX_HOURS:
        raise ValueError(f"hours must be between 1 and {MAX_HOURS}")
    end = now or timezone.now()
    start = end - timedelta(hours=hours)
    rows = UploadSignal.objects.filter(finished_at__gt=start, finished_at__lte=end)
    hourly = hours <= HOURLY_UP_TO

    by_status = dict(rows.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    total = int(sum(by_status.values()))
    succeeded, failed = int(by_status.get("succeeded", 0)), int(by_status.get("failed", 0))
    by_channel = dict(rows.values_list("channel").annotate(n=Count("pk")).values_list("channel", "n"))
    failures = dict(
        rows.filter(status="failed").values_list("error_code").annotate(n=Count("pk")).values_list("error_code", "n")
    )
    abstentions = dict(
        rows.filter(status="succeeded")
        .exclude(abstain_reason="")
        .values_list("abstain_reason")
        .annotate(n=Count("pk"))
        .values_list("abstain_reason", "n")
    )

    columns = [f"{stage}_ms" for stage in STAGES]
    values: dict[str, list[float]] = defaultdict(list)
    series: dict[datetime, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    novelty, mean_z = [], []
    version = model_version_get_active()
    version_id = version.id if version is not None else None
    fields = ("finished_at", "status", "brand", "model_version_id", "novelty", "mean_z", *columns)
    for record in rows.values_list(*fields).iterator(chunk_size=2000):
        item = dict(zip(fields, record, strict=True))
        for stage, column in zip(STAGES, columns, strict=True):
            if item[column] is not None:
                values[stage].append(float(item[column]))
        if item["status"] == "succeeded" and item["brand"]:
            series[_bucket_start(item["finished_at"], hourly)][item["brand"]] += 1
            totals[item["brand"]] += 1
        if version_id is None:
            version_id = item["model_version_id"]
        if item["model_version_id"] == version_id and item["novelty"] is not None:
            novelty.append(float(item["novelty"]))
            if item["mean_z"] is not None:
                mean_z.append(float(item["mean_z"]))

    drift: dict[str, Any] = {"model_version": None}
    if version_id is not None:
        reference = DriftReference.objects.filter(model_version_id=version_id).first()
        name = ModelVersion.objects.filter(id=version_id).values_list("name", flat=True).first()
        drift = {
            "model_version": name,
            "catalog_rows": reference.catalog_rows if reference else None,
            "novelty": drift_summary(np.asarray(novelty), np.asarray(reference.novelty if reference else [])),
            "mean_z": drift_summary(np.asarray(mean_z), np.asarray(reference.mean_z if reference else [])),
        }
    return {
        "window": {
            "hours": hours,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "bucket": "hour" if hourly else "day",
        },
        "volume": {
            "total": total,
            "succeeded": succeeded,
            "failed": failed,
            "by_channel": {str(k): int(v) for k, v in by_channel.items()},
            "with_text": rows.filter(with_text=True).count(),
        },
        "latency_ms": {stage: _percentiles(values[stage]) for stage in STAGES},
        "failures": {
            "rate": failed / total if total else None,
            "by_code": {str(k or "unknown"): int(v) for k, v in sorted(failures.items())},
        },
        "abstentions": {
            "rate": sum(abstentions.values()) / succeeded if succeeded else None,
            "by_reason": {str(k): int(v) for k, v in sorted(abstentions.items())},
        },
        "brands": {
            "totals": dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))),
            "series": [
                {"start": moment.isoformat(), "counts": dict(sorted(counts.items()))}
                for moment, counts in sorted(series.items())
            ],
        },
        "drift": drift,
    }
