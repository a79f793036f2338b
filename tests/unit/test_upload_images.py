"""Upload validation of ``catalog.images.inspect_image``: what the service accepts, decided cheaply.

Images are made by the tests (Pillow, hand-built PNG chunks); no outside files.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import catalog.images as images_module
from catalog.images import MIN_SIDE, ImageRejected, inspect_image
from tests.unit.ml.ml_helpers import draw_shoe, to_bytes

ROOT = Path(__file__).resolve().parents[2]


def pil_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width x height`` RGB pixels, with one tiny IDAT: a cheap bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + png_chunk(b"IEND", b"")
    )


def png_with_raw_idat(width: int, height: int, idat: bytes, *, interlace: int = 0) -> bytes:
    """An 8-bit RGB PNG whose IDAT payload is ``idat`` as given; every chunk CRC is right."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, interlace)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png_from_scanlines(width: int, height: int, scanlines: bytes, *, interlace: int = 0) -> bytes:
    """An 8-bit RGB PNG whose IDAT holds ``zlib.compress(scanlines)``."""
    return png_with_raw_idat(width, height, zlib.compress(scanlines), interlace=interlace)


def grey_rows(width: int, rows: int, filter_byte: int = 0) -> bytes:
    return (bytes([filter_byte]) + b"\x80" * (3 * width)) * rows


def error_code(*args, **kwargs) -> str:
    with pytest.raises(ImageRejected) as info:
        inspect_image(*args, **kwargs)
    return info.value.code


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_accepts_allowed_formats(fmt):
    info = inspect_image(to_bytes(draw_shoe((200, 0, 0), seed=1), fmt))
    assert (info.format, info.width, info.height) == (fmt, 96, 72)


def test_refuses_gif_as_unsupported_format():
    assert error_code(pil_bytes(Image.new("P", (32, 32)), "GIF")) == "image_format_unsupported"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "image_empty"),
        (b"hello, this is certainly not an image\n" * 10, "image_unreadable"),
        (b"\xff\xd8\xff\xe0" + b"\0" * 40, "image_unreadable"),  # JPEG magic, no image
    ],
)
def test_refuses_bad_bytes(data, code):
    assert error_code(data) == code


def test_too_many_bytes():
    data = to_bytes(draw_shoe((0, 0, 200), seed=2), "PNG")
    assert error_code(data, max_bytes=len(data) - 1) == "image_too_large"
    assert inspect_image(data, max_bytes=len(data)).format == "PNG"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_file_is_unreadable(fmt):
    rng = np.random.default_rng(0)
    data = to_bytes(rng.integers(0, 256, size=(128, 128, 3), dtype=np.uint8), fmt)
    assert error_code(data[: len(data) * 2 // 3]) == "image_unreadable"


def test_decompression_bomb_header_is_refused_without_decoding(decodes, monkeypatch):
    inflated = []
    monkeypatch.setattr(images_module, "_check_png_pixel_data", lambda data: inflated.append(len(data)))
    # Pillow's own guard (DecompressionBombError above 2 x 89.5 MP) is mapped too.
    assert error_code(png_header_only(100_000, 100_000)) == "image_too_many_pixels"
    # Between our limit (64 MP) and Pillow's: our check.
    assert error_code(png_header_only(9_000, 8_000)) == "image_too_many_pixels"
    # Refused from the header alone: neither Pillow's decoder nor our inflating check ran.
    assert decodes == [] and inflated == []


def test_too_small_image():
    assert error_code(pil_bytes(Image.new("RGB", (MIN_SIDE - 1, 200), "red"), "PNG")) == "image_too_small"
    assert inspect_image(pil_bytes(Image.new("RGB", (MIN_SIDE, MIN_SIDE), "red"), "PNG")).width == MIN_SIDE


def test_image_rejected_refuses_unknown_codes():
    with pytest.raises(ValueError):
        ImageRejected("image_weird", "no")


def test_reports_the_stored_size_before_exif_orientation():
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = pil_bytes(Image.new("RGB", (60, 40), "white"), "JPEG", exif=exif.tobytes())
    assert (inspect_image(data).width, inspect_image(data).height) == (60, 40)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_malformed_exif_is_accepted():
    data = pil_bytes(Image.new("RGB", (50, 30), "green"), "JPEG", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7fjunk")
    assert inspect_image(data).format == "JPEG"


def test_large_phone_photo_is_checked_at_one_eighth_scale(decodes):
    gradient = np.linspace(0, 255, 8000, dtype=np.uint8)
    image = Image.fromarray(np.broadcast_to(gradient[None, :, None], (6000, 8000, 3)).copy())
    data = pil_bytes(image, "JPEG", quality=80)  # 48 MP
    # The whole stream is checked with a 1/8-scale decode (1000 x 750), never the full 48 MP.
    assert inspect_image(data).width == 8000
    assert set(decodes) == {("JPEG", (1000, 750))}


def test_multi_picture_jpeg_is_a_jpeg():
    # Phones write HDR gain maps and depth maps as a second image behind a Multi-Picture index; Pillow
    # opens such files as "MPO". They used to be refused as an unsupported format.
    first, second = Image.new("RGB", (64, 48), (255, 0, 0)), Image.new("RGB", (64, 48), (0, 0, 255))
    data = pil_bytes(first, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert inspect_image(data).format == "JPEG"


@pytest.mark.parametrize(
    ("label", "data"),
    [
        ("not a zlib stream", png_with_raw_idat(32, 32, bytes(range(256)) * 2)),
        ("half the rows", png_from_scanlines(32, 32, grey_rows(32, 16))),
        ("one byte short", png_from_scanlines(32, 32, grey_rows(32, 32)[:-1])),
        ("filter byte 9", png_from_scanlines(32, 32, grey_rows(32, 32, filter_byte=9))),
        ("no rows", png_from_scanlines(32, 32, b"")),
    ],
)
def test_png_with_valid_crcs_but_bad_pixel_data_is_unreadable(label, data):
    Image.open(io.BytesIO(data)).verify()  # Pillow's own check passes: the CRCs are right
    assert error_code(data) == "image_unreadable", label


def test_png_pixel_data_check_accepts_interlaced_and_extra_data():
    # Adam7, 20 x 18: passes of 3x3, 2x3, 5x2, 5x5, 10x4, 10x9, 20x9 pixels (PNG spec 8.2).
    widths_heights = [(3, 3), (2, 3), (5, 2), (5, 5), (10, 4), (10, 9), (20, 9)]
    scanlines = b"".join(grey_rows(w, h) for w, h in widths_heights)
    assert inspect_image(png_from_scanlines(20, 18, scanlines, interlace=1)).width == 20
    assert error_code(png_from_scanlines(20, 18, scanlines[:-1], interlace=1)) == "image_unreadable"
    # Bytes beyond the announced rows are ignored, as decoders do.
    assert inspect_image(png_from_scanlines(32, 32, grey_rows(32, 33))).height == 32


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBA", "LA", "I;16"])
def test_png_pixel_data_check_accepts_every_mode_pillow_writes(mode):
    assert inspect_image(pil_bytes(Image.new(mode, (37, 23)), "PNG")).height == 23


def test_png_pixel_data_check_holds_little_memory_on_a_64_megapixel_png(decodes):
    data = pil_bytes(Image.new("RGBA", (8000, 8000)), "PNG", compress_level=1)  # 256 MB of pixels, ~1 MB file
    tracemalloc.start()
    try:
        assert inspect_image(data).width == 8000
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Pillow never decodes the pixels, and the check inflates the 256 MB stream in pieces of at most
    # _INFLATE_PIECE (1 MiB) bytes, keeping none: measured peak 3.2 MB of Python allocations (the file's
    # IDAT copied once, plus one piece); inflating it whole would hold 256 MB.
    assert decodes == []
    assert peak < 16 * 2**20


def test_upload_validation_imports_no_django_and_no_ml_package():
    code = (
        "import sys, catalog.images;"
        "banned = {'django', 'worker', 'tensorflow', 'keras', 'cv2', 'onnxruntime', 'sklearn', 'scipy'};"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in banned);"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(ROOT))
