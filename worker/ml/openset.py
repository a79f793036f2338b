"""Open-set brand recognition: saying ``unknown_brand`` for a sneaker of a brand the head was not trained on.

A fitted ``OpenSetRule`` turns a photo's embedding and its brand-head logits into a *known-ness* score
(higher = more like the training brands) and refuses the photo as ``unknown_brand`` when the score is
below a threshold chosen on validation photos of the known brands (``max_known_refused`` of them refused,
5 % by default; real-world validation photos must be among them, or the threshold will refuse real-world
photos of known brands).

Scores (all pure NumPy at prediction time):

- ``msp``: maximum softmax probability, ``max_c softmax(logits / T)_c`` (Hendrycks & Gimpel, "A Baseline
  for Detecting Misclassified and Out-of-Distribution Examples in Neural Networks", ICLR 2017).
- ``max_logit``: ``max_c logits_c`` (Hendrycks et al., "Scaling Out-of-Distribution Detection for
  Real-World Settings", ICML 2022).
- ``energy``: negative free energy ``T * logsumexp(logits / T)`` (Liu et al., "Energy-based
  Out-of-distribution Detection", NeurIPS 2020).
- ``prototype``: cosine similarity to the nearest class prototype (mean of the L2-normalised training
  embeddings of a class, re-normalised; Snell et al., "Prototypical Networks", NeurIPS 2017).
- ``knn``: cosine similarity to the k-th nearest training embedding (Sun et al., "Out-of-Distribution
  Detection with Deep Nearest Neighbors", ICML 2022: k-th nearest-neighbour distance of normalised
  features; for unit vectors ``||a - b||^2 = 2 - 2 cos``, so the order is the same).
- ``stacked``: logistic regression on the standardised scores above, trained with outlier exposure
  (Hendrycks et al., "Deep Anomaly Detection with Outlier Exposure", ICLR 2019): each training brand is
  left out in turn, a brand head and the reference sets are re-fitted without it, and its photos serve
  as stand-ins for an unknown brand against validation photos of the remaining brands.

Per-style thresholds (optional, ``fit_open_set(train_styles=..., val_styles=...)``): every score above rates
real-world photos of known brands as less known than product shots (with one threshold refusing 5 % of the
validation photos, 10-19 % of the real-world known-brand test photos were refused in the measurement below).
A brand-agnostic logistic regression "real-world or product shot" on the training embeddings splits photos in
two, each side gets its own threshold on validation, and the score is shifted by its side's threshold
(``score = raw - offset[side]``), so that one threshold near 0 applies to both sides.

Measured (leave-one-brand-out over the 9 brands of the shared sneaker sets, frozen 320 px multi-level
descriptor, brand head C=10, 5 % of known validation photos refused; ``benchmarks/bench_quality.py --lobo``):
mean share of the left-out brand refused / known test photos refused (all, real-world) / AUROC: msp 0.17 /
0.051, 0.098 / 0.70; max_logit 0.19 / 0.051, 0.140 / 0.74; energy 0.20 / 0.053, 0.150 / 0.74; prototype 0.05 /
0.047, 0.191 / 0.56; knn 0.04 / 0.047, 0.162 / 0.59; energy with per-style thresholds 0.21 / 0.064, 0.059 / 0.74
(0.06 for nike, 0.46 for puma). ``stacked`` scored 0.20 against energy's 0.42 on the one brand tried (puma) at
nine head fits per rule. Hence the default: ``energy`` with per-style thresholds. No rule on frozen ImageNet
features reaches issue 9's target (0.80 of an unknown brand refused at 5 % of known photos refused).

Everything is stored as arrays (``to_arrays`` / ``from_arrays``), like ``worker.ml.heads``; only the rules that
need them store prototypes (``prototype``, ``stacked``) and the k-NN bank (``knn``, ``stacked``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from worker.ml.heads import BrandHead, fit_brand_head, softmax

METHODS: Final = ("msp", "max_logit", "energy", "prototype", "knn", "stacked")
"""Known-ness scores ``OpenSetRule`` can use (module docstring)."""
BASE_FEATURES: Final = ("msp", "max_logit", "energy", "prototype", "knn")
"""Scores the ``stacked`` rule combines."""
DEFAULT_K: Final = 10
"""Neighbour rank of the ``knn`` score (Sun et al. 2022 use k = 50 for ImageNet's 1.28 M images and
smaller k for smaller training sets)."""
MAX_KNOWN_REFUSED: Final = 0.05
"""Share of known-brand validation photos the threshold may refuse (issue 9's target)."""
MAX_BANK_PER_CLASS: Final = 400
"""Reference embeddings kept per class for the ``knn`` score (seeded sample; bounds the artifact size)."""


def _matrix(values: np.ndarray, name: str, dim: int | None = None) -> np.ndarray:
    """``values`` as a 2-D float32 array, optionally of width ``dim``; ValueError otherwise."""
    matrix = np.asarray(values, dtype=np.float32)
    if matrix.ndim != 2 or (dim is not None and matrix.shape[1] != dim):
        raise ValueError(f"{name} must be (N, {dim if dim is not None else 'D'}), got {matrix.shape}")
    return matrix


def _l2(matrix: np.ndarray) -> np.ndarray:
    """Rows divided by their norms (zero rows stay zero), float32."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


def class_prototypes(embeddings: np.ndarray, labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Per-class mean of L2-normalised embeddings, re-normalised.

    Args:
        embeddings: ``(N, D)`` float.
        labels: N labels.
        classes: the C classes, in the order wanted.

    Returns:
        ``(C, D) float32`` unit rows (a class without rows gets a zero row).

    Raises:
        ValueError: shape mismatch.
    """
    matrix = _l2(_matrix(embeddings, "embeddings"))
    label_array = np.asarray([str(label) for label in labels])
    if label_array.shape[0] != matrix.shape[0]:
        raise ValueError(f"{matrix.shape[0]} embeddings but {label_array.shape[0]} labels")
    rows = [
        matrix[label_array == c].mean(axis=0) if np.any(label_array == c) else np.zeros(matrix.shape[1])
        for c in classes
    ]
    return _l2(np.asarray(rows, dtype=np.float32))


def reference_bank(
    embeddings: np.ndarray, labels: Sequence[str], *, seed: int, max_per_class: int = MAX_BANK_PER_CLASS
) -> np.ndarray:
    """Reference embeddings for the ``knn`` score: up to ``max_per_class`` rows of each label (seeded sample).

    Capping per class keeps the bank balanced (a brand with thousands of photos does not make every
    photo look "known") and the artifact small (9 brands x 400 x 1,664 float16 = 12 MB).

    Returns:
        ``(M, D) float32`` unit rows.

    Raises:
        ValueError: shape mismatch or ``max_per_class < 1``.
    """
    if max_per_class < 1:
        raise ValueError(f"max_per_class must be positive, got {max_per_class}")
    matrix = _l2(_matrix(embeddings, "embeddings"))
    label_array = np.asarray([str(label) for label in labels])
    if label_array.shape[0] != matrix.shape[0]:
        raise ValueError(f"{matrix.shape[0]} embeddings but {label_array.shape[0]} labels")
    rng = np.random.default_rng(seed)
    keep: list[np.ndarray] = []
    for name in sorted(set(label_array.tolist())):
        rows = np.flatnonzero(label_array == name)
        if rows.size > max_per_class:
            rows = np.sort(rng.choice(rows, size=max_per_class, replace=False))
        keep.append(rows)
    return matrix[np.concatenate(keep)] if keep else matrix[:0]


def knn_similarity(embeddings: np.ndarray, bank: np.ndarray, k: int) -> np.ndarray:
    """Cosine similarity of each row to its k-th most similar bank row (Sun et al. 2022).

    Args:
        embeddings: ``(N, D)`` float (normalised here).
        bank: ``(M, D)`` float unit rows.
        k: neighbour rank, capped at M.

    Returns:
        ``(N,) float64``; -1 for every row when the bank is empty.

    Raises:
        ValueError: shape mismatch or ``k < 1``.
    """
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    queries = _l2(_matrix(embeddings, "embeddings"))
    refs = _matrix(bank, "bank", queries.shape[1])
    if refs.shape[0] == 0:
        return np.full(queries.shape[0], -1.0)
    rank = min(k, refs.shape[0])
    out = np.empty(queries.shape[0], dtype=np.float64)
    for start in range(0, queries.shape[0], 512):
        sims = queries[start : start + 512] @ refs.T
        out[start : start + 512] = -np.partition(-sims, rank - 1, axis=1)[:, rank - 1]
    return out


def base_scores(
    embeddings: np.ndarray,
    logits: np.ndarray,
    *,
    temperature: float,
    prototypes: np.ndarray,
    bank: np.ndarray,
    k: int,
) -> dict[str, np.ndarray]:
    """The five base known-ness scores of ``BASE_FEATURES`` (module docstring), higher = more known.

    Args:
        embeddings: ``(N, D)`` float.
        logits: ``(N, C)`` uncalibrated brand-head logits of the same rows.
        temperature: the head's calibration temperature (> 0), used by ``msp`` and ``energy``.
        prototypes: ``(C', D)`` unit rows (``class_prototypes``).
        bank: ``(M, D)`` unit rows (``reference_bank``).
        k: neighbour rank of ``knn``.

    Returns:
        ``{name: (N,) float64}`` for every name in ``BASE_FEATURES``.

    Raises:
        ValueError: shape mismatch or temperature <= 0.
    """
    queries = _l2(_matrix(embeddings, "embeddings"))
    values = _matrix(logits, "logits").astype(np.float64)
    if values.shape[0] != queries.shape[0]:
        raise ValueError(f"{queries.shape[0]} embeddings but {values.shape[0]} logit rows")
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    scaled = values / temperature
    top = scaled.max(axis=1)
    log_norm = top + np.log(np.exp(scaled - top[:, None]).sum(axis=1))
    protos = _matrix(prototypes, "prototypes", queries.shape[1])
    return {
        "msp": softmax(scaled).max(axis=1).astype(np.float64),
        "max_logit": values.max(axis=1),
        "energy": temperature * log_norm,
        "prototype": (queries @ protos.T).max(axis=1).astype(np.float64)
        if protos.shape[0]
        else np.full(queries.shape[0], -1.0),
        "knn": knn_similarity(queries, bank, k),
    }


@dataclass(frozen=True, eq=False)
class OpenSetRule:
    """A fitted ``unknown_brand`` rule: a known-ness score and a threshold.

    ``known_ness = score(embeddings, logits)``; a photo is refused as ``unknown_brand`` when
    ``known_ness < threshold``.

    Attributes:
        method: one of ``METHODS``.
        threshold: refuse below this known-ness (chosen on validation, ``choose_threshold``).
        temperature: the brand head's calibration temperature (``msp`` and ``energy``).
        k: neighbour rank of ``knn``.
        prototypes: ``(C, D) float32`` class prototypes (zero-row ``(0, D)`` when unused).
        bank: ``(M, D) float16`` reference embeddings for ``knn`` (``(0, D)`` when unused).
        stack_mean, stack_scale: ``(F,) float64`` standardisation of the ``BASE_FEATURES`` (``stacked``).
        stack_coef: ``(F,) float64`` logistic-regression weights; ``stack_intercept`` its bias
            (``stacked``: known-ness is the log-odds of "known").
        style_coef: ``(D,) float32`` weights of the real-world-vs-product-shot classifier (``style_intercept`` its
            bias; logit > 0 = real-world), or None for one threshold for all photos.
        style_offsets: ``(2,) float64`` known-ness offsets subtracted from the score of product-shot-like (index 0)
            and real-world-like (index 1) photos; None with ``style_coef`` None.
    """

    method: str
    threshold: float
    temperature: float = 1.0
    k: int = DEFAULT_K
    prototypes: np.ndarray | None = None
    bank: np.ndarray | None = None
    stack_mean: np.ndarray | None = None
    stack_scale: np.ndarray | None = None
    stack_coef: np.ndarray | None = None
    stack_intercept: float = 0.0
    style_coef: np.ndarray | None = None
    style_intercept: float = 0.0
    style_offsets: np.ndarray | None = None

    def __post_init__(self) -> None:
        """Check the method and array shapes; raise ValueError when inconsistent."""
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {METHODS}")
        if not np.isfinite(self.temperature) or self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.k < 1:
            raise ValueError(f"k must be positive, got {self.k}")
        protos = np.zeros((0, 0), np.float32) if self.prototypes is None else _matrix(self.prototypes, "prototypes")
        bank = np.zeros((0, protos.shape[1]), np.float16) if self.bank is None else np.asarray(self.bank, np.float16)
        if bank.ndim != 2:
            raise ValueError(f"bank must be (M, D), got {bank.shape}")
        needs = {"prototype": protos.shape[0] > 0, "knn": bank.shape[0] > 0, "stacked": self.stack_coef is not None}
        for part, present in needs.items():
            if (self.method == part or self.method == "stacked") and not present:
                raise ValueError(f"method {self.method!r} needs its {part} arrays")
        if protos.shape[0] and bank.shape[0] and protos.shape[1] != bank.shape[1]:
            raise ValueError(f"prototypes {protos.shape} and bank {bank.shape} differ in width")
        object.__setattr__(self, "prototypes", protos)
        object.__setattr__(self, "bank", bank)
        object.__setattr__(self, "threshold", float(self.threshold))
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "k", int(self.k))
        if self.method == "stacked":
            size = len(BASE_FEATURES)
            for name in ("stack_mean", "stack_scale", "stack_coef"):
                array = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1)
                if array.shape != (size,):
                    raise ValueError(f"{name} must be ({size},), got {array.shape}")
                object.__setattr__(self, name, array)
            if np.any(self.stack_scale <= 0):  # type: ignore[operator]
                raise ValueError("stack_scale must be positive")
            object.__setattr__(self, "stack_intercept", float(self.stack_intercept))
        if (self.style_coef is None) != (self.style_offsets is None):
            raise ValueError("style_coef and style_offsets go together")
        if self.style_coef is not None:
            coef = np.asarray(self.style_coef, dtype=np.float32).reshape(-1)
            offsets = np.asarray(self.style_offsets, dtype=np.float64).reshape(-1)
            if offsets.shape != (2,) or not np.all(np.isfinite(offsets)):
                raise ValueError(f"style_offsets must be 2 finite values, got {offsets}")
            object.__setattr__(self, "style_coef", coef)
            object.__setattr__(self, "style_offsets", offsets)
            object.__setattr__(self, "style_intercept", float(self.style_intercept))

    def real_world_like(self, embeddings: np.ndarray) -> np.ndarray:
        """``(N,) bool``: the style classifier's verdict (all False without one).

        Raises:
            ValueError: wrong shape.
        """
        matrix = _matrix(embeddings, "embeddings")
        if self.style_coef is None:
            return np.zeros(matrix.shape[0], dtype=bool)
        if matrix.shape[1] != self.style_coef.shape[0]:
            raise ValueError(f"embeddings are {matrix.shape[1]}-d, the style classifier {self.style_coef.shape[0]}-d")
        return (_l2(matrix) @ self.style_coef + self.style_intercept) > 0

    def score(self, embeddings: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """Known-ness of each photo, higher = more like the training brands, shifted by the photo's style offset.

        ``raw_score`` minus ``style_offsets[real_world_like]`` when the rule has a style classifier, else ``raw_score``.

        Args:
            embeddings: ``(N, D)`` float, the embeddings the brand head reads.
            logits: ``(N, C)`` float, ``BrandHead.logits(embeddings)`` (uncalibrated).

        Returns:
            ``(N,) float64``.

        Raises:
            ValueError: shape mismatch.
        """
        raw = self.raw_score(embeddings, logits)
        if self.style_offsets is None:
            return raw
        return raw - self.style_offsets[self.real_world_like(embeddings).astype(np.int64)]

    def raw_score(self, embeddings: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """Known-ness of each photo by ``method`` alone, higher = more like the training brands.

        Args:
            embeddings: ``(N, D)`` float, the embeddings the brand head reads.
            logits: ``(N, C)`` float, ``BrandHead.logits(embeddings)`` (uncalibrated).

        Returns:
            ``(N,) float64``.

        Raises:
            ValueError: shape mismatch.
        """
        width = np.asarray(embeddings).shape[-1]
        protos = self.prototypes if self.prototypes.shape[0] else np.zeros((0, width), np.float32)  # type: ignore[union-attr]
        bank = self.bank.astype(np.float32) if self.bank.shape[0] else np.zeros((0, width), np.float32)  # type: ignore[union-attr]
        features = base_scores(embeddings, logits, temperature=self.temperature, prototypes=protos, bank=bank, k=self.k)
        if self.method != "stacked":
            return features[self.method]
        return stacked_log_odds(
            features,
            self.stack_mean,  # type: ignore[arg-type]
            self.stack_scale,  # type: ignore[arg-type]
            self.stack_coef,  # type: ignore[arg-type]
            self.stack_intercept,
        )

    def is_unknown(self, embeddings: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """``(N,) bool``: True where the photo is refused as ``unknown_brand`` (known-ness < threshold)."""
        return self.score(embeddings, logits) < self.threshold

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez`` (no pickled objects): method (unicode), threshold, temperature, k,
        prototypes, bank (float16), and the ``stack_*`` arrays (empty when unused)."""
        empty = np.zeros(0, np.float64)
        return {
            "method": np.asarray(self.method, dtype=np.str_),
            "threshold": np.asarray(self.threshold, dtype=np.float64),
            "temperature": np.asarray(self.temperature, dtype=np.float64),
            "k": np.asarray(self.k, dtype=np.int64),
            "prototypes": np.asarray(self.prototypes, np.float32),
            "bank": np.asarray(self.bank, np.float16),
            "stack_mean": empty if self.stack_mean is None else np.asarray(self.stack_mean),
            "stack_scale": empty if self.stack_scale is None else np.asarray(self.stack_scale),
            "stack_coef": empty if self.stack_coef is None else np.asarray(self.stack_coef),
            "stack_intercept": np.asarray(self.stack_intercept, dtype=np.float64),
            "style_coef": np.zeros(0, np.float32) if self.style_coef is None else self.style_coef,
            "style_intercept": np.asarray(self.style_intercept, dtype=np.float64),
            "style_offsets": empty if self.style_offsets is None else self.style_offsets,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> OpenSetRule:
        """Inverse of ``to_arrays``.

        Raises:
            KeyError: a key is missing.
            ValueError: inconsistent arrays.
        """

        def optional(name: str) -> np.ndarray | None:
            if name.startswith("style_") and name not in arrays:  # rules saved before per-style thresholds
                return None
            array = np.asarray(arrays[name], dtype=np.float64).reshape(-1)
            return array if array.size else None

        return cls(
            method=str(np.asarray(arrays["method"])),
            threshold=float(np.asarray(arrays["threshold"])),
            temperature=float(np.asarray(arrays["temperature"])),
            k=int(np.asarray(arrays["k"])),
            prototypes=np.asarray(arrays["prototypes"], dtype=np.float32),
            bank=np.asarray(arrays["bank"], dtype=np.float16),
            stack_mean=optional("stack_mean"),
            stack_scale=optional("stack_scale"),
            stack_coef=optional("stack_coef"),
            stack_intercept=float(np.asarray(arrays["stack_intercept"])),
            style_coef=optional("style_coef"),
            style_intercept=float(np.asarray(arrays.get("style_intercept", 0.0))),
            style_offsets=optional("style_offsets"),
        )


def stacked_log_odds(
    features: Mapping[str, np.ndarray],
    mean: np.ndarray,
    scale: np.ndarray,
    coef: np.ndarray,
    intercept: float,
) -> np.ndarray:
    """Log-odds of "known" from base scores: ``((f - mean) / scale) @ coef + intercept``.

    Args:
        features: ``{name: (N,)}`` for every name in ``BASE_FEATURES``.
        mean, scale, coef: ``(F,)`` in ``BASE_FEATURES`` order.
        intercept: bias.

    Returns:
        ``(N,) float64``.

    Raises:
        KeyError: a base score is missing.
    """
    matrix = np.stack([np.asarray(features[name], np.float64) for name in BASE_FEATURES], axis=1)
    return ((matrix - mean) / scale) @ coef + intercept


def choose_threshold(known_scores: np.ndarray, *, max_known_refused: float = MAX_KNOWN_REFUSED) -> float:
    """Largest threshold refusing at most ``max_known_refused`` of the known validation photos.

    Refusal is ``score < threshold``; the threshold is the ``floor(max_known_refused * n)``-th lowest
    score (0-based), so exactly that many scores lie strictly below it when there are no ties.

    Args:
        known_scores: ``(n,)`` known-ness of validation photos of the training brands.
        max_known_refused: allowed share, in [0, 1).

    Returns:
        The threshold; ``-inf`` (refuse nothing) when there are no scores.

    Raises:
        ValueError: ``max_known_refused`` outside [0, 1).
    """
    if not 0.0 <= max_known_refused < 1.0:
        raise ValueError(f"max_known_refused must be in [0, 1), got {max_known_refused}")
    scores = np.sort(np.asarray(known_scores, dtype=np.float64).reshape(-1))
    if scores.size == 0:
        return float("-inf")
    return float(scores[int(np.floor(max_known_refused * scores.size + 1e-9))])


HeadFitter = Callable[[np.ndarray, np.ndarray], BrandHead]
"""``fit(embeddings (N, D), labels (N,)) -> BrandHead`` used for the outlier-exposure folds."""


def fit_open_set(
    train_embeddings: np.ndarray,
    train_labels: Sequence[str],
    val_embeddings: np.ndarray,
    val_labels: Sequence[str],
    head: BrandHead,
    *,
    method: str = "energy",
    k: int = DEFAULT_K,
    max_known_refused: float = MAX_KNOWN_REFUSED,
    seed: int = 0,
    fit_head: HeadFitter | None = None,
    max_bank_per_class: int = MAX_BANK_PER_CLASS,
    train_styles: Sequence[str] | None = None,
    val_styles: Sequence[str] | None = None,
) -> OpenSetRule:
    """Fit an ``OpenSetRule`` for a trained brand head and choose its threshold on validation.

    Prototypes and the k-NN bank come from the training embeddings; the threshold refuses at most
    ``max_known_refused`` of the validation photos (all of them are of known brands; include
    real-world photos). With ``method="stacked"``, outlier exposure (module docstring): for each
    training brand B, a head is fitted by ``fit_head`` on the training rows of the other brands, and
    prototypes and bank rebuilt without B; B's training and validation photos are the "unknown"
    examples and the validation photos of the other brands the "known" examples; a balanced logistic
    regression on the standardised base scores separates them. Needs at least 3 brands.

    With ``train_styles`` and ``val_styles`` (``"real-world"``, ``"product-shot"``, anything else = unlabelled),
    per-style thresholds (module docstring): a balanced logistic regression (C=1) real-world vs product shot on
    the labelled training rows, then ``max_known_refused`` is applied to each side of the validation photos as
    the classifier splits them; a side with fewer than 20 validation photos takes the overall threshold. Skipped
    when either style has fewer than 10 labelled training rows.

    Args:
        train_embeddings: ``(N, D)`` float, what the head was trained on.
        train_labels: N brands.
        val_embeddings: ``(V, D)`` float, held-out photos of the same brands.
        val_labels: V brands.
        head: the fitted brand head (its temperature is used).
        method: one of ``METHODS``.
        k: neighbour rank of ``knn``.
        max_known_refused: share of validation photos the threshold may refuse.
        seed: bank sampling seed.
        fit_head: head fitter for the outlier-exposure folds; default ``fit_brand_head`` with C=10,
            balanced class weights.
        max_bank_per_class: bank rows per brand.
        train_styles, val_styles: optional N / V photo styles for per-style thresholds.

    Returns:
        ``OpenSetRule`` (``threshold`` near 0 with per-style offsets).

    Raises:
        ValueError: unknown method, shape mismatch, fewer than 3 brands for ``stacked``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    train = _matrix(train_embeddings, "train_embeddings", head.dim)
    val = _matrix(val_embeddings, "val_embeddings", head.dim)
    train_y = np.asarray([str(label) for label in train_labels])
    val_y = np.asarray([str(label) for label in val_labels])
    if train_y.shape[0] != train.shape[0] or val_y.shape[0] != val.shape[0]:
        raise ValueError("embeddings and labels differ in length")
    common: dict[str, object] = {"temperature": head.temperature, "k": k}
    if method in ("prototype", "stacked"):
        common["prototypes"] = class_prototypes(train, train_y, head.classes)
    if method in ("knn", "stacked"):
        common["bank"] = reference_bank(train, train_y, seed=seed, max_per_class=max_bank_per_class)
    if method == "stacked":
        common.update(
            _outlier_exposure(
                train, train_y, val, val_y, head, k=k, seed=seed, fit_head=fit_head, bank_cap=max_bank_per_class
            )
        )
    rule = OpenSetRule(method=method, threshold=float("-inf"), **common)  # type: ignore[arg-type]
    val_raw = rule.raw_score(val, head.logits(val))
    if train_styles is not None and val_styles is not None:
        style = _fit_style(train, train_styles, seed=seed)
        if style is not None:
            coef, intercept = style
            rule = OpenSetRule(
                method=method,
                threshold=float("-inf"),
                style_coef=coef,
                style_intercept=intercept,
                style_offsets=np.zeros(2),
                **common,  # type: ignore[arg-type]
            )
            side = rule.real_world_like(val).astype(np.int64)
            overall = choose_threshold(val_raw, max_known_refused=max_known_refused)
            offsets = np.array(
                [
                    choose_threshold(val_raw[side == s], max_known_refused=max_known_refused)
                    if np.sum(side == s) >= MIN_STYLE_VAL
                    else overall
                    for s in (0, 1)
                ]
            )
            offsets = np.where(np.isfinite(offsets), offsets, overall)
            common.update(style_coef=coef, style_intercept=intercept, style_offsets=offsets)
            rule = OpenSetRule(method=method, threshold=float("-inf"), **common)  # type: ignore[arg-type]
    threshold = choose_threshold(rule.score(val, head.logits(val)), max_known_refused=max_known_refused)
    return OpenSetRule(method=method, threshold=threshold, **common)  # type: ignore[arg-type]


MIN_STYLE_VAL: Final = 20
"""Fewest validation photos on one style side for it to get its own threshold."""
MIN_STYLE_TRAIN: Final = 10
"""Fewest labelled training photos of each style for the style classifier to be fitted."""


def _fit_style(train: np.ndarray, styles: Sequence[str], *, seed: int) -> tuple[np.ndarray, float] | None:
    """``(coef (D,), intercept)`` of a balanced logistic regression real-world (1) vs product shot (0) on the
    labelled rows of ``train``, or None when a style has fewer than ``MIN_STYLE_TRAIN`` rows."""
    from sklearn.linear_model import LogisticRegression

    style_array = np.asarray([str(x) for x in styles])
    if style_array.shape[0] != train.shape[0]:
        raise ValueError(f"{train.shape[0]} training embeddings but {style_array.shape[0]} styles")
    labelled = np.isin(style_array, ["real-world", "product-shot"])
    real = style_array[labelled] == "real-world"
    if real.sum() < MIN_STYLE_TRAIN or (~real).sum() < MIN_STYLE_TRAIN:
        return None
    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000, random_state=seed)
    model.fit(_l2(train[labelled]).astype(np.float64), real)
    return model.coef_[0].astype(np.float32), float(model.intercept_[0])


def _outlier_exposure(
    train: np.ndarray,
    train_y: np.ndarray,
    val: np.ndarray,
    val_y: np.ndarray,
    head: BrandHead,
    *,
    k: int,
    seed: int,
    fit_head: HeadFitter | None,
    bank_cap: int,
) -> dict[str, object]:
    """The ``stack_*`` arrays of the ``stacked`` rule (``fit_open_set`` docstring).

    Raises:
        ValueError: fewer than 3 brands, or only one kind of example.
    """
    from sklearn.linear_model import LogisticRegression

    brands = sorted(set(train_y.tolist()))
    if len(brands) < 3:
        raise ValueError(f"stacked open-set rule needs at least 3 training brands, got {brands}")
    fitter = fit_head or (lambda x, y: fit_brand_head(x, y, seed=seed))
    rows, targets = [], []
    for left_out in brands:
        keep, keep_val = train_y != left_out, val_y != left_out
        inner = fitter(train[keep], train_y[keep]).with_temperature(head.temperature)
        inner_protos = class_prototypes(train[keep], train_y[keep], inner.classes)
        inner_bank = reference_bank(train[keep], train_y[keep], seed=seed, max_per_class=bank_cap)
        outliers = np.concatenate([train[~keep], val[~keep_val]])
        for matrix, target in ((val[keep_val], 1), (outliers, 0)):
            if matrix.shape[0] == 0:
                continue
            feats = base_scores(
                matrix,
                inner.logits(matrix),
                temperature=inner.temperature,
                prototypes=inner_protos,
                bank=inner_bank,
                k=k,
            )
            rows.append(np.stack([feats[name] for name in BASE_FEATURES], axis=1))
            targets.append(np.full(matrix.shape[0], target))
    features = np.concatenate(rows)
    target = np.concatenate(targets)
    if np.unique(target).size < 2:
        raise ValueError("outlier exposure produced only one kind of example")
    mean = features.mean(axis=0)
    spread = features.std(axis=0)
    scale = np.where(spread > 1e-12, spread, 1.0)
    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000)
    model.fit((features - mean) / scale, target)
    return {
        "stack_mean": mean,
        "stack_scale": scale,
        "stack_coef": model.coef_[0].astype(np.float64),
        "stack_intercept": float(model.intercept_[0]),
    }
