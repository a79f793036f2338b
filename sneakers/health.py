"""Health endpoints: ``/healthz`` (liveness) and ``/health/`` (readiness: database, broker, model).

The web process checks what it can see without loading any model: the database answers, the broker
accepts a connection, a model version is active, its artifact files are in storage, and no worker
has reported that it failed to load it (``ModelVersion.load_error``).
"""

from __future__ import annotations

from typing import Any

from django.core.files.storage import default_storage
from django.db import connection
from django.http import HttpRequest, JsonResponse

from registry.selectors import model_version_get_active
from sneakers.celery import app

REQUIRED_ARTIFACT_FILES = ("brand_head.npz", "index.npz", "metadata.json")


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness of the web process: ``{"status": "ok"}``, no dependencies checked."""
    return JsonResponse({"status": "ok"})


def _check_database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True}
    except Exception as exc:  # any driver error means "not reachable"
        return {"ok": False, "error": str(exc)[:300]}


def _check_broker() -> dict[str, Any]:
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return {"ok": True, "transport": app.conf.broker_url.split("://", 1)[0]}
    except Exception as exc:  # kombu raises transport-specific errors
        return {"ok": False, "error": str(exc)[:300]}


def _check_model() -> dict[str, Any]:
    version = model_version_get_active()
    if version is None:
        return {"ok": False, "error": "no active model version; run `manage.py train`"}
    prefix = version.artifact_prefix.rstrip("/")
    missing = [name for name in REQUIRED_ARTIFACT_FILES if not default_storage.exists(f"{prefix}/{name}")]
    result: dict[str, Any] = {"name": version.name, "ok": not missing and not version.load_error}
    if missing:
        result["error"] = f"artifact files missing from storage: {', '.join(missing)}"
    elif version.load_error:
        result["error"] = f"a worker could not load it: {version.load_error}"
    if version.load_checked_at:
        result["load_checked_at"] = version.load_checked_at.isoformat()
    return result


def health(request: HttpRequest) -> JsonResponse:
    """Readiness: ``{"status": "ok" | "degraded", "checks": {"database", "broker", "model"}}``.

    Answers 200 when every check passes, 503 otherwise (load balancers take the instance out).
    """
    database = _check_database()
    checks = {
        "database": database,
        "broker": _check_broker(),
        "model": _check_model() if database["ok"] else {"ok": False, "error": "database unavailable"},
    }
    ok = all(check["ok"] for check in checks.values())
    return JsonResponse({"status": "ok" if ok else "degraded", "checks": checks}, status=200 if ok else 503)
