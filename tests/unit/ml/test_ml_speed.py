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
    assert image.format == "JPEG"
    assert image.size == (CUTOUT_MAX_SIDE, 384)  # 1024 x 768 -> 512 x 384
    pixels = np.asarray(image.convert("RGB")).astype(int)
    assert np.abs(pixels[192, 256] - (200, 30, 40)).max() <= 6  # JPEG: within a few levels
    assert np.abs(pixels[10, 10] - 255).max() <= 2


def test_a_small_cutout_is_stored_at_its_size_and_close_to_it():
    rng = np.random.default_rng(0)
    rgb = np.full((120, 90, 3), 255, dtype=np.uint8)
    rgb[30:90, 20:70] = rng.integers(60, 200, 3, dtype=np.uint8)  # a flat shoe-coloured patch on white
    stored = np.asarray(Image.open(io.BytesIO(encode_cutout(rgb))).convert("RGB")).astype(int)
    assert stored.shape == rgb.shape
    assert np.abs(stored - rgb).mean() < 2.0


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


# --- the confidence cascade (Pipeline(skip_removal_above=...)) ------------------------------------------


class CountingRemover:
    """GrabCut that counts its calls."""

    name = "grabcut"

    def __init__(self) -> None:
        from worker.ml.background import GrabCutRemover

        self.inner = GrabCutRemover()
        self.calls = 0

    def __call__(self, rgb):
        self.calls += 1
        return self.inner(rgb)


@pytest.fixture(scope="module")
def cascade_artifact(tiny_backbone, tmp_path_factory):
    from tests.unit.ml.test_ml_training import catalog_samples
    from worker.ml.embeddings import EmbeddingCache
    from worker.ml.training import TrainingConfig, train_model

    cache = EmbeddingCache(tmp_path_factory.mktemp("cache"), tiny_backbone.fingerprint)
    return train_model(catalog_samples(), TrainingConfig(seed=0), backbone=tiny_backbone, cache=cache).artifact


def busy_photo(seed: int = 5) -> np.ndarray:
    from tests.unit.ml.ml_helpers import draw_shoe
    from tests.unit.ml.test_ml_training import BRANDS

    return draw_shoe(BRANDS["redco"][0], seed=seed, background="noise")


def test_a_confident_first_look_answers_without_removing_the_background(cascade_artifact, tiny_backbone):
    from worker.ml.pipeline import Pipeline

    remover = CountingRemover()
    photo = busy_photo()
    as_it_is = Pipeline(cascade_artifact, tiny_backbone, None, skip_plain=False).predict_rgb(photo)
    cascade = Pipeline(cascade_artifact, tiny_backbone, remover, skip_removal_above=0.01).predict_rgb(photo)
    assert remover.calls == 0
    assert cascade.background == "skipped-confident"
    assert [(b.brand, round(b.probability, 5)) for b in cascade.brands] == [
        (b.brand, round(b.probability, 5)) for b in as_it_is.brands
    ]
    np.testing.assert_allclose(cascade.embedding, as_it_is.embedding, atol=1e-6)
    assert cascade.timings_ms["embed"] < cascade.timings_ms["background"]  # the embedding was made in the first look


def test_an_unsure_first_look_removes_the_background_as_without_the_cascade(cascade_artifact, tiny_backbone):
    from tests.unit.ml.ml_helpers import draw_shoe
    from worker.ml.pipeline import Pipeline

    photo = draw_shoe((128, 128, 128), seed=7, background="noise")  # a grey shoe: no brand's colour
    first_look = Pipeline(cascade_artifact, tiny_backbone, None, skip_plain=False).predict_rgb(photo)
    assert first_look.brands[0].probability < 1.0
    threshold = (first_look.brands[0].probability + 1.0) / 2  # just above what the first look gives
    remover = CountingRemover()
    plain = Pipeline(cascade_artifact, tiny_backbone, CountingRemover()).predict_rgb(photo)
    cascade = Pipeline(cascade_artifact, tiny_backbone, remover, skip_removal_above=threshold).predict_rgb(photo)
    assert remover.calls == 1
    assert cascade.background == plain.background != "skipped-confident"
    assert [b.brand for b in cascade.brands] == [b.brand for b in plain.brands]
    np.testing.assert_allclose(cascade.embedding, plain.embedding, atol=1e-6)


def test_the_cascade_leaves_plain_backgrounds_to_the_plain_rule(cascade_artifact, tiny_backbone):
    from tests.unit.ml.ml_helpers import draw_shoe
    from tests.unit.ml.test_ml_training import BRANDS
    from worker.ml.pipeline import Pipeline

    remover = CountingRemover()
    out = Pipeline(cascade_artifact, tiny_backbone, remover, skip_removal_above=0.01).predict_rgb(
        draw_shoe(BRANDS["blueco"][0], seed=3)
    )
    assert out.background == "skipped" and remover.calls == 0


@pytest.mark.parametrize("threshold", [0.0, -0.5, 1.5])
def test_the_cascade_threshold_is_a_probability(cascade_artifact, tiny_backbone, threshold):
    from worker.ml.pipeline import Pipeline

    with pytest.raises(ValueError):
        Pipeline(cascade_artifact, tiny_backbone, None, skip_removal_above=threshold)
