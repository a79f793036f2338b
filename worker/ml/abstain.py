"""Saying "I don't know": a footwear detector and the thresholds of the two abstain rules.

Two rules, applied in this order by ``Pipeline``:

1. ``not_footwear``: the ImageNet-1k classifier's probability mass on footwear classes
   (``FOOTWEAR_CLASSES``) is below ``footwear_threshold``. The classifier is the last Dense(1000) layer
   of ``efficientnet_lite0_imagenet.keras`` (``../shared/weights/README.md``: the with-top model is
   the no-top backbone followed by Dropout and Dense(1000) softmax on the 1280-d pooled features),
   applied to the *un-normalised original* pooled features: those are the backbone's output itself
   for the head-only variant, and the second ("aux") output of a fine-tuned backbone (whose first
   output has moved away from ImageNet's). So no second network runs.
2. ``low_confidence``: the calibrated top-1 brand probability is below ``confidence_threshold``.

Threshold rules (chosen on validation data, never on test):

- ``choose_footwear_threshold``: the largest threshold that rejects at most ``max_positive_reject``
  (2 %) of validation sneakers; the share of negatives it rejects is reported, not optimised.
- ``choose_confidence_threshold``: the smallest threshold at which the accuracy of the accepted
  validation predictions reaches ``target_accuracy``, capped so that at most ``max_abstain`` of the
  validation photos are refused.

Sources: ImageNet class indices from ``../shared/weights/imagenet_class_index.json`` (502 clogs,
514 cowboy boot, 630 slip-on shoe (loafer), 770 running shoe, 774 sandal); selective classification
with a confidence threshold: Geifman & El-Yaniv, "Selective Classification for Deep Neural
Networks", NeurIPS 2017.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from worker.ml.errors import ModelError
from worker.ml.heads import softmax

FOOTWEAR_CLASSES: Final = (502, 514, 630, 770, 774)
"""ImageNet-1k indices of footwear: clogs, cowboy boot, slip-on shoe (loafer), running shoe, sandal."""
DEFAULT_CONFIDENCE_THRESHOLD: Final = 0.0
"""``low_confidence`` threshold when training had no validation photos: never abstain."""
MAX_POSITIVE_REJECT: Final = 0.02
"""Largest share of validation sneakers the footwear threshold may reject."""
TARGET_ACCURACY: Final = 0.97
"""Accuracy of accepted validation predictions that ``choose_confidence_threshold`` aims at."""
MAX_ABSTAIN: Final = 0.10
"""Largest share of validation photos the confidence threshold may refuse."""


@dataclass(frozen=True, eq=False)
class FootwearDetector:
    """ImageNet Dense(1000) softmax layer reduced to "probability that the photo shows footwear".

    Attributes:
        weights: ``(D0, 1000) float32`` kernel of the ImageNet classifier's last Dense layer.
        bias: ``(1000,) float32``.
        classes: ImageNet indices summed into the footwear probability.
    """

    weights: np.ndarray
    bias: np.ndarray
    classes: tuple[int, ...] = FOOTWEAR_CLASSES

    def __post_init__(self) -> None:
        """Check shapes; raise ValueError when inconsistent."""
        weights = np.asarray(self.weights, dtype=np.float32)
        bias = np.asarray(self.bias, dtype=np.float32).reshape(-1)
        if weights.ndim != 2 or bias.shape != (weights.shape[1],):
            raise ValueError(f"weights (D0, K) and bias (K,) expected, got {weights.shape} and {bias.shape}")
        classes = tuple(int(c) for c in self.classes)
        if not classes or min(classes) < 0 or max(classes) >= weights.shape[1]:
            raise ValueError(f"footwear classes {classes} out of range for {weights.shape[1]} outputs")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "bias", bias)
        object.__setattr__(self, "classes", classes)

    @property
    def dim(self) -> int:
        """Width D0 of the original pooled features it reads."""
        return int(self.weights.shape[0])

    def score(self, features: np.ndarray) -> np.ndarray:
        """Footwear probability mass of ``(N, D0)`` un-normalised ImageNet pooled features.

        Returns:
            ``(N,) float64`` in [0, 1]: ``sum_{c in classes} softmax(features @ W + b)_c``.

        Raises:
            ValueError: wrong shape.
        """
        matrix = np.asarray(features, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != self.dim:
            raise ValueError(f"expected features of shape (N, {self.dim}), got {matrix.shape}")
        proba = softmax(matrix @ self.weights + self.bias).astype(np.float64)
        return proba[:, list(self.classes)].sum(axis=1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez``: ``weights``, ``bias``, ``classes`` (int64)."""
        return {"weights": self.weights, "bias": self.bias, "classes": np.asarray(self.classes, dtype=np.int64)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> FootwearDetector:
        """Inverse of ``to_arrays``.

        Raises:
            KeyError: a key is missing.
            ValueError: inconsistent shapes.
        """
        return cls(
            weights=np.asarray(arrays["weights"]),
            bias=np.asarray(arrays["bias"]),
            classes=tuple(int(c) for c in np.asarray(arrays["classes"]).reshape(-1)),
        )


def load_imagenet_detector(path: str | Path, *, layer: str = "predictions") -> FootwearDetector:
    """Extract the last Dense layer of the with-top EfficientNet-Lite0 into a ``FootwearDetector``.

    Args:
        path: ``efficientnet_lite0_imagenet.keras`` (input 224x224x3, output 1000-way softmax).
        layer: name of the Dense layer (``"predictions"`` in that file).

    Raises:
        ModelError: the file is missing, does not load, or has no such Dense layer with 1000 outputs.
    """
    from worker.ml.backbone import import_keras

    source = Path(path)
    if not source.is_file():
        raise ModelError(f"ImageNet classifier not found: {source}")
    keras = import_keras()
    try:
        model = keras.saving.load_model(source, compile=False)
        kernel, bias = model.get_layer(layer).get_weights()
    except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors, ...
        raise ModelError(f"cannot read the ImageNet Dense layer from {source}: {exc}") from exc
    if kernel.ndim != 2 or kernel.shape[1] != 1000:
        raise ModelError(f"{source}: layer {layer!r} is {kernel.shape}, expected (D0, 1000)")
    return FootwearDetector(weights=kernel, bias=bias)


def choose_footwear_threshold(
    positive_scores: Sequence[float] | np.ndarray,
    *,
    max_positive_reject: float = MAX_POSITIVE_REJECT,
) -> float:
    """The largest threshold t such that ``mean(positive_scores < t) <= max_positive_reject``.

    A photo is rejected as ``not_footwear`` when its score is below t. With no positives, 0.0
    (reject nothing).

    Args:
        positive_scores: footwear scores in [0, 1] of validation sneaker photos.
        max_positive_reject: allowed share of sneakers rejected, in [0, 1).

    Returns:
        t in [0, 1] (a value just above an observed score, or 0.0).

    Raises:
        ValueError: ``max_positive_reject`` outside [0, 1).
    """
    if not 0.0 <= max_positive_reject < 1.0:
        raise ValueError(f"max_positive_reject must be in [0, 1), got {max_positive_reject}")
    scores = np.sort(np.asarray(positive_scores, dtype=np.float64).reshape(-1))
    if scores.size == 0:
        return 0.0
    allowed = int(np.floor(max_positive_reject * scores.size + 1e-9))
    # Rejecting the `allowed` lowest scores: t = the (allowed)-th lowest score (0-based), exclusive.
    return float(scores[allowed]) if allowed < scores.size else 1.0


def choose_confidence_threshold(
    confidences: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    *,
    target_accuracy: float = TARGET_ACCURACY,
    max_abstain: float = MAX_ABSTAIN,
) -> float:
    """Smallest top-1 probability threshold whose accepted predictions reach ``target_accuracy``.

    Candidates are the observed confidences (accept ``confidence >= t``). The smallest candidate whose
    accepted rows have accuracy >= ``target_accuracy`` is taken; when that would refuse more than
    ``max_abstain`` of the rows (or no candidate reaches the target), the threshold is lowered to the
    largest value refusing at most ``max_abstain``. 0.0 when there are no rows or the target is met
    with no abstention.

    Args:
        confidences: N calibrated top-1 probabilities in [0, 1] (validation).
        correct: N booleans, top-1 right or wrong.
        target_accuracy: wanted accuracy of accepted predictions, in (0, 1].
        max_abstain: largest share refused, in [0, 1).

    Returns:
        t in [0, 1].

    Raises:
        ValueError: length mismatch or parameters out of range.
    """
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    hits = np.asarray(correct, dtype=bool).reshape(-1)
    if conf.shape != hits.shape:
        raise ValueError(f"{conf.size} confidences but {hits.size} correctness flags")
    if not 0.0 < target_accuracy <= 1.0 or not 0.0 <= max_abstain < 1.0:
        raise ValueError("need 0 < target_accuracy <= 1 and 0 <= max_abstain < 1")
    if conf.size == 0 or hits.mean() >= target_accuracy:
        return 0.0
    order = np.argsort(-conf, kind="stable")
    sorted_conf, sorted_hits = conf[order], hits[order]
    accepted_accuracy = np.cumsum(sorted_hits) / np.arange(1, conf.size + 1)
    # Accepting the n most confident rows corresponds to t = sorted_conf[n-1] (ties accepted too).
    cap_reject = int(np.floor(max_abstain * conf.size + 1e-9))
    min_accept = conf.size - cap_reject
    best_n = None
    for n in range(conf.size, 0, -1):
        if n < conf.size and sorted_conf[n - 1] == sorted_conf[n]:
            continue  # a threshold cannot separate tied confidences
        if accepted_accuracy[n - 1] >= target_accuracy:
            best_n = n
            break
    if best_n is None or best_n < min_accept:
        # Refuse at most cap_reject rows: accept at least min_accept (threshold at that row's score).
        if cap_reject == 0:
            return 0.0
        return float(sorted_conf[min_accept - 1])
    return float(sorted_conf[best_n - 1])


def rejection_rates(scores: np.ndarray, threshold: float) -> float:
    """Share of ``(N,)`` scores strictly below ``threshold`` (None-safe: 0.0 for N = 0)."""
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    return float(np.mean(values < threshold)) if values.size else 0.0
