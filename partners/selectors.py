"""Reads of the partners app: a partner's own batches and webhook endpoints, batch summaries."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, QuerySet
from django.http import Http404
from django.urls import reverse

from partners.models import Batch, BatchItem, WebhookEndpoint
from predictions.models import Prediction


def batch_list_owned(*, owner: AbstractBaseUser) -> QuerySet[Batch]:
    """The partner's batches, newest first."""
    return Batch.objects.filter(owner=owner).order_by("-created_at")


def batch_get_owned(*, batch_id: Any, owner: AbstractBaseUser) -> Batch:
    """One of the partner's batches.

    Raises:
        Http404: no such batch, or another partner's (the two look the same).
    """
    batch = Batch.objects.filter(id=batch_id, owner=owner).first()
    if batch is None:
        raise Http404("No such batch.")
    return batch


def batch_items(*, batch: Batch) -> QuerySet[BatchItem]:
    """The batch's items in their order, with their predictions."""
    return BatchItem.objects.filter(batch=batch).select_related("prediction__model_version").order_by("position")


def batch_summary(*, batch: Batch, request: Any) -> dict[str, Any]:
    """A batch without its items: ``{"id", "status", "created_at", "finished_at", "total", "counts", "progress",
    "url"}``. ``counts`` has the items per prediction status (all four keys); ``progress`` is the finished
    fraction in [0, 1], rounded to 4 decimals. ``request`` builds the absolute URL (``build_absolute_uri``)."""
    counts = dict.fromkeys(Prediction.Status.values, 0)
    rows = BatchItem.objects.filter(batch=batch).values("prediction__status").annotate(n=Count("id")).order_by()
    for row in rows:
        counts[row["prediction__status"]] = row["n"]
    total = batch.item_count
    done = counts[Prediction.Status.SUCCEEDED] + counts[Prediction.Status.FAILED]
    return {
        "id": str(batch.id),
        "status": batch.status,
        "created_at": batch.created_at,
        "finished_at": batch.finished_at,
        "total": total,
        "counts": counts,
        "progress": round(done / total, 4) if total else 1.0,
        "url": request.build_absolute_uri(reverse("api:batch-detail", args=[batch.id])),
    }


def webhook_endpoint_list_owned(*, owner: AbstractBaseUser) -> QuerySet[WebhookEndpoint]:
    """The partner's webhook endpoints, newest first."""
    return WebhookEndpoint.objects.filter(owner=owner).order_by("-created_at")


def webhook_endpoint_get_owned(*, endpoint_id: Any, owner: AbstractBaseUser) -> WebhookEndpoint:
    """One of the partner's webhook endpoints.

    Raises:
        Http404: no such endpoint, or another partner's.
    """
    endpoint = WebhookEndpoint.objects.filter(id=endpoint_id, owner=owner).first()
    if endpoint is None:
        raise Http404("No such webhook endpoint.")
    return endpoint
