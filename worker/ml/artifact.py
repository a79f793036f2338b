"""A trained model version on disk: brand head, price head, similarity index, metadata.

Layout of an artifact directory (``ARTIFACT_FILES``)::

    brand_head.npz   BrandHead.to_arrays()
    price_head.npz   PriceHead.to_arrays()      (absent when no prices were available)
    index.npz        SimilarityIndex.to_arrays()
    footwear.npz     FootwearDetector.to_arrays()  (absent when training had no ImageNet classifier)
    backbone.keras   fine-tuned backbone            (only for variant "fine-tuned")
    metadata.json    classes, backbone fingerprint, embedding dim, seed, created time, preprocessing,
                     abstain thresholds, per-brand price baseline

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
from worker.ml.heads import BrandHead, PriceHead
from worker.ml.similarity import SimilarityIndex

BRAND_HEAD_FILE: Final = "brand_head.npz"
PRICE_HEAD_FILE: Final = "price_head.npz"
INDEX_FILE: Final = "index.npz"
METADATA_FILE: Final = "metadata.json"
FOOTWEAR_FILE: Final = "footwear.npz"
BACKBONE_FILE: Final = "backbone.keras"
ARTIFACT_FILES: Final = (BRAND_HEAD_FILE, PRICE_HEAD_FILE, INDEX_FILE, METADATA_FILE, FOOTWEAR_FILE, BACKBONE_FILE)
"""Every file an artifact may have; the optional ones are in ``OPTIONAL_ARTIFACT_FILES``. Report PNGs
are not artifact files."""
OPTIONAL_ARTIFACT_FILES: Final = (PRICE_HEAD_FILE, FOOTWEAR_FILE, BACKBONE_FILE)
"""Files that may be absent from a valid artifact."""


@dataclass(frozen=True, eq=False)
class ModelArtifact:
    """What training produces and prediction needs, besides the backbone.

    Attributes:
        brand_head: the calibrated brand classifier.
        price_head: the price regressor, or None when training had no prices.
        index: catalog image embeddings and product ids for similarity search.
        footwear: the ImageNet footwear detector of the ``not_footwear`` abstain rule, or None.
        metadata: JSON-serialisable dict; keys written by ``train_model``: ``classes``,
            ``backbone_fingerprint``, ``embedding_dim``, ``created_at`` (ISO 8601 UTC), ``seed``,
            ``preprocessing``, ``background``, ``brand_C``, ``temperature``, ``price_alpha``,
            ``variant`` (``"head-only"`` | ``"fine-tuned"``), ``abstain``
            (``{"footwear_threshold": float | None, "confidence_threshold": float, ...}``),
            ``price_baseline`` (``{"per_brand": {brand: USD}, "global": USD}``, medians of training
            prices), ``background_rule`` (``"skip-plain"`` | ``"always"`` | ``"never"``) and, when
            fine-tuned, ``finetuned_backbone_fingerprint``.
            ``Pipeline`` requires ``backbone_fingerprint`` and ``embedding_dim``.
        footwear: ImageNet footwear detector, or None (then ``not_footwear`` is never returned).
        backbone_keras: bytes of the fine-tuned backbone ``.keras`` file, or None (head-only).
    """

    brand_head: BrandHead
    price_head: PriceHead | None
    index: SimilarityIndex
    metadata: dict[str, Any] = field(default_factory=dict)
    footwear: FootwearDetector | None = None
    backbone_keras: bytes | None = None

    def save(self, directory: str | Path) -> None:
        """Write the artifact files into ``directory`` (created if needed).

        Each file is written to a temporary name and renamed into place. A stale ``price_head.npz``
        is removed when ``price_head`` is None.

        Raises:
            OSError: the directory or a file cannot be written.
            TypeError: ``metadata`` is not JSON-serialisable.
        """
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        _write_npz(target / BRAND_HEAD_FILE, self.brand_head.to_arrays())
        if self.price_head is not None:
            _write_npz(target / PRICE_HEAD_FILE, self.price_head.to_arrays())
        else:
            (target / PRICE_HEAD_FILE).unlink(missing_ok=True)
        _write_npz(target / INDEX_FILE, self.index.to_arrays())
        if self.footwear is not None:
            _write_npz(target / FOOTWEAR_FILE, self.footwear.to_arrays())
        else:
            (target / FOOTWEAR_FILE).unlink(missing_ok=True)
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
            brand_head = BrandHead.from_arrays(_read_npz(source / BRAND_HEAD_FILE))
            price_path = source / PRICE_HEAD_FILE
            price_head = PriceHead.from_arrays(_read_npz(price_path)) if price_path.exists() else None
            index = SimilarityIndex.from_arrays(_read_npz(source / INDEX_FILE))
            footwear_path = source / FOOTWEAR_FILE
            footwear = FootwearDetector.from_arrays(_read_npz(footwear_path)) if footwear_path.exists() else None
            metadata = json.loads((source / METADATA_FILE).read_text(encoding="utf-8"))
            backbone_path = source / BACKBONE_FILE
            backbone_keras = backbone_path.read_bytes() if backbone_path.exists() else None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            # json.JSONDecodeError is a ValueError; np.load raises ValueError for non-npz bytes.
            raise ModelError(f"cannot load model artifact from {source}: {exc}") from exc
        if not isinstance(metadata, dict):
            raise ModelError(f"{source / METADATA_FILE}: expected a JSON object")
        widths = {brand_head.dim, index.dim} | ({price_head.dim} if price_head else set())
        if len(widths) != 1 and len(index) > 0:
            raise ModelError(f"{source}: heads and index disagree on the embedding width: {widths}")
        return cls(
            brand_head=brand_head,
            price_head=price_head,
            index=index,
            metadata=metadata,
            footwear=footwear,
            backbone_keras=backbone_keras,
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


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` file eagerly, without pickle."""
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}
