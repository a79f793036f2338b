"""Decode, orient, convert and resize photos for the pipeline (Pillow + NumPy only).

``load_rgb`` turns image bytes into the ``(H, W, 3) uint8`` RGB arrays the rest of ``worker.ml`` works
on; the other functions work on such arrays. No TensorFlow, onnxruntime or OpenCV here.

Upload validation (which files the service accepts: size, format, pixel count, minimum side, complete
data) is not here: it is ``catalog.images.inspect_image``, run before a photo is stored, so that the web
process never imports ``worker.ml`` and ``worker.ml`` never imports an app. ``load_rgb`` decodes photos
that passed it, so it does not repeat those checks: it keeps only what a decoder needs for its own
safety whatever its input (training data, the ``predict`` command, evaluation manifests): a byte bound,
and a pixel bound read from the header before any pixel is decoded, so a decompression bomb is never
inflated in a worker. Pillow's many exception types on bad bytes (``UnidentifiedImageError``,
``OSError`` on truncated data, ``SyntaxError``, ``ValueError``, ``Image.DecompressionBombError``, ...)
are mapped to ``worker.ml.errors.ImageError``.

Sources: Pillow reference (https://pillow.readthedocs.io): ``Image.open`` reads only the header;
``Image.draft`` lets the JPEG decoder scale by 1/2, 1/4 or 1/8 while decoding (JPEG and MPO files; a
no-op for other formats); ``ImageOps.exif_transpose`` applies the EXIF Orientation tag (tag 0x0112, EXIF
2.32 section 4.6.4); ``Image.resize(..., reducing_gap=...)`` reduces by an integer factor before resampling.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import numpy as np
from PIL import Image, ImageOps

from worker.ml.errors import IMAGE_TOO_LARGE, IMAGE_TOO_MANY_PIXELS, IMAGE_UNREADABLE, ImageError

DEFAULT_MAX_BYTES: Final = 25 * 1024 * 1024
"""Default byte bound of ``load_rgb`` (25 MiB, the default upload limit; the pipeline passes the configured one)."""

DEFAULT_MAX_PIXELS: Final = 64_000_000
"""Default pixel bound of ``load_rgb`` (64 MP, the default upload limit: room for 50 MP phone photos, below
Pillow's own ``Image.MAX_IMAGE_PIXELS`` warning level of 89.5 MP)."""

DEFAULT_MAX_SIDE: Final = 1024
"""Longest side, in pixels, of the arrays ``load_rgb`` returns by default."""

# has_plain_background thresholds: this project's own heuristic, set on ../shared/datasets. With these
# values it accepts 100 % of the Foot Locker and restocks shots, 99 % of the Zappos shots (tightly cropped:
# the shoe touches the frame, so only ~85 % of the border is background) and 66 % of the Kaggle shots, and
# 4 % of the hand-held "real-world" photos in sneakers_wild (measured on a 1-in-9 sample, 2026-11).
PLAIN_BORDER_FRACTION: Final = 0.04
"""Width of the border frame examined, as a fraction of the shorter image side (at least 1 pixel)."""
PLAIN_MIN_LUMA: Final = 200.0
"""Smallest Rec. 601 luma (0.299 R + 0.587 G + 0.114 B, 0-255) of the border's median colour."""
PLAIN_MAX_DEVIATION: Final = 24
"""A border pixel is 'background' when no channel differs from the border median by more than this
(0-255 levels); leaves room for JPEG noise and soft studio gradients."""
PLAIN_MIN_SHARE: Final = 0.7
"""Smallest share of border pixels that must be 'background' (the shoe may touch the frame)."""

_SIXTEEN_BIT_MODES: Final = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_TRANSPARENT_MODES: Final = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_UNREADABLE_MESSAGE: Final = "The file is not a readable image (corrupt, truncated or not an image)."
_RESAMPLE: Final = Image.Resampling.LANCZOS
_REDUCING_GAP: Final = 3.0


@contextmanager
def _decode_errors() -> Iterator[None]:
    """Map every exception Pillow raises on bad bytes to ``ImageError``.

    Pillow's plugins raise many types on corrupt input (OSError, SyntaxError, ValueError, TypeError,
    EOFError, struct.error, IndexError, ...); a broad catch at this boundary is deliberate.
    """
    try:
        yield
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(IMAGE_TOO_MANY_PIXELS, f"The image has too many pixels ({exc}).") from exc
    except Exception as exc:  # broad on purpose: see docstring
        raise ImageError(IMAGE_UNREADABLE, _UNREADABLE_MESSAGE) from exc


def _draft_jpeg(image: Image.Image, max_side: int) -> None:
    """Ask the JPEG decoder to scale by 1/2, 1/4 or 1/8 while keeping the longest side >= max_side.

    ``Image.draft`` acts on JPEG and MPO (multi-picture JPEG) files and does nothing for other formats.
    """
    width, height = image.size
    scale = max_side / max(width, height)
    if scale < 0.5:
        image.draft(image.mode, (max(1, int(width * scale + 1)), max(1, int(height * scale + 1))))


def load_rgb(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
) -> np.ndarray:
    """Decode image bytes to an upright RGB array whose longest side is at most ``max_side``.

    Meant for photos that passed upload validation (``catalog.images.inspect_image``; see the module
    docstring): it does not check formats, minimum sizes or data completeness again. Steps: the byte
    bound; the header read by Pillow and the pixel bound (width x height, before any decode); JPEG
    decoded with ``Image.draft`` so that large photos are scaled down by the decoder; the first frame of
    an animated or multi-picture image; EXIF orientation applied (``ImageOps.exif_transpose``; malformed
    EXIF is ignored); conversion to RGB: transparency (RGBA, LA, PA, palette or colour-key
    ``transparency``) composited onto white, CMYK / YCbCr / L / 1 / P converted by Pillow, 16-bit
    greyscale scaled to 8 bits by ``round(v / 257)`` (so 65535 -> 255; not clipped), 32-bit ``I`` /
    float ``F`` taken as 8-bit when all values lie in [0, 255], as 16-bit when in [0, 65535], else
    min-max scaled; finally resized with Lanczos (after an integer ``reduce``) so that the longest side
    is at most ``max_side``.

    Args:
        data: image file bytes (JPEG, PNG or WebP; other formats Pillow reads decode too).
        max_bytes: byte bound.
        max_pixels: bound on stored width x height, in pixels (decompression-bomb guard).
        max_side: longest side of the result, in pixels (>= 1).

    Returns:
        ``(H, W, 3) uint8`` RGB array, C-contiguous and writeable, ``max(H, W) <= max_side``.

    Raises:
        ImageError: ``image_too_large`` (over ``max_bytes``), ``image_too_many_pixels`` (over
            ``max_pixels``, or Pillow's own bomb guard), ``image_unreadable`` (empty, not an image,
            truncated or corrupt: whatever Pillow cannot decode).
        ValueError: ``max_side`` below 1.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    if len(data) > max_bytes:
        raise ImageError(IMAGE_TOO_LARGE, f"The file has {len(data)} bytes; the limit is {max_bytes} bytes.")
    with _decode_errors():
        image = Image.open(io.BytesIO(data))
        width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            IMAGE_TOO_MANY_PIXELS, f"The image has {width} x {height} pixels; the limit is {max_pixels} pixels."
        )
    with _decode_errors():
        _draft_jpeg(image, max_side)
        image.load()
        image = _exif_upright(image)
        image = _to_rgb(image)
        image = _limit_side(image, max_side)
        array = np.array(image, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(IMAGE_UNREADABLE, "The image could not be converted to RGB.")
    return np.ascontiguousarray(array)


def _exif_upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF Orientation tag; return the image unchanged when EXIF is missing or malformed."""
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:  # malformed EXIF must not fail the upload
        return image
    return upright if upright is not None else image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency goes onto white, 16-bit is scaled (see load_rgb)."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        values = np.asarray(image)
        gray = _scale_to_uint8(values, sixteen_bit=mode in _SIXTEEN_BIT_MODES)
        return Image.fromarray(gray).convert("RGB")
    if mode in _TRANSPARENT_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode == "RGB":
        return image
    return image.convert("RGB")


def _scale_to_uint8(values: np.ndarray, *, sixteen_bit: bool) -> np.ndarray:
    """Scale a 2-D integer or float array to uint8 (see ``load_rgb`` for the rules)."""
    data = values.astype(np.float64)
    if not sixteen_bit:
        finite = data[np.isfinite(data)]
        low = float(finite.min()) if finite.size else 0.0
        high = float(finite.max()) if finite.size else 0.0
        if low >= 0.0 and high <= 255.0:
            return np.clip(np.rint(np.nan_to_num(data)), 0, 255).astype(np.uint8)
        if not (low >= 0.0 and high <= 65535.0):
            span = high - low if high > low else 1.0
            data = (np.nan_to_num(data, nan=low) - low) / span * 65535.0
    return np.clip(np.rint(data / 257.0), 0, 255).astype(np.uint8)


def _limit_side(image: Image.Image, max_side: int) -> Image.Image:
    """Resize so that the longest side is at most ``max_side`` pixels (Lanczos, aspect kept)."""
    width, height = image.size
    longest = max(width, height)
    if longest <= max_side:
        return image
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, _RESAMPLE, reducing_gap=_REDUCING_GAP)


def check_rgb(rgb: np.ndarray) -> None:
    """Check that ``rgb`` is a non-empty ``(H, W, 3) uint8`` NumPy array.

    Raises:
        ValueError: anything else (wrong type, dtype, rank, channel count, or an empty side).
    """
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(
            "expected an (H, W, 3) uint8 array, got "
            f"{getattr(rgb, 'shape', None)} {getattr(rgb, 'dtype', type(rgb).__name__)}"
        )
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"expected a non-empty image, got shape {rgb.shape}")


def square_pad_resize(rgb: np.ndarray, *, size: int = 224, fill: int = 255) -> np.ndarray:
    """Fit an image into a ``size x size`` square, centred, padding with a uniform grey level.

    The image is resized (Lanczos) so that its longest side is ``size`` pixels, keeping the aspect
    ratio, then centred on a square canvas of value ``fill`` (white by default, matching product shots
    on white). Equivalent to padding to a square first and resizing after, but cheaper.

    Args:
        rgb: ``(H, W, 3) uint8`` RGB.
        size: side of the output, in pixels (224 is EfficientNet-Lite0's training size).
        fill: padding value, 0-255, for all three channels.

    Returns:
        ``(size, size, 3) uint8`` RGB.

    Raises:
        ValueError: bad array shape or dtype, ``size < 1`` or ``fill`` outside 0-255.
    """
    check_rgb(rgb)
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    if not 0 <= fill <= 255:
        raise ValueError(f"fill must be in 0..255, got {fill}")
    height, width = rgb.shape[:2]
    scale = size / max(height, width)
    new_w = min(size, max(1, round(width * scale)))
    new_h = min(size, max(1, round(height * scale)))
    if (new_h, new_w) != (height, width):
        resized = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), _RESAMPLE, reducing_gap=_REDUCING_GAP))
    else:
        resized = rgb
    canvas = np.full((size, size, 3), fill, dtype=np.uint8)
    top = (size - new_h) // 2
    left = (size - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas


def has_plain_background(
    rgb: np.ndarray,
    *,
    border_fraction: float = PLAIN_BORDER_FRACTION,
    min_luma: float = PLAIN_MIN_LUMA,
    max_deviation: int = PLAIN_MAX_DEVIATION,
    min_share: float = PLAIN_MIN_SHARE,
) -> bool:
    """Tell whether a photo is a product shot on a plain light background (white, light grey).

    Looks only at the outer frame of the image, ``border_fraction`` of the shorter side wide (at least
    one pixel). True when the median colour of that frame has Rec. 601 luma >= ``min_luma`` and at
    least ``min_share`` of the frame's pixels lie within ``max_deviation`` levels (every channel) of
    that median. Used to skip background removal where it cannot help. The thresholds are this
    project's heuristic (module constants ``PLAIN_*``), chosen on the catalogue photos.

    Args:
        rgb: ``(H, W, 3) uint8`` RGB.
        border_fraction: frame width as a fraction of ``min(H, W)``.
        min_luma: luma threshold, 0-255.
        max_deviation: per-channel tolerance in 0-255 levels.
        min_share: fraction in [0, 1].

    Returns:
        True for a plain light background.

    Raises:
        ValueError: bad array shape or dtype.
    """
    check_rgb(rgb)
    height, width = rgb.shape[:2]
    band = max(1, round(border_fraction * min(height, width)))
    if 2 * band >= min(height, width):
        frame = rgb.reshape(-1, 3)
    else:
        frame = np.concatenate(
            [
                rgb[:band].reshape(-1, 3),
                rgb[-band:].reshape(-1, 3),
                rgb[band:-band, :band].reshape(-1, 3),
                rgb[band:-band, -band:].reshape(-1, 3),
            ]
        )
    frame = frame.astype(np.int16)
    median = np.median(frame, axis=0)
    luma = 0.299 * median[0] + 0.587 * median[1] + 0.114 * median[2]
    if luma < min_luma:
        return False
    deviation = np.abs(frame - median).max(axis=1)
    return bool(np.mean(deviation <= max_deviation) >= min_share)


def encode_png(rgb: np.ndarray) -> bytes:
    """Encode an ``(H, W, 3) uint8`` RGB array as PNG bytes (zlib level 6).

    Raises:
        ValueError: bad array shape or dtype.
    """
    check_rgb(rgb)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """Encode an ``(H, W, 3) uint8`` RGB array as baseline JPEG bytes.

    Args:
        rgb: ``(H, W, 3) uint8`` RGB.
        quality: libjpeg quality, 1-95 (Pillow's documented useful range).

    Raises:
        ValueError: bad array shape or dtype, or quality outside 1-95.
    """
    check_rgb(rgb)
    if not 1 <= quality <= 95:
        raise ValueError(f"quality must be in 1..95, got {quality}")
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
