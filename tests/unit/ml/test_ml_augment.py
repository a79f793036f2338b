"""Phone-photo augmentation (``worker.ml.augment.phone_photo``) and its wiring into training (issue 9)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.ml.ml_helpers import draw_shoe, to_bytes
from worker.ml.augment import (
    SCENE_CATEGORIES,
    SCENE_SIDE,
    foreground_mask,
    paste_on_scene,
    phone_photo,
    prepare_scenes,
    random_resized_crop,
    thumbnail_round_trip,
)
from worker.ml.preprocessing import BackboneSpec
from worker.ml.training import TrainingConfig, TrainingData
from worker.ml.training.augmentation import copies_per_brand, load_scenes, training_copies

MAGENTA = (200, 0, 200)


def _shoe() -> np.ndarray:
    return draw_shoe((30, 50, 200), seed=3, size=(120, 90))


def _magenta_scene(height: int = 100, width: int = 150) -> np.ndarray:
    return np.tile(np.asarray(MAGENTA, np.uint8), (height, width, 1))


def _detail(rgb: np.ndarray) -> float:
    """Mean absolute difference of horizontally neighbouring pixels (high-frequency content)."""
    grey = rgb.astype(np.float64).mean(axis=2)
    return float(np.abs(np.diff(grey, axis=1)).mean())


def _textured(seed: int = 0, side: int = 300) -> np.ndarray:
    """A busy (not plain) photo with fine detail: random 2x2-pixel blocks."""
    blocks = np.random.default_rng(seed).integers(0, 256, size=(side // 2, side // 2, 3), dtype=np.uint8)
    return np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1)


# --- the composite -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_paste_on_scene_keeps_the_shoe_and_puts_the_scene_behind_it(seed):
    shoe = _shoe()
    mask = foreground_mask(shoe)
    canvas, alpha = paste_on_scene(shoe, mask, np.random.default_rng(seed), scenes=[_magenta_scene()])
    assert canvas.dtype == np.float32 and alpha.dtype == np.float32
    assert canvas.shape == (*alpha.shape, 3) and alpha.shape[0] == alpha.shape[1] >= max(shoe.shape[:2])
    # The shoe is there, with its own colours (the blue body).
    on_shoe = canvas[alpha > 0.99]
    shoe_core = shoe[mask > 0.99].astype(np.float32)
    assert on_shoe.shape[0] > 0.5 * shoe_core.shape[0]
    assert np.allclose(np.median(on_shoe, axis=0), np.median(shoe_core, axis=0), atol=3)
    # Everywhere off the shoe: the scene (magenta, at most 35 % darker in the shadow), none of the white backdrop.
    behind = canvas[alpha == 0]
    assert behind.shape[0] > 0
    assert behind[:, 1].max() < 1  # no green: not white, not the shoe
    assert behind[:, 0].min() >= 0.65 * MAGENTA[0] - 1 and behind[:, 0].max() <= MAGENTA[0] + 1e-3
    assert behind[:, 0].min() < MAGENTA[0] - 1  # the contact shadow darkens part of the scene


def test_paste_without_scenes_falls_back_to_synthetic_backgrounds():
    shoe = _shoe()
    mask = foreground_mask(shoe)
    backgrounds = []
    for seed in range(4):
        canvas, alpha = paste_on_scene(shoe, mask, np.random.default_rng(seed), scenes=())
        behind = canvas[alpha == 0]
        assert behind.shape[0] > 0
        backgrounds.append(behind.mean(axis=0))
    # Not left on the white backdrop, and a different backdrop per seed.
    assert all(not np.allclose(b, 255, atol=5) for b in backgrounds)
    assert np.ptp(np.stack(backgrounds), axis=0).max() > 10
    with pytest.raises(ValueError):
        paste_on_scene(shoe, mask[:-1], np.random.default_rng(0))


def test_phone_photo_uses_scenes_when_given_and_synthetic_backdrops_when_not():
    shoe = _shoe()

    def magenta_share(image: np.ndarray) -> float:
        # Colour and lighting jitter move the scene's colour: near-zero green with red and blue both high.
        rgb = image.astype(np.float64)
        return float(((rgb[..., 1] < 60) & (rgb[..., 0] > 60) & (rgb[..., 2] > 60)).mean())

    with_scene = [phone_photo(shoe, np.random.default_rng(s), size=64, scenes=[_magenta_scene()]) for s in range(12)]
    without = [phone_photo(shoe, np.random.default_rng(s), size=64) for s in range(12)]
    shares = [magenta_share(x) for x in with_scene]
    assert sum(share > 0.3 for share in shares) >= 4  # most copies stand on the scene (paste chance 0.7)
    # Without scenes the backdrops are synthetic, random colours: magenta only by chance.
    assert np.mean(shares) > np.mean([magenta_share(x) for x in without]) + 0.2


# --- the thumbnail round trip --------------------------------------------------------------------


def test_thumbnail_round_trip_lowers_detail_and_keeps_the_size():
    photo = _textured()
    small = thumbnail_round_trip(photo, 64)
    assert small.shape == photo.shape and small.dtype == np.uint8
    assert _detail(small) < 0.5 * _detail(photo)
    tiny = photo[:40, :50]
    assert np.array_equal(thumbnail_round_trip(tiny, 64), tiny)  # already that small
    with pytest.raises(ValueError):
        thumbnail_round_trip(photo, 4)


def test_phone_photo_thumbnail_step_lowers_detail():
    photo = _textured(seed=1)
    for seed in range(3):
        sharp = phone_photo(photo, np.random.default_rng(seed), size=224, thumbnail_probability=0.0)
        small = phone_photo(photo, np.random.default_rng(seed), size=224, thumbnail_probability=1.0)
        assert _detail(small) < 0.8 * _detail(sharp)


# --- determinism, shapes, errors -----------------------------------------------------------------


def test_phone_photo_is_deterministic_by_seed_with_the_backbone_size():
    shoe = _shoe()
    scenes = prepare_scenes([_textured(seed=5, side=200)])
    a = phone_photo(shoe, np.random.default_rng([42, 7, 0]), size=64, scenes=scenes)
    b = phone_photo(shoe, np.random.default_rng([42, 7, 0]), size=64, scenes=scenes)
    c = phone_photo(shoe, np.random.default_rng([42, 7, 1]), size=64, scenes=scenes)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError):
        phone_photo(shoe.astype(np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError):
        phone_photo(shoe, np.random.default_rng(0), size=4)
    with pytest.raises(ValueError):
        phone_photo(shoe, np.random.default_rng(0), thumbnail_probability=1.5)


def test_random_resized_crop_is_a_partial_view_within_bounds():
    image = np.arange(100 * 80 * 3, dtype=np.int64).reshape(100, 80, 3)
    areas = []
    for seed in range(20):
        crop = random_resized_crop(image, np.random.default_rng(seed))
        h, w = crop.shape[:2]
        assert 1 <= h <= 100 and 1 <= w <= 80
        top, left = divmod(int(crop[0, 0, 0]) // 3, 80)
        assert np.array_equal(crop, image[top : top + h, left : left + w])
        areas.append(h * w / (100 * 80))
    assert min(areas) < 0.9 and max(areas) <= 1.0


def test_prepare_scenes_shrinks_to_the_scene_side():
    big = np.zeros((SCENE_SIDE * 2, SCENE_SIDE, 3), np.uint8)
    small = np.zeros((50, 60, 3), np.uint8)
    out = prepare_scenes([big, small])
    assert out[0].shape == (SCENE_SIDE, SCENE_SIDE // 2, 3) and out[1].shape == small.shape
    with pytest.raises(ValueError):
        prepare_scenes([big.astype(np.float32)])


# --- wiring into training ------------------------------------------------------------------------


def test_training_copies_are_the_mirror_then_phone_photos_of_the_spec_size():
    shoe = _shoe()
    spec = BackboneSpec(input_size=48)
    square = np.random.default_rng(0).integers(0, 256, size=(48, 48, 3), dtype=np.uint8)
    out = training_copies(shoe, square, spec=spec, seed=1, row=5, copies=3, scenes=[_magenta_scene()])
    assert len(out) == 4 and all(x.shape == (48, 48, 3) and x.dtype == np.uint8 for x in out)
    assert np.array_equal(out[0], square[:, ::-1])
    again = training_copies(shoe, square, spec=spec, seed=1, row=5, copies=3, scenes=[_magenta_scene()])
    assert all(np.array_equal(x, y) for x, y in zip(out, again, strict=True))
    other_row = training_copies(shoe, square, spec=spec, seed=1, row=6, copies=3, scenes=[_magenta_scene()])
    assert not np.array_equal(out[1], other_row[1])


def test_copies_per_brand_over_samples_rare_brands():
    labels = ["nike"] * 100 + ["vans"] * 50 + ["asics"] * 10 + ["puma"] * 30
    per = copies_per_brand(labels, base=2, most=6)
    assert per["nike"] == 2 and per["vans"] == 2  # at or above the median brand: the base
    assert per["puma"] == 3  # ceil(2 * 40 / 30)
    assert per["asics"] == 6  # ceil(2 * 40 / 10) = 8, capped
    assert copies_per_brand(labels, base=2, most=6, balanced=False) == dict.fromkeys(per, 2)
    assert copies_per_brand(labels, base=0, most=6) == dict.fromkeys(per, 0)
    assert copies_per_brand(labels, base=3, most=1)["asics"] == 3  # the cap never goes below the base
    with pytest.raises(ValueError):
        copies_per_brand(labels, base=-1, most=6)


def test_load_scenes_takes_the_scene_categories_among_the_rows_given():
    photos = [np.full((400, 300, 3), 40 * (i + 1), np.uint8) for i in range(4)]
    data = TrainingData(
        catalog=(),
        negatives=[lambda p=p: to_bytes(p, "PNG") for p in photos],
        negative_categories=["landscape", "animal", "building_street", "landscape"],
    )
    hashes = [f"{i:064x}" for i in range(4)]
    config = TrainingConfig()
    scenes = load_scenes(data, [0, 1, 2], hashes, config)
    assert len(scenes.images) == 2  # rows 0 and 2; row 1 is an animal, row 3 not among the rows
    assert [int(x[0, 0, 0]) for x in scenes.images] == [40, 120]
    assert all(max(x.shape[:2]) == SCENE_SIDE for x in scenes.images)
    assert len(scenes.fingerprint) == 12 and scenes.fingerprint != load_scenes(data, [0, 3], hashes, config).fingerprint
    assert load_scenes(data, [1], hashes, config).images == ()
    assert load_scenes(data, [0, 1, 2], hashes, TrainingConfig(scene_categories=())).images == ()
    no_categories = TrainingData(catalog=(), negatives=data.negatives)
    assert load_scenes(no_categories, [0, 1, 2], hashes, config).fingerprint == "none"


def test_training_config_augmentation_fields_and_validation():
    config = TrainingConfig()
    assert config.scene_categories == SCENE_CATEGORIES
    assert set(SCENE_CATEGORIES) == {"building_street", "landscape", "household_furniture", "plant_fungi"}
    assert config.balanced_copies and config.max_augment_copies >= config.augment_copies
    assert TrainingConfig(scene_categories=["landscape"]).scene_categories == ("landscape",)
    for bad in (
        {"augment_copies": -1},
        {"max_augment_copies": -1},
        {"scene_categories": "landscape"},
        {"scene_categories": ("landscape", "")},
    ):
        with pytest.raises(ValueError):
            TrainingConfig(**bad)
