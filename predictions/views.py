"""Site pages: upload, result (polls a small JSON status endpoint), the visitor's history, and corrections.

Anonymous visitors own their predictions through their session; signed-in users through their
account (uploads made before signing up or logging in move to the account: ``prediction_claim_session``).
Nobody sees another visitor's predictions (the selectors answer 404); an anonymous visitor's 404 page
offers the login form, since the result may be theirs from before they logged out.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from catalog.selectors import brand_list, product_get_many, product_list_models
from predictions.apis import WaitQuerySerializer
from predictions.models import Prediction
from predictions.selectors import prediction_get_visible, prediction_list_visible, prediction_wait_terminal
from predictions.services import VISITOR_SESSION_KEY, feedback_create, prediction_create
from sneakers.exceptions import ApplicationError, error_body, first_message

SLOW_RESULT_SECONDS = 8
"""After this long without a result the page says it takes longer than usual (results take 1-4 s when a worker
is free), and what the shopper can do."""


def _session_key(request: HttpRequest, *, create: bool = False) -> str:
    """The visitor's session key; with ``create`` a session (and its cookie) is started if needed and its key
    remembered under ``VISITOR_SESSION_KEY``."""
    if create and not request.session.session_key:
        request.session.save()
    if create and request.session.get(VISITOR_SESSION_KEY) != request.session.session_key:
        request.session[VISITOR_SESSION_KEY] = (
            request.session.session_key
        )  # also marks the session modified: cookie sent
    return request.session.session_key or ""


def _megapixels(pixels: int) -> str:
    """``64_000_000 -> "64"``, ``1_500_000 -> "1.5"``: decimal megapixels, as cameras count them and as
    ``catalog.images.inspect_image`` words the limit in its refusal."""
    return f"{pixels / 1e6:g}"


def _upload_context(error: str = "") -> dict:
    return {
        "error": error,
        "max_megabytes": settings.SNEAKERS_UPLOAD_MAX_BYTES // (1024 * 1024),
        "max_megapixels": _megapixels(settings.SNEAKERS_UPLOAD_MAX_PIXELS),
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


@dataclass(frozen=True)
class Failure:
    """How the result page words a failed job: a heading, what happened and what the shopper can do."""

    title: str
    text: str
    action: str
    our_fault: bool


SERVER_FAILURE = Failure(
    "Something went wrong on our side",
    "Your photo is fine, but the job stopped on our servers.",
    "Please try the same photo again in a minute.",
    True,
)
FAILURES = {
    "model_unavailable": Failure(
        "Recognition is not available right now",
        "Your photo is fine, but our recognition model is not running at the moment.",
        "Please try again later; the photo stays in your history.",
        True,
    ),
    "worker_lost": SERVER_FAILURE,
    "transient_error": SERVER_FAILURE,
    "internal_error": SERVER_FAILURE,
    "upload_missing": Failure(
        "We lost your photo",
        "The photo you sent is no longer in our storage, so we could not look at it.",
        "Please upload it again.",
        True,
    ),
}


def failure_for(prediction: Prediction) -> Failure:
    """The wording of a failed prediction by error code: ``image_*`` is the photo's problem (its message says
    which), the rest are ours (``FAILURES``; an unknown code reads as a server failure)."""
    code = prediction.error_code
    if code.startswith("image_"):
        return Failure(
            "We could not read this photo",
            prediction.error_message,
            "Try another photo: a JPEG, PNG or WebP of one shoe.",
            False,
        )
    return FAILURES.get(code, SERVER_FAILURE)


def _similar_items(prediction: Prediction) -> list[dict]:
    """The result's similar products (stored snapshot) with a link and price kind when still listed."""
    items = list(prediction.similar or [])
    products = product_get_many(ids=[item.get("product_id") for item in items if item.get("product_id")])
    shown = []
    for item in items:
        product = products.get(item.get("product_id"))
        shown.append(
            {
                **item,
                "url": reverse("catalog:product", args=[product.id]) if product else "",
                "price_kind": product.price_kind_label if product else "",
            }
        )
    return shown


def _feedback_choices() -> dict:
    """Brands and named models a correction can pick (models grouped by brand slug)."""
    models_by_brand: dict[str, list] = {}
    for product in product_list_models():
        models_by_brand.setdefault(product.brand.slug, []).append(product)
    return {"brands": list(brand_list()), "models_by_brand": sorted(models_by_brand.items())}


def _visible_or_404_page(request: HttpRequest, prediction_id: str) -> Prediction:
    return prediction_get_visible(prediction_id=prediction_id, user=request.user, session_key=_session_key(request))


@require_GET
def detail_view(request: HttpRequest, prediction_id: str) -> HttpResponse:
    """The result page; while the job runs, its script polls ``status_view`` and reloads when done."""
    try:
        prediction = _visible_or_404_page(request, prediction_id)
    except Http404:
        # Maybe theirs from before they logged out: offer the login form (no hint whether the id exists).
        return render(
            request,
            "predictions/not_found.html",
            {"login_next": request.get_full_path() if not request.user.is_authenticated else ""},
            status=404,
        )
    context: dict = {"prediction": prediction}
    if prediction.status == Prediction.Status.SUCCEEDED:
        context["similar"] = _similar_items(prediction)
        context["feedback"] = prediction.feedback.order_by("-created_at").first()
        context.update(_feedback_choices())
    elif prediction.status == Prediction.Status.FAILED:
        context["failure"] = failure_for(prediction)
    context["slow_after_seconds"] = SLOW_RESULT_SECONDS
    return render(request, "predictions/detail.html", context)


@require_GET
def status_view(request: HttpRequest, prediction_id: str) -> JsonResponse:
    """Small JSON the result page polls: ``{"status", "terminal", "error"}``. ``?wait=SECONDS`` holds the answer
    until the job ends or that long (``prediction_wait_terminal``; at most ``SNEAKERS_LONG_POLL_MAX_SECONDS``),
    so the page learns of the result as soon as it exists; with ``&known=STATUS`` (the status the page shows) it
    also answers when the status moves on (``queued`` -> ``running``), so the page can say so."""
    query = WaitQuerySerializer(data=request.GET)
    if not query.is_valid():
        return JsonResponse(error_body("invalid", first_message(query.errors), query.errors), status=400)
    prediction = _visible_or_404_page(request, prediction_id)
    known = request.GET.get("known", "")
    known = known if known in Prediction.Status.values else ""
    prediction = prediction_wait_terminal(
        prediction=prediction, seconds=query.validated_data["wait"], known_status=known
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


@require_POST
def feedback_view(request: HttpRequest, prediction_id: str) -> HttpResponse:
    """Store a "wrong brand / wrong model" correction of a succeeded result, then back to the result."""
    prediction = _visible_or_404_page(request, prediction_id)
    try:
        feedback_create(
            prediction=prediction,
            kind=request.POST.get("kind", ""),
            brand_slug=request.POST.get("brand", ""),
            product_id=request.POST.get("model") or None,
            note=request.POST.get("note", ""),
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Thank you: your correction is saved, and our staff will use it to train the model.")
    return redirect(reverse("predictions:detail", args=[prediction.id]) + "#feedback")


def _thumbnail_url(prediction: Prediction) -> str:
    """The cut-out's URL, else the stored upload's when it is a picture (refused bytes are kept as ``.bin``)."""
    if prediction.cutout:
        return prediction.cutout.url
    if prediction.image and prediction.image.name.endswith((".jpg", ".png", ".webp")):
        return prediction.image.url
    return ""


@require_GET
def history_view(request: HttpRequest) -> HttpResponse:
    """The visitor's own predictions, newest first, 24 per page."""
    queryset = prediction_list_visible(user=request.user, session_key=_session_key(request))
    page = Paginator(queryset, 24).get_page(request.GET.get("page"))
    for prediction in page.object_list:
        prediction.failure = failure_for(prediction) if prediction.status == Prediction.Status.FAILED else None
        prediction.thumbnail_url = _thumbnail_url(prediction)
    return render(request, "predictions/history.html", {"page": page})
