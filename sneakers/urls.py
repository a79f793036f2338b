"""Root URLs: site pages, accounts, admin, the versioned API and its OpenAPI schema and docs."""

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.urls import include, path, re_path
from django.views.static import serve
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from sneakers import exceptions
from sneakers.health import health, healthz


def media_view(request: HttpRequest, path: str):
    """Serve a file under ``MEDIA_ROOT`` (read per request) with the type its stored name implies.

    Stored names are generated (``<uuid>.jpg|png|webp``, ``.bin`` for refused bytes), so uploads are
    served as images or ``application/octet-stream``, never as HTML or script; ``nosniff`` is set by
    ``SecurityMiddleware``.
    """
    return serve(request, path, document_root=settings.MEDIA_ROOT)


api_v1 = (
    [
        path("", include("predictions.api_urls")),
        path("", include("catalog.api_urls")),
        path("", include("partners.api_urls")),
        path("", include("monitoring.api_urls")),
    ],
    "api",
)

urlpatterns = [
    path("", include("predictions.urls")),
    path("", include("catalog.urls")),
    path("", include("registry.urls")),
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    # The schema and its docs page are never rate limited (they are what a partner reads first).
    path("api/schema/", SpectacularAPIView.as_view(throttle_classes=[]), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema", throttle_classes=[]), name="api-docs"),
    path("", include("partners.urls")),
    path("", include("monitoring.urls")),
    path("healthz", healthz, name="healthz"),
    path("health/", health, name="health"),
]

if settings.SERVE_MEDIA:
    # Local media (the embedded default). Files are served as attachments of their stored type only;
    # nothing under MEDIA_ROOT is ever executed.
    urlpatterns += [re_path(r"^media/(?P<path>.*)$", media_view)]


def handler404(request: HttpRequest, exception: Exception):  # noqa: D401 - Django's hook name
    """JSON 404 under ``/api/``, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return exceptions.json_not_found(request, exception)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request: HttpRequest):
    """JSON 500 under ``/api/``, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return exceptions.json_server_error(request)
    from django.views.defaults import server_error

    return server_error(request)
