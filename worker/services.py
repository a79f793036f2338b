"""Glue between Django rows and ``worker.ml`` values: run one prediction, train a model version.

Imported by Celery tasks and management commands only (never by the web process): building a
pipeline or training loads TensorFlow.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from catalog.selectors import product_get_many, training_rows
from predictions.models import ModelVersion
from predictions.selectors import model_version_get_active
from predictions.services import (
    model_version_create,
    prediction_claim,
    prediction_mark_failed,
    prediction_mark_succeeded,
)
from worker import runtime
from worker.ml.artifact import ARTIFACT_FILES
from worker.ml.errors import ImageError, ModelError
from worker.ml.results import SimilarItem

logger = logging.getLogger(__name__)


def similar_payload(items: Sequence[SimilarItem]) -> list[dict[str, Any]]:
    """Catalog details for similarity hits: ``[{"product_id", "name", "brand", "price_usd", "score", "image_url"}]``.

    Hits whose product was deleted or unlisted since training are dropped; order is kept.
    """
    products = product_get_many(ids=[item.product_id for item in items])
    payload = []
    for item in items:
        product = products.get(item.product_id)
        if product is None:
            continue
        images = list(product.images.all())
        payload.append(
            {
                "product_id": product.id,
                "name": product.name,
                "brand": product.brand.slug,
                "price_usd": float(product.price_usd) if product.price_usd is not None else None,
                "score": round(float(item.score), 4),
                "image_url": images[0].image.url if images else None,
            }
        )
    return payload


def result_payload(result: Any) -> dict[str, Any]:
    """The JSON-ready result of a ``worker.ml.pipeline.PipelineResult``.

    Keys: ``brand`` (top-1 slug, or None when the model abstains), ``brands`` (top-3
    ``{"name", "probability"}``, kept as guesses when abstaining), ``abstain`` (``{"reason":
    "not_footwear" | "low_confidence", "score"}`` or None), ``price_usd`` (``{"estimate", "low",
    "high"}`` in USD or None), ``similar`` (see ``similar_payload``), ``timings_ms``. Shared by the
    task (stored on the prediction) and ``manage.py predict``.
    """
    brands = [{"name": score.brand, "probability": round(float(score.probability), 4)} for score in result.brands]
    price = None
    if result.price is not None:
        price = {key: round(float(getattr(result.price, key)), 2) for key in ("estimate", "low", "high")}
    abstain = None
    if result.abstain is not None:
        abstain = {"reason": result.abstain.reason, "score": round(float(result.abstain.score), 4)}
    return {
        "brand": brands[0]["name"] if brands and abstain is None else None,
        "brands": brands,
        "abstain": abstain,
        "price_usd": price,
        "similar": similar_payload(result.similar),
        "timings_ms": {key: round(float(value), 1) for key, value in result.timings_ms.items()},
    }


def prediction_run(*, prediction_id: str) -> None:
    """Claim a queued prediction, run the active model's pipeline on its photo, store the outcome.

    Permanent problems end the job ``failed`` with a code, once: ``image_*`` (bad photo),
    ``model_unavailable`` (no active version, or weights/artifact missing or corrupt),
    ``upload_missing`` (the stored file is gone). Transient errors (database, storage I/O) propagate
    so the Celery task retries; the caller puts the row back to ``queued`` first.
    """
    prediction = prediction_claim(prediction_id=prediction_id)
    if prediction is None:
        logger.info("prediction %s is not queued (done, or another worker has it)", prediction_id)
        return
    model_version = model_version_get_active()
    if model_version is None:
        prediction_mark_failed(
            prediction_id=prediction_id,
            code="model_unavailable",
            message="No model is active yet. Staff: run `manage.py train`.",
        )
        return
    try:
        with prediction.image.open("rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        prediction_mark_failed(
            prediction_id=prediction_id, code="upload_missing", message="The uploaded file is missing."
        )
        return
    try:
        pipeline = runtime.pipeline_get(model_version)
        result = pipeline.predict(data)
    except ImageError as exc:
        prediction_mark_failed(prediction_id=prediction_id, code=exc.code, message=exc.message)
        return
    except ModelError as exc:
        logger.error("model version %s unavailable: %s", model_version.name, exc)
        prediction_mark_failed(prediction_id=prediction_id, code="model_unavailable", message=str(exc))
        return
    payload = result_payload(result)
    prediction_mark_succeeded(
        prediction=prediction,
        model_version=model_version,
        brands=payload["brands"],
        price=payload["price_usd"],
        similar=payload["similar"],
        cutout_png=result.cutout_png,
        background_method=result.background,
        timings_ms=payload["timings_ms"],
        abstain=payload["abstain"],
    )


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
    wild_rows = _manifest_rows(Path(settings.SNEAKERS_WILD_DIR))
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
        negative_rows = _manifest_rows(Path(settings.SNEAKERS_NEGATIVES_DIR))
        options["negatives"] = [lambda path=path: path.read_bytes() for _, path in negative_rows]
        options["negative_categories"] = [row.get("category") or "" for row, _ in negative_rows]
    else:
        logger.warning("no ImageNet classifier at %s: the not_footwear rule stays off", classifier)
    return options


def _manifest_rows(directory: Path) -> list[tuple[dict[str, str], Path]]:
    """``(row, image path)`` of ``directory/manifest.csv`` whose image exists; [] without a manifest."""
    manifest = directory / "manifest.csv"
    if not manifest.is_file():
        return []
    with manifest.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("image_path")]
    return [(row, directory / row["image_path"]) for row in rows if (directory / row["image_path"]).is_file()]


def provenance_styles(directory: Path) -> dict[str, str]:
    """``image_path -> eyeballed_style`` from ``directory/extras/provenance.csv`` ({} when absent).

    The style (``real-world`` / ``product-shot``) of the shared wild photos; used by training and by
    ``manage.py evaluate`` for per-style figures.
    """
    provenance = directory / "extras" / "provenance.csv"
    if not provenance.is_file():
        return {}
    with provenance.open(newline="", encoding="utf-8") as handle:
        return {row["image_path"]: row.get("eyeballed_style") or "" for row in csv.DictReader(handle)}


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
    from worker.ml.training import TrainingSample, train_model

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
    result = train_model(samples, backbone=backbone, cache=cache, progress=progress, log=logger.info, **options)
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
