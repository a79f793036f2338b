"""Per-process model cache of a worker: the active ``ModelVersion``'s pipeline, loaded once.

Imported only by workers and management commands (it pulls in TensorFlow and onnxruntime when a
pipeline is built). Artifacts live in Django storage under ``ModelVersion.artifact_prefix`` and are
copied to ``SNEAKERS_CACHE_DIR/models/<name>/`` on first use, so S3 works the same as local media.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

from registry.models import ModelVersion
from registry.services import model_version_report_load
from worker.ml.artifact import ARTIFACT_FILES
from worker.ml.errors import ModelError

_lock = threading.Lock()
_pipelines: dict[tuple[int, str], object] = {}
_backbones: dict[tuple[str, str], object] = {}  # (weights path, precision) -> Backbone
_occupancy = None


def backbone_get(*, precision: str | None = None):
    """The backbone at ``SNEAKERS_BACKBONE_PATH``, loaded once per process and precision.

    Args:
        precision: what it computes in on OpenVINO (``worker.ml.runtimes.PRECISION_SETTINGS``); None: the serving
            setting, ``SNEAKERS_BACKBONE_PRECISION``. Training asks for ``f32`` (``registry.training``), so a model's
            heads and catalog embeddings are float32 whatever CPU trained it, while predictions may run at
            bfloat16 (README "Speed", fifth round: as accurate served so, more real-world first guesses wrong
            when trained so).

    Raises:
        ModelError: the weights file is missing or does not load.
        ValueError: an unknown precision.
    """
    from worker.ml.backbone import Backbone

    path = str(settings.SNEAKERS_BACKBONE_PATH)
    key = (path, precision or settings.SNEAKERS_BACKBONE_PRECISION)
    with _lock:
        backbone = _backbones.get(key)
    if backbone is None:
        backbone = Backbone(path)
        _backbone_serve(backbone, key[1])  # outside the lock: it takes the lock for occupancy_get
        with _lock:
            backbone = _backbones.setdefault(key, backbone)
    return backbone


def _backbone_serve(backbone, precision: str) -> None:
    """Put a backbone loaded for predictions on ``SNEAKERS_INFERENCE_RUNTIME`` (``Backbone.serve_with``: with
    ``auto`` one OpenVINO cannot take stays on TensorFlow), its forward function saved under
    ``SNEAKERS_CACHE_DIR/openvino``, at ``precision``, taking its threads per photo as U^2-Net-p does
    (``_threads_now``). Raises ``ModelError`` as ``serve_with``."""
    from worker.ml.background import thread_budget

    backbone.serve_with(
        settings.SNEAKERS_INFERENCE_RUNTIME,
        cache_dir=Path(settings.SNEAKERS_CACHE_DIR) / "openvino",
        threads=thread_budget(),
        threads_now=_threads_now(),
        precision=precision,
    )


def _threads_now():
    """What the networks ask before each photo for its thread count: ``occupancy_get().threads_now`` with
    ``SNEAKERS_INFERENCE_SHARE_CORES``, else None (their own fixed count)."""
    return occupancy_get().threads_now if settings.SNEAKERS_INFERENCE_SHARE_CORES else None


def occupancy_get():
    """This host's inference busy marks (``worker.ml.occupancy.Occupancy`` on ``SNEAKERS_INFERENCE_SLOTS_DIR``),
    made once per process; its floor is the process's own thread budget (``OMP_NUM_THREADS``, else 1)."""
    from worker.ml.background import thread_budget
    from worker.ml.occupancy import Occupancy

    global _occupancy
    with _lock:
        if _occupancy is None:
            _occupancy = Occupancy(settings.SNEAKERS_INFERENCE_SLOTS_DIR, floor=thread_budget() or 1)
        return _occupancy


def remover_get():
    """The background remover named by ``SNEAKERS_BACKGROUND_METHOD`` (``u2netp``, ``grabcut``, ``none``); with
    ``SNEAKERS_INFERENCE_SHARE_CORES`` U^2-Net-p takes its thread count per photo from ``occupancy_get()``
    (``_threads_now``), and
    runs on ``SNEAKERS_INFERENCE_RUNTIME`` (``worker.ml.runtimes``) at ``SNEAKERS_BACKGROUND_PRECISION``."""
    from worker.ml.background import make_remover

    return make_remover(
        settings.SNEAKERS_BACKGROUND_METHOD,
        model_path=settings.SNEAKERS_BACKGROUND_MODEL_PATH,
        input_size=settings.SNEAKERS_BACKGROUND_INPUT_SIZE,
        threads_now=_threads_now(),
        runtime=settings.SNEAKERS_INFERENCE_RUNTIME,
        precision=settings.SNEAKERS_BACKGROUND_PRECISION,
    )


def artifact_local_dir(model_version: ModelVersion) -> Path:
    """A local folder holding the version's artifact files, copied from storage when not cached yet.

    Raises:
        ModelError: an artifact file is missing from storage.
    """
    target = Path(settings.SNEAKERS_CACHE_DIR) / "models" / model_version.name
    present = _present_files(model_version)
    if all((target / name).exists() for name in present):
        return target
    # Stage beside the target so the final rename stays on one filesystem.
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model_version.name}-", dir=target.parent))
    try:
        for name in present:
            storage_name = f"{model_version.artifact_prefix.rstrip('/')}/{name}"
            try:
                with default_storage.open(storage_name, "rb") as source, (staging / name).open("wb") as sink:
                    shutil.copyfileobj(source, sink)
            except FileNotFoundError as exc:
                raise ModelError(f"artifact file {storage_name} is missing from storage") from exc
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _present_files(model_version: ModelVersion) -> list[str]:
    """Artifact file names stored for this version (optional ones may be absent)."""
    prefix = model_version.artifact_prefix.rstrip("/")
    return [name for name in ARTIFACT_FILES if default_storage.exists(f"{prefix}/{name}")]


def pipeline_get(model_version: ModelVersion):
    """The ``worker.ml.pipeline.Pipeline`` of a model version, built once per process.

    Only the latest version asked for stays cached, so a worker that switches versions frees the old
    heads. Raises ``ModelError`` when weights or artifact files are missing or corrupt; the error is
    recorded on the version (``load_error``) so the health endpoint and admin show it.
    """
    key = (model_version.id, str(settings.SNEAKERS_BACKBONE_PATH))
    with _lock:
        pipeline = _pipelines.get(key)
    if pipeline is not None:
        return pipeline
    try:
        pipeline = _pipeline_build(model_version)
    except ModelError as exc:
        model_version_report_load(model_version=model_version, error=str(exc))
        raise
    if model_version.load_error or model_version.load_checked_at is None:
        model_version_report_load(model_version=model_version)
    with _lock:
        _pipelines.clear()
        _pipelines[key] = pipeline
    return pipeline


def _pipeline_build(model_version: ModelVersion):
    """Load the artifact and weights of a version into a ``Pipeline``; raises ``ModelError``."""
    from worker.ml.pipeline import load_pipeline

    return load_pipeline(
        artifact_local_dir(model_version),
        backbone=backbone_get(),
        remover=remover_get(),
        max_bytes=settings.SNEAKERS_UPLOAD_MAX_BYTES,
        max_pixels=settings.SNEAKERS_UPLOAD_MAX_PIXELS,
        skip_removal_above=settings.SNEAKERS_BACKGROUND_SKIP_CONFIDENCE or None,
        serve=_backbone_serve,
        background_rule=settings.SNEAKERS_BACKGROUND_RULE or None,
    )


def clear() -> None:
    """Forget cached pipelines, backbones and the occupancy (tests, or after settings change)."""
    global _occupancy
    with _lock:
        _pipelines.clear()
        _backbones.clear()
        _occupancy = None


def pipeline_warm(pipeline) -> None:
    """Run one made-up photo through every stage so the first real job does not pay for lazy set-up.

    onnxruntime and TensorFlow allocate and pick kernels on their first call (seen here: the first
    U^2-Net-p call took ~4.7 s, later ones ~0.2-0.9 s on 2 CPU cores). The photo is seeded noise
    (320x320x3 uint8), so the background remover is not skipped as a plain catalogue shot.
    """
    import numpy as np

    noise = np.random.default_rng(0).integers(0, 256, size=(320, 320, 3), dtype=np.uint8)
    pipeline.predict_rgb(noise)
