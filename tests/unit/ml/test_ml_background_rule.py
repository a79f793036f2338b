"""The background rule a training run chooses (``choose_background_rule``): lowest validation log loss,
with ``always`` kept only when it beats ``skip-plain`` by more than one standard error; the cache of prepared
photo squares the rule is chosen on, keyed by what the remover makes."""

from __future__ import annotations

import numpy as np

from tests.unit.ml.ml_helpers import draw_shoe, to_bytes
from worker.ml.background import Cutout, NoRemover, composite_on_white, remover_cache_key
from worker.ml.metrics import log_loss, log_loss_rows
from worker.ml.training import TrainingConfig
from worker.ml.training.fitting import choose_background_rule
from worker.ml.training.photos import Embedded, photo_squares
from worker.ml.training.splits import Split

BRANDS = np.array(["a", "b"])
CENTRES = {"a": np.array([1.0, 0.0, 0.0, 0.0]), "b": np.array([0.0, 1.0, 0.0, 0.0])}


def _catalog(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, Split]:
    """80 catalog rows around two brand centres, half training, half validation."""
    labels = np.repeat(BRANDS, 40)
    vectors = np.stack([CENTRES[b] + rng.normal(0, 0.3, 4) for b in labels])
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    order = rng.permutation(80)
    return vectors, labels, Split(np.sort(order[:40]), np.sort(order[40:]), np.zeros(0, np.int64))


def _wild(rng: np.random.Generator, n: int, removed_helps: float, noise: float) -> tuple[Embedded, np.ndarray]:
    """``n`` wild photos, all with plain backgrounds, whose removed-background embeddings lie
    ``removed_helps`` closer (in units of the centre) to their brand than the raw ones, with ``noise``
    (standard deviation) of their own."""
    labels = np.resize(BRANDS, n)
    clutter = rng.normal(0, 0.5, (n, 4))
    centre = np.stack([CENTRES[b] for b in labels])
    raw = (0.4 * centre + clutter).astype(np.float32)
    removed = ((0.4 + removed_helps) * centre + clutter + rng.normal(0, noise, (n, 4))).astype(np.float32)
    return (
        Embedded(raw={"raw": raw, "removed": removed}, aux_features={"raw": raw, "removed": removed},
                 plain=np.ones(n, dtype=bool)),
        labels,
    )  # fmt: skip


def _choose(removed_helps: float, noise: float = 0.0, n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    vectors, labels, split = _catalog(rng)
    wild, wild_labels = _wild(rng, n, removed_helps, noise)
    return choose_background_rule(vectors, None, labels, split, wild, wild_labels, np.arange(n), TrainingConfig())


def test_log_loss_rows_average_to_log_loss():
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    truth = np.array([0, 0, 1])
    rows = log_loss_rows(proba, truth)
    np.testing.assert_allclose(rows, -np.log([0.9, 0.2, 0.5]))
    assert log_loss(proba, truth) == float(rows.mean())


def test_a_clear_gain_from_removal_on_plain_photos_keeps_always():
    choice = _choose(removed_helps=1.0)
    assert choice.lowest == "always"
    assert choice.losses["skip-plain"] - choice.losses["always"] > choice.standard_errors["skip-plain"] > 0
    assert choice.rule == "always"


def test_a_gain_within_one_standard_error_keeps_the_cheaper_skip_plain():
    # Seed 9: removal helps a little on average, but photo by photo it moves the loss either way.
    choice = _choose(removed_helps=0.02, noise=0.4, seed=9)
    assert choice.lowest == "always"
    gain = choice.losses["skip-plain"] - choice.losses["always"]
    assert 0 < gain <= choice.standard_errors["skip-plain"]
    assert choice.rule == "skip-plain"
    assert choice.standard_errors["always"] == 0.0


def test_never_wins_only_with_the_lowest_loss():
    choice = _choose(removed_helps=-0.02)
    # Removing hurts a little: on these all-plain photos skip-plain and never see the same embeddings.
    assert choice.losses["never"] == choice.losses["skip-plain"] < choice.losses["always"]
    assert choice.rule == "skip-plain"  # ties go to skip-plain


class _BoxRemover:
    """A stand-in remover: keeps a central box of ``share`` of each side, white elsewhere."""

    name = "box"

    def __init__(self, share: float) -> None:
        self.share = share
        self.cache_key = f"box-{share}"
        self.calls = 0

    def __call__(self, rgb: np.ndarray) -> Cutout:
        self.calls += 1
        h, w = rgb.shape[:2]
        mask = np.zeros((h, w), np.float32)
        dy, dx = int(h * (1 - self.share) / 2), int(w * (1 - self.share) / 2)
        mask[dy : h - dy, dx : w - dx] = 1.0
        return Cutout(image=composite_on_white(rgb, mask), mask=mask, method=self.name)


def test_cached_squares_are_keyed_by_what_the_remover_makes(tiny_backbone, tmp_path):
    """Two removers of one name that make different masks (U^2-Net-p at two input sizes) never share cached
    squares, and the same remover's second pass reads the cache instead of running again."""
    data = to_bytes(draw_shoe((200, 40, 40), seed=0, size=(160, 120), background="noise"))
    items = [("a" * 64, lambda: data)]
    wide, narrow = _BoxRemover(0.9), _BoxRemover(0.5)
    first = photo_squares(items, tiny_backbone, wide, tmp_path, "always")
    second = photo_squares(items, tiny_backbone, narrow, tmp_path, "always")
    assert wide.calls == 1 and narrow.calls == 1
    assert not np.array_equal(first.removed, second.removed)
    again = photo_squares(items, tiny_backbone, wide, tmp_path, "always")
    assert wide.calls == 1 and np.array_equal(again.removed, first.removed)
    assert remover_cache_key(None) == "none" and remover_cache_key(NoRemover()) == "none"
