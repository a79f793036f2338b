"""One domain error type and one API exception handler, so every API error has the same JSON shape.

Shape: ``{"error": {"code": "image_too_large", "message": "...", "detail": {...}}}``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.urls import is_valid_path
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ApplicationError(Exception):
    """A domain error with a stable machine-readable ``code`` and a message for people.

    Args:
        message: what went wrong, readable by a shopper or a partner's developer.
        code: stable snake_case identifier (``image_unreadable``, ``not_found``).
        extra: JSON-serialisable details, returned under ``detail``.
        status_code: HTTP status the API answers with (default 400).
    """

    def __init__(
        self, message: str, *, code: str = "invalid", extra: dict[str, Any] | None = None, status_code: int = 400
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.extra = extra or {}
        self.status_code = status_code


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    """The one error body of the API: ``{"error": {"code", "message", "detail"}}``."""
    return {"error": {"code": code, "message": message, "detail": detail if detail is not None else {}}}


def first_message(detail: Any) -> str:
    """The first human message inside a DRF ``ValidationError`` detail (dict, list or string)."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            message = first_message(value)
            return message if key == "non_field_errors" else f"{key}: {message}"
    if isinstance(detail, list) and detail:
        return first_message(detail[0])
    return str(detail)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF ``EXCEPTION_HANDLER``: render every error in the one JSON shape.

    ``ApplicationError`` keeps its code and status; DRF's own errors keep their status and use their
    ``default_code`` (``not_authenticated``, ``throttled``, ``invalid`` ...); validation errors carry
    the per-field messages under ``detail``. Unexpected exceptions return ``None`` so Django's 500
    handling (and logging) applies.
    """
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.message, exc.extra), status=exc.status_code)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()

    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, drf_exceptions.ValidationError):
        body = error_body("invalid", first_message(exc.detail), exc.detail)
    elif isinstance(exc, drf_exceptions.APIException):
        detail = exc.detail
        code = getattr(detail, "code", None) or exc.default_code
        body = error_body(str(code), str(detail))
        if isinstance(exc, drf_exceptions.NotAuthenticated | drf_exceptions.AuthenticationFailed):
            hint = _auth_scheme_hint(context.get("request"))
            if hint:
                body = error_body(str(code), f"{detail} {hint}", {"hint": hint})
        if isinstance(exc, drf_exceptions.Throttled) and exc.wait is not None:
            body["error"]["detail"] = {"retry_after_seconds": int(exc.wait)}
    else:  # pragma: no cover - exception_handler only answers APIException subclasses
        body = error_body("error", str(exc))
    response.data = body
    return response


AUTH_SCHEME_HINT = "Send the token as `Authorization: Token <key>` (this API does not use the Bearer scheme)."


def _auth_scheme_hint(request: Any) -> str:
    """A hint when the request sent its credentials with another scheme than ``Token`` (e.g. ``Bearer``)."""
    header = (getattr(request, "META", None) or {}).get("HTTP_AUTHORIZATION", "")
    scheme = header.split(" ", 1)[0].lower() if header.strip() else ""
    if scheme and scheme != "token" and scheme != "basic":
        return AUTH_SCHEME_HINT
    return ""


def json_not_found(request: Any, exception: Exception | None = None) -> JsonResponse:
    """``handler404`` body for API paths: the same error shape as the API's own 404."""
    return JsonResponse(error_body("not_found", "Not found."), status=status.HTTP_404_NOT_FOUND)


class ApiNotFoundMiddleware:
    """JSON 404s under ``/api/``: turns any non-JSON 404 there (an unknown path or a malformed id, also Django's
    debug page when ``DEBUG`` is on, where ``handler404`` is not used) into the API's JSON 404, keeping the
    answer's ``X-RateLimit-*`` headers. A POST (or PUT, PATCH, DELETE) to an API path without its trailing
    slash gets a JSON 404 that names the right path, instead of ``CommonMiddleware``'s redirect (which loses
    the body) or, with ``DEBUG`` on, its ``RuntimeError``. Put it before ``CommonMiddleware`` in
    ``MIDDLEWARE``."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        if not request.path.startswith("/api/"):
            return self.get_response(request)
        if request.method not in ("GET", "HEAD") and not request.path_info.endswith("/") and settings.APPEND_SLASH:
            urlconf = getattr(request, "urlconf", None)
            if not is_valid_path(request.path_info, urlconf) and is_valid_path(f"{request.path_info}/", urlconf):
                return JsonResponse(
                    error_body(
                        "not_found",
                        f"No such path; did you mean {request.path}/ (with a trailing slash)?",
                        {"path": f"{request.path}/"},
                    ),
                    status=status.HTTP_404_NOT_FOUND,
                )
        response = self.get_response(request)
        if response.status_code == status.HTTP_404_NOT_FOUND and not response.get("Content-Type", "").startswith(
            "application/json"
        ):
            replaced = json_not_found(request)
            for name, value in response.items():
                if name.lower().startswith("x-ratelimit-"):
                    replaced[name] = value
            return replaced
        return response
