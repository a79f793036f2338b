"""Stage 1, splits: product-grouped, brand-stratified train / validation / test sides of every photo set."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from worker.ml.dedup import image_hashes, merge_near_duplicates
from worker.ml.training.config import TrainingConfig, TrainingData


@dataclass(frozen=True, eq=False)
class Split:
    """Row indices of the three sides of a split: each ``(n_side,) int64``, sorted, disjoint."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def grouped_split(
    labels: Sequence[str],
    groups: Sequence[str],
    *,
    seed: int,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> Split:
    """Split rows into train / validation / test so that no group is on two sides.

    Stratified by label as far as groups allow: each group takes its majority label; for each label the
    groups are shuffled (``numpy.random.default_rng(seed)``) and handed out greedily, to test while that
    brings the label's test image count closer to ``test_fraction`` of its images, then likewise to
    validation, the rest to train. Every label keeps at least one group in train (its largest, if the
    greedy pass left none), so labels with few groups end up in train only.

    Args:
        labels: N labels (brands).
        groups: N group keys (e.g. product names; a unique key per row for ungrouped rows).
        seed: random seed; the same inputs and seed give the same split.
        val_fraction: target share of each label's rows in validation.
        test_fraction: target share of each label's rows in test.

    Returns:
        ``Split`` whose three index arrays together hold every row exactly once.

    Raises:
        ValueError: lengths differ, or fractions are negative or sum to 1 or more.
    """
    label_array = np.asarray([str(label) for label in labels])
    group_array = np.asarray([str(group) for group in groups])
    if label_array.shape != group_array.shape:
        raise ValueError(f"{label_array.size} labels but {group_array.size} groups")
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError("fractions must be >= 0 and sum to less than 1")
    if label_array.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Split(empty, empty.copy(), empty.copy())
    names, group_of_row = np.unique(group_array, return_inverse=True)
    sizes = np.bincount(group_of_row, minlength=names.size)
    majority: list[str] = []
    for group in range(names.size):
        counts = Counter(label_array[group_of_row == group].tolist())
        majority.append(min(counts, key=lambda label: (-counts[label], label)))
    group_label = np.asarray(majority)
    side_of_group = np.zeros(names.size, dtype=np.int64)  # 0 train, 1 val, 2 test
    rng = np.random.default_rng(seed)
    for label in sorted(set(majority)):
        members = rng.permutation(np.flatnonzero(group_label == label))
        total = float(sizes[members].sum())
        targets = {2: test_fraction * total, 1: val_fraction * total}
        filled = {2: 0.0, 1: 0.0}
        for group in members:
            size = float(sizes[group])
            for side in (2, 1):
                if filled[side] + size / 2.0 <= targets[side]:
                    side_of_group[group] = side
                    filled[side] += size
                    break
        if not np.any(side_of_group[members] == 0):
            side_of_group[members[np.argmax(sizes[members])]] = 0
    side_of_row = side_of_group[group_of_row]
    return Split(
        train=np.flatnonzero(side_of_row == 0).astype(np.int64),
        val=np.flatnonzero(side_of_row == 1).astype(np.int64),
        test=np.flatnonzero(side_of_row == 2).astype(np.int64),
    )


@dataclass(frozen=True, eq=False)
class SplitPlan:
    """Where every photo of a run goes.

    Attributes:
        catalog: the catalog ``Split`` (row indices into ``TrainingData.catalog``).
        groups: N catalog split groups after near-duplicate merging.
        wild_train, wild_val, wild_test: ``(n,) int64`` indices into ``TrainingData.wild``; a wild
            photo joined to catalog photos by a near-duplicate takes their side.
        negative_hashes: SHA-256 of each negative photo's bytes.
        negatives_tune, negatives_hold: ``(n,) int64`` indices of the negatives that tune the
            footwear threshold and of those held out (a seeded 50 / 50 split).
    """

    catalog: Split
    groups: list[str]
    wild_train: np.ndarray
    wild_val: np.ndarray
    wild_test: np.ndarray
    negative_hashes: list[str]
    negatives_tune: np.ndarray
    negatives_hold: np.ndarray

    def record(self, data: TrainingData, config: TrainingConfig) -> dict[str, object]:
        """JSON-ready ``split.json``: ``{"seed", "train", "val", "test": [sha256], "wild": {side: [sha256]},
        "negatives": {"tune", "holdout": [sha256]}, "dedup"}``."""
        shas = [s.sha256 for s in data.catalog]
        return {
            "seed": config.seed,
            "train": [shas[i] for i in self.catalog.train],
            "val": [shas[i] for i in self.catalog.val],
            "test": [shas[i] for i in self.catalog.test],
            "wild": {
                side: [data.wild[i].sha256 for i in rows]
                for side, rows in (("train", self.wild_train), ("val", self.wild_val), ("test", self.wild_test))
            },
            "negatives": {
                "tune": [self.negative_hashes[i] for i in self.negatives_tune],
                "holdout": [self.negative_hashes[i] for i in self.negatives_hold],
            },
            "dedup": config.dedup,
        }


def plan_splits(data: TrainingData, config: TrainingConfig) -> SplitPlan:
    """Split catalog, wild and negative photos (stage 1 of ``train_model``).

    Groups are ``sample.group`` merged with near-duplicates (phash and dhash within 2 bits,
    ``worker.ml.dedup``; ``config.dedup=False`` skips it). The catalog is split by ``grouped_split``
    (``config.val_fraction`` / ``config.test_fraction`` per brand and ``TrainingSample.style``, so a
    real-world part of each brand is held out for test, never trained or tuned on); wild photos by their own groups,
    stratified by style (``config.wild_val_fraction`` / ``config.wild_test_fraction``, the test part
    held out, untouched by every choice); negatives 50 / 50 into tuning and held-out halves (seeded).

    Raises:
        ImageError: a photo cannot be decoded for hashing.
    """
    groups = [s.group for s in data.catalog]
    wild_groups = [f"wild:{s.group}" for s in data.wild]
    if config.dedup:
        hashes = [image_hashes(s.load()) for s in (*data.catalog, *data.wild)]
        merged = merge_near_duplicates([*groups, *wild_groups], [[h[0] for h in hashes], [h[1] for h in hashes]])
        groups, wild_groups = merged[: len(data.catalog)], merged[len(data.catalog) :]
    # Stratified by brand and style: every brand's real-world photos have their share on each side.
    labels = [f"{s.brand}\x1f{s.style}" if s.style else s.brand for s in data.catalog]
    split = grouped_split(
        labels, groups, seed=config.seed, val_fraction=config.val_fraction, test_fraction=config.test_fraction
    )
    wild_split = grouped_split(
        data.styles,
        wild_groups,
        seed=config.seed,
        val_fraction=config.wild_val_fraction,
        test_fraction=config.wild_test_fraction,
    )
    # A wild photo joined to catalog photos by a near-duplicate must not be evaluated on its own side.
    catalog_side = {
        g: side
        for side, rows in (("train", split.train), ("val", split.val), ("test", split.test))
        for g in (groups[i] for i in rows)
    }
    wild_side = np.empty(len(data.wild), dtype=object)
    for side, rows in (("train", wild_split.train), ("val", wild_split.val), ("test", wild_split.test)):
        for i in rows:
            wild_side[i] = catalog_side.get(wild_groups[i], side)
    negative_hashes = [hashlib.sha256(load()).hexdigest() for load in data.negatives]
    order = np.random.default_rng([config.seed, 7]).permutation(len(negative_hashes))
    half = len(negative_hashes) // 2
    return SplitPlan(
        catalog=split,
        groups=list(groups),
        wild_train=np.flatnonzero(wild_side == "train").astype(np.int64),
        wild_val=np.flatnonzero(wild_side == "val").astype(np.int64),
        wild_test=np.flatnonzero(wild_side == "test").astype(np.int64),
        negative_hashes=negative_hashes,
        negatives_tune=np.sort(order[:half]).astype(np.int64),
        negatives_hold=np.sort(order[half:]).astype(np.int64),
    )
