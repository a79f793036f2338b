"""The serving hot path's speed-related pieces: the stored cut-out's size and encoding, and the per-process
thread budget of the inference worker."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from worker.ml.background import thread_budget
from worker.ml.pipeline import CUTOUT_MAX_SIDE, encode_cutout


def test_a_large_cutout_is_stored_scaled_down_keeping_its_shape():
    rgb = np.full((768, 1024, 3), 255, dtype=np.uint8)
    rgb[200:500, 300:800] = (200, 30, 40)
    data = encode_cutout(rgb)
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    assert image.size == (CUTOUT_MAX_SIDE, 384)  # 1024 x 768 -> 512 x 384
    pixels = np.asarray(image.convert("RGB"))
    assert tuple(pixels[192, 256]) == (200, 30, 40) and tuple(pixels[10, 10]) == (255, 255, 255)


def test_a_small_cutout_is_stored_as_it_is():
    rgb = np.random.default_rng(0).integers(0, 256, (120, 90, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_cutout(rgb)))), rgb)


def test_a_cutout_must_be_an_rgb_array():
    with pytest.raises(ValueError):
        encode_cutout(np.zeros((10, 10), dtype=np.uint8))


@pytest.mark.parametrize(("value", "expected"), [("1", 1), ("2", 2), ("0", None), ("", None), ("many", None)])
def test_thread_budget_comes_from_omp_num_threads(monkeypatch, value, expected):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert thread_budget() == expected


def test_no_thread_budget_without_omp_num_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert thread_budget() is None
