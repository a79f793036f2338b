"""Drawing helpers for ``worker.ml`` unit tests (images made by the tests, no outside files)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHARED = Path(__file__).resolve().parents[3].parent / "shared"
U2NETP_PATH = SHARED / "weights" / "u2netp.onnx"


def draw_shoe(
    colour: tuple[int, int, int],
    *,
    seed: int,
    size: tuple[int, int] = (96, 72),
    background: str = "white",
    shape: str = "ellipse",
) -> np.ndarray:
    """An ``(H, W, 3) uint8`` "product shot": a coloured shape with a dark sole.

    ``background`` is ``"white"`` or ``"noise"`` (a textured, mid-grey random background).
    """
    rng = np.random.default_rng(seed)
    width, height = size
    if background == "white":
        canvas = Image.new("RGB", size, (255, 255, 255))
    else:
        noise = rng.integers(60, 200, size=(height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8)
        canvas = Image.fromarray(noise).resize(size, Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(canvas)
    x0, y0 = int(width * 0.15) + int(rng.integers(-3, 4)), int(height * 0.25) + int(rng.integers(-3, 4))
    x1, y1 = int(width * 0.85) + int(rng.integers(-3, 4)), int(height * 0.75) + int(rng.integers(-3, 4))
    fill = tuple(int(np.clip(c + rng.integers(-20, 21), 0, 255)) for c in colour)
    if shape == "ellipse":
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    else:
        draw.rectangle((x0, y0, x1, y1), fill=fill)
    draw.rectangle((x0, y1 - 4, x1, y1), fill=(30, 30, 30))
    return np.asarray(canvas, dtype=np.uint8).copy()


def to_bytes(rgb: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    """Encode an RGB array with Pillow."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt, **options)
    return buffer.getvalue()
