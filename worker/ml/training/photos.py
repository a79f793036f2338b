"""Photos as the prediction pipeline sees them under each background rule (wild, negatives, validation).

Every square comes from ``worker.ml.preprocessing.prepare_photo``, the function ``Pipeline`` uses.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from worker.ml.backbone import l2_normalise
from worker.ml.background import Remover, remover_cache_key
from worker.ml.images import DEFAULT_MAX_SIDE, has_plain_background, load_rgb
from worker.ml.preprocessing import prepare_photo

if TYPE_CHECKING:
    from worker.ml.backbone import Backbone


@dataclass(eq=False)
class PhotoSquares:
    """``Backbone.input_size`` squares of photos as the pipeline sees them under each background rule."""

    raw: np.ndarray  # (N, S, S, 3) uint8, no background removal
    removed: np.ndarray | None  # (N, S, S, 3) uint8, remover applied (None: no remover)
    plain: np.ndarray  # (N,) bool, has_plain_background


def rule_pick(rule: str, plain: np.ndarray, has_removed: bool) -> np.ndarray:
    """``(N,) bool``: True where ``rule`` (``skip-plain`` / ``always`` / ``never``) uses the
    background-removed square of photos with ``plain`` ``(N,) bool`` backgrounds."""
    if not has_removed or rule == "never":
        return np.zeros(plain.shape, dtype=bool)
    if rule == "always":
        return np.ones(plain.shape, dtype=bool)
    return ~plain


def photo_squares(
    items: Sequence[tuple[str, Callable[[], bytes]]],
    backbone: Backbone,
    remover: Remover | None,
    folder: Path | None,
    rule: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PhotoSquares:
    """Squares (``prepare_photo``) of photos without and with background removal (cached as ``.npz`` in
    ``folder``), as ``Pipeline`` would prepare them under each background rule.

    With ``rule`` given, the remover runs only where that rule uses it (elsewhere ``removed`` is a
    copy of ``raw``), which saves ~0.5 s per plain photo. ``progress(done, N)`` is called after each photo,
    cached or not."""
    raws, removeds, plains = [], [], []
    tag = f"{remover_cache_key(remover)}-{backbone.input_size}"
    for done, (sha, load) in enumerate(items, start=1):
        path = folder / f"{sha}.{tag}.{rule or 'all'}.npz" if folder is not None else None
        if path is not None and path.exists():
            with np.load(path, allow_pickle=False) as stored:
                raws.append(stored["raw"])
                removeds.append(stored["removed"])
                plains.append(bool(stored["plain"]))
            if progress is not None:
                progress(done, len(items))
            continue
        rgb = load_rgb(load(), max_side=DEFAULT_MAX_SIDE)
        raw = prepare_photo(rgb, backbone.spec).square
        plain = has_plain_background(rgb)
        needed = remover is not None and (rule is None or rule == "always" or (rule == "skip-plain" and not plain))
        removed = prepare_photo(rgb, backbone.spec, remover=remover, skip_plain=False).square if needed else raw
        raws.append(raw)
        removeds.append(removed)
        plains.append(plain)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
            with os.fdopen(handle, "wb") as stream:
                np.savez(stream, raw=raw, removed=removed, plain=np.asarray(plain))
            os.replace(temp, path)
        if progress is not None:
            progress(done, len(items))
    side = backbone.input_size
    empty = np.zeros((0, side, side, 3), np.uint8)
    return PhotoSquares(
        raw=np.stack(raws) if raws else empty,
        removed=(np.stack(removeds) if removeds else empty) if remover is not None else None,
        plain=np.asarray(plains, dtype=bool),
    )


@dataclass(eq=False)
class Embedded:
    """Raw embeddings and aux (original ImageNet) features of ``PhotoSquares`` under each square kind."""

    raw: dict[str, np.ndarray]
    aux_features: dict[str, np.ndarray]
    plain: np.ndarray

    def _pick(self, table: dict[str, np.ndarray], rule: str) -> np.ndarray:
        use_removed = rule_pick(rule, self.plain, "removed" in table)
        base = table["raw"].copy()
        if use_removed.any():
            base[use_removed] = table["removed"][use_removed]
        return base

    def descriptors(self, rule: str) -> np.ndarray:
        """``(N, D) float32`` raw (un-normalised) embeddings under ``rule``."""
        return self._pick(self.raw, rule)

    def normalised(self, rule: str) -> np.ndarray:
        """``(N, D) float32`` L2-normalised embeddings under ``rule``."""
        return l2_normalise(self.descriptors(rule))

    def aux(self, rule: str) -> np.ndarray:
        """``(N, D0) float32`` original ImageNet pooled features under ``rule``."""
        return self._pick(self.aux_features, rule)


def embed_squares(backbone: Backbone, squares: PhotoSquares) -> Embedded:
    """Raw embeddings and aux features (``Backbone.embed_raw``) of ``squares`` under each square kind
    (raw, removed)."""
    raw, aux = backbone.embed_raw(squares.raw)
    tables_raw, tables_aux = {"raw": raw}, {"raw": aux}
    if squares.removed is not None:
        tables_raw["removed"], tables_aux["removed"] = backbone.embed_raw(squares.removed)
    return Embedded(raw=tables_raw, aux_features=tables_aux, plain=squares.plain)
