"""Training service of the model registry: catalog rows -> ``worker.ml`` training -> a ``ModelVersion``.

Imported by the train task and management commands only (never by the web process): training loads
TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from catalog.datasets import manifest_rows, provenance_styles
from catalog.models import ProductImage
from catalog.selectors import training_rows
from registry import runtime
from registry.models import ModelVersion
from registry.selectors import catalog_fingerprint
from registry.services import model_version_create
from worker.ml.artifact import ARTIFACT_FILES

logger = logging.getLogger(__name__)


def _training_data(*, catalog: list[Any]) -> Any:
    """The photos of a training run: the catalog samples plus, where their folders exist, wild and negatives.

    - ``SNEAKERS_WILD_DIR``: real-world and off-catalogue photos (``manifest.csv``; styles from
      ``extras/provenance.csv`` ``eyeballed_style``), split by ``train_model`` into training,
      validation and a held-out part reported on its own.
    - ``SNEAKERS_NEGATIVES_DIR``: photos with no footwear that tune and report the ``not_footwear``
      rule (only when the ImageNet classifier exists, see ``_training_config``).

    Returns:
        ``worker.ml.training.TrainingData``.
    """
    from worker.ml.training import TrainingData, TrainingSample

    wild_dir = Path(settings.SNEAKERS_WILD_DIR)
    wild_rows = [(row, path) for row, path in manifest_rows(wild_dir) if row.get("brand")]
    styles = provenance_styles(wild_dir)
    wild = [
        TrainingSample(
            sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
            brand=row["brand"],
            group=f"wild/{row['image_path']}",
            price_usd=None,
            product_id=None,
            load=lambda path=path: path.read_bytes(),
        )
        for row, path in wild_rows
    ]
    negative_rows = manifest_rows(Path(settings.SNEAKERS_NEGATIVES_DIR)) if _imagenet_classifier() else []
    return TrainingData(
        catalog=catalog,
        wild=wild,
        wild_styles=[styles.get(row["image_path"], "") for row, _ in wild_rows] if wild else [],
        negatives=[lambda path=path: path.read_bytes() for _, path in negative_rows],
        negative_categories=[row.get("category") or "" for row, _ in negative_rows],
    )


def _imagenet_classifier() -> Path | None:
    """``SNEAKERS_IMAGENET_CLASSIFIER_PATH`` when the file exists (it enables ``not_footwear``), else None."""
    classifier = Path(settings.SNEAKERS_IMAGENET_CLASSIFIER_PATH)
    if classifier.is_file():
        return classifier
    logger.warning("no ImageNet classifier at %s: the not_footwear rule stays off", classifier)
    return None


def _training_config(*, seed: int | None, flip_augment: bool | None, finetune: bool | None) -> Any:
    """The ``worker.ml.training.TrainingConfig`` of a run, from the arguments and settings.

    ``SNEAKERS_TRAINING_SEED``, ``SNEAKERS_FINETUNE`` and ``SNEAKERS_MODEL_MIN_PHOTOS`` give the defaults;
    fine-tuning keeps its caches under ``SNEAKERS_CACHE_DIR/quality``.
    """
    from worker.ml.training import TrainingConfig

    options: dict[str, Any] = {}
    if flip_augment is not None:
        options["flip_augment"] = flip_augment
    return TrainingConfig(
        seed=settings.SNEAKERS_TRAINING_SEED if seed is None else seed,
        finetune=settings.SNEAKERS_FINETUNE if finetune is None else finetune,
        model_min_photos=settings.SNEAKERS_MODEL_MIN_PHOTOS,
        imagenet_classifier_path=_imagenet_classifier(),
        workdir=Path(settings.SNEAKERS_CACHE_DIR) / "quality",
        **options,
    )


def model_version_train(
    *,
    seed: int | None = None,
    flip_augment: bool | None = None,
    finetune: bool | None = None,
    activate_if_first: bool = True,
    progress: Callable[[int, int], None] | None = None,
    stage_progress: Callable[[str, int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> ModelVersion:
    """Train heads and a similarity index on the whole catalog and register a ``ModelVersion``.

    Split grouped by product (``catalog.selectors.TrainingRow.group``) and near-duplicate photos,
    embeddings cached under ``SNEAKERS_CACHE_DIR/embeddings`` per image hash and backbone, metrics on
    the test split; wild photos, negatives, the ImageNet classifier and fine-tuning (``finetune``,
    default ``SNEAKERS_FINETUNE``) as ``_training_data`` and ``_training_config`` describe. The artifact files (a
    fine-tuned ``backbone.keras`` included), ``split.json`` and the report plots are written through
    Django storage under ``models/<name>/``.
    The first version ever becomes active; later ones are ``candidate`` until staff activate them.

    ``stage_progress(stage, done, total)`` gets the stages of ``worker.ml.training.run.STAGES`` and then
    ``saving`` (files written of the artifact's); ``log`` gets the training's log lines (default: this
    module's logger). The version records the ``catalog_fingerprint`` of the rows it was trained on.

    Raises:
        ValueError: the catalog has fewer than two brands.
        ModelError: the backbone weights are missing or corrupt.
    """
    from worker.ml.embeddings import EmbeddingCache
    from worker.ml.training import TrainingSample, train_model

    rows = training_rows()
    # Listing titles (Product.name) of the photos that have a product, for the listing-text model (worker.ml.text).
    titles = dict(ProductImage.objects.filter(product__isnull=False).values_list("sha256", "product__name"))
    fingerprint = catalog_fingerprint(rows)
    if len({row.brand for row in rows}) < 2:
        raise ValueError("training needs catalog images of at least two brands; run `manage.py import_catalog` first")
    backbone = runtime.backbone_get(precision="f32")  # heads and catalog embeddings at float32 on any CPU
    cache = EmbeddingCache(Path(settings.SNEAKERS_CACHE_DIR) / "embeddings", backbone.cache_key)

    def loader(name: str) -> Callable[[], bytes]:
        def load() -> bytes:
            with default_storage.open(name, "rb") as handle:
                return handle.read()

        return load

    samples = [
        TrainingSample(
            sha256=row.sha256,
            brand=row.brand,
            group=row.group,
            price_usd=row.price_usd,
            product_id=row.product_id,
            load=loader(row.storage_name),
            model=row.model,
            style=row.style,
            title=titles.get(row.sha256),
        )
        for row in rows
    ]
    started = time.monotonic()
    # No background removal before embedding catalog photos: measured with benchmarks/bench_ml.py
    # (seed 42), removing it on the 329 non-plain catalog photos lowered test top-1 from 0.900 to
    # 0.893 and real-world top-1 on sneakers_wild from 0.638 to 0.603. Thresholds and validation see
    # photos through the pipeline's own background remover (test_remover).
    result = train_model(
        _training_data(catalog=samples),
        _training_config(seed=seed, flip_augment=flip_augment, finetune=finetune),
        backbone=backbone,
        cache=cache,
        test_remover=runtime.remover_get(),
        progress=progress,
        log=log or logger.info,
        stage_progress=stage_progress,
    )
    seconds = time.monotonic() - started
    report = stage_progress or (lambda stage, done, total: None)

    name = base = timezone.now().strftime("v%Y%m%d-%H%M%S")
    suffix = 1
    while ModelVersion.objects.filter(name=name).exists():  # two trainings finished within one second
        suffix += 1
        name = f"{base}-{suffix}"
    prefix = f"models/{name}"
    workdir = Path(tempfile.mkdtemp(prefix="sneakers-artifact-"))
    try:
        result.artifact.save(workdir)
        present = [file_name for file_name in ARTIFACT_FILES if (workdir / file_name).exists()]
        to_save = len(present) + 1 + len(result.report)
        report("saving", 0, to_save)
        for saved, file_name in enumerate(present, start=1):
            default_storage.save(f"{prefix}/{file_name}", ContentFile((workdir / file_name).read_bytes()))
            report("saving", saved, to_save)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    default_storage.save(f"{prefix}/split.json", ContentFile(json.dumps(result.split).encode()))
    for file_name, png in result.report.items():
        default_storage.save(f"{prefix}/report/{file_name}", ContentFile(png))
    report("saving", to_save, to_save)
    return model_version_create(
        name=name,
        artifact_prefix=prefix,
        backbone_fingerprint=backbone.fingerprint,
        classes=list(result.artifact.brand_head.classes),
        metrics=result.metrics,
        training_seconds=round(seconds, 1),
        activate_if_first=activate_if_first,
        catalog_fingerprint=fingerprint,
    )
