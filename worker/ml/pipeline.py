"""One prediction: bytes -> brand and model top-k, price estimate, similar products, cut-out, timings.

Importing this module is cheap (no TensorFlow, onnxruntime or OpenCV): those are loaded by the
``Backbone`` and remover constructors. Build one ``Pipeline`` per worker process and model version
and reuse it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from worker.ml.artifact import BACKBONE_FILE, ModelArtifact
from worker.ml.backbone import l2_normalise
from worker.ml.background import NoRemover, Remover
from worker.ml.errors import ModelError
from worker.ml.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, check_rgb, has_plain_background, load_rgb
from worker.ml.preprocessing import BackboneSpec, PreparedPhoto, prepare_photo
from worker.ml.results import Abstain, BrandScore, ModelScore, PriceEstimate, SimilarItem
from worker.ml.text import TextFusion, brand_scores, listing_text, model_scores, text_inputs

if TYPE_CHECKING:
    from worker.ml.backbone import Backbone

CUTOUT_MAX_SIDE: Final = 512
"""Longest side, in pixels, of the stored cut-out (the result page shows it small). Encoding a 1024 x 768
cut-out as PNG at zlib level 6 took 360 ms and 800 KB here; at 512 px and level 1, 38 ms and 270 KB (it is JPEG
now: ``CUTOUT_JPEG_QUALITY``)."""
CUTOUT_JPEG_QUALITY: Final = 90
"""libjpeg quality (Pillow's ``quality``, 1-95) of the stored cut-out. The cut-out is opaque (the shoe on white),
so JPEG loses nothing a shopper sees; on 20 ``sneakers_wild`` photos it took 1.6 ms and 20 KB a photo against PNG
level 1's 6.2 ms and 107 KB (README "Speed", sixth round)."""

BACKGROUND_RULES: Final = ("skip-plain", "always", "never")
"""Test-time background rules (artifact metadata ``background_rule``, chosen by ``train_model`` on
validation photos; ``skip-plain`` when absent): remove unless the photo has a plain light background,
always remove, never remove."""


@dataclass(frozen=True)
class PipelineResult:
    """Everything one prediction produces.

    Attributes:
        brands: the ``top_k`` most probable brands (calibrated), most probable first.
        price: estimated list price in USD with range, or None when the model has no price head.
        similar: up to ``similar_k`` catalog products, most similar first.
        cutout_jpeg: JPEG bytes of the image the backbone looked at (shoe on white, cropped), before the
            square padding, scaled down to ``CUTOUT_MAX_SIDE`` px at most (``encode_cutout``).
        background: how the background was handled: ``"u2netp"``, ``"grabcut"``, ``"none"``,
            ``"skipped"`` (plain background), ``"skipped-confident"`` (the confidence cascade answered from
            the photo as it is) or ``"<method>-rejected"`` (degenerate mask).
        timings_ms: wall-clock milliseconds per stage: ``decode``, ``background`` (``prepare_photo``:
            background rule and square pad, plus JPEG encoding of the cut-out), ``embed`` (backbone),
            ``heads`` (brand, model, price heads and abstain rules), ``search``, ``total``.
        abstain: why no brand should be named (``not_footwear``: the ImageNet footwear probability is
            below the artifact's ``abstain.footwear_threshold``; ``unknown_brand``: the open-set score
            of the artifact's ``unknown_brand`` rule is below its threshold, a shoe of a brand the
            catalog lacks; ``low_confidence``: the calibrated top-1 probability is below
            ``abstain.confidence_threshold``), or None. ``brands`` and ``models`` keep the guesses
            either way; for ``not_footwear`` ``price`` is None and ``similar`` empty.
        models: the ``top_k`` most probable named models (calibrated), most probable first; empty
            when the artifact has no model head.
        model_uncertain: True when the model answer should not be trusted: the top model's
            probability is below the model head's threshold, its brand is not the top brand, or
            the photo abstained; False when ``models`` is empty.
        embedding: the photo's L2-normalised backbone embedding, ``(D,) float32``.
        inputs: what the answer was made from: ``("image",)``, or with ``"title"`` and/or ``"description"``
            when listing text was given and used (``worker.ml.text``: brand and model probabilities fused).
        nearest_similarity: the largest cosine similarity between the embedding and any catalog image of the
            index (the first similar item's score: the search scores every image), or None when no search ran
            (``not_footwear``, an empty index). Monitoring's novelty is 1 minus it (``monitoring.drift``), so
            the catalog is not scanned a second time per photo.
    """

    brands: list[BrandScore]
    price: PriceEstimate | None
    similar: list[SimilarItem]
    cutout_jpeg: bytes
    background: str
    timings_ms: dict[str, float]
    abstain: Abstain | None = None
    models: list[ModelScore] = field(default_factory=list)
    model_uncertain: bool = False
    embedding: np.ndarray | None = None
    inputs: tuple[str, ...] = ("image",)
    nearest_similarity: float | None = None


class Pipeline:
    """The prediction pipeline for one trained artifact and backbone.

    Args:
        artifact: trained heads and index (``ModelArtifact.load``).
        backbone: the backbone the artifact was trained with.
        remover: background remover, or None for none (photos used as they are).
        skip_plain: skip background removal for photos on a plain light background; None: follow the
            background rule (``never`` also drops the remover).
        background_rule: one of ``BACKGROUND_RULES`` to apply instead of the artifact's ``background_rule``
            (which training chose on validation photos); None: the artifact's. E.g. ``skip-plain`` for a shop
            whose uploads are mostly catalogue shots, where ``always`` costs a U^2-Net-p run each.
        max_bytes: upload size limit in bytes for ``predict``.
        max_pixels: pixel-count limit for ``predict``.
        skip_removal_above: a confidence cascade for photos without a plain background: first embed the
            photo as it is (one backbone pass, about 35 ms) and, when the brand head's calibrated top-1
            probability is at least this and no abstain rule fires, answer from that (background method
            ``"skipped-confident"``, no cut-out); otherwise remove the background as usual and embed
            again. None (the default): always remove. A confidence-gated early exit (cascade of a cheap and
            an expensive stage; e.g. Teerapittayanon et al., "BranchyNet", ICPR 2016). Measured on the 385
            ``sneakers_wild`` photos with the nine-brand head-only model (``benchmarks/bench_speed.py``
            section ``background``; README "Speed"): at 0.95, U^2-Net-p ran on 26 % fewer real-world photos
            and 31 % fewer product shots on busy backgrounds with the same brand top-1.

    Abstain rules, in this order (thresholds from ``artifact.metadata["abstain"]``): ``not_footwear``
    when the artifact has a footwear detector, the metadata a ``footwear_threshold``, and the
    detector's score of the photo's original ImageNet features (``Backbone.embed_raw`` aux output) is
    below it; ``unknown_brand`` when the artifact has an ``unknown_brand`` rule and its open-set score
    of the embedding and brand logits is below the rule's threshold; otherwise ``low_confidence``
    when the calibrated top-1 probability is below ``confidence_threshold`` (0 when absent: never).

    Raises:
        ModelError: the artifact's backbone fingerprint (``finetuned_backbone_fingerprint`` if set,
            else ``backbone_fingerprint``) differs from ``backbone.fingerprint``, or the embedding
            widths of artifact and backbone (or detector and aux output) differ.
    """

    def __init__(
        self,
        artifact: ModelArtifact,
        backbone: Backbone,
        remover: Remover | None,
        *,
        skip_plain: bool | None = True,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        skip_removal_above: float | None = None,
        background_rule: str | None = None,
    ) -> None:
        if skip_removal_above is not None and not 0.0 < skip_removal_above <= 1.0:
            raise ValueError(f"skip_removal_above must be in (0, 1], got {skip_removal_above}")
        expected = artifact.metadata.get("finetuned_backbone_fingerprint") or artifact.metadata.get(
            "backbone_fingerprint"
        )
        if expected != backbone.fingerprint:
            raise ModelError(f"artifact was trained with backbone {expected!r}, not {backbone.fingerprint!r}")
        widths = {
            artifact.metadata.get("embedding_dim"),
            artifact.brand_head.dim,
            backbone.dim,
        }
        for head in (artifact.price_head, artifact.model_head):
            if head is not None:
                widths.add(head.dim)
        if len(artifact.index) > 0:
            widths.add(artifact.index.dim)
        if len(widths) != 1:
            raise ModelError(f"embedding widths of artifact and backbone disagree: {sorted(map(str, widths))}")
        if artifact.footwear is not None and artifact.footwear.dim != backbone.aux_dim:
            raise ModelError(
                f"footwear detector reads {artifact.footwear.dim}-d features, backbone gives {backbone.aux_dim}"
            )
        if background_rule is not None and background_rule not in BACKGROUND_RULES:
            raise ValueError(f"unknown background rule {background_rule!r}; expected one of {BACKGROUND_RULES}")
        rule = str(artifact.metadata.get("background_rule", "skip-plain"))
        if rule not in BACKGROUND_RULES:
            raise ModelError(f"unknown background rule {rule!r} in artifact metadata")
        rule = background_rule or rule
        if skip_plain is None:
            skip_plain = rule == "skip-plain"
            if rule == "never":
                remover = None
        self.background_rule = rule
        thresholds = artifact.metadata.get("abstain") or {}
        footwear_threshold = thresholds.get("footwear_threshold")
        self.footwear_threshold: float | None = (
            float(footwear_threshold) if footwear_threshold is not None and artifact.footwear is not None else None
        )
        self.confidence_threshold = float(thresholds.get("confidence_threshold") or 0.0)
        self.artifact = artifact
        self.backbone = backbone
        self.remover: Remover = remover if remover is not None else NoRemover()
        self.skip_plain = skip_plain
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.skip_removal_above = skip_removal_above

    def predict(
        self,
        data: bytes,
        *,
        top_k: int = 3,
        similar_k: int = 5,
        title: str | None = None,
        description: str | None = None,
    ) -> PipelineResult:
        """Predict from image file bytes (JPEG, PNG or WebP).

        Args:
            data: the uploaded file's bytes.
            top_k: number of brands returned.
            similar_k: number of similar products returned.
            title, description: optional listing text, fused with the image's brand and model answers when the
                artifact has a text model (see ``predict_rgb``).

        Returns:
            ``PipelineResult``; ``timings_ms["decode"]`` covers validation and decoding.

        Raises:
            ImageError: the bytes are not an acceptable image (see ``load_rgb``).
        """
        started = time.perf_counter()
        rgb = load_rgb(data, max_bytes=self.max_bytes, max_pixels=self.max_pixels)
        decoded = time.perf_counter()
        result = self.predict_rgb(rgb, top_k=top_k, similar_k=similar_k, title=title, description=description)
        timings = dict(result.timings_ms)
        timings["decode"] = (decoded - started) * 1000.0
        timings["total"] = (time.perf_counter() - started) * 1000.0
        return replace(result, timings_ms=timings)

    def predict_rgb(
        self,
        rgb: np.ndarray,
        *,
        top_k: int = 3,
        similar_k: int = 5,
        title: str | None = None,
        description: str | None = None,
    ) -> PipelineResult:
        """Predict from a decoded ``(H, W, 3) uint8`` RGB array (``timings_ms["decode"]`` is 0).

        Listing text (``title``, ``description``): with an artifact text model (``worker.ml.text.TextModel``) the
        brand and model probabilities are fused with the text's evidence when the text is used; the abstain rules
        ``not_footwear`` and ``unknown_brand`` read the image alone, ``low_confidence`` the fused top-1. No text, or
        text that names nothing (``inputs == ("image",)``): the image's answer, unchanged.

        Raises:
            ValueError: ``rgb`` is not ``(H, W, 3) uint8``, or ``top_k`` / ``similar_k`` < 1.
        """
        if top_k < 1 or similar_k < 1:
            raise ValueError("top_k and similar_k must be positive")
        marks = [time.perf_counter()]
        prepared, embedded = self._prepare(rgb)
        cutout = prepared.cutout
        cutout_jpeg = encode_cutout(cutout.image)
        marks.append(time.perf_counter())
        raw, original = embedded if embedded is not None else self.backbone.embed_raw(prepared.square[None])
        vector = l2_normalise(raw)[0]
        marks.append(time.perf_counter())
        brands = self.artifact.brand_head.top_k(vector, k=top_k)
        fusion = self._fuse_text(vector, listing_text(title, description))
        if fusion is not None:
            brands = brand_scores(self.artifact.brand_head.classes, fusion.brand_proba, top_k)
        abstain = self._abstain(original, vector, brands)
        models: list[ModelScore] = []
        model_uncertain = False
        if self.artifact.model_head is not None:
            models = self.artifact.model_head.top_k(vector, k=top_k)
            if fusion is not None and fusion.model_proba is not None:
                head = self.artifact.model_head
                models = model_scores(head.classes, head.brands, fusion.model_proba, top_k)
            model_uncertain = (
                abstain is not None
                or models[0].probability < self.artifact.model_head.threshold
                or models[0].brand != brands[0].brand
            )
        price = None
        if self.artifact.price_head is not None and (abstain is None or abstain.reason != "not_footwear"):
            price = self.artifact.price_head.predict(vector[None])[0]
        marks.append(time.perf_counter())
        similar = (
            []
            if abstain is not None and abstain.reason == "not_footwear"
            else self.artifact.index.search(vector, k=similar_k)
        )
        marks.append(time.perf_counter())
        stages = ("background", "embed", "heads", "search")
        timings = {name: (marks[i + 1] - marks[i]) * 1000.0 for i, name in enumerate(stages)}
        timings["decode"] = 0.0
        timings["total"] = (marks[-1] - marks[0]) * 1000.0
        return PipelineResult(
            brands=brands,
            price=price,
            similar=similar,
            cutout_jpeg=cutout_jpeg,
            background=cutout.method,
            timings_ms=timings,
            abstain=abstain,
            models=models,
            model_uncertain=model_uncertain,
            embedding=np.asarray(vector, dtype=np.float32),
            inputs=text_inputs(title, description) if fusion is not None else ("image",),
            nearest_similarity=similar[0].score if similar else None,
        )

    def _prepare(self, rgb: np.ndarray) -> tuple[PreparedPhoto, tuple[np.ndarray, np.ndarray] | None]:
        """The backbone input of a photo, and its ``embed_raw`` outputs when the confidence cascade
        (``skip_removal_above``) already computed them (their time then counts in ``background``)."""
        spec = self.backbone.spec
        threshold = self.skip_removal_above
        if threshold is None or isinstance(self.remover, NoRemover) or (self.skip_plain and has_plain_background(rgb)):
            return prepare_photo(rgb, spec, remover=self.remover, skip_plain=self.skip_plain), None
        first = prepare_photo(rgb, spec, remover=None)
        raw, original = self.backbone.embed_raw(first.square[None])
        vector = l2_normalise(raw)[0]
        top = self.artifact.brand_head.top_k(vector, k=1)
        if top[0].probability >= threshold and self._abstain(original, vector, top) is None:
            return replace(first, cutout=replace(first.cutout, method="skipped-confident")), (raw, original)
        return prepare_photo(rgb, spec, remover=self.remover, skip_plain=False), None

    def _fuse_text(self, vector: np.ndarray, text: str) -> TextFusion | None:
        """The brand (and model) probabilities of the ``(D,)`` embedding fused with listing ``text``, or None when
        there is no text model or text, or the text names nothing the text model knows."""
        text_model = self.artifact.text_model
        if text_model is None or not text:
            return None
        model_head = self.artifact.model_head
        fusion = text_model.fuse(
            text,
            self.artifact.brand_head.classes,
            self.artifact.brand_head.predict_proba(vector[None])[0],
            model_head.classes if model_head is not None else (),
            model_head.predict_proba(vector[None])[0] if model_head is not None else None,
        )
        return fusion if fusion.used else None

    def _abstain(self, original: np.ndarray, vector: np.ndarray, brands: list[BrandScore]) -> Abstain | None:
        """Apply the artifact's abstain rules to ``(1, D0)`` original features, the ``(D,)`` embedding
        and the top-k brands.

        Thresholds come from ``metadata["abstain"]`` (``footwear_threshold``,
        ``confidence_threshold``; missing means 0, i.e. never abstain), chosen on validation data by
        ``worker.ml.abstain``. The footwear rule needs the artifact's ``FootwearDetector``; the
        ``unknown_brand`` rule its ``UnknownBrandRule`` (``worker.ml.unknown_brand``).
        """
        thresholds = self.artifact.metadata.get("abstain") or {}
        footwear_threshold = float(thresholds.get("footwear_threshold") or 0.0)
        if self.artifact.footwear is not None and footwear_threshold > 0.0:
            score = float(self.artifact.footwear.score(original)[0])
            if score < footwear_threshold:
                return Abstain(reason="not_footwear", score=score)
        rule = self.artifact.unknown_brand
        if rule is not None:
            logits = self.artifact.brand_head.logits(vector[None])
            known = float(rule.scores(vector[None], logits)[0])
            if known < rule.threshold:
                return Abstain(reason="unknown_brand", score=known)
        confidence = brands[0].probability if brands else 0.0
        if confidence < float(thresholds.get("confidence_threshold") or 0.0):
            return Abstain(reason="low_confidence", score=float(confidence))
        return None


def encode_cutout(rgb: np.ndarray, *, max_side: int = CUTOUT_MAX_SIDE) -> bytes:
    """JPEG bytes of a cut-out for display: scaled so its longest side is at most ``max_side`` px (Pillow's
    ``thumbnail``, Lanczos-windowed reduction), at ``CUTOUT_JPEG_QUALITY``.

    Args:
        rgb: ``(H, W, 3) uint8`` RGB.
        max_side: longest side of the result, in pixels.

    Raises:
        ValueError: bad array shape or dtype.
    """
    import io

    from PIL import Image

    check_rgb(rgb)
    image = Image.fromarray(rgb)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=CUTOUT_JPEG_QUALITY)
    return buffer.getvalue()


def load_pipeline(
    artifact_dir: Path,
    *,
    backbone: Backbone | None = None,
    backbone_path: Path | None = None,
    remover: Remover | None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    skip_removal_above: float | None = None,
    serve: Callable[[Backbone], object] | None = None,
    background_rule: str | None = None,
) -> Pipeline:
    """A ``Pipeline`` from an artifact folder (``skip_removal_above``: ``Pipeline``'s confidence cascade;
    ``background_rule``: ``Pipeline``'s override of the artifact's rule).

    ``serve`` is called with each backbone this function loads itself (a fine-tuned artifact's own, or one
    set up anew), e.g. to run it on OpenVINO (``Backbone.serve_with``); a ``backbone`` given is used as it is.

    The backbone is the artifact's own ``backbone.keras`` when present (variant ``fine-tuned``);
    otherwise ``backbone`` (already loaded) or, failing that, ``Backbone(backbone_path)``, set up as the
    artifact's ``BackboneSpec`` says (``BackboneSpec.from_metadata``: older artifacts at 224 px without
    taps, or 320 px with taps; a loaded backbone set up otherwise is reloaded from its file with it).
    The background rule (unless ``background_rule`` is given), footwear detector, model head, open-set rule and
    thresholds come from the artifact.

    Raises:
        ModelError: artifact or backbone files missing or corrupt, or trained with another backbone.
        ValueError: neither ``backbone`` nor ``backbone_path`` given for a head-only artifact, or an unknown
            ``background_rule``.
    """
    from worker.ml.backbone import Backbone as _Backbone

    folder = Path(artifact_dir)
    artifact = ModelArtifact.load(folder)
    # Every age of artifact: the recorded spec, or 320 px with taps, or 224 px without (no keys).
    spec = BackboneSpec.from_metadata(artifact.metadata)
    if artifact.metadata.get("finetuned_backbone_fingerprint"):
        if not (folder / BACKBONE_FILE).is_file():
            raise ModelError(f"{folder}: fine-tuned artifact without {BACKBONE_FILE}")
        backbone = _Backbone.from_spec(folder / BACKBONE_FILE, spec)
        if serve is not None:
            serve(backbone)
    elif backbone is None or _set_up(backbone.spec) != _set_up(spec):
        path = backbone.path if backbone is not None else backbone_path
        if path is None:
            raise ValueError("give backbone or backbone_path")
        backbone = _Backbone.from_spec(path, spec)
        if serve is not None:
            serve(backbone)
    return Pipeline(
        artifact,
        backbone,
        remover,
        skip_plain=None,
        max_bytes=max_bytes,
        max_pixels=max_pixels,
        skip_removal_above=skip_removal_above,
        background_rule=background_rule,
    )


def _set_up(spec: BackboneSpec) -> tuple[object, ...]:
    """What must match between a loaded backbone and an artifact's spec (not the weights fingerprint,
    which ``Pipeline`` checks through the whole fingerprint)."""
    return (spec.input_size, spec.taps, spec.offset, spec.scale, spec.fill)
