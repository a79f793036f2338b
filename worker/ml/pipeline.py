"""One prediction: bytes -> brand top-k, price estimate, similar products, cut-out, timings.

Importing this module is cheap (no TensorFlow, onnxruntime or OpenCV): those are loaded by the
``Backbone`` and remover constructors. Build one ``Pipeline`` per worker process and model version
and reuse it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from worker.ml.artifact import ModelArtifact
from worker.ml.background import NoRemover, Remover, remove_background
from worker.ml.errors import ModelError
from worker.ml.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, encode_png, load_rgb
from worker.ml.results import BrandScore, PriceEstimate, SimilarItem

if TYPE_CHECKING:
    from worker.ml.backbone import Backbone


@dataclass(frozen=True)
class PipelineResult:
    """Everything one prediction produces.

    Attributes:
        brands: the ``top_k`` most probable brands (calibrated), most probable first.
        price: estimated list price in USD with range, or None when the model has no price head.
        similar: up to ``similar_k`` catalog products, most similar first.
        cutout_png: PNG bytes of the image the backbone looked at (shoe on white, cropped), before the
            square padding.
        background: how the background was handled: ``"u2netp"``, ``"grabcut"``, ``"none"``,
            ``"skipped"`` (plain background) or ``"<method>-rejected"`` (degenerate mask).
        timings_ms: wall-clock milliseconds per stage: ``decode``, ``background`` (including PNG
            encoding of the cut-out), ``embed`` (square pad + backbone), ``heads``, ``search``, ``total``.
    """

    brands: list[BrandScore]
    price: PriceEstimate | None
    similar: list[SimilarItem]
    cutout_png: bytes
    background: str
    timings_ms: dict[str, float]


class Pipeline:
    """The prediction pipeline for one trained artifact and backbone.

    Args:
        artifact: trained heads and index (``ModelArtifact.load``).
        backbone: the backbone the artifact was trained with.
        remover: background remover, or None for none (photos used as they are).
        skip_plain: skip background removal for photos on a plain light background (as in training).
        max_bytes: upload size limit in bytes for ``predict``.
        max_pixels: pixel-count limit for ``predict``.

    Raises:
        ModelError: the artifact's ``backbone_fingerprint`` differs from ``backbone.fingerprint``, or
            the embedding widths of artifact and backbone differ.
    """

    def __init__(
        self,
        artifact: ModelArtifact,
        backbone: Backbone,
        remover: Remover | None,
        *,
        skip_plain: bool = True,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        expected = artifact.metadata.get("backbone_fingerprint")
        if expected != backbone.fingerprint:
            raise ModelError(f"artifact was trained with backbone {expected!r}, not {backbone.fingerprint!r}")
        widths = {
            artifact.metadata.get("embedding_dim"),
            artifact.brand_head.dim,
            backbone.dim,
        }
        if artifact.price_head is not None:
            widths.add(artifact.price_head.dim)
        if len(artifact.index) > 0:
            widths.add(artifact.index.dim)
        if len(widths) != 1:
            raise ModelError(f"embedding widths of artifact and backbone disagree: {sorted(map(str, widths))}")
        self.artifact = artifact
        self.backbone = backbone
        self.remover: Remover = remover if remover is not None else NoRemover()
        self.skip_plain = skip_plain
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels

    def predict(self, data: bytes, *, top_k: int = 3, similar_k: int = 5) -> PipelineResult:
        """Predict from image file bytes (JPEG, PNG or WebP).

        Args:
            data: the uploaded file's bytes.
            top_k: number of brands returned.
            similar_k: number of similar products returned.

        Returns:
            ``PipelineResult``; ``timings_ms["decode"]`` covers validation and decoding.

        Raises:
            ImageError: the bytes are not an acceptable image (see ``load_rgb``).
        """
        started = time.perf_counter()
        rgb = load_rgb(data, max_bytes=self.max_bytes, max_pixels=self.max_pixels)
        decoded = time.perf_counter()
        result = self.predict_rgb(rgb, top_k=top_k, similar_k=similar_k)
        timings = dict(result.timings_ms)
        timings["decode"] = (decoded - started) * 1000.0
        timings["total"] = (time.perf_counter() - started) * 1000.0
        return PipelineResult(
            brands=result.brands,
            price=result.price,
            similar=result.similar,
            cutout_png=result.cutout_png,
            background=result.background,
            timings_ms=timings,
        )

    def predict_rgb(self, rgb: np.ndarray, *, top_k: int = 3, similar_k: int = 5) -> PipelineResult:
        """Predict from a decoded ``(H, W, 3) uint8`` RGB array (``timings_ms["decode"]`` is 0).

        Raises:
            ValueError: ``rgb`` is not ``(H, W, 3) uint8``, or ``top_k`` / ``similar_k`` < 1.
        """
        if top_k < 1 or similar_k < 1:
            raise ValueError("top_k and similar_k must be positive")
        marks = [time.perf_counter()]
        cutout = remove_background(rgb, self.remover, skip_plain=self.skip_plain)
        cutout_png = encode_png(cutout.image)
        marks.append(time.perf_counter())
        vector = self.backbone.embed(self.backbone.preprocess(cutout.image)[None])[0]
        marks.append(time.perf_counter())
        brands = self.artifact.brand_head.top_k(vector, k=top_k)
        price = self.artifact.price_head.predict(vector[None])[0] if self.artifact.price_head is not None else None
        marks.append(time.perf_counter())
        similar = self.artifact.index.search(vector, k=similar_k)
        marks.append(time.perf_counter())
        stages = ("background", "embed", "heads", "search")
        timings = {name: (marks[i + 1] - marks[i]) * 1000.0 for i, name in enumerate(stages)}
        timings["decode"] = 0.0
        timings["total"] = (marks[-1] - marks[0]) * 1000.0
        return PipelineResult(
            brands=brands,
            price=price,
            similar=similar,
            cutout_png=cutout_png,
            background=cutout.method,
            timings_ms=timings,
        )
