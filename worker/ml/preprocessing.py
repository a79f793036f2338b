"""One definition of how the model sees a photo: ``BackboneSpec`` and ``prepare_photo``.

The pattern of timm's pretrained config (``timm.data.resolve_data_config``: input size, mean/std and
crop beside each model) and open_clip's ``create_model_and_transforms`` (the model returned with its
preprocessing): a small frozen ``BackboneSpec`` travels with every artifact (metadata ``backbone``), and
``prepare_photo`` is the only function that turns a decoded photo into backbone input. Training
(``worker.ml.embeddings``, ``worker.ml.training``), evaluation and serving (``worker.ml.pipeline``) all
call it, so what the heads were fitted on is what they are served.

A photo's way to the backbone::

    load_rgb (decode, EXIF upright, on white, longest side <= 1024 px)          -- worker.ml.images
    -> remove_background(remover, skip_plain) when a remover is given            -- worker.ml.background
    -> square_pad_resize(spec.input_size, white, Lanczos)                         -- prepare_photo
    -> (x - spec.offset) / spec.scale, inside the backbone's forward pass         -- Backbone / finetune
    -> pooled output + spec.taps, L2-normalised                                   -- Backbone

Training-time augmentation (``worker.ml.augment.augment_photo``) replaces the square-pad step for its
extra copies and produces squares of ``spec.input_size`` too. Only the standard library, NumPy and the
light ``images`` / ``background`` modules are imported here (no TensorFlow).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from worker.ml.background import Cutout, Remover, remove_background
from worker.ml.images import check_rgb, square_pad_resize

LEGACY_INPUT_SIZE: Final = 224
"""Input side, in pixels, of artifacts made before the multi-level descriptor (no size recorded)."""
DEFAULT_INPUT_SIZE: Final = 320
"""Side, in pixels, of the squares the backbone embeds by default (``worker.ml.backbone`` docstring)."""
DEFAULT_OFFSET: Final = 127.0
"""EfficientNet-Lite0's input normalisation ``(x - 127) / 128`` of [0, 255] pixels (``../shared/weights/README.md``)."""
DEFAULT_SCALE: Final = 128.0
PAD_FILL: Final = 255
"""Grey level of the square padding: white, like product shots and background-removed cut-outs."""
FINGERPRINT_LENGTH: Final = 16
"""Hex characters of a SHA-256 kept as a fingerprint (64 bits)."""
PREPROCESSING: Final = (
    "load_rgb(max_side=1024, EXIF upright, transparency on white) -> "
    "remove_background(skip_plain=True) if a remover is set -> "
    "square_pad_resize(backbone input_size, white, Lanczos) -> (x - offset) / scale -> backbone "
    "(pooled output + taps) -> L2 normalise"
)
"""Human-readable description of the preprocessing, stored in artifact metadata (``preprocessing``)."""


def backbone_fingerprint(weights_fingerprint: str, input_size: int, taps: tuple[tuple[str, float], ...]) -> str:
    """Fingerprint of a backbone as configured: the weights file's own for the plain 224 px set-up (so
    artifacts and caches made before the multi-level descriptor stay valid), else the first 16 hex
    characters of the SHA-256 of ``"<weights fingerprint>|<input_size>|<taps>"``."""
    if input_size == LEGACY_INPUT_SIZE and not taps:
        return weights_fingerprint
    text = f"{weights_fingerprint}|{input_size}|" + ",".join(f"{name}:{weight:g}" for name, weight in taps)
    return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_LENGTH]


@dataclass(frozen=True)
class BackboneSpec:
    """How a backbone sees a photo; recorded in artifact metadata under ``backbone``.

    Attributes:
        input_size: side, in pixels, of the square input (320 by default; 224 for older artifacts).
        offset: normalisation ``(x - offset) / scale`` of [0, 255] pixel values.
        scale: see ``offset``.
        taps: ``(layer name, weight)`` pairs pooled into the multi-level descriptor (``()``: the pooled
            output alone; a fine-tuned two-output backbone has its taps inside and records ``()``).
        weights_fingerprint: ``FINGERPRINT_LENGTH`` hex characters of the SHA-256 of the weights file;
            ``""`` when unknown (artifacts made before the spec, with taps).
        fill: grey level of the square padding.

    Raises:
        ValueError: ``input_size < 32``, ``scale == 0`` or ``fill`` outside 0-255.
    """

    input_size: int = DEFAULT_INPUT_SIZE
    offset: float = DEFAULT_OFFSET
    scale: float = DEFAULT_SCALE
    taps: tuple[tuple[str, float], ...] = field(default=())
    weights_fingerprint: str = ""
    fill: int = PAD_FILL

    def __post_init__(self) -> None:
        """Coerce types and check ranges."""
        if int(self.input_size) < 32:
            raise ValueError(f"input_size must be at least 32 pixels, got {self.input_size}")
        if float(self.scale) == 0.0:
            raise ValueError("scale must not be 0")
        if not 0 <= int(self.fill) <= 255:
            raise ValueError(f"fill must be in 0..255, got {self.fill}")
        object.__setattr__(self, "input_size", int(self.input_size))
        object.__setattr__(self, "offset", float(self.offset))
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "fill", int(self.fill))
        object.__setattr__(self, "taps", tuple((str(n), float(w)) for n, w in self.taps))

    @property
    def fingerprint(self) -> str:
        """``backbone_fingerprint`` of weights, input size and taps (embedding-cache key)."""
        return backbone_fingerprint(self.weights_fingerprint, self.input_size, self.taps)

    def normalise(self, squares: np.ndarray) -> np.ndarray:
        """``(N, S, S, 3) float32`` ``(x - offset) / scale`` of uint8 squares (NumPy twin of the
        backbone's in-graph normalisation)."""
        return ((np.asarray(squares, dtype=np.float32) - self.offset) / self.scale).astype(np.float32)

    def to_metadata(self) -> dict[str, Any]:
        """JSON-ready ``{"input_size", "offset", "scale", "taps": [[name, weight]], "weights_fingerprint",
        "fill"}``."""
        return {
            "input_size": self.input_size,
            "offset": self.offset,
            "scale": self.scale,
            "taps": [[name, weight] for name, weight in self.taps],
            "weights_fingerprint": self.weights_fingerprint,
            "fill": self.fill,
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> BackboneSpec:
        """The spec recorded in artifact metadata, for artifacts of every age.

        - metadata ``backbone`` (this spec's ``to_metadata``): used as it is;
        - ``backbone_input_size`` / ``backbone_taps`` (320 px multi-level artifacts): those, default
          normalisation, weights fingerprint unknown;
        - neither (the first artifacts): 224 px, no taps; the weights fingerprint is then the
          artifact's ``backbone_fingerprint`` (``backbone_fingerprint`` keeps the file's own there).

        Raises:
            ValueError: a recorded value is out of range.
        """
        recorded = metadata.get("backbone")
        if isinstance(recorded, Mapping):
            return cls(
                input_size=int(recorded.get("input_size", DEFAULT_INPUT_SIZE)),
                offset=float(recorded.get("offset", DEFAULT_OFFSET)),
                scale=float(recorded.get("scale", DEFAULT_SCALE)),
                taps=tuple((str(n), float(w)) for n, w in recorded.get("taps", [])),
                weights_fingerprint=str(recorded.get("weights_fingerprint", "")),
                fill=int(recorded.get("fill", PAD_FILL)),
            )
        input_size = int(metadata.get("backbone_input_size", LEGACY_INPUT_SIZE))
        taps = tuple((str(n), float(w)) for n, w in metadata.get("backbone_taps", []))
        legacy = input_size == LEGACY_INPUT_SIZE and not taps
        weights = str(metadata.get("backbone_fingerprint", "")) if legacy else ""
        return cls(input_size=input_size, taps=taps, weights_fingerprint=weights)


@dataclass(frozen=True, eq=False)
class PreparedPhoto:
    """A photo as the backbone sees it.

    Attributes:
        square: ``(S, S, 3) uint8`` RGB, S = ``spec.input_size``: the backbone input before normalisation.
        cutout: what background removal made of the photo (``Cutout.image`` is the shoe on white, cropped,
            before the square padding; ``method`` says how, e.g. ``"skipped"`` or ``"u2netp"``).
    """

    square: np.ndarray
    cutout: Cutout


def prepare_photo(
    rgb: np.ndarray,
    spec: BackboneSpec,
    *,
    remover: Remover | None = None,
    skip_plain: bool = True,
    cutout: Cutout | None = None,
) -> PreparedPhoto:
    """Turn a decoded photo into backbone input: background rule, then square pad and resize.

    Args:
        rgb: ``(H, W, 3) uint8`` RGB photo (``worker.ml.images.load_rgb``).
        spec: the backbone's spec (input size, padding).
        remover: background remover, or None for none (the photo is used as it is, method ``"none"``).
        skip_plain: leave photos on a plain light background as they are (``remove_background`` rule 1).
        cutout: an already made cut-out of ``rgb`` (e.g. a mask from elsewhere composited on white);
            used instead of running ``remover``.

    Returns:
        ``PreparedPhoto`` with the ``(S, S, 3) uint8`` square and the cut-out it was made from.

    Raises:
        ValueError: ``rgb`` is not ``(H, W, 3) uint8``.
    """
    check_rgb(rgb)
    if cutout is None:
        if remover is None:
            cutout = Cutout(image=rgb, mask=np.ones(rgb.shape[:2], dtype=np.float32), method="none")
        else:
            cutout = remove_background(rgb, remover, skip_plain=skip_plain)
    square = square_pad_resize(cutout.image, size=spec.input_size, fill=spec.fill)
    return PreparedPhoto(square=square, cutout=cutout)
