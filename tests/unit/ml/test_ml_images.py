"""Decoding and simple image operations of ``worker.ml.images``.

Upload validation (``inspect_image``) is ``catalog.images``, tested in ``tests/unit/test_upload_images.py``.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.unit.ml.ml_helpers import draw_shoe, to_bytes
from worker.ml.errors import ImageError
from worker.ml.images import (
    encode_jpeg,
    encode_png,
    has_plain_background,
    load_rgb,
    square_pad_resize,
)


def pil_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width x height`` RGB pixels, with one tiny IDAT: a cheap bomb."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def error_code(call, *args, **kwargs) -> str:
    with pytest.raises(ImageError) as info:
        call(*args, **kwargs)
    return info.value.code


# --- load_rgb: the decoder's own bounds and errors ---------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, this is certainly not an image\n" * 10,
        b"\xff\xd8\xff\xe0" + b"\0" * 40,  # JPEG magic, no image
    ],
)
def test_bytes_pillow_cannot_read_are_unreadable(data):
    assert error_code(load_rgb, data) == "image_unreadable"


def test_too_many_bytes():
    data = to_bytes(draw_shoe((0, 0, 200), seed=2), "PNG")
    assert error_code(load_rgb, data, max_bytes=len(data) - 1) == "image_too_large"
    assert load_rgb(data, max_bytes=len(data)).shape == (72, 96, 3)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_file_is_unreadable(fmt):
    rng = np.random.default_rng(0)
    data = to_bytes(rng.integers(0, 256, size=(128, 128, 3), dtype=np.uint8), fmt)
    truncated = data[: len(data) * 2 // 3]
    assert error_code(load_rgb, truncated) == "image_unreadable"


def test_decompression_bomb_header_is_refused_without_decoding(decodes):
    # Pillow's own guard (DecompressionBombError above 2 x 89.5 MP) is mapped too.
    assert error_code(load_rgb, png_header_only(100_000, 100_000)) == "image_too_many_pixels"
    # Between the default bound (64 MP) and Pillow's: the loader's check, from the header alone.
    assert error_code(load_rgb, png_header_only(9_000, 8_000)) == "image_too_many_pixels"
    assert error_code(load_rgb, png_header_only(300, 200), max_pixels=300 * 200 - 1) == "image_too_many_pixels"
    assert decodes == []


def test_image_error_rejects_unknown_codes():
    with pytest.raises(ValueError):
        ImageError("image_weird", "no")


# --- load_rgb -----------------------------------------------------------------------------------


def test_exif_orientation_6_rotates_the_picture():
    stored = np.full((40, 60, 3), 255, np.uint8)  # 60 wide, 40 high
    stored[:10, :10] = (255, 0, 0)  # red block top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = pil_bytes(Image.fromarray(stored), "JPEG", exif=exif.tobytes(), quality=95)
    upright = load_rgb(data)
    assert upright.shape == (60, 40, 3)
    top_right = upright[:10, -10:].reshape(-1, 3).mean(axis=0)
    assert top_right[0] > 200 and top_right[1] < 80  # the red block moved to the top right


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_malformed_exif_is_tolerated():
    data = pil_bytes(Image.new("RGB", (50, 30), "green"), "JPEG", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7fjunk")
    assert load_rgb(data).shape == (30, 50, 3)


def test_rgba_is_composited_on_white():
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[:, :10] = (0, 0, 255, 255)  # opaque blue left
    rgba[:, 10:] = (255, 0, 0, 0)  # fully transparent red right
    rgb = load_rgb(pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert rgb.dtype == np.uint8 and rgb.shape == (20, 20, 3)
    assert tuple(rgb[5, 2]) == (0, 0, 255)
    assert tuple(rgb[5, 15]) == (255, 255, 255)


def test_la_half_transparent_black_becomes_mid_grey():
    la = Image.merge("LA", [Image.new("L", (20, 20), 0), Image.new("L", (20, 20), 128)])
    rgb = load_rgb(pil_bytes(la, "PNG"))
    assert abs(int(rgb[0, 0, 0]) - 127) <= 2 and len(set(rgb[0, 0])) == 1


def test_palette_with_transparency_goes_white():
    image = Image.new("P", (20, 20), 1)
    image.putpalette([255, 0, 0] + [0, 128, 0] + [0, 0, 0] * 254)
    for x in range(10):
        for y in range(20):
            image.putpixel((x, y), 0)
    rgb = load_rgb(pil_bytes(image, "PNG", transparency=0))
    assert tuple(rgb[3, 3]) == (255, 255, 255)  # index 0 (red) is transparent
    assert tuple(rgb[3, 15]) == (0, 128, 0)


def test_cmyk_jpeg_converts_to_rgb():
    data = pil_bytes(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95)
    rgb = load_rgb(data)
    red, green, blue = rgb[16, 16].astype(int)
    assert red > 200 and green < 60 and blue < 60


def test_sixteen_bit_png_is_scaled_not_clipped():
    values = np.zeros((16, 32), np.uint16)
    values[:, :8] = 65535
    values[:, 8:16] = 32896  # 128 * 257
    values[:, 16:24] = 1028  # 4 * 257: clipping to 255 would give 255
    data = pil_bytes(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    rgb = load_rgb(data)
    assert tuple(rgb[0, [0, 8, 16, 24], 0]) == (255, 128, 4, 0)


def test_greyscale_and_bilevel_convert():
    assert load_rgb(pil_bytes(Image.new("L", (20, 20), 77), "PNG"))[0, 0].tolist() == [77, 77, 77]
    assert load_rgb(pil_bytes(Image.new("1", (20, 20), 1), "PNG"))[0, 0].tolist() == [255, 255, 255]


def test_animated_png_gives_first_frame():
    frames = [Image.new("RGB", (20, 20), colour) for colour in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:])
    data = buffer.getvalue()
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert tuple(load_rgb(data)[0, 0]) == (255, 0, 0)


def test_large_phone_photo_is_decoded_at_reduced_size(decodes):
    gradient = np.linspace(0, 255, 8000, dtype=np.uint8)
    image = Image.fromarray(np.broadcast_to(gradient[None, :, None], (6000, 8000, 3)).copy())
    data = pil_bytes(image, "JPEG", quality=80)  # 48 MP
    # Draft mode: for a 1024 px result the decoder scales by 1/4 (2000 x 1500, the smallest scale still
    # >= 1024 px), for 256 px by 1/8; the 8000 x 6000 picture is never decoded at full size.
    assert load_rgb(data).shape == (768, 1024, 3)
    assert set(decodes) == {("JPEG", (2000, 1500))}
    decodes.clear()
    assert load_rgb(data, max_side=256).shape == (192, 256, 3)
    assert set(decodes) == {("JPEG", (1000, 750))}


def test_small_images_are_not_upscaled():
    assert load_rgb(to_bytes(draw_shoe((0, 0, 0), seed=3), "PNG")).shape == (72, 96, 3)


# --- array helpers ------------------------------------------------------------------------------


def test_square_pad_resize_pads_with_white_and_centres():
    rgb = np.zeros((50, 100, 3), np.uint8)
    rgb[...] = (200, 0, 0)
    square = square_pad_resize(rgb, size=224)
    assert square.shape == (224, 224, 3) and square.dtype == np.uint8
    assert tuple(square[0, 112]) == (255, 255, 255)
    assert tuple(square[-1, 112]) == (255, 255, 255)
    assert tuple(square[112, 112]) == (200, 0, 0)
    assert tuple(square_pad_resize(rgb, size=32, fill=0)[0, 0]) == (0, 0, 0)
    with pytest.raises(ValueError):
        square_pad_resize(np.zeros((5, 5), np.uint8))


def test_plain_background_detection():
    assert has_plain_background(draw_shoe((200, 0, 0), seed=1, background="white"))
    assert not has_plain_background(draw_shoe((200, 0, 0), seed=1, background="noise"))
    assert not has_plain_background(np.full((50, 50, 3), 40, np.uint8))  # uniform but dark
    assert has_plain_background(np.full((50, 50, 3), 235, np.uint8))  # light grey studio
    # A tightly cropped shot: the shoe touches both sides; 3/4 of the border is still white.
    tight = np.full((100, 100, 3), 255, np.uint8)
    tight[40:70, :] = (20, 20, 20)
    assert has_plain_background(tight)
    # JPEG noise on white stays plain.
    noisy = np.clip(255 - np.random.default_rng(0).integers(0, 20, (60, 60, 3)), 0, 255).astype(np.uint8)
    assert has_plain_background(noisy)
    # Half of the border dark: not plain.
    half = np.full((100, 100, 3), 255, np.uint8)
    half[:, :50] = 90
    assert not has_plain_background(half)


def test_encoders_round_trip():
    rgb = draw_shoe((10, 200, 10), seed=5)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(rgb)))), rgb)
    jpeg = encode_jpeg(rgb, quality=95)
    assert jpeg[:2] == b"\xff\xd8"
    assert np.abs(load_rgb(jpeg).astype(int) - rgb).mean() < 6
    with pytest.raises(ValueError):
        encode_jpeg(rgb, quality=0)


def test_web_modules_import_no_heavy_libraries():
    code = (
        "import sys, worker.ml.images, worker.ml.errors, worker.ml.results, worker.ml.pipeline;"
        "heavy = {'tensorflow', 'keras', 'cv2', 'onnxruntime', 'sklearn', 'scipy'};"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy);"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[3]))


# --- multi-picture JPEG and PNG pixel data (issue 4 hardening) ----------------------------------


def test_multi_picture_jpeg_loads_its_first_image():
    # Phones write HDR gain maps and depth maps as a second image behind a Multi-Picture index; Pillow
    # opens such files as "MPO". They used to be refused as an unsupported format.
    first, second = Image.new("RGB", (64, 48), (255, 0, 0)), Image.new("RGB", (64, 48), (0, 0, 255))
    data = pil_bytes(first, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    rgb = load_rgb(data)
    assert rgb.shape == (48, 64, 3)
    assert rgb[24, 32, 0] > 240 and rgb[24, 32, 2] < 20


def png_from_scanlines(width: int, height: int, scanlines: bytes, *, interlace: int = 0) -> bytes:
    """An 8-bit RGB PNG whose IDAT holds ``zlib.compress(scanlines)``; every chunk CRC is right."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, interlace)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(scanlines)) + chunk(b"IEND", b"")


def grey_rows(width: int, rows: int) -> bytes:
    return (b"\0" + b"\x80" * (3 * width)) * rows


def test_interlaced_png_decodes():
    # Adam7, 20 x 18: passes of 3x3, 2x3, 5x2, 5x5, 10x4, 10x9, 20x9 pixels (PNG spec 8.2).
    widths_heights = [(3, 3), (2, 3), (5, 2), (5, 5), (10, 4), (10, 9), (20, 9)]
    scanlines = b"".join(grey_rows(w, h) for w, h in widths_heights)
    rgb = load_rgb(png_from_scanlines(20, 18, scanlines, interlace=1))
    assert rgb.shape == (18, 20, 3) and rgb[0, 0].tolist() == [128, 128, 128]
