"""What each kind of ``TrainingRun`` does, run by the tasks of ``registry.tasks`` on the ``training`` queue.

- ``bootstrap`` (``manage.py bootstrap``, the first ``make run``): import the shared catalog sets named in
  ``options["imports"]`` (stage ``importing``), then train and activate when no version is active or the
  active one lacks a catalog brand.
- ``train`` (admin, ``manage.py train``): train a version (``options``: ``seed``, ``finetune``, ``flip_augment``,
  None meaning the settings' default); ``options["activate"]``: ``first`` (only the
  first version ever becomes active, the default), ``always``, or ``gate`` (``registry.gate``).
- ``retrain`` (Celery beat every ``SNEAKERS_RETRAIN_INTERVAL_SECONDS``): skipped when the catalog is unchanged
  since the active version was trained (``catalog_fingerprint``) or when another model run is live; else
  train and activate through the gate.
- ``evaluate`` (admin): score ``options["model"]`` on ``options["directories"]`` (``options["split"]`` side).

Progress goes to the run's row (``registry.progress``); an error ends the run ``failed`` with its message
(no retry: a failed training is started again by staff or the next schedule).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings

from catalog.selectors import brand_slugs_with_images
from catalog.services import catalog_import_manifest
from registry.evaluation import model_version_evaluate
from registry.models import ModelVersion, TrainingRun
from registry.progress import RunProgress, heartbeat
from registry.selectors import catalog_fingerprint, model_version_get_active, training_run_live
from registry.services import (
    model_version_activate,
    model_version_set_gate,
    training_run_claim,
    training_run_fail_stale,
    training_run_finish,
)

logger = logging.getLogger(__name__)

Outcome = tuple[str, ModelVersion | None]
"""``(TrainingRun.Status value, the version made or evaluated)`` of a finished run."""


def default_evaluation_sets() -> list[str]:
    """Folders an evaluation from admin scores when none are named: the shared catalog sets, the wild photos
    and the negatives, where their manifests exist (paths as strings)."""
    folders = (
        settings.SNEAKERS_DATASET_DIR,
        settings.SNEAKERS_MODELS_DATASET_DIR,
        settings.SNEAKERS_WILD_DIR,
        settings.SNEAKERS_NEGATIVES_DIR,
    )
    return [str(folder) for folder in folders if (Path(folder) / "manifest.csv").is_file()]


def _manifest_rows(folder: Path) -> int:
    """Data rows of ``folder/manifest.csv`` (0 when unreadable), to show import progress over all sets."""
    try:
        with (folder / "manifest.csv").open(newline="", encoding="utf-8") as handle:
            return sum(1 for _ in csv.DictReader(handle))
    except OSError:
        return 0


def _train(run: TrainingRun, progress: RunProgress, *, activate: str) -> Outcome:
    """Train a version with the run's options and activate it as ``activate`` says (module docstring)."""
    from registry.training import model_version_train

    version = model_version_train(
        seed=run.options.get("seed"),
        finetune=run.options.get("finetune"),
        flip_augment=run.options.get("flip_augment"),
        stage_progress=progress,
        log=progress.log,
    )
    progress.log(f"trained {version.name}: test brand top-1 {version.metrics.get('brand', {}).get('top1')}")
    if version.status == ModelVersion.Status.ACTIVE:
        progress.log(f"{version.name} is the first version: activated")
        return TrainingRun.Status.SUCCEEDED, version
    if activate == "always":
        model_version_activate(model_version=version)
        progress.log(f"{version.name} activated")
    elif activate == "gate":
        _gate(version, progress)
    else:
        progress.log(f"{version.name} stays a candidate: activate it in admin")
    return TrainingRun.Status.SUCCEEDED, version


def _gate(candidate: ModelVersion, progress: RunProgress) -> None:
    """Run the activation gate; activate the candidate when it passes, store the decision either way."""
    from registry.gate import gate_decide

    active = model_version_get_active()
    if active is None:
        model_version_activate(model_version=candidate)
        model_version_set_gate(
            model_version=candidate, gate={"decision": "activate", "reason": "no version was active"}
        )
        progress.log(f"no version was active: {candidate.name} activated")
        return
    decision = gate_decide(candidate=candidate, active=active, progress=lambda d, t: progress("gating", d, t))
    model_version_set_gate(model_version=candidate, gate=decision)
    if decision["decision"] == "activate":
        model_version_activate(model_version=candidate)
        progress.log(f"gate passed against {active.name} ({decision['reason']}): {candidate.name} activated")
    else:
        progress.log(f"gate failed against {active.name} ({decision['reason']}): {candidate.name} stays a candidate")


def _bootstrap(run: TrainingRun, progress: RunProgress) -> Outcome:
    folders = [(Path(folder), kind) for folder, kind in run.options.get("imports", [])]
    counts = [_manifest_rows(folder) for folder, _ in folders]
    total, offset = sum(counts), 0
    for (folder, kind), count in zip(folders, counts, strict=True):
        progress.log(f"importing {folder} ({kind}s, {count} rows)")

        def imported(done: int, _: int, offset: int = offset) -> None:
            progress("importing", offset + done, total)

        report = catalog_import_manifest(manifest_path=folder / "manifest.csv", kind=kind, progress=imported)
        offset += count
        progress.log(
            f"{folder.name}: {report.images_created} images added, {report.images_unchanged} already present, "
            f"{len(report.errors)} bad rows skipped"
        )
        for line, message in report.errors[:20]:
            progress.log(f"  {folder.name}/manifest.csv:{line}: {message}")
    active = model_version_get_active()
    missing = sorted(brand_slugs_with_images() - set(active.classes)) if active else []
    if active is not None and not missing:
        progress.log(f"model {active.name} is active and knows every brand: training skipped")
        return TrainingRun.Status.SUCCEEDED, active
    progress.log("no active model: training one" if active is None else f"the active model lacks {', '.join(missing)}")
    return _train(run, progress, activate="always")


def _retrain(run: TrainingRun, progress: RunProgress) -> Outcome:
    training_run_fail_stale()  # a run of a dead worker must not hold the schedule up for ever
    active = model_version_get_active()
    other = training_run_live()
    if other is not None and other.id != run.id:
        progress.log(f"run #{other.id} ({other.kind}) is still going: this scheduled retraining is skipped")
        return TrainingRun.Status.SKIPPED, None
    if active is not None and active.catalog_fingerprint and active.catalog_fingerprint == catalog_fingerprint():
        progress.log(f"the catalog has not changed since {active.name} was trained: retraining skipped")
        return TrainingRun.Status.SKIPPED, None
    return _train(run, progress, activate="gate")


def _evaluate(run: TrainingRun, progress: RunProgress) -> Outcome:
    name = run.options.get("model")
    version = ModelVersion.objects.filter(name=name).first() if name else model_version_get_active()
    if version is None:
        raise ValueError(f"no model version {name!r}" if name else "no model version is active")
    directories = [Path(folder) for folder in run.options.get("directories") or default_evaluation_sets()]
    split = run.options.get("split")
    progress.log(f"evaluating {version.name} on {', '.join(map(str, directories))} ({split or 'all'} photos)")
    report = model_version_evaluate(
        model_version=version,
        directories=directories,
        split=split,
        progress=lambda done, total: progress("evaluating", done, total),
    )
    progress.log(
        f"{report['n']} photos: brand top-1 {report.get('top1')}, log loss {report.get('log_loss')}, "
        f"{report.get('errors')} unreadable"
    )
    return TrainingRun.Status.SUCCEEDED, version


HANDLERS: dict[str, Callable[[TrainingRun, RunProgress], Outcome]] = {
    TrainingRun.Kind.BOOTSTRAP: _bootstrap,
    TrainingRun.Kind.TRAIN: lambda run, progress: _train(run, progress, activate=run.options.get("activate", "first")),
    TrainingRun.Kind.RETRAIN: _retrain,
    TrainingRun.Kind.EVALUATE: _evaluate,
}


def training_run_execute(*, run_id: int, echo: Callable[[str, int, int], None] | None = None) -> TrainingRun | None:
    """Claim a pending run and do its work, recording progress; None when it was not pending.

    Never raises for a failure of the work itself: the run ends ``failed`` with ``"<ErrorType>: message"``
    (and the traceback in the worker's log). ``echo`` also gets every progress call (a command's bars).
    """
    run = training_run_claim(run_id=run_id)
    if run is None:
        logger.info("training run %s is not pending (done, or another worker has it)", run_id)
        return None
    progress = RunProgress(run, echo=echo)
    status: str = TrainingRun.Status.FAILED
    version: ModelVersion | None = None
    error = ""
    try:
        with heartbeat(run):
            status, version = HANDLERS[run.kind](run, progress)
    except Exception as exc:  # the job's own failure: recorded on the row, the worker goes on
        logger.exception("training run %s failed", run.id)
        error = f"{type(exc).__name__}: {exc}"
        progress.log(f"failed: {error}")
    progress.close_stage()
    training_run_finish(run=run, status=status, error=error, model_version=version)
    return run


def run_options(**options: Any) -> dict[str, Any]:
    """Options of a model run with ``finetune`` resolved from ``SNEAKERS_FINETUNE`` when not given, so the
    run's progress knows whether fine-tuning stages are coming; None values dropped."""
    options = {key: value for key, value in options.items() if value is not None}
    options.setdefault("finetune", settings.SNEAKERS_FINETUNE)
    return options
