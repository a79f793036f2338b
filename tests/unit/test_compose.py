"""docker-compose.yml parses and wires services, commands and environment as the design says.

No Docker engine runs here, so the file is checked as data.
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def load() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_exist_with_a_gpu_profile_worker():
    services = load()["services"]
    assert {"web", "worker", "beat", "postgres", "redis", "worker-gpu"} <= set(services)
    assert services["worker-gpu"]["profiles"] == ["gpu"]
    assert "profiles" not in services["worker"]


def test_app_services_point_at_postgres_and_redis_and_wait_for_them():
    services = load()["services"]
    for name in ("web", "worker", "beat", "worker-gpu"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379")
        assert env["CACHE_URL"].startswith("redis://redis:6379")  # shared API throttle counters
        assert env["DJANGO_DEBUG"] == "false" and "DJANGO_SECRET_KEY" in env
        assert set(services[name]["depends_on"]) == {"postgres", "redis"}
        assert "../shared:/shared:ro" in services[name]["volumes"]


def test_commands_run_the_site_the_workers_and_beat_on_the_right_queues():
    services = load()["services"]
    assert "gunicorn sneakers.wsgi:application" in services["web"]["command"]
    assert "migrate" in services["web"]["command"]
    assert "celery -A sneakers worker" in services["worker"]["command"]
    assert "inference" in services["worker"]["command"] and "training" in services["worker"]["command"]
    gpu = services["worker-gpu"]["command"]
    assert "--queues inference " in gpu + " " and "training" not in gpu
    assert services["worker-gpu"]["build"]["args"]["TF_PACKAGE"].startswith("tensorflow[and-cuda]")
    assert services["beat"]["command"].startswith("celery -A sneakers beat")


def test_compose_queues_match_the_celery_routes():
    from django.conf import settings

    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    worker_queues = load()["services"]["worker"]["command"].split("--queues ")[1].split()[0].split(",")
    assert routed <= set(worker_queues)
