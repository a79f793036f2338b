"""Celery routing is wired to real tasks and real consumers.

Every task name in ``settings.CELERY_TASK_ROUTES`` and ``settings.CELERY_BEAT_SCHEDULE`` is registered in
the Celery app once its modules are imported (``app.loader.import_default_modules()``, what a worker
does at start: ``autodiscover_tasks`` over the installed apps), and every queue a task can land on (the
routed queues and ``CELERY_TASK_DEFAULT_QUEUE``) is consumed by the Procfile's worker and by the workers
docker-compose starts without a profile. A route to a task that does not exist, or to a queue no worker
reads, would otherwise leave jobs waiting forever with no error anywhere.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def queues_of(command: str) -> set[str]:
    """The queues a ``celery ... worker`` command line consumes (``--queues a,b`` / ``-Q a,b``)."""
    words = shlex.split(command)
    assert "worker" in words, command
    for flag in ("--queues", "-Q"):
        if flag in words:
            return set(words[words.index(flag) + 1].split(","))
    for word in words:
        if word.startswith("--queues="):
            return set(word.split("=", 1)[1].split(","))
    return {settings.CELERY_TASK_DEFAULT_QUEUE}  # a worker without --queues reads the default queue only


def procfile_workers() -> dict[str, str]:
    """The Procfile's processes that run a Celery worker: ``{name: command}`` (``worker`` and ``jobs``)."""
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if "celery" in command and " worker" in command:
            processes[name.strip()] = command
    return processes


def procfile_worker_queues() -> set[str]:
    """The queues the Procfile's Celery workers read together (``worker``: inference, default; ``jobs``:
    training, ingest)."""
    workers = procfile_workers()
    if not workers:
        raise AssertionError("the Procfile has no Celery worker process")
    return set().union(*(queues_of(command) for command in workers.values()))


def compose_worker_queues() -> dict[str, set[str]]:
    """Queues per docker-compose service that runs a Celery worker and needs no profile to start."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return {
        name: queues_of(service["command"])
        for name, service in services.items()
        if " worker" in str(service.get("command", "")) and not service.get("profiles")
    }


def routed_queues() -> set[str]:
    return {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()} | {settings.CELERY_TASK_DEFAULT_QUEUE}


@pytest.fixture(scope="module")
def registered() -> set[str]:
    from sneakers.celery import app

    app.loader.import_default_modules()
    return set(app.tasks)


def test_every_routed_task_is_registered(registered):
    missing = sorted(set(settings.CELERY_TASK_ROUTES) - registered)
    assert not missing, f"routes name tasks that no installed app defines: {missing}"


def test_every_scheduled_task_is_registered(registered):
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert scheduled, "the beat schedule is empty"
    missing = sorted(scheduled - registered)
    assert not missing, f"the beat schedule names tasks that no installed app defines: {missing}"


def test_autodiscovery_finds_the_project_tasks(registered):
    # Guards the two tests above against an empty registry. Unrouted tasks land on the default queue,
    # which the tests below require a worker to read.
    ours = {name for name in registered if not name.startswith("celery.")}
    assert ours, "no project task was discovered"
    assert {"predictions.tasks.predict", "predictions.tasks.sweep", "registry.tasks.train"} <= ours


def test_the_procfile_worker_consumes_every_routed_queue():
    missing = sorted(routed_queues() - procfile_worker_queues())
    assert not missing, f"no Procfile worker reads queue(s) {missing}"


def test_exactly_one_procfile_worker_runs_beat():
    # The schedules (sweep, retraining, feeds) fire once: two beats would run every job twice.
    beats = [name for name, command in procfile_workers().items() if "--beat" in shlex.split(command)]
    assert len(beats) == 1, f"Procfile processes running beat: {beats}"


def test_docker_compose_workers_consume_every_routed_queue():
    workers = compose_worker_queues()
    assert workers, "docker-compose starts no Celery worker by default"
    consumed = set().union(*workers.values())
    missing = sorted(routed_queues() - consumed)
    assert not missing, f"no docker-compose worker (without a profile) reads queue(s) {missing}"


def test_queue_parsing_reads_both_spellings():
    assert queues_of("celery -A sneakers worker --queues inference,default") == {"inference", "default"}
    assert queues_of("celery -A sneakers worker -Q training") == {"training"}
    assert queues_of("celery -A sneakers worker --queues=ingest") == {"ingest"}
    assert queues_of("celery -A sneakers worker") == {settings.CELERY_TASK_DEFAULT_QUEUE}
