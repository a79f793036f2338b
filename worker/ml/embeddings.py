"""Embedding many images with an on-disk cache keyed by image hash and backbone fingerprint.

Preprocessing of one image is ``worker.ml.preprocessing.prepare_photo`` (the same function at
training, evaluation and prediction time, ``PREPROCESSING``): ``load_rgb`` -> background rule ->
square pad and resize to the backbone spec's input size -> ``Backbone.embed`` (L2-normalised vector).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, overload

import numpy as np

from worker.ml.background import Remover
from worker.ml.errors import ImageError
from worker.ml.images import DEFAULT_MAX_SIDE, load_rgb
from worker.ml.preprocessing import PREPROCESSING, prepare_photo

__all__ = ["FLIP_SUFFIX", "PREPROCESSING", "EmbeddingCache", "cache_key", "embed_images"]

if TYPE_CHECKING:
    from worker.ml.backbone import Backbone

FLIP_SUFFIX: Final = ":flip"
"""Cache-key suffix of horizontally mirrored images."""

_KEY_PATTERN: Final = re.compile(r"^[0-9A-Za-z][0-9A-Za-z:_-]{0,199}$")
_FINGERPRINT_PATTERN: Final = re.compile(r"^[0-9A-Za-z_-]{1,64}$")


class EmbeddingCache:
    """One float32 vector per (image, preprocessing) key, under a folder per backbone fingerprint.

    Layout: ``<directory>/<backbone_fingerprint>/<key[:2]>/<key with ':' as '.'>.npy``. Writes go to a
    temporary file in the same folder and are renamed into place (``os.replace``), so concurrent
    writers and crashes never leave half-written vectors; unreadable files count as misses.

    Args:
        directory: cache root, created on first write.
        backbone_fingerprint: ``Backbone.cache_key`` (its fingerprint, with its precision unless float32); vectors
            of different backbones, or of one at another precision, never mix.

    Raises:
        ValueError: the fingerprint has characters other than letters, digits, ``-`` and ``_``.
    """

    def __init__(self, directory: str | Path, backbone_fingerprint: str) -> None:
        if not _FINGERPRINT_PATTERN.match(backbone_fingerprint):
            raise ValueError(f"bad backbone fingerprint {backbone_fingerprint!r}")
        self.directory = Path(directory)
        self.backbone_fingerprint = backbone_fingerprint
        self.root = self.directory / backbone_fingerprint

    def path_for(self, key: str) -> Path:
        """File path of a key (an image SHA-256 hex digest, optionally with ``:suffix`` parts).

        Raises:
            ValueError: the key is empty, longer than 200 characters, or has characters other than
                letters, digits, ``:``, ``-`` and ``_`` (no path separators).
        """
        if not _KEY_PATTERN.match(key):
            raise ValueError(f"bad cache key {key!r}")
        return self.root / key[:2].lower() / f"{key.replace(':', '.')}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The cached ``(D,) float32`` vector, or None when absent or unreadable.

        Raises:
            ValueError: bad key (see ``path_for``).
        """
        path = self.path_for(key)
        try:
            vector = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError):
            return None
        if vector.ndim != 1:
            return None
        return vector.astype(np.float32, copy=False)

    def put(self, key: str, vector: np.ndarray) -> None:
        """Store a ``(D,)`` vector as float32, atomically.

        Raises:
            ValueError: bad key, or the vector is not 1-D and finite.
            OSError: the file cannot be written.
        """
        path = self.path_for(key)
        data = np.asarray(vector, dtype=np.float32)
        if data.ndim != 1 or not np.all(np.isfinite(data)):
            raise ValueError(f"expected a finite (D,) vector, got shape {data.shape}")
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
        try:
            with os.fdopen(handle, "wb") as stream:
                np.save(stream, data, allow_pickle=False)
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise


def cache_key(sha256: str, *, remover: Remover | None = None, flip: bool = False) -> str:
    """Cache key of an image under a preprocessing: ``sha256[:<remover name>][:flip]``."""
    key = sha256 if remover is None else f"{sha256}:{remover.name}"
    return key + FLIP_SUFFIX if flip else key


@overload
def embed_images(
    items: Sequence[tuple[str, Callable[[], bytes]]],
    *,
    backbone: Backbone,
    cache: EmbeddingCache | None,
    remover: Remover | None = None,
    flip: Literal[False] = False,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray: ...


@overload
def embed_images(
    items: Sequence[tuple[str, Callable[[], bytes]]],
    *,
    backbone: Backbone,
    cache: EmbeddingCache | None,
    remover: Remover | None = None,
    flip: Literal[True],
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]: ...


def embed_images(
    items: Sequence[tuple[str, Callable[[], bytes]]],
    *,
    backbone: Backbone,
    cache: EmbeddingCache | None,
    remover: Remover | None = None,
    flip: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Embed images, reading cached vectors and computing (and caching) the rest in batches.

    Images are only loaded (``loader()``) when a vector is missing. Cache keys are the SHA-256 plus
    the remover's name when one is set (``cache_key``), so vectors of different preprocessing never
    mix; ``cache`` must belong to ``backbone`` (same fingerprint).

    Args:
        items: N pairs ``(sha256 hex of the image bytes, loader returning the bytes)``.
        backbone: the embedding model (``Backbone.batch_size`` images per batch).
        cache: where vectors are kept, or None for no caching.
        remover: background remover applied before embedding (plain backgrounds skipped), or None.
        flip: also embed the horizontally mirrored images (training augmentation).
        progress: called as ``progress(done, N)`` after the cache lookup and after each batch.

    Returns:
        ``(N, D) float32`` L2-normalised rows in the order of ``items``; with ``flip=True`` a pair
        ``(vectors, mirrored_vectors)`` of two such arrays.

    Raises:
        ImageError: an image cannot be decoded; its message starts with the SHA-256. Callers should
            filter unreadable images out beforehand (``inspect_image``).
        ValueError: cache fingerprint differs from the backbone's; bad SHA-256 string.
        Exception: whatever a loader raises (e.g. storage errors) passes through.
    """
    key = getattr(backbone, "cache_key", backbone.fingerprint)  # the fingerprint, and the precision unless float32
    if cache is not None and cache.backbone_fingerprint != key:
        raise ValueError(f"cache is for backbone {cache.backbone_fingerprint}, not {key}")
    total = len(items)
    dim = backbone.dim
    vectors = np.zeros((total, dim), dtype=np.float32)
    mirrored = np.zeros((total, dim), dtype=np.float32)
    missing: list[int] = []
    for position, (sha, _) in enumerate(items):
        found = _cached(cache, cache_key(sha, remover=remover), dim)
        found_flip = _cached(cache, cache_key(sha, remover=remover, flip=True), dim) if flip else None
        if found is None or (flip and found_flip is None):
            missing.append(position)
            continue
        vectors[position] = found
        if found_flip is not None:
            mirrored[position] = found_flip
    done = total - len(missing)
    if progress is not None:
        progress(done, total)
    for start in range(0, len(missing), backbone.batch_size):
        chunk = missing[start : start + backbone.batch_size]
        squares = []
        for position in chunk:
            sha, loader = items[position]
            try:
                rgb = load_rgb(loader(), max_side=DEFAULT_MAX_SIDE)
            except ImageError as exc:
                raise ImageError(exc.code, f"image {sha}: {exc.message}") from exc
            squares.append(prepare_photo(rgb, backbone.spec, remover=remover, skip_plain=True).square)
        batch = np.stack(squares)
        if flip:
            batch = np.concatenate([batch, np.ascontiguousarray(batch[:, :, ::-1])])
        embedded = backbone.embed(batch)
        for offset, position in enumerate(chunk):
            sha = items[position][0]
            vectors[position] = embedded[offset]
            if cache is not None:
                cache.put(cache_key(sha, remover=remover), embedded[offset])
            if flip:
                mirrored[position] = embedded[len(chunk) + offset]
                if cache is not None:
                    cache.put(cache_key(sha, remover=remover, flip=True), mirrored[position])
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    return (vectors, mirrored) if flip else vectors


def _cached(cache: EmbeddingCache | None, key: str, dim: int) -> np.ndarray | None:
    """A cached vector of width ``dim``, or None."""
    if cache is None:
        return None
    vector = cache.get(key)
    return vector if vector is not None and vector.shape == (dim,) else None
