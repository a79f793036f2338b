"""Augmentation that makes catalogue shots look like shoppers' phone photos.

``augment_photo`` turns one ``(H, W, 3) uint8`` product photo into a ``(size, size, 3) uint8`` square
that imitates a phone photo: the shoe is cut out of its plain backdrop (pixels far from the border
colour) and pasted, scaled and shifted, onto a varied synthetic background (smooth colour gradient,
blotchy texture, floor boards) with a soft contact shadow, or left on white (as the background
remover produces at prediction time); then a random rotation and perspective warp (hand-held
camera), colour and lighting jitter (exposure, contrast, saturation, white balance), blur, sensor
noise and JPEG re-encoding at a random quality. Every draw comes from the ``numpy.random.Generator``
given, so the same seed gives the same image.

Sources: photometric/geometric augmentation (Krizhevsky et al., NeurIPS 2012; Cubuk et al.,
"RandAugment", CVPR-W 2020); cut-and-paste onto new backgrounds (Dwibedi et al., "Cut, Paste and
Learn", ICCV 2017); OpenCV ``warpPerspective``, ``GaussianBlur``, ``imencode`` (docs.opencv.org).
"""

from __future__ import annotations

from typing import Final

import numpy as np

from worker.ml.images import check_rgb

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
