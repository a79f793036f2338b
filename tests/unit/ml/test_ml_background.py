"""Background removal: GrabCut, U^2-Net-p (with the shared weights), policy of remove_background."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.unit.ml.ml_helpers import U2NETP_PATH, draw_shoe
from worker.ml.background import (
    Cutout,
    GrabCutRemover,
    NoRemover,
    U2NetpRemover,
    make_remover,
    remove_background,
)
from worker.ml.errors import ModelError


def ellipse_on_texture(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A dark ellipse ("shoe") on a noisy, textured light background, and its true mask."""
    rng = np.random.default_rng(seed)
    height, width = 180, 240
    texture = rng.integers(150, 250, size=(height // 6, width // 6, 3), dtype=np.uint8)
    background = Image.fromarray(texture).resize((width, height), Image.Resampling.BILINEAR)
    noise = rng.integers(-15, 16, size=(height, width, 3))
    photo = np.clip(np.asarray(background, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    mask_image = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask_image).ellipse((50, 50, 190, 130), fill=255)
    truth = np.asarray(mask_image) > 127
    shoe = np.clip(rng.normal((40, 30, 90), 12, size=(height, width, 3)), 0, 255).astype(np.uint8)
    photo[truth] = shoe[truth]
    return photo, truth


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_grabcut_finds_the_ellipse():
    photo, truth = ellipse_on_texture()
    cutout = GrabCutRemover()(photo)
    assert cutout.method == "grabcut"
    assert cutout.image.shape == photo.shape and cutout.mask.shape == truth.shape
    assert cutout.mask.dtype == np.float32 and 0.0 <= cutout.mask.min() and cutout.mask.max() <= 1.0
    assert iou(cutout.mask >= 0.5, truth) > 0.6
    # Background composited to white.
    assert cutout.image[5, 5].tolist() == [255, 255, 255]


def test_grabcut_is_repeatable():
    photo, _ = ellipse_on_texture(seed=1)
    assert np.array_equal(GrabCutRemover()(photo).mask, GrabCutRemover()(photo).mask)


def test_remove_background_crops_to_the_shoe_with_a_margin():
    photo, truth = ellipse_on_texture()
    cutout = remove_background(photo, GrabCutRemover())
    assert cutout.method == "grabcut"
    height, width = cutout.image.shape[:2]
    # Ellipse box is 140 x 80 px; an 8 % margin of 140 px adds ~11 px a side.
    assert 140 <= width <= 175 and 80 <= height <= 115
    assert cutout.mask.shape == (height, width)


def test_plain_background_is_skipped():
    photo = draw_shoe((200, 20, 20), seed=3)
    cutout = remove_background(photo, GrabCutRemover())
    assert cutout.method == "skipped"
    assert cutout.image is photo and cutout.mask.min() == 1.0
    assert remove_background(photo, GrabCutRemover(), skip_plain=False).method == "grabcut"


class _EmptyMask:
    name = "fake"

    def __call__(self, rgb: np.ndarray) -> Cutout:
        return Cutout(image=np.full_like(rgb, 255), mask=np.zeros(rgb.shape[:2], np.float32), method=self.name)


class _FullMask(_EmptyMask):
    def __call__(self, rgb: np.ndarray) -> Cutout:
        return Cutout(image=rgb, mask=np.ones(rgb.shape[:2], np.float32), method=self.name)


@pytest.mark.parametrize("remover", [_EmptyMask(), _FullMask()])
def test_degenerate_masks_fall_back_to_the_photo(remover):
    photo, _ = ellipse_on_texture()
    cutout = remove_background(photo, remover)
    assert cutout.method == "fake-rejected"
    assert np.array_equal(cutout.image, photo) and cutout.mask.min() == 1.0


def test_no_remover_keeps_the_photo():
    photo, _ = ellipse_on_texture()
    cutout = remove_background(photo, NoRemover())
    assert cutout.method == "none" and np.array_equal(cutout.image, photo)


def test_make_remover_by_name(tmp_path):
    assert make_remover("grabcut", model_path=None).name == "grabcut"
    assert make_remover("none", model_path=None).name == "none"
    with pytest.raises(ValueError):
        make_remover("magic", model_path=None)
    with pytest.raises(ModelError) as missing:
        make_remover("u2netp", model_path=tmp_path / "absent.onnx")
    assert missing.value.code == "model_unavailable"
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is not an onnx model")
    with pytest.raises(ModelError):
        make_remover("u2netp", model_path=corrupt)


@pytest.mark.shared_data
@pytest.mark.skipif(not U2NETP_PATH.is_file(), reason=f"U^2-Net-p weights not found at {U2NETP_PATH}")
def test_u2netp_runs_on_a_made_photo():
    photo, truth = ellipse_on_texture()
    remover = U2NetpRemover(U2NETP_PATH, intra_op_threads=2)
    cutout = remover(photo)
    assert cutout.method == "u2netp"
    assert cutout.image.shape == photo.shape and cutout.image.dtype == np.uint8
    assert cutout.mask.shape == truth.shape and cutout.mask.dtype == np.float32
    assert 0.0 <= cutout.mask.min() and cutout.mask.max() <= 1.0
    assert iou(cutout.mask >= 0.5, truth) > 0.6  # a salient dark blob on a light texture


@pytest.mark.shared_data
@pytest.mark.skipif(not U2NETP_PATH.is_file(), reason=f"U^2-Net-p weights not found at {U2NETP_PATH}")
def test_u2netp_runs_at_other_input_sizes():
    """320 is the file's own size; 224 and 192 work once the input's height and width are free dimensions, and
    find the same made object."""
    pytest.importorskip("onnx")
    photo, truth = ellipse_on_texture()
    for side in (224, 192):
        remover = U2NetpRemover(U2NETP_PATH, input_size=side, intra_op_threads=1)
        cutout = remover(photo)
        assert cutout.mask.shape == truth.shape
        assert iou(cutout.mask >= 0.5, truth) > 0.6
    with pytest.raises(ValueError):
        U2NetpRemover(U2NETP_PATH, input_size=16)


def test_free_spatial_dims_refuses_a_corrupt_file(tmp_path):
    pytest.importorskip("onnx")
    from worker.ml.background import free_spatial_dims

    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage that protobuf cannot read\xff\xff")
    with pytest.raises(ModelError):
        free_spatial_dims(corrupt)
