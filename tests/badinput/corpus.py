"""The bad-input corpus: odd and hostile uploads made in code, each with the documented outcome.

``FILE_CASES`` maps a case name to a ``FileCase``: the bytes (built on demand, nothing downloaded), the
client's file name, and what the upload endpoints must answer (README, "API" and "How a prediction
works"): ``ACCEPTED`` (API 202, site 302 to the result page) or a refusal ``Refused(status, code)``
(API: that status and ``{"error": {"code": code, ...}}``; site: the same status and the message on
the page), never a 500. Some accepted cases carry a ``check`` run on ``worker.ml.images.load_rgb``'s
array (EXIF rotation, RGB conversion). ``REQUEST_CASES`` holds malformed requests (missing field,
two files, wrong field name, non-multipart body) with their own expected answers.

Builders are cheap: "bombs" only declare huge sizes in their headers, and the oversize case lowers
``SNEAKERS_UPLOAD_MAX_BYTES`` (``FileCase.max_bytes``) instead of sending megabytes.
"""

from __future__ import annotations

import gzip
import io
import random
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

# --- expected outcomes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    """The upload is queued: API ``202`` with a ``queued`` prediction, site ``302`` to ``/p/<id>/``."""

    stored_ext: str
    """Extension of the stored name (``jpg``, ``png``, ``webp``): the detected format, not the client's."""


@dataclass(frozen=True)
class Refused:
    """The upload is refused before queueing; kept as a ``failed`` prediction with ``code``."""

    status: int
    code: str


Outcome = Accepted | Refused


@dataclass(frozen=True)
class FileCase:
    """One uploaded file: how to build it, its client-side name and the documented outcome.

    Attributes:
        name: case id (test id and table row).
        build: returns the file's bytes (called once per use; deterministic).
        filename: the name the client sends (may be hostile: traversal, NUL, very long).
        expect: ``Accepted`` or ``Refused``.
        check: for some accepted cases, a function asserting on ``load_rgb(data)`` (``(H, W, 3) uint8``).
        max_bytes: when set, ``SNEAKERS_UPLOAD_MAX_BYTES`` is lowered to it for the upload.
        content_type: the part's declared ``Content-Type`` (never trusted by the server).
        note: what the case is, for the table.
    """

    name: str
    build: Callable[[], bytes]
    filename: str
    expect: Outcome
    check: Callable[[np.ndarray], None] | None = None
    max_bytes: int | None = None
    content_type: str = "image/jpeg"
    note: str = ""


# --- builders ----------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    """Encode a Pillow image in memory."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def solid(size: tuple[int, int] = (64, 48), colour: Any = (200, 30, 30), mode: str = "RGB") -> Image.Image:
    """A solid-colour image."""
    return Image.new(mode, size, colour)


def noise(size: tuple[int, int] = (96, 72), seed: int = 0) -> Image.Image:
    """Random RGB pixels (large files, not compressible: good for truncation tests)."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def jpeg(size: tuple[int, int] = (64, 48), **options: Any) -> bytes:
    """A small valid red JPEG."""
    return encode(solid(size), "JPEG", **options)


def png(size: tuple[int, int] = (64, 48), **options: Any) -> bytes:
    """A small valid red PNG."""
    return encode(solid(size), "PNG", **options)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, payload, CRC-32 (PNG spec section 5.3)."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_raw(
    width: int, height: int, idat: bytes, *, bit_depth: int = 8, colour_type: int = 2, extra: bytes = b""
) -> bytes:
    """A PNG built chunk by chunk: IHDR, ``extra`` chunks, one IDAT holding ``idat`` as is, IEND."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + extra + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png_rgb_scanlines(width: int, height: int, pixel: bytes = b"\x80\x80\x80") -> bytes:
    """Uncompressed 8-bit RGB scanlines (filter byte 0 each) of one colour."""
    return (b"\x00" + pixel * width) * height


def png_header_bomb(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width x height`` RGB pixels with a tiny IDAT: a cheap decompression bomb."""
    return png_raw(width, height, zlib.compress(b"\0" * 16))


def jpeg_header_bomb(width: int, height: int) -> bytes:
    """A small JPEG whose SOF0 marker is patched to declare ``width x height``."""
    data = bytearray(jpeg())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def webp_header_bomb() -> bytes:
    """A WebP whose VP8X chunk declares a 16384 x 16384 canvas (268 MP) around a tiny VP8L bitstream."""
    small = encode(solid((16, 16)), "WEBP", lossless=True)
    bitstream = small[12:]  # the VP8L chunk of a plain lossless WebP
    side = 16384 - 1  # VP8X stores canvas width - 1 and height - 1 in 24 bits
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + side.to_bytes(3, "little") * 2
    body = b"WEBP" + vp8x + bitstream
    return b"RIFF" + struct.pack("<I", len(body)) + body


def png_gray16(values: np.ndarray) -> bytes:
    """A 16-bit greyscale PNG of ``values`` (uint16, 2-D)."""
    return encode(Image.fromarray(values.astype(np.uint16)), "PNG")


def png_rgb48(width: int, height: int, sample: int) -> bytes:
    """A 16-bit-per-channel RGB PNG (48-bit), every sample ``sample`` (0-65535); Pillow cannot write these."""
    row = b"\x00" + struct.pack(">H", sample) * 3 * width
    return png_raw(width, height, zlib.compress(row * height), bit_depth=16)


def orientation_marker() -> np.ndarray:
    """A 64 x 32 (W x H) stored image: red block top-left, blue block bottom-right, white elsewhere."""
    stored = np.full((32, 64, 3), 255, np.uint8)
    stored[:16, :16] = (255, 0, 0)
    stored[16:, 48:] = (0, 0, 255)
    return stored


# How each EXIF orientation (EXIF 2.32, tag 0x0112) maps the stored pixels to the upright picture.
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirror horizontally
    3: lambda a: a[::-1, ::-1],  # rotate 180
    4: lambda a: a[::-1, :],  # mirror vertically
    5: lambda a: a.transpose(1, 0, 2),  # transpose
    6: lambda a: np.rot90(a, -1),  # rotate 90 clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # transverse
    8: lambda a: np.rot90(a, 1),  # rotate 90 counter-clockwise
}


def jpeg_with_orientation(orientation: int) -> bytes:
    """The orientation marker as a JPEG carrying EXIF Orientation ``orientation``."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(Image.fromarray(orientation_marker()), "JPEG", exif=exif.tobytes(), quality=95)


def expect_upright(orientation: int) -> Callable[[np.ndarray], None]:
    """A check: ``load_rgb`` returned the marker turned upright for ``orientation``."""

    def check(rgb: np.ndarray) -> None:
        expected = UPRIGHT[orientation](orientation_marker())
        assert rgb.shape == expected.shape, (rgb.shape, expected.shape)
        assert np.abs(rgb.astype(int) - expected.astype(int)).mean() < 8

    return check


def expect_pixel(row: int, col: int, rgb: tuple[int, int, int], tolerance: int = 0, shape=None):
    """A check: the pixel at ``(row, col)`` is ``rgb`` within ``tolerance`` levels (and the shape, if given)."""

    def check(array: np.ndarray) -> None:
        assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3
        if shape is not None:
            assert array.shape == shape, array.shape
        got = array[row, col].astype(int)
        assert np.abs(got - np.array(rgb)).max() <= tolerance, (tuple(got), rgb)

    return check


def gif_animated() -> bytes:
    """A two-frame animated GIF (red, blue)."""
    frames = [solid((32, 32), colour).convert("P") for colour in ((255, 0, 0), (0, 0, 255))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def animated(fmt: str) -> bytes:
    """A two-frame animation (first frame red, second blue) in WebP or PNG (APNG)."""
    frames = [solid((32, 32), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)


def mpo_two_images() -> bytes:
    """A JPEG with a Multi-Picture index and two images (red photo, blue second image), as phones write
    for HDR gain maps or depth maps; Pillow opens it as ``MPO``."""
    return encode(solid((64, 48), (255, 0, 0)), "MPO", save_all=True, append_images=[solid((64, 48), (0, 0, 255))])


def jpeg_comments(total: int) -> bytes:
    """A JPEG with ``total`` bytes of COM (comment) segments right after SOI, 65,533 bytes per segment."""
    base = jpeg()
    segments = []
    left = total
    while left > 0:
        size = min(left, 65533)
        segments.append(b"\xff\xfe" + struct.pack(">H", size + 2) + b"C" * size)
        left -= size
    return base[:2] + b"".join(segments) + base[2:]


def jpeg_big_exif() -> bytes:
    """A JPEG whose EXIF block is about 60 KB (an ImageDescription tag), near the 64 KB APP1 limit."""
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000
    exif[0x0112] = 1
    return encode(solid(), "JPEG", exif=exif.tobytes())


def png_with_text(size: int) -> bytes:
    """A valid PNG with one ``tEXt`` chunk of ``size`` bytes before the image data."""
    return png_raw(
        32, 32, zlib.compress(png_rgb_scanlines(32, 32)), extra=png_chunk(b"tEXt", b"Comment\x00" + b"A" * size)
    )


def png_ztxt_bomb() -> bytes:
    """A PNG with a ``zTXt`` chunk inflating to 50 MB (compressed to about 50 KB)."""
    payload = b"Comment\x00\x00" + zlib.compress(b"A" * 50_000_000, 9)
    return png_raw(32, 32, zlib.compress(png_rgb_scanlines(32, 32)), extra=png_chunk(b"zTXt", payload))


def png_idat_corrupt_deflate() -> bytes:
    """A PNG whose chunks and CRCs are valid but whose IDAT holds random bytes, not a zlib stream."""
    return png_raw(32, 32, random.Random(7).randbytes(300))


def png_idat_short() -> bytes:
    """A PNG with valid chunks and CRCs whose zlib stream holds only half of the scanlines."""
    return png_raw(32, 32, zlib.compress(png_rgb_scanlines(32, 32)[: 32 * 97 // 2]))


def png_bad_filter() -> bytes:
    """A PNG with valid chunks, CRCs and zlib stream, but scanline filter bytes of 9 (only 0-4 exist)."""
    return png_raw(32, 32, zlib.compress((b"\x09" + b"\x80" * 96) * 32))


def zip_with_jpeg() -> bytes:
    """A ZIP archive holding a JPEG."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("shoe.jpg", jpeg())
    return buffer.getvalue()


def pdf_document() -> bytes:
    """A minimal PDF document."""
    return (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
        b"trailer<</Root 1 0 R>>\n%%EOF\n"
    )


SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="64" height="48" '
    b'onload="alert(document.cookie)"><rect width="64" height="48" fill="red"/><script>alert(1)</script></svg>'
)
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script><img src=x onerror=alert(1)></body></html>"
# A GIF/JavaScript polyglot: "GIF89a" then "/*" as the width bytes opens a JS comment; valid JS, not a GIF.
GIF_JS_POLYGLOT = b"GIF89a/*\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00*/=1;alert(document.domain);//"


def truncated(data: bytes, fraction: float) -> bytes:
    """The first ``fraction`` of ``data``."""
    return data[: int(len(data) * fraction)]


# --- the table ---------------------------------------------------------------------------------

ACCEPT_JPG, ACCEPT_PNG, ACCEPT_WEBP = Accepted("jpg"), Accepted("png"), Accepted("webp")
UNREADABLE = Refused(400, "image_unreadable")
UNSUPPORTED = Refused(415, "image_format_unsupported")
TOO_SMALL = Refused(400, "image_too_small")
TOO_MANY_PIXELS = Refused(400, "image_too_many_pixels")


def _cases() -> list[FileCase]:
    red = (255, 0, 0)
    cases = [
        # Baselines and wrong extensions: the detected format decides, never the name or Content-Type.
        FileCase("jpeg_baseline", jpeg, "shoe.jpg", ACCEPT_JPG, expect_pixel(10, 10, (200, 30, 30), 6), note="control"),
        FileCase("png_named_jpg", png, "shoe.jpg", ACCEPT_PNG, note="PNG bytes, .jpg name"),
        FileCase("jpeg_named_png", jpeg, "shoe.png", ACCEPT_JPG, content_type="image/png"),
        FileCase("webp_named_gif", lambda: encode(solid(), "WEBP"), "shoe.gif", ACCEPT_WEBP, content_type="image/gif"),
        FileCase("jpeg_no_extension", jpeg, "shoe", ACCEPT_JPG, content_type="application/octet-stream"),
        FileCase("jpeg_progressive", lambda: encode(noise(), "JPEG", progressive=True), "p.jpg", ACCEPT_JPG),
        FileCase(
            "webp_lossless",
            lambda: encode(solid(), "WEBP", lossless=True),
            "l.webp",
            ACCEPT_WEBP,
            expect_pixel(5, 5, (200, 30, 30)),
        ),
        FileCase(
            "jpeg_mpo_gain_map",
            mpo_two_images,
            "hdr.jpg",
            ACCEPT_JPG,
            expect_pixel(10, 10, red, 6, (48, 64, 3)),
            note="multi-picture JPEG (phone HDR gain map / depth map)",
        ),
        # Empty, oversize, too small, odd shapes.
        FileCase("empty_file", lambda: b"", "empty.jpg", Refused(400, "image_empty")),
        FileCase(
            "oversize",
            lambda: encode(noise((200, 200)), "PNG"),
            "big.png",
            Refused(413, "image_too_large"),
            max_bytes=50_000,
            note="over SNEAKERS_UPLOAD_MAX_BYTES (lowered to 50,000 for the test)",
        ),
        FileCase("one_pixel", lambda: png((1, 1)), "dot.png", TOO_SMALL),
        FileCase("side_15_px", lambda: png((15, 200)), "thin.png", TOO_SMALL),
        FileCase("side_16_px", lambda: png((16, 16)), "min.png", ACCEPT_PNG, expect_pixel(0, 0, (200, 30, 30))),
        FileCase(
            "wide_20000x20",
            lambda: png((20000, 20)),
            "wide.png",
            ACCEPT_PNG,
            expect_pixel(0, 500, (200, 30, 30), 1, (1, 1024, 3)),
            note="downscaled to 1024 x 1",
        ),
        FileCase(
            "tall_20x20000_jpeg",
            lambda: jpeg((20, 20000)),
            "tall.jpg",
            ACCEPT_JPG,
            expect_pixel(500, 0, (200, 30, 30), 8, (1024, 1, 3)),
        ),
        # Decompression bombs (headers declaring huge sizes; nothing big is allocated).
        FileCase("png_bomb_100k_square", lambda: png_header_bomb(100_000, 100_000), "bomb.png", TOO_MANY_PIXELS),
        FileCase("png_bomb_72mp", lambda: png_header_bomb(9_000, 8_000), "bomb.png", TOO_MANY_PIXELS),
        FileCase("jpeg_bomb_65000_square", lambda: jpeg_header_bomb(65_000, 65_000), "bomb.jpg", TOO_MANY_PIXELS),
        FileCase("webp_bomb_16384_square", webp_header_bomb, "bomb.webp", TOO_MANY_PIXELS, note="VP8X canvas 268 MP"),
        FileCase("gif_bomb", lambda: encode(solid((32, 32), mode="P"), "GIF"), "bomb.gif", UNSUPPORTED),
        # Truncated and corrupt.
        FileCase("jpeg_truncated_2_3", lambda: truncated(encode(noise(), "JPEG"), 2 / 3), "t.jpg", UNREADABLE),
        FileCase("jpeg_headers_only", lambda: truncated(jpeg(), 0.3), "t.jpg", UNREADABLE),
        FileCase("jpeg_missing_eoi", lambda: jpeg()[:-2], "t.jpg", UNREADABLE, note="last 2 bytes (EOI) cut"),
        FileCase(
            "jpeg_progressive_truncated",
            lambda: truncated(encode(noise(), "JPEG", progressive=True), 0.5),
            "t.jpg",
            UNREADABLE,
        ),
        FileCase("png_truncated_2_3", lambda: truncated(encode(noise(), "PNG"), 2 / 3), "t.png", UNREADABLE),
        FileCase("png_missing_iend", lambda: png()[:-12], "t.png", UNREADABLE),
        FileCase(
            "png_bad_crc",
            lambda: png()[:-16] + b"\x00\x00\x00\x00" + png()[-12:],
            "t.png",
            UNREADABLE,
            note="IDAT CRC zeroed",
        ),
        FileCase("png_idat_not_deflate", png_idat_corrupt_deflate, "c.png", UNREADABLE, note="CRCs valid"),
        FileCase("png_idat_short", png_idat_short, "c.png", UNREADABLE, note="CRCs valid, half the rows"),
        FileCase("png_bad_filter_bytes", png_bad_filter, "c.png", UNREADABLE, note="CRCs and zlib valid"),
        FileCase("webp_truncated_2_3", lambda: truncated(encode(noise(), "WEBP"), 2 / 3), "t.webp", UNREADABLE),
        FileCase(
            "webp_riff_size_lie",
            lambda: (lambda w: w[:4] + struct.pack("<I", 10**9) + w[8:])(encode(solid(), "WEBP")),
            "t.webp",
            UNREADABLE,
        ),
        FileCase("jpeg_magic_only", lambda: b"\xff\xd8\xff\xe0" + b"\0" * 40, "m.jpg", UNREADABLE),
        FileCase("png_signature_only", lambda: PNG_SIGNATURE, "m.png", UNREADABLE),
        # Not images, renamed .jpg.
        FileCase("text_as_jpg", lambda: b"just some text\n" * 20, "notes.jpg", UNREADABLE),
        FileCase("html_as_jpg", lambda: HTML, "page.jpg", UNREADABLE),
        FileCase("svg_as_jpg", lambda: SVG, "vector.jpg", UNREADABLE, note="SVG with script"),
        FileCase("svg_as_svg", lambda: SVG, "vector.svg", UNREADABLE, content_type="image/svg+xml"),
        FileCase("pdf_as_jpg", pdf_document, "doc.jpg", UNREADABLE),
        FileCase("zip_as_jpg", zip_with_jpeg, "archive.jpg", UNREADABLE, note="ZIP holding a JPEG"),
        FileCase("gzip_as_jpg", lambda: gzip.compress(jpeg()), "x.jpg", UNREADABLE),
        FileCase("elf_as_jpg", lambda: b"\x7fELF\x02\x01\x01" + b"\0" * 100, "x.jpg", UNREADABLE),
        FileCase("php_as_jpg", lambda: b"<?php system($_GET['c']); ?>", "shell.jpg", UNREADABLE),
        FileCase("nul_bytes", lambda: b"\0" * 1024, "zero.jpg", UNREADABLE),
        FileCase("random_bytes", lambda: random.Random(3).randbytes(4096), "noise.jpg", UNREADABLE),
        FileCase("html_then_jpeg", lambda: HTML + jpeg(), "x.jpg", UNREADABLE, note="HTML prefix, JPEG after"),
        # Polyglots: valid images carrying something else; accepted, stored under a server-chosen name.
        FileCase(
            "jpeg_plus_zip",
            lambda: jpeg() + zip_with_jpeg(),
            "poly.jpg",
            ACCEPT_JPG,
            expect_pixel(5, 5, (200, 30, 30), 6),
        ),
        FileCase("jpeg_plus_html", lambda: jpeg() + HTML, "poly.html", ACCEPT_JPG, content_type="text/html"),
        FileCase("png_plus_html_after_iend", lambda: png() + HTML, "poly.png", ACCEPT_PNG),
        FileCase("jpeg_html_in_comment", lambda: encode(solid(), "JPEG", comment=HTML), "poly.jpg", ACCEPT_JPG),
        FileCase("gif_js_polyglot", lambda: GIF_JS_POLYGLOT, "poly.gif", UNREADABLE, content_type="image/gif"),
        # Valid images in formats that are not accepted.
        FileCase("bmp", lambda: encode(solid(), "BMP"), "shoe.bmp", UNSUPPORTED),
        FileCase("tiff", lambda: encode(solid(), "TIFF"), "shoe.tiff", UNSUPPORTED),
        FileCase("gif_static", lambda: encode(solid(mode="P"), "GIF"), "shoe.gif", UNSUPPORTED),
        FileCase("gif_animated", gif_animated, "anim.gif", UNSUPPORTED),
        FileCase("ico", lambda: encode(solid((32, 32)), "ICO"), "favicon.jpg", UNSUPPORTED),
        FileCase("jpeg2000", lambda: encode(solid(), "JPEG2000"), "shoe.jp2", UNSUPPORTED),
        FileCase("avif", lambda: encode(solid(), "AVIF"), "shoe.avif", UNSUPPORTED, note="phones' HEIF cousin"),
        FileCase("ppm", lambda: encode(solid(), "PPM"), "shoe.jpg", UNSUPPORTED),
        # Animated allowed formats: the first frame is used.
        FileCase("webp_animated", lambda: animated("WEBP"), "anim.webp", ACCEPT_WEBP, expect_pixel(5, 5, red, 8)),
        FileCase("png_animated_apng", lambda: animated("PNG"), "anim.png", ACCEPT_PNG, expect_pixel(5, 5, red)),
        # Colour modes.
        FileCase(
            "jpeg_cmyk",
            lambda: encode(solid((32, 32), (0, 255, 255, 0), "CMYK"), "JPEG", quality=95),
            "cmyk.jpg",
            ACCEPT_JPG,
            expect_pixel(16, 16, red, 40),
        ),
        FileCase(
            "png_16bit_gray",
            lambda: png_gray16(np.tile(np.array([65535, 32896, 1028, 0], np.uint16).repeat(8), (16, 1))),
            "g16.png",
            ACCEPT_PNG,
            expect_pixel(0, 16, (4, 4, 4), 0, (16, 32, 3)),
            note="4 * 257 -> 4, not clipped",
        ),
        FileCase(
            "png_48bit_rgb",
            lambda: png_rgb48(32, 32, 0xFF00),
            "rgb48.png",
            ACCEPT_PNG,
            expect_pixel(3, 3, (255, 255, 255), 1),
        ),
        FileCase(
            "jpeg_grayscale",
            lambda: encode(solid(colour=90, mode="L"), "JPEG"),
            "g.jpg",
            ACCEPT_JPG,
            expect_pixel(3, 3, (90, 90, 90), 2),
        ),
        FileCase(
            "png_grayscale",
            lambda: encode(solid(colour=77, mode="L"), "PNG"),
            "g.png",
            ACCEPT_PNG,
            expect_pixel(3, 3, (77, 77, 77)),
        ),
        FileCase(
            "png_bilevel",
            lambda: encode(solid(colour=1, mode="1"), "PNG"),
            "b.png",
            ACCEPT_PNG,
            expect_pixel(3, 3, (255, 255, 255)),
        ),
        FileCase(
            "png_rgba_transparent",
            lambda: encode(solid(colour=(255, 0, 0, 0), mode="RGBA"), "PNG"),
            "a.png",
            ACCEPT_PNG,
            expect_pixel(3, 3, (255, 255, 255)),
            note="fully transparent red -> white",
        ),
        FileCase(
            "png_la_half",
            lambda: encode(solid(colour=(0, 128), mode="LA"), "PNG"),
            "la.png",
            ACCEPT_PNG,
            expect_pixel(3, 3, (127, 127, 127), 2),
        ),
        FileCase(
            "png_palette_trns",
            lambda: encode(_palette_with_transparency(), "PNG", transparency=0),
            "p.png",
            ACCEPT_PNG,
            expect_pixel(3, 3, (255, 255, 255)),
        ),
        FileCase(
            "webp_rgba",
            lambda: encode(solid(colour=(0, 0, 255, 255), mode="RGBA"), "WEBP", lossless=True),
            "a.webp",
            ACCEPT_WEBP,
            expect_pixel(3, 3, (0, 0, 255)),
        ),
        # EXIF.
        *[
            FileCase(
                f"exif_orientation_{o}",
                lambda o=o: jpeg_with_orientation(o),
                "phone.jpg",
                ACCEPT_JPG,
                expect_upright(o),
            )
            for o in range(1, 9)
        ],
        FileCase(
            "exif_orientation_9_invalid",
            lambda: jpeg_with_orientation(9),
            "phone.jpg",
            ACCEPT_JPG,
            expect_upright(1),
            note="out-of-range value ignored",
        ),
        FileCase(
            "exif_malformed",
            lambda: encode(solid(), "JPEG", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7fjunk"),
            "m.jpg",
            ACCEPT_JPG,
            expect_pixel(5, 5, (200, 30, 30), 6, (48, 64, 3)),
        ),
        # Giant metadata.
        FileCase(
            "png_text_chunk_5mb",
            lambda: png_with_text(5_000_000),
            "meta.png",
            ACCEPT_PNG,
            expect_pixel(0, 0, (128, 128, 128)),
        ),
        FileCase(
            "png_ztxt_bomb_50mb", png_ztxt_bomb, "meta.png", UNREADABLE, note="Pillow refuses text over 1 MB inflated"
        ),
        FileCase(
            "png_exif_2mb_garbage",
            lambda: png_raw(
                32,
                32,
                zlib.compress(png_rgb_scanlines(32, 32)),
                extra=png_chunk(b"eXIf", random.Random(5).randbytes(2_000_000)),
            ),
            "meta.png",
            ACCEPT_PNG,
            expect_pixel(0, 0, (128, 128, 128)),
        ),
        FileCase(
            "jpeg_icc_1mb",
            lambda: encode(solid(), "JPEG", icc_profile=random.Random(9).randbytes(1_000_000)),
            "icc.jpg",
            ACCEPT_JPG,
            expect_pixel(5, 5, (200, 30, 30), 6),
        ),
        FileCase("jpeg_comments_5mb", lambda: jpeg_comments(5_000_000), "com.jpg", ACCEPT_JPG),
        FileCase("jpeg_exif_60kb", jpeg_big_exif, "exif.jpg", ACCEPT_JPG),
        # Hostile file names (valid JPEG bytes): never part of a stored path.
        FileCase("name_traversal_unix", jpeg, "../../etc/passwd.jpg", ACCEPT_JPG),
        FileCase("name_traversal_windows", jpeg, "..\\..\\windows\\win.ini.jpg", ACCEPT_JPG),
        FileCase("name_absolute", jpeg, "/etc/cron.d/evil.jpg", ACCEPT_JPG),
        FileCase("name_with_nul", jpeg, "shoe\x00.php.jpg", ACCEPT_JPG),
        FileCase("name_very_long", jpeg, "a" * 600 + ".jpg", ACCEPT_JPG, note="kept as its last 255 characters"),
        FileCase("name_php", jpeg, "shell.php", ACCEPT_JPG),
        FileCase("name_html", jpeg, "index.html", ACCEPT_JPG, content_type="text/html"),
        FileCase("name_unicode", jpeg, "スニーカー 👟 ünïcödé.jpg", ACCEPT_JPG),
        FileCase("name_rtl_override", jpeg, "shoe\u202egpj.exe", ACCEPT_JPG),
        FileCase("name_htaccess", jpeg, ".htaccess", ACCEPT_JPG),
        FileCase("name_windows_reserved", jpeg, "CON.jpg", ACCEPT_JPG),
        FileCase("name_percent_encoded", jpeg, "%2e%2e%2f%2e%2e%2fetc%2fpasswd.jpg", ACCEPT_JPG),
    ]
    return cases


def _palette_with_transparency() -> Image.Image:
    """A palette image: index 0 (red, transparent) everywhere except the right half (index 1, green)."""
    image = Image.new("P", (20, 20), 0)
    image.putpalette([255, 0, 0, 0, 128, 0] + [0, 0, 0] * 254)
    image.paste(1, (10, 0, 20, 20))
    return image


FILE_CASES: dict[str, FileCase] = {case.name: case for case in _cases()}
"""Every file case by name."""

ACCEPTED_WITH_CHECK = [name for name, case in FILE_CASES.items() if case.check is not None]
"""Accepted cases whose ``load_rgb`` output is checked."""


# --- malformed requests ------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestCase:
    """A malformed upload request (not a bad file): how to send it and the expected answers.

    Attributes:
        name: case id.
        send: ``send(client, url)`` posts with a Django ``Client`` or DRF ``APIClient`` and returns the response.
        api: expected API refusal (status, code).
        site_status: expected status of ``POST /``.
        site_message: text expected on the site's page.
    """

    name: str
    send: Callable[[Any, str], Any]
    api: Refused
    site_status: int
    site_message: str
    note: str = ""


BOUNDARY = "----sneakers-badinput-boundary"


def multipart(parts: list[tuple[str, str | None, bytes, str]]) -> tuple[bytes, str]:
    """A raw ``multipart/form-data`` body and its Content-Type, byte for byte as given.

    ``parts`` are ``(field, filename or None, data, content_type)``. The file name is sent exactly (UTF-8,
    with only ``"``, CR and LF percent-escaped as browsers do), unlike Django's test client, which keeps
    only the base name: path traversal and NUL reach the server as a hostile client would send them.
    """
    lines = []
    for field, filename, data, content_type in parts:
        disposition = f'form-data; name="{field}"'
        if filename is not None:
            safe = filename.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
            disposition += f'; filename="{safe}"'
        lines.append(
            f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\nContent-Type: {content_type}\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    body = b"".join(lines) + f"--{BOUNDARY}--\r\n".encode()
    return body, f"multipart/form-data; boundary={BOUNDARY}"


def post_multipart(client: Any, url: str, parts: list[tuple[str, str | None, bytes, str]]) -> Any:
    """POST a raw multipart body (see ``multipart``) with a Django ``Client`` or DRF ``APIClient``."""
    body, content_type = multipart(parts)
    return client.post(url, body, content_type=content_type)


def post_file(client: Any, url: str, case: FileCase, data: bytes | None = None) -> Any:
    """POST one ``FileCase`` as the ``image`` field (``data`` defaults to ``case.build()``)."""
    payload = case.build() if data is None else data
    return post_multipart(client, url, [("image", case.filename, payload, case.content_type)])


def _file_part(name: str = "shoe.jpg", field: str = "image") -> tuple[str, str | None, bytes, str]:
    return (field, name, jpeg(), "image/jpeg")


REQUEST_CASES: dict[str, RequestCase] = {
    case.name: case
    for case in [
        RequestCase(
            "missing_field",
            lambda c, url: post_multipart(c, url, [("note", None, b"hello", "text/plain")]),
            Refused(400, "invalid"),
            400,
            "Choose one photo",
        ),
        RequestCase(
            "empty_multipart",
            lambda c, url: post_multipart(c, url, []),
            Refused(400, "invalid"),
            400,
            "Choose one photo",
        ),
        RequestCase(
            "wrong_field_name",
            lambda c, url: post_multipart(c, url, [_file_part(field="photo")]),
            Refused(400, "invalid"),
            400,
            "Choose one photo",
        ),
        RequestCase(
            "image_as_text_field",
            lambda c, url: post_multipart(c, url, [("image", None, b"not a file", "text/plain")]),
            Refused(400, "invalid"),
            400,
            "Choose one photo",
        ),
        RequestCase(
            "two_files",
            lambda c, url: post_multipart(c, url, [_file_part("a.jpg"), _file_part("b.jpg")]),
            Refused(400, "invalid"),
            400,
            "Upload one photo at a time",
        ),
        RequestCase(
            "json_body",
            lambda c, url: c.post(url, '{"image": "x"}', content_type="application/json"),
            Refused(415, "unsupported_media_type"),
            400,
            "Choose one photo",
        ),
        RequestCase(
            "raw_jpeg_body",
            lambda c, url: c.post(url, jpeg(), content_type="image/jpeg"),
            Refused(415, "unsupported_media_type"),
            400,
            "Choose one photo",
        ),
        RequestCase(
            "multipart_without_boundary",
            lambda c, url: c.post(url, b"--x\r\n\r\n", content_type="multipart/form-data"),
            Refused(400, "parse_error"),
            400,
            "Bad Request",
        ),
        RequestCase(
            "filename_dotdot",
            lambda c, url: post_multipart(c, url, [("image", "..", jpeg(), "image/jpeg")]),
            Refused(400, "invalid"),
            400,
            "Choose one photo",
            note="Django drops a part named '..': no file",
        ),
        RequestCase(
            "filename_over_1kb",
            lambda c, url: post_multipart(c, url, [("image", "a" * 2000 + ".jpg", jpeg(), "image/jpeg")]),
            Refused(400, "parse_error"),
            400,
            "Bad Request",
            note="part headers over Django's 1 KB limit",
        ),
        RequestCase(
            "empty_filename",
            lambda c, url: post_multipart(c, url, [("image", "", jpeg(), "image/jpeg")]),
            Refused(400, "invalid"),
            400,
            "Choose one photo",
            note="a part with an empty file name is not a file (Django)",
        ),
    ]
}
"""Every malformed-request case by name."""
