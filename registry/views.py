"""Public views of the model registry: the model status the site polls while no model is active."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from registry.selectors import model_status


@require_GET
def model_status_view(request: HttpRequest) -> JsonResponse:
    """``GET /models/status.json``: ``registry.selectors.model_status`` as JSON, for anyone (no login).

    ``{"ready": bool, "active": {"name", "activated_at"} | null, "run": {"id", "kind", "status", "stage",
    "stage_label", "step", "steps", "done", "total", "unit", "percent", "eta_seconds", "started_at", "updated_at"} |
    null}``. No error text, paths or user data. ``Cache-Control: no-store``: the figures change every few
    seconds while a job runs.
    """
    response = JsonResponse(model_status())
    response["Cache-Control"] = "no-store"
    return response
