"""Heads on top of image embeddings: a brand classifier and a price regressor.

Both are plain NumPy at prediction time (a matrix product), fitted with scikit-learn (imported inside
the fit functions), and stored as arrays (``to_arrays`` / ``from_arrays``, e.g. in an ``.npz`` file).

Sources:
- Multinomial logistic regression: scikit-learn ``LogisticRegression`` (lbfgs solver, L2 penalty);
  https://scikit-learn.org/stable/modules/linear_model.html#logistic-regression
- Class balance (asics has 51 photos, nike thousands): ``class_weights`` weighs each row by its class,
  ``"balanced"``: ``n / (C * n_c)`` (King & Zeng, "Logistic Regression in Rare Events Data", 2001, as
  scikit-learn's ``class_weight="balanced"``), or ``"effective"``: ``(1 - beta) / (1 - beta^n_c)``
  rescaled to mean 1 over rows (Cui et al., "Class-Balanced Loss Based on Effective Number of
  Samples", CVPR 2019), which weighs rare classes up less sharply.
- Temperature scaling: Guo et al., "On Calibration of Modern Neural Networks", ICML 2017.
- Ridge regression on log price, range from quantiles of out-of-fold residuals (split-conformal in
  spirit: Lei et al., "Distribution-Free Predictive Inference for Regression", JASA 2018); scikit-learn
  ``Ridge`` and ``cross_val_predict``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from worker.ml.results import BrandScore, ModelScore, PriceEstimate

DEFAULT_BRAND_C: Final = 10.0
"""Default inverse L2 strength for the brand head. Embeddings are L2-normalised (entries ~0.03), so
useful weights are large and C well above scikit-learn's default 1.0; ``train_model`` picks C on val."""
DEFAULT_PRICE_ALPHA: Final = 0.1
"""Default Ridge L2 strength for the price head on L2-normalised embeddings; ``train_model`` picks it."""


def _as_matrix(embeddings: np.ndarray, dim: int | None = None) -> np.ndarray:
    """Return ``embeddings`` as a 2-D float32 array, checking the width when ``dim`` is given."""
    matrix = np.asarray(embeddings, dtype=np.float32)
    if matrix.ndim != 2 or (dim is not None and matrix.shape[1] != dim):
        want = f"(N, {dim})" if dim is not None else "(N, D)"
        raise ValueError(f"expected embeddings of shape {want}, got {matrix.shape}")
    return matrix


def softmax(logits: np.ndarray, *, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax (the row maximum is subtracted before ``exp``).

    Args:
        logits: float array of any shape.
        axis: the class axis.

    Returns:
        float32 array of the same shape; entries in [0, 1] summing to 1 along ``axis``.
    """
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=axis, keepdims=True)).astype(np.float32)


@dataclass(frozen=True, eq=False)
class BrandHead:
    """Linear softmax classifier over brands, with a calibration temperature.

    ``p = softmax((emb @ weights + bias) / temperature)``.

    Attributes:
        classes: brand labels, in column order (sorted, as scikit-learn orders them).
        weights: ``(D, C) float32``.
        bias: ``(C,) float32``.
        temperature: > 0; above 1 flattens the probabilities, below 1 sharpens them.
    """

    classes: tuple[str, ...]
    weights: np.ndarray
    bias: np.ndarray
    temperature: float = 1.0

    def __post_init__(self) -> None:
        """Check shapes and types; raise ValueError when inconsistent."""
        weights = np.asarray(self.weights, dtype=np.float32)
        bias = np.asarray(self.bias, dtype=np.float32).reshape(-1)
        n_classes = len(self.classes)
        if n_classes < 2 or weights.ndim != 2 or weights.shape[1] != n_classes:
            raise ValueError(
                f"weights must be (D, C) with C = len(classes) >= 2; got {weights.shape} for {n_classes} classes"
            )
        if len(set(self.classes)) != n_classes:
            raise ValueError(f"class names must be unique: {self.classes}")
        if bias.shape != (n_classes,):
            raise ValueError(f"bias must be ({n_classes},), got {bias.shape}")
        if not np.isfinite(self.temperature) or self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "bias", bias)
        object.__setattr__(self, "temperature", float(self.temperature))

    @property
    def dim(self) -> int:
        """Embedding width D."""
        return int(self.weights.shape[0])

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        """Uncalibrated logits ``emb @ weights + bias``.

        Args:
            embeddings: ``(N, D)`` float.

        Returns:
            ``(N, C) float32``.

        Raises:
            ValueError: wrong shape.
        """
        matrix = _as_matrix(embeddings, self.dim)
        return (matrix @ self.weights + self.bias).astype(np.float32)

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities ``softmax(logits / temperature)``.

        Args:
            embeddings: ``(N, D)`` float.

        Returns:
            ``(N, C) float32``, rows sum to 1.

        Raises:
            ValueError: wrong shape.
        """
        return softmax(self.logits(embeddings) / self.temperature)

    def top_k(self, embedding: np.ndarray, k: int = 3) -> list[BrandScore]:
        """The ``k`` most probable brands for one embedding, most probable first.

        Args:
            embedding: ``(D,)`` float, one image's embedding.
            k: how many (capped at the number of classes).

        Returns:
            ``min(k, C)`` ``BrandScore`` values, probabilities descending (ties by class order).

        Raises:
            ValueError: wrong shape or ``k < 1``.
        """
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        row = np.asarray(embedding, dtype=np.float32)
        if row.shape != (self.dim,):
            raise ValueError(f"expected an embedding of shape ({self.dim},), got {row.shape}")
        proba = self.predict_proba(row[None])[0]
        order = np.argsort(-proba, kind="stable")[: min(k, len(self.classes))]
        return [BrandScore(brand=self.classes[i], probability=float(proba[i])) for i in order]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez``: ``classes`` (unicode), ``weights``, ``bias``, ``temperature``."""
        return {
            "classes": np.asarray(self.classes, dtype=np.str_),
            "weights": self.weights,
            "bias": self.bias,
            "temperature": np.asarray(self.temperature, dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> BrandHead:
        """Inverse of ``to_arrays``.

        Raises:
            KeyError: a key is missing.
            ValueError: inconsistent shapes.
        """
        return cls(
            classes=tuple(str(c) for c in np.asarray(arrays["classes"]).reshape(-1)),
            weights=np.asarray(arrays["weights"]),
            bias=np.asarray(arrays["bias"]),
            temperature=float(np.asarray(arrays["temperature"])),
        )

    def with_temperature(self, temperature: float) -> BrandHead:
        """A copy with another temperature."""
        return BrandHead(self.classes, self.weights, self.bias, temperature)


EFFECTIVE_NUMBER_BETA: Final = 0.999
"""``beta`` of the effective-number class weights (Cui et al. 2019 use 0.9-0.9999; 0.999 suits classes of
50-2,000 photos: ``1 - beta^n`` saturates around n ~ 3,000)."""


def class_weights(labels: Sequence[str], kind: str, *, beta: float = EFFECTIVE_NUMBER_BETA) -> dict[str, float]:
    """Per-class row weights that counter class imbalance (see the module docstring for the sources).

    Args:
        labels: N training labels.
        kind: ``"balanced"`` (``n / (C * n_c)``) or ``"effective"`` (``(1 - beta) / (1 - beta^n_c)``,
            rescaled so that the mean row weight is 1).
        beta: in (0, 1), for ``"effective"``.

    Returns:
        ``{class: weight > 0}``; rarer classes weigh more.

    Raises:
        ValueError: unknown kind, ``beta`` outside (0, 1), or no labels.
    """
    names, counts = np.unique(np.asarray([str(label) for label in labels]), return_counts=True)
    if names.size == 0:
        raise ValueError("no labels")
    n = float(counts.sum())
    if kind == "balanced":
        weights = n / (names.size * counts.astype(np.float64))
    elif kind == "effective":
        if not 0.0 < beta < 1.0:
            raise ValueError(f"beta must be in (0, 1), got {beta}")
        weights = (1.0 - beta) / (1.0 - np.power(beta, counts.astype(np.float64)))
        weights = weights * n / float(np.sum(weights * counts))
    else:
        raise ValueError(f"unknown class weighting {kind!r}; expected 'balanced' or 'effective'")
    return {str(name): float(w) for name, w in zip(names, weights, strict=True)}


@dataclass(frozen=True, eq=False)
class ModelHead:
    """Calibrated softmax over named models (products' display names), each belonging to a brand.

    Attributes:
        classifier: the linear softmax head; its ``classes`` are the model names.
        brands: ``(C,)`` brand of each model, in class order.
        threshold: the model "not sure" threshold: a top-1 probability below it is not trusted
            (chosen on validation by ``worker.ml.abstain.choose_confidence_threshold``); 0: always sure.
    """

    classifier: BrandHead
    brands: tuple[str, ...]
    threshold: float = 0.0

    def __post_init__(self) -> None:
        """Check that every class has a brand; raise ValueError otherwise."""
        if len(self.brands) != len(self.classifier.classes):
            raise ValueError(f"{len(self.classifier.classes)} models but {len(self.brands)} brands")
        if not 0.0 <= self.threshold <= 1.0 + 1e-9:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        object.__setattr__(self, "brands", tuple(str(b) for b in self.brands))
        object.__setattr__(self, "threshold", float(self.threshold))

    @property
    def classes(self) -> tuple[str, ...]:
        """The model names, in column order."""
        return self.classifier.classes

    @property
    def dim(self) -> int:
        """Embedding width D."""
        return self.classifier.dim

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        """``(N, C) float32`` calibrated model probabilities of ``(N, D)`` embeddings.

        Raises:
            ValueError: wrong shape.
        """
        return self.classifier.predict_proba(embeddings)

    def top_k(self, embedding: np.ndarray, k: int = 3) -> list[ModelScore]:
        """The ``min(k, C)`` most probable models for one ``(D,)`` embedding, most probable first.

        Raises:
            ValueError: wrong shape or ``k < 1``.
        """
        brand_of = dict(zip(self.classes, self.brands, strict=True))
        return [
            ModelScore(name=s.brand, brand=brand_of[s.brand], probability=s.probability)
            for s in self.classifier.top_k(embedding, k=k)
        ]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez``: the classifier's (``BrandHead.to_arrays``), ``brands``, ``threshold``."""
        return {
            **self.classifier.to_arrays(),
            "brands": np.asarray(self.brands, dtype=np.str_),
            "threshold": np.asarray(self.threshold, dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> ModelHead:
        """Inverse of ``to_arrays``.

        Raises:
            KeyError: a key is missing.
            ValueError: inconsistent shapes.
        """
        return cls(
            classifier=BrandHead.from_arrays(arrays),
            brands=tuple(str(b) for b in np.asarray(arrays["brands"]).reshape(-1)),
            threshold=float(np.asarray(arrays["threshold"])),
        )


def fit_brand_head(
    embeddings: np.ndarray,
    labels: Sequence[str],
    *,
    seed: int,
    C: float = DEFAULT_BRAND_C,
    class_weight: str | Mapping[str, float] | None = "balanced",
    max_iter: int = 2000,
) -> BrandHead:
    """Fit a multinomial logistic regression (scikit-learn, lbfgs, L2) on embeddings.

    For two classes scikit-learn fits one weight vector ``w`` (logit of the second class); it is turned
    into the equivalent 2-column softmax ``[-w/2, w/2]`` so that every head is ``(D, C)``.

    Args:
        embeddings: ``(N, D)`` float, L2-normalised rows.
        labels: N brand labels.
        seed: ``random_state`` (lbfgs is deterministic; kept for solvers that shuffle).
        C: inverse L2 regularisation strength.
        class_weight: ``"balanced"``, ``"effective"`` (``class_weights``), a ``{label: weight}`` mapping, or
            None (every row weighs 1).
        max_iter: lbfgs iteration limit.

    Returns:
        ``BrandHead`` with temperature 1 and classes sorted.

    Raises:
        ValueError: shape mismatch, or fewer than 2 distinct labels.
    """
    from sklearn.linear_model import LogisticRegression

    matrix = _as_matrix(embeddings)
    y = np.asarray([str(label) for label in labels])
    if y.shape[0] != matrix.shape[0]:
        raise ValueError(f"{matrix.shape[0]} embeddings but {y.shape[0]} labels")
    if np.unique(y).size < 2:
        raise ValueError("need at least two distinct brands to fit a classifier")
    weights = class_weights(y.tolist(), class_weight) if isinstance(class_weight, str) else class_weight
    model = LogisticRegression(
        C=C, class_weight=dict(weights) if weights else None, max_iter=max_iter, solver="lbfgs", random_state=seed
    )
    model.fit(matrix.astype(np.float64), y)
    coef = np.asarray(model.coef_, dtype=np.float64)
    intercept = np.asarray(model.intercept_, dtype=np.float64)
    if coef.shape[0] == 1:
        coef = np.vstack([-coef[0] / 2.0, coef[0] / 2.0])
        intercept = np.array([-intercept[0] / 2.0, intercept[0] / 2.0])
    return BrandHead(
        classes=tuple(str(c) for c in model.classes_),
        weights=coef.T.astype(np.float32),
        bias=intercept.astype(np.float32),
    )


def fit_temperature(logits: np.ndarray, labels: Sequence[str], classes: Sequence[str]) -> float:
    """Temperature T > 0 minimising the mean negative log-likelihood of ``softmax(logits / T)``.

    Guo et al. 2017 (temperature scaling). Optimises ``log T`` in [-4, 4] with SciPy's bounded
    ``minimize_scalar`` (Brent); labels not in ``classes`` are ignored.

    Args:
        logits: ``(N, C)`` float, uncalibrated (``BrandHead.logits``) on held-out data.
        labels: N labels.
        classes: the C class names in column order.

    Returns:
        T in [e^-4, e^4]; 1.0 when no labelled rows are usable.

    Raises:
        ValueError: shape mismatch.
    """
    from scipy.optimize import minimize_scalar

    values = np.asarray(logits, dtype=np.float64)
    index = {name: i for i, name in enumerate(classes)}
    if values.ndim != 2 or values.shape[1] != len(index) or values.shape[0] != len(labels):
        raise ValueError(f"logits {values.shape} do not match {len(labels)} labels x {len(index)}")
    rows = np.array([i for i, label in enumerate(labels) if label in index], dtype=np.int64)
    if rows.size == 0:
        return 1.0
    targets = np.array([index[labels[i]] for i in rows], dtype=np.int64)
    values = values[rows]

    def nll(log_t: float) -> float:
        scaled = values / np.exp(log_t)
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(scaled).sum(axis=1))
        return float(np.mean(log_norm - scaled[np.arange(len(targets)), targets]))

    result = minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded")
    return float(np.exp(result.x))


@dataclass(frozen=True, eq=False)
class PriceHead:
    """Linear regression of log(USD price) on embeddings, with a multiplicative range.

    ``estimate = exp(emb @ coef + intercept)``, ``low = estimate * exp(log_residual_low)``,
    ``high = estimate * exp(log_residual_high)``.

    Attributes:
        coef: ``(D,) float32``.
        intercept: float, in log(USD).
        log_residual_low: <= 0, lower quantile of out-of-fold log residuals.
        log_residual_high: >= 0, upper quantile of out-of-fold log residuals.
    """

    coef: np.ndarray
    intercept: float
    log_residual_low: float
    log_residual_high: float

    def __post_init__(self) -> None:
        """Check shapes and signs; raise ValueError when inconsistent."""
        coef = np.asarray(self.coef, dtype=np.float32)
        if coef.ndim != 1:
            raise ValueError(f"coef must be (D,), got {coef.shape}")
        if not (self.log_residual_low <= 0.0 <= self.log_residual_high):
            raise ValueError("need log_residual_low <= 0 <= log_residual_high")
        object.__setattr__(self, "coef", coef)
        object.__setattr__(self, "intercept", float(self.intercept))
        object.__setattr__(self, "log_residual_low", float(self.log_residual_low))
        object.__setattr__(self, "log_residual_high", float(self.log_residual_high))

    @property
    def dim(self) -> int:
        """Embedding width D."""
        return int(self.coef.shape[0])

    def predict_log(self, embeddings: np.ndarray) -> np.ndarray:
        """Predicted log(USD) for ``(N, D)`` embeddings; returns ``(N,) float64``.

        Raises:
            ValueError: wrong shape.
        """
        matrix = _as_matrix(embeddings, self.dim)
        return matrix.astype(np.float64) @ self.coef.astype(np.float64) + self.intercept

    def predict(self, embeddings: np.ndarray) -> list[PriceEstimate]:
        """Price estimates in USD with ranges, one per row.

        Args:
            embeddings: ``(N, D)`` float.

        Returns:
            N ``PriceEstimate`` values (USD), ``low <= estimate <= high``.

        Raises:
            ValueError: wrong shape.
        """
        log_price = self.predict_log(embeddings)
        return [
            PriceEstimate(
                estimate=float(np.exp(value)),
                low=float(np.exp(value + self.log_residual_low)),
                high=float(np.exp(value + self.log_residual_high)),
            )
            for value in log_price
        ]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez``: ``coef``, ``intercept``, ``log_residual_low``, ``log_residual_high``."""
        return {
            "coef": self.coef,
            "intercept": np.asarray(self.intercept, dtype=np.float64),
            "log_residual_low": np.asarray(self.log_residual_low, dtype=np.float64),
            "log_residual_high": np.asarray(self.log_residual_high, dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> PriceHead:
        """Inverse of ``to_arrays``.

        Raises:
            KeyError: a key is missing.
            ValueError: inconsistent shapes or signs.
        """
        return cls(
            coef=np.asarray(arrays["coef"]),
            intercept=float(np.asarray(arrays["intercept"])),
            log_residual_low=float(np.asarray(arrays["log_residual_low"])),
            log_residual_high=float(np.asarray(arrays["log_residual_high"])),
        )


def fit_price_head(
    embeddings: np.ndarray,
    prices_usd: Sequence[float] | np.ndarray,
    *,
    alpha: float = DEFAULT_PRICE_ALPHA,
    quantiles: tuple[float, float] = (0.1, 0.9),
    groups: Sequence[str] | None = None,
    folds: int = 5,
) -> PriceHead:
    """Fit Ridge regression of log(USD) on embeddings; set the range from out-of-fold residuals.

    The residuals ``log(true) - log(predicted)`` come from ``cross_val_predict`` (``folds`` folds;
    ``GroupKFold`` when ``groups`` is given, so that photos of one product are never on both sides,
    else unshuffled ``KFold``), so the range reflects error on unseen products rather than the
    training fit. Their ``quantiles`` become ``log_residual_low`` / ``log_residual_high`` (clamped to
    <= 0 and >= 0 so the range always contains the estimate). With fewer than 2 usable folds the
    in-sample residuals are used.

    Args:
        embeddings: ``(N, D)`` float.
        prices_usd: N prices in USD, all > 0.
        alpha: Ridge L2 strength.
        quantiles: (low, high) residual quantiles, 0 <= low < high <= 1; (0.1, 0.9) aims at an 80 %
            range.
        groups: optional N group labels (e.g. product names) for the cross-validation folds.
        folds: number of cross-validation folds (capped by N and by the number of groups).

    Returns:
        ``PriceHead``.

    Raises:
        ValueError: shape mismatch, N < 2, a price <= 0 or not finite, or bad quantiles.
    """
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GroupKFold, KFold, cross_val_predict

    matrix = _as_matrix(embeddings).astype(np.float64)
    prices = np.asarray(prices_usd, dtype=np.float64).reshape(-1)
    if prices.shape[0] != matrix.shape[0]:
        raise ValueError(f"{matrix.shape[0]} embeddings but {prices.shape[0]} prices")
    if prices.shape[0] < 2:
        raise ValueError("need at least two priced images")
    if not np.all(np.isfinite(prices)) or np.any(prices <= 0):
        raise ValueError("prices must be finite and positive (USD)")
    low_q, high_q = quantiles
    if not 0.0 <= low_q < high_q <= 1.0:
        raise ValueError(f"bad quantiles {quantiles}")
    target = np.log(prices)
    model = Ridge(alpha=alpha)
    if groups is not None:
        group_array = np.asarray([str(g) for g in groups])
        if group_array.shape[0] != prices.shape[0]:
            raise ValueError(f"{prices.shape[0]} prices but {group_array.shape[0]} groups")
        n_splits = min(folds, np.unique(group_array).size)
        splitter: GroupKFold | KFold | None = GroupKFold(n_splits=n_splits) if n_splits >= 2 else None
    else:
        group_array = None
        n_splits = min(folds, prices.shape[0])
        splitter = KFold(n_splits=n_splits) if n_splits >= 2 else None
    if splitter is not None:
        out_of_fold = cross_val_predict(model, matrix, target, cv=splitter, groups=group_array)
    else:
        out_of_fold = model.fit(matrix, target).predict(matrix)
    residuals = target - out_of_fold
    model.fit(matrix, target)
    return PriceHead(
        coef=np.asarray(model.coef_, dtype=np.float32),
        intercept=float(model.intercept_),
        log_residual_low=min(0.0, float(np.quantile(residuals, low_q))),
        log_residual_high=max(0.0, float(np.quantile(residuals, high_q))),
    )
