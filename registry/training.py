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
from catalog.selectors import training_rows
from registry import runtime
from registry.models import ModelVersion
from registry.services import model_version_create
from worker.ml.artifact import ARTIFACT_FILES

logger = logging.getLogger(__name__)


def _quality_options(*, finetune: bool) -> dict[str, Any]:
    """``train_model`` arguments beyond the catalog, from settings; parts whose files are absent are left out.

    - ``SNEAKERS_WILD_DIR``: real-world and off-catalogue photos (``manifest.csv``; styles from
      ``extras/provenance.csv`` ``eyeballed_style``), split by ``train_model`` into training,
      validation and a held-out part reported on its own.
    - ``SNEAKERS_IMAGENET_CLASSIFIER_PATH``: enables the ``not_footwear`` rule; the photos of
      ``SNEAKERS_NEGATIVES_DIR/manifest.csv`` tune and report it.
    - the pipeline's own background remover (``test_remover``), so thresholds and validation see
      photos as the prediction pipeline prepares them; fine-tuning (``finetune``) with its caches
      under ``SNEAKERS_CACHE_DIR/quality``.
    """
    from worker.ml.training import TrainingSample

    options: dict[str, Any] = {"finetune": finetune, "workdir": Path(settings.SNEAKERS_CACHE_DIR) / "quality"}
    options["test_remover"] = runtime.remover_get()
    wild_rows = manifest_rows(Path(settings.SNEAKERS_WILD_DIR))
    if wild_rows:
        styles = provenance_styles(Path(settings.SNEAKERS_WILD_DIR))
        options["wild"] = [
            TrainingSample(
                sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                brand=row["brand"],
                group=f"wild/{row['image_path']}",
                price_usd=None,
                product_id=None,
                load=lambda path=path: path.read_bytes(),
            )
            for row, path in wild_rows
            if row.get("brand")
        ]
        options["wild_styles"] = [styles.get(row["image_path"], "") for row, _ in wild_rows if row.get("brand")]
    classifier = Path(settings.SNEAKERS_IMAGENET_CLASSIFIER_PATH)
    if classifier.is_file():
        options["imagenet_classifier_path"] = classifier
        negative_rows = manifest_rows(Path(settings.SNEAKERS_NEGATIVES_DIR))
        options["negatives"] = [lambda path=path: path.read_bytes() for _, path in negative_rows]
        options["negative_categories"] = [row.get("category") or "" for row, _ in negative_rows]
    else:
        logger.warning("no ImageNet classifier at %s: the not_footwear rule stays off", classifier)
    return options


def model_version_train(
    *,
    seed: int | None = None,
    flip_augment: bool | None = None,
    finetune: bool | None = None,
    activate_if_first: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> ModelVersion:
    """Train heads and a similarity index on the whole catalog and register a ``ModelVersion``.

    Split grouped by product (``catalog.selectors.TrainingRow.group``) and near-duplicate photos,
    embeddings cached under ``SNEAKERS_CACHE_DIR/embeddings`` per image hash and backbone, metrics on
    the test split; wild photos, negatives, the ImageNet classifier and fine-tuning (``finetune``,
    default ``SNEAKERS_FINETUNE``) as ``_quality_options`` describes. The artifact files (a
    fine-tuned ``backbone.keras`` included), ``split.json`` and the report plots are written through
    Django storage under ``models/<name>/``.
    The first version ever becomes active; later ones are ``candidate`` until staff activate them.

    Raises:
        ValueError: the catalog has fewer than two brands.
        ModelError: the backbone weights are missing or corrupt.
    """
    from worker.ml.embeddings import EmbeddingCache
    from worker.ml.training import TrainingConfig, TrainingData, TrainingSample, train_model

    rows = training_rows()
    if len({row.brand for row in rows}) < 2:
        raise ValueError("training needs catalog images of at least two brands; run `manage.py import_catalog` first")
    backbone = runtime.backbone_get()
    cache = EmbeddingCache(Path(settings.SNEAKERS_CACHE_DIR) / "embeddings", backbone.fingerprint)

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
        )
        for row in rows
    ]
    started = time.monotonic()
    options: dict[str, Any] = {"seed": settings.SNEAKERS_TRAINING_SEED if seed is None else seed}
    options.update(_quality_options(finetune=settings.SNEAKERS_FINETUNE if finetune is None else finetune))
    if flip_augment is not None:
        options["flip_augment"] = flip_augment
    # No background removal before embedding catalog photos: measured with benchmarks/bench_ml.py
    # (seed 42), removing it on the 329 non-plain catalog photos lowered test top-1 from 0.900 to
    # 0.893 and real-world top-1 on sneakers_wild from 0.638 to 0.603.
    data_keys = ("wild", "wild_styles", "negatives", "negative_categories")
    data = TrainingData(catalog=samples, **{key: options.pop(key) for key in data_keys if key in options})
    test_remover = options.pop("test_remover", None)
    result = train_model(
        data,
        TrainingConfig(**options),
        backbone=backbone,
        cache=cache,
        test_remover=test_remover,
        progress=progress,
        log=logger.info,
    )
    seconds = time.monotonic() - started

    name = timezone.now().strftime("v%Y%m%d-%H%M%S")
    prefix = f"models/{name}"
    workdir = Path(tempfile.mkdtemp(prefix="sneakers-artifact-"))
    try:
        result.artifact.save(workdir)
        for file_name in ARTIFACT_FILES:
            if (workdir / file_name).exists():
                default_storage.save(f"{prefix}/{file_name}", ContentFile((workdir / file_name).read_bytes()))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    default_storage.save(f"{prefix}/split.json", ContentFile(json.dumps(result.split).encode()))
    for file_name, png in result.report.items():
        default_storage.save(f"{prefix}/report/{file_name}", ContentFile(png))
    return model_version_create(
        name=name,
        artifact_prefix=prefix,
        backbone_fingerprint=backbone.fingerprint,
        classes=list(result.artifact.brand_head.classes),
        metrics=result.metrics,
        training_seconds=round(seconds, 1),
        activate_if_first=activate_if_first,
    )
