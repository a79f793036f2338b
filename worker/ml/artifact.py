"""A trained model version on disk: brand and model heads, price head, similarity index, metadata.

Layout of an artifact directory (``ARTIFACT_FILES``)::

    brand_head.npz   BrandHead.to_arrays()
    model_head.npz   ModelHead.to_arrays()      (absent when too few named models had enough photos)
    price_head.npz   PriceHead.to_arrays()      (absent when no prices were available)
    index.npz        the similarity index (kind ``numpy``, ``NumpyIndex.save``; other kinds write their own)
    footwear.npz     FootwearDetector.to_arrays()  (absent when training had no ImageNet classifier)
    open_set.npz     UnknownBrandRule.to_arrays()  (absent: no ``unknown_brand`` rule)
    text_model.npz   TextModel.to_arrays()         (absent: no listing-text model, e.g. no titled photos)
    backbone.keras   fine-tuned backbone            (only for variant "fine-tuned")
    metadata.json    classes, backbone spec and fingerprint, embedding dim, seed, created time,
                     preprocessing, abstain thresholds, per-brand price baseline, similarity index kind

Files are NumPy ``.npz`` archives read with ``allow_pickle=False`` (no code execution on load) and a
UTF-8 JSON file. The original backbone is not copied: its fingerprint (``backbone_fingerprint``)
names it. A fine-tuned backbone is part of the artifact (``backbone.keras``, fingerprint in
``finetuned_backbone_fingerprint``); it is a Keras 3 file of standard layers (no custom code).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from worker.ml.abstain import FootwearDetector
from worker.ml.errors import ModelError
from worker.ml.heads import BrandHead, ModelHead, PriceHead
from worker.ml.similarity import INDEX_FILE, SimilarityIndex, index_class
from worker.ml.text import TextModel
from worker.ml.unknown_brand import UnknownBrandRule

BRAND_HEAD_FILE: Final = "brand_head.npz"
PRICE_HEAD_FILE: Final = "price_head.npz"
MODEL_HEAD_FILE: Final = "model_head.npz"
OPEN_SET_FILE: Final = "open_set.npz"
METADATA_FILE: Final = "metadata.json"
FOOTWEAR_FILE: Final = "footwear.npz"
BACKBONE_FILE: Final = "backbone.keras"
TEXT_MODEL_FILE: Final = "text_model.npz"
ARTIFACT_FILES: Final = (
    BRAND_HEAD_FILE,
    MODEL_HEAD_FILE,
    PRICE_HEAD_FILE,
    INDEX_FILE,
    METADATA_FILE,
    FOOTWEAR_FILE,
    OPEN_SET_FILE,
    BACKBONE_FILE,
    TEXT_MODEL_FILE,
)
"""Every file an artifact may have; the optional ones are in ``OPTIONAL_ARTIFACT_FILES``. Report PNGs
are not artifact files."""
OPTIONAL_ARTIFACT_FILES: Final = (
    MODEL_HEAD_FILE,
    PRICE_HEAD_FILE,
    FOOTWEAR_FILE,
    OPEN_SET_FILE,
    BACKBONE_FILE,
    TEXT_MODEL_FILE,
)
"""Files that may be absent from a valid artifact."""


@dataclass(frozen=True, eq=False)
class ModelArtifact:
    """What training produces and prediction needs, besides the backbone.

    Attributes:
        brand_head: the calibrated brand classifier.
        price_head: the price regressor, or None when training had no prices.
        index: catalog image embeddings and product ids for similarity search (a ``SimilarityIndex``
            of the kind named by metadata ``similarity_index``, ``"numpy"`` when absent).
        footwear: the ImageNet footwear detector of the ``not_footwear`` abstain rule, or None.
        metadata: JSON-serialisable dict; keys written by ``train_model``: ``classes``, ``backbone``
            (``BackboneSpec.to_metadata()``: ``input_size``, ``offset``, ``scale``, ``taps``,
            ``weights_fingerprint``, ``fill``; older artifacts have ``backbone_input_size`` /
            ``backbone_taps`` or neither, read by ``BackboneSpec.from_metadata``), ``backbone_fingerprint``,
            ``backbone_input_size``, ``backbone_taps``, ``embedding_dim``, ``created_at`` (ISO 8601 UTC),
            ``seed``, ``preprocessing``, ``background``, ``background_rule`` (``"skip-plain"`` |
            ``"always"`` | ``"never"``), ``flip_augment``, ``class_weight``, ``brand_C``, ``temperature``,
            ``price_alpha``, ``price_baseline`` (``{"per_brand": {brand: USD}, "global": USD}``, medians of
            training prices), ``variant`` (``"head-only"`` | ``"fine-tuned"``), ``similarity_index`` (index
            kind, ``"numpy"``), ``abstain`` (``{"footwear_threshold", "confidence_threshold"[,
            "unknown_brand_threshold"]}``), ``counts``; with a model head ``model_head`` (``{"classes",
            "threshold", "temperature", "min_photos"}``); with an open-set rule ``open_set`` (``{"kind",
            "threshold"}``); when fine-tuned ``finetuned_backbone_fingerprint`` and ``finetune``.
            ``Pipeline`` requires ``backbone_fingerprint`` and ``embedding_dim``.
        footwear: ImageNet footwear detector, or None (then ``not_footwear`` is never returned).
        backbone_keras: bytes of the fine-tuned backbone ``.keras`` file, or None (head-only).
        model_head: the calibrated model classifier with its "not sure" threshold, or None.
        unknown_brand: the open-set rule of the ``unknown_brand`` abstain reason, or None (rule off).
        text_model: the listing-text model fused with the brand and model answers (``worker.ml.text``), or None.
    """

    brand_head: BrandHead
    price_head: PriceHead | None
    index: SimilarityIndex
    metadata: dict[str, Any] = field(default_factory=dict)
    footwear: FootwearDetector | None = None
    backbone_keras: bytes | None = None
    model_head: ModelHead | None = None
    unknown_brand: UnknownBrandRule | None = None
    text_model: TextModel | None = None

    def save(self, directory: str | Path) -> None:
        """Write the artifact files into ``directory`` (created if needed).

        Each file is written to a temporary name and renamed into place. A stale optional file
        (``price_head.npz``, ``model_head.npz``, ``footwear.npz``, ``open_set.npz``, ``text_model.npz``,
        ``backbone.keras``)
        is removed when its part is None.

        Raises:
            OSError: the directory or a file cannot be written.
            TypeError: ``metadata`` is not JSON-serialisable.
        """
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        _write_npz(target / BRAND_HEAD_FILE, self.brand_head.to_arrays())
        optional = (
            (PRICE_HEAD_FILE, self.price_head),
            (MODEL_HEAD_FILE, self.model_head),
            (FOOTWEAR_FILE, self.footwear),
            (OPEN_SET_FILE, self.unknown_brand),
            (TEXT_MODEL_FILE, self.text_model),
        )
        for name, part in optional:
            if part is not None:
                _write_npz(target / name, part.to_arrays())
            else:
                (target / name).unlink(missing_ok=True)
        self.index.save(target)
        if self.backbone_keras is not None:
            _write_atomic(target / BACKBONE_FILE, self.backbone_keras)
        else:
            (target / BACKBONE_FILE).unlink(missing_ok=True)
        text = json.dumps(self.metadata, indent=2, sort_keys=True, allow_nan=False)
        _write_atomic(target / METADATA_FILE, text.encode("utf-8"))

    @classmethod
    def load(cls, directory: str | Path) -> ModelArtifact:
        """Read an artifact written by ``save``.

        Raises:
            ModelError: a required file is missing, unreadable or inconsistent (e.g. head and index
                widths differ).
        """
        source = Path(directory)
        try:
            metadata = json.loads((source / METADATA_FILE).read_text(encoding="utf-8"))
            if not isinstance(metadata, dict):
                raise ModelError(f"{source / METADATA_FILE}: expected a JSON object")
            brand_head = BrandHead.from_arrays(_read_npz(source / BRAND_HEAD_FILE))
            price_head = _optional(source / PRICE_HEAD_FILE, PriceHead.from_arrays)
            model_head = _optional(source / MODEL_HEAD_FILE, ModelHead.from_arrays)
            footwear = _optional(source / FOOTWEAR_FILE, FootwearDetector.from_arrays)
            unknown_brand = _optional(source / OPEN_SET_FILE, UnknownBrandRule.from_arrays)
            text_model = _optional(source / TEXT_MODEL_FILE, TextModel.from_arrays)
            index = index_class(metadata.get("similarity_index")).load(source)
            backbone_path = source / BACKBONE_FILE
            backbone_keras = backbone_path.read_bytes() if backbone_path.exists() else None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            # json.JSONDecodeError is a ValueError; np.load raises ValueError for non-npz bytes.
            raise ModelError(f"cannot load model artifact from {source}: {exc}") from exc
        widths = {brand_head.dim} | {part.dim for part in (price_head, model_head) if part is not None}
        if len(index) > 0:
            widths.add(index.dim)
        if len(widths) != 1:
            raise ModelError(f"{source}: heads and index disagree on the embedding width: {widths}")
        return cls(
            brand_head=brand_head,
            price_head=price_head,
            index=index,
            metadata=metadata,
            footwear=footwear,
            backbone_keras=backbone_keras,
            model_head=model_head,
            unknown_brand=unknown_brand,
            text_model=text_model,
        )


def _write_atomic(path: Path, payload: bytes) -> None:
    """Write bytes to a temporary file beside ``path`` and rename it over ``path``."""
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Save arrays as an uncompressed ``.npz`` atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    _write_atomic(path, buffer.getvalue())


def _optional(path: Path, parse: Any) -> Any:
    """``parse(arrays of path)`` when the file exists, else None."""
    return parse(_read_npz(path)) if path.exists() else None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` file eagerly, without pickle."""
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}
