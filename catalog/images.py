"""Upload validation: decide, cheaply and before anything is stored, whether image bytes are a photo this
service accepts (Pillow + NumPy + the standard library; no Django, no ML library).

Every photo passes through here before it is stored: shopper uploads (``predictions.services
.prediction_create``) and catalog photos and feeds (``catalog.services``). ``catalog`` is the bottom app, so
both can import it without an upward dependency, and the web process that runs it never imports
``worker.ml``.

Why the checks live here and not in ``worker.ml.images``: which files are accepted (size, format, pixel
count, minimum side, complete data) is a policy of the upload, applied once, at the door. The worker's
decoder, ``worker.ml.images.load_rgb``, only ever sees bytes that passed ``inspect_image`` (uploads and
catalog photos are stored after it; training and evaluation read those stored photos or curated
datasets), so it does not repeat these checks and ``worker.ml`` (which never imports an app) needs
nothing from this module. It keeps only what a decoder needs for its own safety whatever its input: a
byte bound and a pixel bound read from the header before any decode (see its docstring). The format
allow-list, the minimum side and the data-completeness checks (PNG pixel-data inflate, JPEG 1/8-scale
decode, WebP decode) exist only here.

``inspect_image`` raises only ``ImageRejected`` for bad bytes: Pillow's many exception types
(``UnidentifiedImageError``, ``OSError`` on truncated data, ``SyntaxError``, ``ValueError``,
``Image.DecompressionBombError``, ...) are mapped to an ``ImageRejected`` code.

Sources: Pillow reference (https://pillow.readthedocs.io): ``Image.open`` reads only the header;
``Image.draft`` lets the JPEG decoder scale by 1/2, 1/4 or 1/8 while decoding; ``Image.verify`` checks
PNG chunk CRCs. PNG specification (W3C, 3rd edition) for the pixel-data check.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image

IMAGE_EMPTY: Final = "image_empty"
IMAGE_TOO_LARGE: Final = "image_too_large"
IMAGE_UNREADABLE: Final = "image_unreadable"
IMAGE_FORMAT_UNSUPPORTED: Final = "image_format_unsupported"
IMAGE_TOO_MANY_PIXELS: Final = "image_too_many_pixels"
IMAGE_TOO_SMALL: Final = "image_too_small"

IMAGE_REJECTION_CODES: Final = (
    IMAGE_EMPTY,
    IMAGE_TOO_LARGE,
    IMAGE_UNREADABLE,
    IMAGE_FORMAT_UNSUPPORTED,
    IMAGE_TOO_MANY_PIXELS,
    IMAGE_TOO_SMALL,
)
"""The API error codes of a refused photo (``error.code`` of a 400/413/415 answer)."""


class ImageRejected(Exception):
    """The bytes of an upload are not an image this service accepts. A permanent error: do not retry.

    Attributes:
        code: one of ``IMAGE_REJECTION_CODES``:
            ``image_empty`` (no bytes), ``image_too_large`` (more bytes than the limit),
            ``image_unreadable`` (not an image, truncated or corrupt), ``image_format_unsupported``
            (decodes, but is not JPEG, PNG or WebP), ``image_too_many_pixels`` (width x height over the
            limit; decompression bombs), ``image_too_small`` (a side under ``MIN_SIDE`` pixels).
        message: a sentence for people (English), safe to show to the uploader.

    Raises:
        ValueError: on construction with a code outside ``IMAGE_REJECTION_CODES``.
    """

    def __init__(self, code: str, message: str) -> None:
        if code not in IMAGE_REJECTION_CODES:
            raise ValueError(f"unknown image rejection code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ImageRejected(code={self.code!r}, message={self.message!r})"


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What ``inspect_image`` learnt about an accepted photo.

    Attributes:
        format: Pillow format name, one of ``"JPEG"``, ``"PNG"``, ``"WEBP"``.
        width: width in pixels as stored (before EXIF orientation).
        height: height in pixels as stored (before EXIF orientation).
    """

    format: str
    width: int
    height: int


ALLOWED_FORMATS: Final = ("JPEG", "PNG", "WEBP")
"""Pillow format names accepted for uploads."""

FORMAT_ALIASES: Final = {"MPO": "JPEG"}
"""Pillow format names that are one of ``ALLOWED_FORMATS`` in disguise. Pillow opens a JPEG that carries
a CIPA DC-007 Multi-Picture Format index with more than one image as ``"MPO"``: phone photos with an HDR
gain map (Android Ultra HDR, iPhone HDR) or a depth map are such files. They are plain JPEG files whose
first image is the photo; ``inspect_image`` reports them as ``"JPEG"`` (and the worker decodes that first
image)."""

DEFAULT_MAX_BYTES: Final = 25 * 1024 * 1024
"""Largest upload in bytes (25 MiB): room for 20 MB phone photos (``SNEAKERS_UPLOAD_MAX_BYTES``'s default)."""

DEFAULT_MAX_PIXELS: Final = 64_000_000
"""Largest width x height in pixels: accepts 50 MP phone photos (8160 x 6120 = 49.9 MP), refuses
decompression bombs. Below Pillow's own ``Image.MAX_IMAGE_PIXELS`` warning level (89.5 MP)."""

MIN_SIDE: Final = 16
"""Smallest accepted width and height, in pixels."""

_UNREADABLE_MESSAGE: Final = "The file is not a readable image (corrupt, truncated or not an image)."


@contextmanager
def _decode_errors() -> Iterator[None]:
    """Map every exception Pillow raises on bad bytes to ``ImageRejected``.

    Pillow's plugins raise many types on corrupt input (OSError, SyntaxError, ValueError, TypeError,
    EOFError, struct.error, IndexError, ...); a broad catch at this boundary is deliberate.
    """
    try:
        yield
    except ImageRejected:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageRejected(IMAGE_TOO_MANY_PIXELS, f"The image has too many pixels ({exc}).") from exc
    except Exception as exc:  # broad on purpose: see docstring
        raise ImageRejected(IMAGE_UNREADABLE, _UNREADABLE_MESSAGE) from exc


def _open_checked(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """Check size, header, format, pixel count and minimum side; return the opened, not loaded image.

    Raises:
        ImageRejected: ``image_empty``, ``image_too_large``, ``image_unreadable``,
            ``image_format_unsupported``, ``image_too_many_pixels`` or ``image_too_small``.
    """
    if not data:
        raise ImageRejected(IMAGE_EMPTY, "The file is empty.")
    if len(data) > max_bytes:
        raise ImageRejected(IMAGE_TOO_LARGE, f"The file has {len(data)} bytes; the limit is {max_bytes} bytes.")
    with _decode_errors():
        image = Image.open(io.BytesIO(data))
        fmt = _format_name(image)
        width, height = image.size
    if fmt not in ALLOWED_FORMATS:
        raise ImageRejected(
            IMAGE_FORMAT_UNSUPPORTED,
            f"Images in {fmt or 'this'} format are not accepted; send JPEG, PNG or WebP.",
        )
    if width * height > max_pixels:
        raise ImageRejected(
            IMAGE_TOO_MANY_PIXELS,
            # Megapixels, the unit of the upload page's hint (decimal, as cameras count them).
            f"The image has {width} x {height} pixels ({width * height / 1e6:.1f} megapixels); "
            f"the limit is {max_pixels / 1e6:g} megapixels.",
        )
    if min(width, height) < MIN_SIDE:
        raise ImageRejected(
            IMAGE_TOO_SMALL,
            f"The image is {width} x {height} pixels; each side must be at least {MIN_SIDE} pixels.",
        )
    return image


def _format_name(image: Image.Image) -> str | None:
    """Pillow's format name of an opened image, with ``FORMAT_ALIASES`` applied (``"MPO"`` -> ``"JPEG"``)."""
    fmt = image.format
    return FORMAT_ALIASES.get(fmt, fmt) if fmt is not None else None


def inspect_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ImageInfo:
    """Validate upload bytes cheaply, without a full-resolution decode (for the web process).

    Checks, in order: not empty; at most ``max_bytes`` bytes; Pillow can read the header; the format is
    one of ``ALLOWED_FORMATS``; width x height at most ``max_pixels``; both sides at least ``MIN_SIDE``
    pixels; the data is complete (PNG: ``Image.verify`` checks every chunk's CRC, then
    ``_check_png_pixel_data`` inflates the image data in bounded pieces, without keeping it, and checks
    its length and row filter bytes; JPEG: a decode at 1/8 scale via ``Image.draft``; WebP: a full
    decode). Animated images are fine (the first frame is what the worker uses). A multi-picture JPEG
    (Pillow's ``"MPO"``, e.g. a phone photo with an HDR gain map) is reported as ``"JPEG"``.

    Args:
        data: the uploaded file's bytes.
        max_bytes: size limit in bytes.
        max_pixels: limit on width x height, in pixels (decompression-bomb guard).

    Returns:
        ``ImageInfo`` with the Pillow format name and the stored width and height in pixels.

    Raises:
        ImageRejected: with code ``image_empty``, ``image_too_large``, ``image_unreadable``,
            ``image_format_unsupported``, ``image_too_many_pixels`` or ``image_too_small``.
    """
    image = _open_checked(data, max_bytes=max_bytes, max_pixels=max_pixels)
    info = ImageInfo(format=str(_format_name(image)), width=image.size[0], height=image.size[1])
    with _decode_errors():
        if info.format == "PNG":
            image.verify()
            _check_png_pixel_data(data)
        else:
            if info.format == "JPEG":
                image.draft(image.mode, (1, 1))  # the decoder's smallest scale, 1/8
            image.load()
    return info


# PNG specification (W3C, 3rd edition), section 7 (image data: one filter-type byte, 0-4, before each
# scanline), 8.2 (Adam7 passes: first column and row, column and row steps) and 11.2.1 (IHDR: bit depth,
# colour type -> samples per pixel).
_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_PNG_SAMPLES: Final = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7: Final = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_INFLATE_PIECE: Final = 1 << 20
"""Bytes of decompressed PNG image data held at once by ``_check_png_pixel_data``."""


def _png_scanlines(width: int, height: int, bits_per_pixel: int, interlaced: bool) -> list[tuple[int, int]]:
    """``(bytes per scanline including the filter byte, number of scanlines)`` for each pass."""
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    lines = []
    for x0, y0, dx, dy in passes:
        pass_width = (width - x0 + dx - 1) // dx if width > x0 else 0
        pass_height = (height - y0 + dy - 1) // dy if height > y0 else 0
        if pass_width and pass_height:
            lines.append((1 + (pass_width * bits_per_pixel + 7) // 8, pass_height))
    return lines


def _check_png_pixel_data(data: bytes) -> None:
    """Check that a PNG's IDAT stream inflates to exactly the scanlines IHDR announces, with valid filters.

    ``Image.verify`` checks chunk CRCs but does not inflate the image data, so a PNG whose IDAT holds a
    corrupt or short zlib stream (with correct CRCs) would pass it and fail only in the worker. This
    inflates the stream in pieces of at most ``_INFLATE_PIECE`` bytes, keeping none of it, so memory stays
    small whatever the image size (time is that of zlib: 0.2 s for a 64 MP RGBA PNG here). Data beyond the
    announced scanlines is ignored, as decoders do. Call it after ``Image.verify`` (chunks well formed).

    Raises:
        ImageRejected: ``image_unreadable`` when the stream is corrupt or short, or a filter byte is not 0-4.
    """
    unreadable = ImageRejected(IMAGE_UNREADABLE, _UNREADABLE_MESSAGE)
    view = memoryview(data)
    if bytes(view[:8]) != _PNG_SIGNATURE or len(data) < 33 or bytes(view[12:16]) != b"IHDR":
        raise unreadable
    width, height = int.from_bytes(view[16:20], "big"), int.from_bytes(view[20:24], "big")
    bit_depth, colour_type, interlace = view[24], view[25], view[28]
    if colour_type not in _PNG_SAMPLES or interlace not in (0, 1):
        raise unreadable
    lines = _png_scanlines(width, height, _PNG_SAMPLES[colour_type] * bit_depth, interlace == 1)
    # Offsets of every scanline's filter byte in the inflated stream, pass after pass, as ranges.
    starts: list[tuple[int, int, int]] = []  # (first offset, stride, count)
    offset = 0
    for stride, count in lines:
        starts.append((offset, stride, count))
        offset += stride * count
    expected = offset

    inflater = zlib.decompressobj()
    produced = 0
    position = 8
    while position + 8 <= len(data) and produced < expected:
        length = int.from_bytes(view[position : position + 4], "big")
        kind = bytes(view[position + 4 : position + 8])
        payload = view[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IEND":
            break
        if kind != b"IDAT":
            continue
        pending = bytes(payload)
        while pending and produced < expected:
            try:
                piece = inflater.decompress(pending, min(_INFLATE_PIECE, expected - produced))
            except zlib.error as exc:
                raise unreadable from exc
            _check_filter_bytes(piece, produced, starts)
            produced += len(piece)
            if inflater.eof or not piece:
                break
            pending = inflater.unconsumed_tail
        if inflater.eof:
            break
    if produced < expected:
        raise unreadable


def _check_filter_bytes(piece: bytes, base: int, starts: list[tuple[int, int, int]]) -> None:
    """Raise ``image_unreadable`` when a scanline filter byte inside ``piece`` (at stream offset ``base``) exceeds 4."""
    if not piece:
        return
    end = base + len(piece)
    values = np.frombuffer(piece, dtype=np.uint8)
    for first, stride, count in starts:
        last = first + stride * (count - 1)
        if last < base or first >= end:
            continue
        k0 = max(0, -(-(base - first) // stride))
        k1 = min(count - 1, (end - 1 - first) // stride)
        if k1 < k0:
            continue
        offsets = first + stride * np.arange(k0, k1 + 1, dtype=np.int64) - base
        if np.any(values[offsets] > 4):
            raise ImageRejected(IMAGE_UNREADABLE, _UNREADABLE_MESSAGE)
