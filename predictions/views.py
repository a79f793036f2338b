"""Site pages: upload, result (polls a small JSON status endpoint), and the visitor's history.

Anonymous visitors own their predictions through their session; signed-in users through their
account. Nobody sees another visitor's predictions (the selectors answer 404).
"""

from __future__ import annotations

from django.conf import settings
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from predictions.models import Prediction
from predictions.selectors import prediction_get_visible, prediction_list_visible
from predictions.services import prediction_create
from sneakers.exceptions import ApplicationError


def _session_key(request: HttpRequest, *, create: bool = False) -> str:
    """The visitor's session key; with ``create`` a session (and its cookie) is started if needed."""
    if create and not request.session.session_key:
        request.session["visitor"] = True  # marks the session modified so the cookie is sent
        request.session.save()
    return request.session.session_key or ""


def _upload_context(error: str = "") -> dict:
    return {
        "error": error,
        "max_megabytes": settings.SNEAKERS_UPLOAD_MAX_BYTES // (1024 * 1024),
        "max_megapixels": settings.SNEAKERS_UPLOAD_MAX_PIXELS // 1_000_000,
    }


@require_http_methods(["GET", "POST"])
def upload_view(request: HttpRequest) -> HttpResponse:
    """GET: the upload form (drag-and-drop or file picker). POST: accept one photo, redirect to its result."""
    if request.method == "GET":
        return render(request, "predictions/upload.html", _upload_context())

    files = request.FILES.getlist("image")
    if len(files) != 1:
        message = "Choose one photo to upload." if not files else "Upload one photo at a time."
        return render(request, "predictions/upload.html", _upload_context(message), status=400)
    try:
        prediction = prediction_create(
            upload=files[0],
            channel=Prediction.Channel.WEB,
            owner=request.user if request.user.is_authenticated else None,
            session_key=_session_key(request, create=not request.user.is_authenticated),
        )
    except ApplicationError as exc:
        return render(request, "predictions/upload.html", _upload_context(exc.message), status=exc.status_code)
    return redirect("predictions:detail", prediction_id=prediction.id)


@require_GET
def detail_view(request: HttpRequest, prediction_id: str) -> HttpResponse:
    """The result page; while the job runs, its script polls ``status_view`` and reloads when done."""
    prediction = prediction_get_visible(
        prediction_id=prediction_id, user=request.user, session_key=_session_key(request)
    )
    return render(request, "predictions/detail.html", {"prediction": prediction})


@require_GET
def status_view(request: HttpRequest, prediction_id: str) -> JsonResponse:
    """Small JSON the result page polls: ``{"status", "terminal", "error"}``."""
    prediction = prediction_get_visible(
        prediction_id=prediction_id, user=request.user, session_key=_session_key(request)
    )
    return JsonResponse(
        {
            "id": str(prediction.id),
            "status": prediction.status,
            "terminal": prediction.is_terminal,
            "error": {"code": prediction.error_code, "message": prediction.error_message}
            if prediction.error_code
            else None,
            "url": reverse("predictions:detail", args=[prediction.id]),
        }
    )


@require_GET
def history_view(request: HttpRequest) -> HttpResponse:
    """The visitor's own predictions, newest first, 24 per page."""
    queryset = prediction_list_visible(user=request.user, session_key=_session_key(request))
    page = Paginator(queryset, 24).get_page(request.GET.get("page"))
    return render(request, "predictions/history.html", {"page": page})
