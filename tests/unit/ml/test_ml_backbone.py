"""``worker.ml.backbone.Backbone`` with a tiny Keras model built by the test session."""

from __future__ import annotations

import numpy as np
import pytest

from worker.ml.backbone import DEFAULT_INPUT_SIZE, INPUT_SIZE, Backbone, file_fingerprint, tap_scale
from worker.ml.errors import ModelError


def random_images(count: int, size: int = 224, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)


def test_embeddings_have_the_right_shape_and_unit_norm(tiny_backbone):
    vectors = tiny_backbone.embed(random_images(11))  # more than one batch of 8
    assert vectors.shape == (11, 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_embeddings_are_deterministic_and_batch_independent(tiny_backbone):
    images = random_images(10, seed=1)
    first = tiny_backbone.embed(images)
    np.testing.assert_array_equal(first, tiny_backbone.embed(images))
    np.testing.assert_allclose(first[3:4], tiny_backbone.embed(images[3:4]), atol=1e-5)


def test_other_sizes_and_empty_input(tiny_backbone):
    assert tiny_backbone.embed(random_images(2, size=96)).shape == (2, 16)
    assert tiny_backbone.embed(np.zeros((0, 224, 224, 3), np.uint8)).shape == (0, 16)
    with pytest.raises(ValueError):
        tiny_backbone.embed(random_images(2).astype(np.float32))
    with pytest.raises(ValueError):
        tiny_backbone.embed(np.zeros((224, 224, 3), np.uint8))


def test_preprocess_gives_a_white_padded_square_of_the_input_size(tiny_backbone, tiny_backbone_path):
    square = tiny_backbone.preprocess(np.zeros((30, 60, 3), np.uint8))
    assert square.shape == (DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE, 3) and square[0, 0].tolist() == [255, 255, 255]
    assert Backbone(tiny_backbone_path, input_size=96).preprocess(np.zeros((30, 60, 3), np.uint8)).shape == (96, 96, 3)


def test_fingerprint_and_dim(tiny_backbone, tiny_backbone_path):
    assert tiny_backbone.dim == tiny_backbone.top_dim == 16 and tiny_backbone.taps == ()
    # The fingerprint names file, input size and taps; the plain 224 px set-up keeps the file's own.
    assert len(tiny_backbone.fingerprint) == 16 and int(tiny_backbone.fingerprint, 16) >= 0
    assert tiny_backbone.fingerprint != file_fingerprint(tiny_backbone_path)
    assert Backbone(tiny_backbone_path, input_size=INPUT_SIZE).fingerprint == file_fingerprint(tiny_backbone_path)


def test_taps_join_pooled_layers_into_a_weighted_descriptor(tapped_backbone, tapped_backbone_path):
    assert tapped_backbone.taps == (("block7_add", 0.4), ("block14_add", 0.7))  # DEFAULT_TAPS it has
    assert (tapped_backbone.top_dim, tapped_backbone.dim, tapped_backbone.aux_dim) == (16, 16 + 8 + 16, 16)
    raw, aux = tapped_backbone.embed_raw(random_images(5, size=64))
    assert raw.shape == (5, 40) and aux.shape == (5, 16)
    # Each part is unit length and weighted, so the whole has length sqrt(1 + 0.4^2 + 0.7^2).
    np.testing.assert_allclose(np.linalg.norm(raw[:, :16], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(raw[:, 16:24], axis=1), 0.4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(raw, axis=1), tap_scale(tapped_backbone.taps), atol=1e-5)
    # The first part is the pooled output, which is also the aux output the footwear detector reads.
    plain = Backbone(tapped_backbone_path, taps=())
    plain_raw, _ = plain.embed_raw(random_images(5, size=64))
    np.testing.assert_allclose(raw[:, :16], plain_raw / np.linalg.norm(plain_raw, axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(aux, plain_raw, atol=1e-5)
    assert plain.fingerprint != tapped_backbone.fingerprint
    only = Backbone(tapped_backbone_path, taps=(("block14_add", 1.0),))
    assert only.dim == 32 and only.fingerprint not in {plain.fingerprint, tapped_backbone.fingerprint}
    with pytest.raises(ModelError):
        Backbone(tapped_backbone_path, taps=(("block99_add", 1.0),))


def test_fixed_input_size_models_get_resized_inputs(tmp_path):
    from worker.ml.backbone import import_keras

    keras = import_keras()
    inputs = keras.Input(shape=(32, 32, 3))
    x = keras.layers.Flatten()(keras.layers.AveragePooling2D(8)(inputs))
    path = tmp_path / "fixed.keras"
    keras.Model(inputs, keras.layers.Dense(4)(x)).save(path)
    backbone = Backbone(path)
    assert backbone.embed(random_images(3, size=64)).shape == (3, 4)
    assert backbone.embed(random_images(3, size=32)).shape == (3, 4)


def test_missing_or_corrupt_model_raises_model_error(tmp_path):
    with pytest.raises(ModelError) as missing:
        Backbone(tmp_path / "absent.keras")
    assert missing.value.code == "model_unavailable"
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelError):
        Backbone(corrupt)
