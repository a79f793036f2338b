"""Augmentation that makes catalogue shots look like shoppers' phone photos.

``augment_photo`` turns one ``(H, W, 3) uint8`` product photo into a ``(size, size, 3) uint8`` square
that imitates a phone photo: the shoe is cut out of its plain backdrop (pixels far from the border
colour) and pasted, scaled and shifted, onto a varied synthetic background (smooth colour gradient,
blotchy texture, floor boards) with a soft contact shadow, or left on white (as the background
remover produces at prediction time); then a random rotation and perspective warp (hand-held
camera), colour and lighting jitter (exposure, contrast, saturation, white balance), blur, sensor
noise and JPEG re-encoding at a random quality. Every draw comes from the ``numpy.random.Generator``
given, so the same seed gives the same image.

``phone_photo`` (what fine-tuning trains on, issue 9) goes further: a plain-backdrop shot is cut out
and pasted on a random crop of a real scene photo (streets, landscapes, rooms, plants: ``SCENE_CATEGORIES``
of the negatives) with a contact shadow (``synthetic_background`` when no scenes are given), then a random
resized crop (partial views), rotation, perspective, colour and lighting, blur, noise, a thumbnail round
trip (64-160 px longest side and back, so that "small photo" is no brand cue) and JPEG; the output is
squared as ``worker.ml.preprocessing.prepare_photo`` squares every photo.

Sources: photometric/geometric augmentation (Krizhevsky et al., NeurIPS 2012; Cubuk et al.,
"RandAugment", CVPR-W 2020); cut-and-paste onto new backgrounds (Dwibedi et al., "Cut, Paste and
Learn", ICCV 2017); OpenCV ``warpPerspective``, ``GaussianBlur``, ``imencode`` (docs.opencv.org).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

from worker.ml.images import check_rgb, has_plain_background, square_pad_resize

WORK_SIDE: Final = 320
"""Longest side, in pixels, the photo is scaled to before augmenting (speed)."""
PASTE_PROBABILITY: Final = 0.6
"""Chance of pasting the shoe on a synthetic background instead of white."""
MAX_ROTATION_DEG: Final = 20.0
"""Largest rotation, degrees, either way."""
MAX_PERSPECTIVE: Final = 0.08
"""Largest corner shift of the perspective warp, as a fraction of the side."""
JPEG_QUALITY: Final = (30, 90)
"""Range of the JPEG re-encoding quality."""


def foreground_mask(rgb: np.ndarray, *, tolerance: int = 18) -> np.ndarray:
    """Soft mask of pixels that differ from the photo's border colour (a product shot's backdrop).

    The backdrop colour is the median of the one-pixel frame; a pixel is foreground when any channel
    differs from it by more than ``tolerance`` levels; holes are closed (5x5 morphological closing)
    and the edge feathered (Gaussian blur, sigma 1 px).

    Args:
        rgb: ``(H, W, 3) uint8``.
        tolerance: per-channel difference in 0-255 levels.

    Returns:
        ``(H, W) float32`` in [0, 1].

    Raises:
        ValueError: ``rgb`` is not ``(H, W, 3) uint8``.
    """
    import cv2

    check_rgb(rgb)
    frame = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.int16)
    backdrop = np.median(frame, axis=0)
    hard = (np.abs(rgb.astype(np.int16) - backdrop).max(axis=2) > tolerance).astype(np.uint8)
    hard = cv2.morphologyEx(hard, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    return cv2.GaussianBlur(hard.astype(np.float32), (0, 0), 1.0)


def synthetic_background(side: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(side, side, 3) uint8`` backdrop: gradient, blotchy texture or floor boards, random colours.

    Raises:
        ValueError: ``side < 1``.
    """
    import cv2

    if side < 1:
        raise ValueError(f"side must be positive, got {side}")
    base = rng.uniform(20, 235, size=3)
    other = np.clip(base + rng.normal(0, 50, size=3), 0, 255)
    t = np.linspace(0.0, 1.0, side, dtype=np.float32)
    angle = rng.uniform(0, np.pi)
    ramp = np.clip(np.cos(angle) * t[None, :] + np.sin(angle) * t[:, None], 0, 1)[..., None]
    image = base * (1 - ramp) + other * ramp
    kind = int(rng.integers(0, 3))
    if kind == 1:  # blotchy texture (carpet, pavement)
        cells = int(rng.integers(4, 24))
        noise = rng.normal(0, rng.uniform(10, 40), size=(cells, cells, 3)).astype(np.float32)
        image = image + cv2.resize(noise, (side, side), interpolation=cv2.INTER_CUBIC)
    elif kind == 2:  # floor boards / tiles
        period = int(rng.integers(max(2, side // 10), max(3, side // 3)))
        stripes = ((np.arange(side) // period) % 2).astype(np.float32)[None, :, None] * rng.uniform(-40, 40)
        image = image + stripes
    image = image + rng.normal(0, 4, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def augment_photo(rgb: np.ndarray, rng: np.random.Generator, *, size: int = 224) -> np.ndarray:
    """One phone-photo-like augmented square of a product photo (see the module docstring).

    Args:
        rgb: ``(H, W, 3) uint8`` RGB photo (ideally a product shot on a plain backdrop; other photos
            work too, the mask then covers most of the frame).
        rng: the random generator (``numpy.random.default_rng(seed)``); all randomness comes from it.
        size: side of the output in pixels.

    Returns:
        ``(size, size, 3) uint8`` RGB; about 13 ms for a 320 px photo on one CPU core.

    Raises:
        ValueError: ``rgb`` is not ``(H, W, 3) uint8`` or ``size < 8``.
    """
    import cv2

    check_rgb(rgb)
    if size < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    height, width = rgb.shape[:2]
    scale = min(1.0, WORK_SIDE / max(height, width))
    if scale < 1.0:
        new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = cv2.resize(rgb, new_size, interpolation=cv2.INTER_AREA)
        height, width = rgb.shape[:2]
    mask = foreground_mask(rgb)
    if mask.mean() < 0.01:
        mask = np.ones_like(mask)
    side = int(max(height, width) / rng.uniform(0.55, 1.0))  # the shoe covers 55-100 % of the side
    pasted = bool(rng.random() < PASTE_PROBABILITY)
    if pasted:
        canvas = synthetic_background(side, rng).astype(np.float32)
    else:
        canvas = np.full((side, side, 3), 255.0, np.float32)
    top = int(rng.integers(0, side - height + 1))
    left = int(rng.integers(0, side - width + 1))
    alpha = mask[..., None]
    region = canvas[top : top + height, left : left + width]
    canvas[top : top + height, left : left + width] = rgb.astype(np.float32) * alpha + region * (1 - alpha)
    if pasted:  # a soft contact shadow under the shoe
        full_mask = np.zeros((side, side), np.float32)
        full_mask[top : top + height, left : left + width] = mask
        shadow = np.roll(cv2.GaussianBlur(full_mask, (0, 0), max(1.0, side / 60)), max(1, side // 50), axis=0)
        canvas *= 1 - 0.35 * (shadow * (1 - full_mask))[..., None]
    angle = np.deg2rad(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    centre = side / 2.0
    corners = np.array([[0, 0], [side, 0], [side, side], [0, side]], dtype=np.float32)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], dtype=np.float32)
    moved = (corners - centre) @ rotation.T + centre
    moved += rng.uniform(-MAX_PERSPECTIVE, MAX_PERSPECTIVE, size=(4, 2)).astype(np.float32) * side
    matrix = cv2.getPerspectiveTransform(corners, moved.astype(np.float32))
    if pasted:
        warped = cv2.warpPerspective(
            canvas, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
    else:
        warped = cv2.warpPerspective(
            canvas,
            matrix,
            (side, side),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(255, 255, 255),
        )
    image = cv2.resize(warped, (size, size), interpolation=cv2.INTER_AREA).astype(np.float64)
    image = image * rng.uniform(0.6, 1.3)  # exposure
    mean = image.mean()
    image = (image - mean) * rng.uniform(0.7, 1.3) + mean  # contrast
    grey = image.mean(axis=2, keepdims=True)
    image = grey + (image - grey) * rng.uniform(0.6, 1.4)  # saturation
    image = image * rng.uniform(0.88, 1.12, size=3)  # white balance
    if rng.random() < 0.4:
        image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), rng.uniform(0.5, 1.8)).astype(np.float64)
    image = image + rng.normal(0, rng.uniform(0, 6), size=image.shape)
    out = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(out[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if ok:
        out = np.ascontiguousarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1])
    return out


# --- phone photos on real scenes (issue 9: "Robust to where shoppers take photos") -----------------

PHONE_PASTE_PROBABILITY: Final = 0.7
"""Chance of pasting a plain-backdrop shot on a scene; the rest stay on their backdrop (as the background
remover leaves a photo at prediction time)."""
SHOE_COVER: Final = (0.6, 1.0)
"""Share of the pasted canvas's side the shoe's longest side covers."""
SCENE_CROP: Final = (0.5, 1.0)
"""Side of the random square scene crop, as a share of the scene's shorter side."""
CROP_AREA: Final = (0.55, 1.0)
"""Random resized crop: share of the image area kept (partial views), as torchvision's ``RandomResizedCrop``
(its default is 0.08-1.0; a shoe must stay recognisable, hence 0.55)."""
CROP_ASPECT: Final = (3 / 4, 4 / 3)
"""Random resized crop: width / height range, drawn log-uniformly (torchvision's default)."""
PHONE_MAX_ROTATION_DEG: Final = 15.0
"""Largest rotation of a phone copy, degrees, either way."""
THUMB_PROBABILITY: Final = 0.5
"""Chance of the thumbnail round trip."""
THUMB_SIDE: Final = (64, 160)
"""Longest side, pixels, of the thumbnail: the ``sneaker_models`` photos are 140-162 px (its SOURCES.md), shop and
chat thumbnails smaller; with half of the copies small, "small photo" is no brand cue."""
PHONE_JPEG_QUALITY: Final = (35, 90)
"""Range of the JPEG quality of a phone copy (encoded after the thumbnail step, at the small size)."""
SCENE_SIDE: Final = 320
"""Longest side, pixels, scene photos are kept at in memory (``prepare_scenes``)."""
SCENE_CATEGORIES: Final = ("building_street", "landscape", "household_furniture", "plant_fungi")
"""Categories of ``../shared/datasets/negatives`` that are places a shoe stands in (floors, streets, grass,
rooms); the others (animals, food, objects...) are not backgrounds."""


def prepare_scenes(scenes: Sequence[np.ndarray], *, max_side: int = SCENE_SIDE) -> tuple[np.ndarray, ...]:
    """Scene photos shrunk once for ``phone_photo`` (kept in memory by the caller).

    Args:
        scenes: ``(H, W, 3) uint8`` RGB photos of places (``SCENE_CATEGORIES``).
        max_side: longest side in pixels after shrinking (area interpolation; never enlarged).

    Returns:
        The same photos, each ``(h, w, 3) uint8`` C-contiguous with ``max(h, w) <= max_side``.

    Raises:
        ValueError: a photo is not ``(H, W, 3) uint8``, or ``max_side < 8``.
    """
    if max_side < 8:
        raise ValueError(f"max_side must be at least 8, got {max_side}")
    return tuple(_shrink(scene, max_side) for scene in scenes)


def scene_crop(scenes: Sequence[np.ndarray], side: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop of a random scene (``SCENE_CROP`` of its shorter side), mirrored half of the
    time, resized to ``(side, side, 3) uint8`` (area interpolation when shrinking, linear when enlarging).

    Raises:
        ValueError: no scenes, ``side < 1``, or a scene is not ``(H, W, 3) uint8``.
    """
    import cv2

    if not scenes:
        raise ValueError("no scenes")
    if side < 1:
        raise ValueError(f"side must be positive, got {side}")
    scene = scenes[int(rng.integers(0, len(scenes)))]
    check_rgb(scene)
    height, width = scene.shape[:2]
    crop = max(1, int(min(height, width) * rng.uniform(*SCENE_CROP)))
    top, left = int(rng.integers(0, height - crop + 1)), int(rng.integers(0, width - crop + 1))
    patch = scene[top : top + crop, left : left + crop]
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    interpolation = cv2.INTER_AREA if crop > side else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(patch), (side, side), interpolation=interpolation)


def paste_on_scene(
    rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator, *, scenes: Sequence[np.ndarray] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Composite a cut-out shoe onto a random crop of a real scene (or a synthetic backdrop without scenes).

    The canvas is a square whose side the shoe's longest side covers ``SHOE_COVER`` of; its background
    is ``scene_crop`` of ``scenes``, or ``synthetic_background`` when ``scenes`` is empty (the fallback).
    The mask is pulled in by one pixel (against backdrop halos); a soft contact shadow (the mask blurred
    with sigma = side / 60 px, shifted down side / 50 px, darkening the scene by up to 35 %) goes under
    the shoe, then the shoe is alpha-blended at a random position.
    Method: cut, paste and learn (Dwibedi et al., ICCV 2017); copy-paste (Ghiasi et al., CVPR 2021).

    Args:
        rgb: ``(H, W, 3) uint8`` the shoe photo.
        mask: ``(H, W) float32`` in [0, 1], 1 on the shoe (``foreground_mask``).
        rng: all randomness comes from it.
        scenes: ``(h, w, 3) uint8`` scene photos (``prepare_scenes``), or empty.

    Returns:
        ``(canvas, alpha)``: ``(S, S, 3) float32`` in 0-255 and ``(S, S) float32``, the shoe's mask on it.

    Raises:
        ValueError: ``rgb`` not ``(H, W, 3) uint8`` or ``mask`` of another height and width.
    """
    import cv2

    check_rgb(rgb)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match the photo {rgb.shape[:2]}")
    # Pulled in by one pixel (3x3 minimum filter): the feathered edge otherwise keeps a light backdrop halo.
    mask = cv2.erode(mask.astype(np.float32), np.ones((3, 3), np.uint8))
    height, width = rgb.shape[:2]
    side = max(height, width, int(max(height, width) / rng.uniform(*SHOE_COVER)))
    background = scene_crop(scenes, side, rng) if scenes else synthetic_background(side, rng)
    canvas = background.astype(np.float32)
    top, left = int(rng.integers(0, side - height + 1)), int(rng.integers(0, side - width + 1))
    alpha = np.zeros((side, side), np.float32)
    alpha[top : top + height, left : left + width] = mask
    blurred, drop = cv2.GaussianBlur(alpha, (0, 0), max(1.0, side / 60)), max(1, side // 50)
    shadow = np.zeros_like(blurred)
    shadow[drop:] = blurred[:-drop]  # shifted down, not wrapped round to the top
    canvas *= (1 - 0.35 * shadow)[..., None]
    region = canvas[top : top + height, left : left + width]
    canvas[top : top + height, left : left + width] = rgb.astype(np.float32) * mask[..., None] + region * (
        1 - mask[..., None]
    )
    return canvas, alpha


def random_resized_crop(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random crop of ``CROP_AREA`` of the area and ``CROP_ASPECT`` width / height (partial views).

    As torchvision's ``RandomResizedCrop`` (Szegedy et al., "Going deeper with convolutions", CVPR 2015),
    without the resize (``phone_photo`` resizes once at the end); the crop is clipped to the image.

    Args:
        image: ``(H, W, C)`` array of any dtype.

    Returns:
        ``(h, w, C)`` view of ``image``, ``1 <= h <= H``, ``1 <= w <= W``.
    """
    height, width = image.shape[:2]
    area = rng.uniform(*CROP_AREA) * height * width
    aspect = float(np.exp(rng.uniform(np.log(CROP_ASPECT[0]), np.log(CROP_ASPECT[1]))))
    crop_h = int(np.clip(round(np.sqrt(area / aspect)), 1, height))
    crop_w = int(np.clip(round(np.sqrt(area * aspect)), 1, width))
    top, left = int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1))
    return image[top : top + crop_h, left : left + crop_w]


def thumbnail_round_trip(rgb: np.ndarray, long_side: int) -> np.ndarray:
    """Shrink a photo to ``long_side`` px on its longest side (area interpolation) and enlarge it back.

    What a small photo looks like once the pipeline has enlarged it to the backbone's input: detail above
    the thumbnail's Nyquist frequency is gone. Photos already that small are returned unchanged.

    Args:
        rgb: ``(H, W, 3) uint8``.
        long_side: pixels, at least 8.

    Returns:
        ``(H, W, 3) uint8``.

    Raises:
        ValueError: ``rgb`` not ``(H, W, 3) uint8`` or ``long_side < 8``.
    """
    import cv2

    if long_side < 8:
        raise ValueError(f"long_side must be at least 8, got {long_side}")
    height, width = rgb.shape[:2]
    small = _shrink(rgb, long_side)
    if small.shape[:2] == (height, width):
        return rgb.copy()
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def phone_photo(
    rgb: np.ndarray,
    rng: np.random.Generator,
    *,
    size: int = 224,
    scenes: Sequence[np.ndarray] = (),
    fill: int = 255,
    thumbnail_probability: float = THUMB_PROBABILITY,
) -> np.ndarray:
    """One phone-photo-like copy of a training photo, as the backbone's square input.

    Steps: the photo is shrunk to ``WORK_SIDE``; a shot on a plain light backdrop (``has_plain_background``,
    e.g. a catalog shot or a background-removed cut-out) is, with ``PHONE_PASTE_PROBABILITY``, cut out
    (``foreground_mask``) and pasted on a real scene with a contact shadow (``paste_on_scene``; synthetic
    backdrops when ``scenes`` is empty); photos with a busy background keep it. Then a random resized crop
    (``random_resized_crop``: partial views), rotation (``PHONE_MAX_ROTATION_DEG``) and perspective
    (``MAX_PERSPECTIVE``) with the border reflected, exposure (x 0.6-1.3), contrast (x 0.7-1.3),
    saturation (x 0.6-1.4), white balance (x 0.88-1.12 per channel), a linear lighting gradient (+-25 %
    across the frame), Gaussian blur (30 %, sigma 0.5-1.5 px), sensor noise (sigma 0-5 levels), with
    ``thumbnail_probability`` a shrink to ``THUMB_SIDE`` px on the longest side, JPEG at quality
    ``PHONE_JPEG_QUALITY`` (at the small size when shrunk, as small photos are stored), and finally
    ``square_pad_resize`` to ``size`` with ``fill``, as ``worker.ml.preprocessing.prepare_photo`` squares
    every photo (so a thumbnail is enlarged back exactly as at prediction time).

    Every random number is drawn whether or not its step applies, so changing ``thumbnail_probability``
    changes only the thumbnail step of a given seed. Sources: the module docstring; random resized crop
    and colour jitter as torchvision's transforms; thumbnail round trip: issue 9 ("downscaling to thumbnail
    size and back so that small photo is no brand cue"). About 10-20 ms per 320 px photo on one core.

    Args:
        rgb: ``(H, W, 3) uint8`` RGB training photo.
        rng: the random generator (``numpy.random.default_rng(seed)``); all randomness comes from it.
        size: side of the output in pixels (the backbone's input size), at least 8.
        scenes: ``(h, w, 3) uint8`` scene photos (``prepare_scenes``); empty: synthetic backdrops.
        fill: grey level 0-255 of the square padding (``BackboneSpec.fill``).
        thumbnail_probability: chance of the thumbnail step, in [0, 1].

    Returns:
        ``(size, size, 3) uint8`` RGB.

    Raises:
        ValueError: ``rgb`` not ``(H, W, 3) uint8``, ``size < 8``, ``fill`` outside 0-255 or
            ``thumbnail_probability`` outside [0, 1].
    """
    import cv2

    check_rgb(rgb)
    if size < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    if not 0.0 <= thumbnail_probability <= 1.0:
        raise ValueError(f"thumbnail_probability must be in [0, 1], got {thumbnail_probability}")
    rgb = _shrink(rgb, WORK_SIDE)
    image = rgb.astype(np.float32)
    if has_plain_background(rgb) and rng.random() < PHONE_PASTE_PROBABILITY:
        mask = foreground_mask(rgb)
        if mask.mean() > 0.01:
            image, _ = paste_on_scene(rgb, mask, rng, scenes=scenes)
    image = np.ascontiguousarray(random_resized_crop(image, rng))
    height, width = image.shape[:2]
    angle = np.deg2rad(rng.uniform(-PHONE_MAX_ROTATION_DEG, PHONE_MAX_ROTATION_DEG))
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    centre = np.array([width / 2, height / 2], np.float32)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    moved = (corners - centre) @ rotation.T + centre
    moved += rng.uniform(-MAX_PERSPECTIVE, MAX_PERSPECTIVE, size=(4, 2)).astype(np.float32) * [width, height]
    matrix = cv2.getPerspectiveTransform(corners, moved.astype(np.float32))
    image = cv2.warpPerspective(
        image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    image = image * rng.uniform(0.6, 1.3)  # exposure
    mean = image.mean()
    image = (image - mean) * rng.uniform(0.7, 1.3) + mean  # contrast
    grey = image.mean(axis=2, keepdims=True)
    image = grey + (image - grey) * rng.uniform(0.6, 1.4)  # saturation
    image = image * rng.uniform(0.88, 1.12, size=3).astype(np.float32)  # white balance
    light_angle, light_strength = rng.uniform(0, 2 * np.pi), rng.uniform(-0.25, 0.25)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = np.cos(light_angle) * (xs / max(1, width - 1) - 0.5) + np.sin(light_angle) * (ys / max(1, height - 1) - 0.5)
    image = image * (1 + light_strength * ramp)[..., None]  # lighting falling off across the frame
    blur, sigma = rng.random() < 0.3, rng.uniform(0.5, 1.5)
    if blur:
        image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma)
    image = image + rng.normal(0, rng.uniform(0, 5), size=image.shape).astype(np.float32)
    out = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    shrink, long_side = rng.random() < thumbnail_probability, int(rng.integers(THUMB_SIDE[0], THUMB_SIDE[1] + 1))
    if shrink:
        out = _shrink(out, long_side)
    quality = int(rng.integers(PHONE_JPEG_QUALITY[0], PHONE_JPEG_QUALITY[1] + 1))
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(out[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if ok:
        out = np.ascontiguousarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1])
    return square_pad_resize(out, size=size, fill=fill)


def _shrink(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """``rgb`` shrunk (area interpolation) so its longest side is at most ``max_side`` px; C-contiguous."""
    import cv2

    check_rgb(rgb)
    height, width = rgb.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return np.ascontiguousarray(rgb)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(np.ascontiguousarray(rgb), new_size, interpolation=cv2.INTER_AREA)
