"""Glue between the registry's model cache and a photo: run the active pipeline, shape its result as JSON.

Used by ``predictions.services.prediction_run`` (the predict task) and ``manage.py predict``. Imports no
ML library at module level; ``registry.runtime`` loads TensorFlow and onnxruntime when a worker first
builds a pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from catalog.selectors import image_url, product_get_many
from registry import runtime
from registry.models import ModelVersion
from worker.ml.results import SimilarItem

SIMILAR_SHOWN = 5
"""Similar products in a result: one per product family (brand and name), best first."""
SIMILAR_CANDIDATES = 30
"""Neighbours asked of the similarity index per photo, so that ``SIMILAR_SHOWN`` distinct families remain after
``similar_payload`` drops repeats (173 brand-and-name pairs of the shared listings repeat across editions)."""


@dataclass(frozen=True)
class InferenceOutcome:
    """What one photo gave: the JSON-ready result (see ``result_payload``), the cut-out JPEG bytes the
    model looked at, the background method used (``u2netp``, ``grabcut``, ``skipped``, ...) and the photo's
    L2-normalised backbone embedding (``(D,) float32``; None when the pipeline gave none), which
    ``predictions`` passes to the receivers of ``prediction_finished`` (monitoring's drift figures), and the inputs
    the answer was made from: ``("image",)``, or with ``"title"`` / ``"description"`` when listing text was fused
    (``worker.ml.text``), and the largest cosine similarity of that embedding to a catalog image
    (``PipelineResult.nearest_similarity``; None when no search ran), passed on with the embedding."""

    payload: dict[str, Any]
    cutout_jpeg: bytes
    background: str
    embedding: np.ndarray | None = None
    inputs: tuple[str, ...] = ("image",)
    nearest_similarity: float | None = None


def inference_run(
    *, model_version: ModelVersion, data: bytes, title: str | None = None, description: str | None = None
) -> InferenceOutcome:
    """Run the version's pipeline (loaded once per process by ``registry.runtime``) on image bytes.

    ``title`` and ``description`` are the listing's optional text: with a text model in the artifact they are
    fused with the image's brand and model answers (``worker.ml.text``; the outcome's ``inputs`` says whether).

    Raises:
        ImageError: the bytes are not a usable photo (code ``image_*``).
        ModelError: the version's weights or artifact files are missing or corrupt.
    """
    pipeline = runtime.pipeline_get(model_version)
    with runtime.occupancy_get().held():  # busy while it runs: the host's other photos take fewer threads
        result = pipeline.predict(data, similar_k=SIMILAR_CANDIDATES, title=title, description=description)
    embedding = getattr(result, "embedding", None)
    return InferenceOutcome(
        payload=result_payload(result),
        cutout_jpeg=result.cutout_jpeg,
        background=result.background,
        embedding=np.asarray(embedding, dtype=np.float32).reshape(-1) if embedding is not None else None,
        inputs=tuple(getattr(result, "inputs", ("image",))),
        nearest_similarity=getattr(result, "nearest_similarity", None),
    )


def similar_payload(
    items: Sequence[SimilarItem], *, limit: int = SIMILAR_SHOWN, brand: str | None = None
) -> list[dict[str, Any]]:
    """Catalog details for similarity hits: ``[{"product_id", "name", "brand", "price_usd", "score", "image_url"}]``.

    One hit per product family: a hit whose (brand, name) already appeared above it (another edition of
    the same title, at another price) is dropped, so a title never repeats; at most ``limit`` hits. Hits
    whose product was deleted or unlisted since training are dropped. With ``brand`` (the slug the
    prediction answered), that brand's products come first and other brands only fill the places it
    leaves, so an "adidas" answer does not list a Nike shoe above an Adidas one; otherwise (and within each
    group) the index's order, most similar first, is kept.
    """
    products = product_get_many(ids=[item.product_id for item in items])
    found = [(item, products[item.product_id]) for item in items if item.product_id in products]
    if brand is not None:
        found.sort(key=lambda pair: pair[1].brand.slug != brand)  # stable: similarity order within each group
    payload = []
    families: set[tuple[int, str]] = set()
    for item, product in found:
        family = (product.brand_id, product.name.casefold())
        if family in families:
            continue
        families.add(family)
        payload.append(
            {
                "product_id": product.id,
                "name": product.name,
                "brand": product.brand.slug,
                "price_usd": float(product.price_usd) if product.price_usd is not None else None,
                "score": round(float(item.score), 4),
                "image_url": image_url(product.first_image),
            }
        )
        if len(payload) >= limit:
            break
    return payload


def result_payload(result: Any) -> dict[str, Any]:
    """The JSON-ready result of a ``worker.ml.pipeline.PipelineResult``.

    Keys: ``brand`` (top-1 slug, or None when the model abstains), ``brands`` (top-3
    ``{"name", "probability"}``, kept as guesses when abstaining), ``abstain`` (``{"reason":
    "not_footwear" | "unknown_brand" | "low_confidence", "score"}`` or None), ``model`` (the top named
    shoe model, or None when the model head is not sure, when the photo is refused, or when the artifact
    has no model head), ``models`` (top-k ``{"name", "brand", "probability"}``, kept as candidates when
    not sure), ``price_usd`` (``{"estimate", "low", "high"}`` in USD or None), ``similar`` (see
    ``similar_payload``: the answered brand's products first), ``timings_ms``. Shared by the task (stored on the
    prediction) and ``manage.py predict``.
    """
    brands = [{"name": score.brand, "probability": round(float(score.probability), 4)} for score in result.brands]
    price = None
    if result.price is not None:
        price = {key: round(float(getattr(result.price, key)), 2) for key in ("estimate", "low", "high")}
    abstain = None
    if result.abstain is not None:
        abstain = {"reason": result.abstain.reason, "score": round(float(result.abstain.score), 4)}
    models = [
        {"name": score.name, "brand": score.brand, "probability": round(float(score.probability), 4)}
        for score in result.models
    ]
    sure_of_model = models and abstain is None and not result.model_uncertain
    answered = brands[0]["name"] if brands and abstain is None else None
    return {
        "brand": answered,
        "brands": brands,
        "abstain": abstain,
        "model": models[0]["name"] if sure_of_model else None,
        "models": models,
        "price_usd": price,
        "similar": similar_payload(result.similar, brand=answered),
        "timings_ms": {key: round(float(value), 1) for key, value in result.timings_ms.items()},
    }
