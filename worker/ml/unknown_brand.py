"""The ``unknown_brand`` rule: open-set recognition of sneakers of brands the catalog does not have.

A photo that passes the footwear rule is refused as ``unknown_brand`` when its open-set score (higher:
more like the brands the model was trained on) is below a threshold chosen on validation so that a
given share (``DEFAULT_MAX_KNOWN_REJECT``, 5 %) of known-brand validation photos is refused.

The score is pluggable, like background removers (``worker.ml.background.make_remover``) and
similarity indexes (``worker.ml.similarity.INDEX_KINDS``): an ``OpenSetScorer`` is fitted by the
function registered under its kind in ``OPEN_SET_FITTERS`` and loaded by the class in
``OPEN_SET_KINDS``; training picks the kind by ``TrainingConfig.open_set`` and the artifact records it
(``open_set.npz`` key ``kind``, metadata ``open_set``), so a better score replaces the baseline without
touching training or the pipeline. The rules of ``worker.ml.openset`` (the research work on
leave-one-brand-out: msp, max-logit, energy, prototype, k-NN, stacked) are available as kinds
``"openset:<method>"`` (``resolve_kind``).

Default (``TrainingConfig.open_set = "openset:energy"``): energy with a threshold per photo style, so
real-world photos of known brands are not refused more often than product shots. Chosen by
leave-one-brand-out over the 9 brands (frozen features, commit 5ffbb9a): energy and max-logit scored
best (mean left-out-brand refusal ~0.20 at 5 % known refused, far below issue 9's 0.80), distance scores
(prototype, k-NN) worst; per-style thresholds cut known real-world refusal from 0.15 to 0.06.
Dependency-free baseline (``"energy"``): the negative free energy of the brand head's logits,
``score(x) = T * logsumexp(f(x) / T)`` with T = 1 (Liu, Wang, Owens & Li, "Energy-based
Out-of-distribution Detection", NeurIPS 2020); it needs no fitting and orders photos much like the
maximum logit (Hendrycks et al., "Scaling Out-of-Distribution Detection for Real-World Settings",
ICML 2022). Logits are the head's *uncalibrated* ones (``BrandHead.logits``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np

from worker.ml.heads import BrandHead

DEFAULT_MAX_KNOWN_REJECT: Final = 0.05
"""Share of known-brand validation photos the threshold refuses (issue 9 target: <= 0.05)."""


@runtime_checkable
class OpenSetScorer(Protocol):
    """A score of "how much this photo looks like a brand the model knows" (higher: more known).

    Attributes:
        kind: the name it is registered under (``OPEN_SET_KINDS``).
    """

    kind: str

    def score(self, embeddings: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """``(N,) float64`` scores of ``(N, D) float32`` L2-normalised embeddings and their ``(N, C)``
        uncalibrated brand-head logits.

        Raises:
            ValueError: wrong shapes.
        """
        ...

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as arrays for ``np.savez`` (no pickled objects)."""
        ...

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> OpenSetScorer:
        """Inverse of ``to_arrays``.

        Raises:
            KeyError, ValueError: missing or inconsistent arrays.
        """
        ...


@dataclass(frozen=True)
class EnergyScorer:
    """Negative free energy ``T * logsumexp(logits / T)`` (Liu et al. 2020); nothing to fit.

    Attributes:
        temperature: T > 0 (1 in the paper's default).
    """

    temperature: float = 1.0
    kind = "energy"

    def score(self, embeddings: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """``(N,) float64`` negative energies of ``(N, C)`` logits (``embeddings`` is unused).

        Raises:
            ValueError: ``logits`` is not 2-D or its rows differ from ``embeddings``'.
        """
        values = np.asarray(logits, dtype=np.float64)
        if values.ndim != 2 or values.shape[0] != np.shape(embeddings)[0]:
            raise ValueError(f"expected (N, C) logits for {np.shape(embeddings)[0]} rows, got {values.shape}")
        scaled = values / self.temperature
        top = scaled.max(axis=1, keepdims=True)
        return self.temperature * (top[:, 0] + np.log(np.exp(scaled - top).sum(axis=1)))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """``{"temperature": float64}``."""
        return {"temperature": np.asarray(self.temperature, dtype=np.float64)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> EnergyScorer:
        """Inverse of ``to_arrays`` (temperature 1 when absent)."""
        return cls(float(np.asarray(arrays.get("temperature", 1.0))))


def fit_energy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    head: BrandHead,
    **_: Any,
) -> EnergyScorer:
    """The energy scorer (nothing is fitted; the signature is that of every ``OPEN_SET_FITTERS`` entry:
    ``fit(train_x (N, D), train_y (N,), val_x (M, D), val_y (M,), head, *, seed, max_known_reject,
    train_styles (N,), val_styles (M,))``, training and validation rows of known brands only,
    L2-normalised, ``head`` the calibrated brand head, styles ``"real-world"`` / ``"product-shot"`` / ``""``)."""
    return EnergyScorer()


OPEN_SET_KINDS: dict[str, type[Any]] = {"energy": EnergyScorer}
"""Registered ``OpenSetScorer`` classes by kind (loaded from ``open_set.npz``)."""
OPEN_SET_FITTERS: dict[str, Callable[..., OpenSetScorer]] = {"energy": fit_energy}
"""Fit functions by kind (signature in ``fit_energy``), called by training after the brand head is chosen."""
RESEARCH_PREFIX: Final = "openset:"
"""Kinds ``"openset:<method>"`` are the rules of ``worker.ml.openset`` (``fit_open_set(method=...)``),
adapted on first use by ``resolve_kind``."""


def register_open_set(kind: str, scorer: type[Any], fit: Callable[..., OpenSetScorer]) -> None:
    """Register an open-set scorer class and its fit function under ``kind``."""
    OPEN_SET_KINDS[kind] = scorer
    OPEN_SET_FITTERS[kind] = fit


def resolve_kind(kind: str) -> None:
    """Make sure ``kind`` is registered: ``"openset:<method>"`` kinds are adapted from ``worker.ml.openset``
    (its ``OpenSetRule`` already has ``score``, ``to_arrays`` and ``from_arrays``).

    Raises:
        ValueError: an unknown kind, or ``worker.ml.openset`` lacks the method.
    """
    if kind in OPEN_SET_KINDS and kind in OPEN_SET_FITTERS:
        return
    if not kind.startswith(RESEARCH_PREFIX):
        raise ValueError(f"unknown open-set kind {kind!r}; registered: {sorted(OPEN_SET_FITTERS)}")
    from worker.ml import openset

    method = kind[len(RESEARCH_PREFIX) :]
    if method not in openset.METHODS:
        raise ValueError(f"worker.ml.openset has no method {method!r}; it has {openset.METHODS}")

    class Adapted:
        """``worker.ml.openset.OpenSetRule`` seen as an ``OpenSetScorer`` (its own threshold is not used)."""

        def __init__(self, rule: Any) -> None:
            self.rule = rule
            self.kind = kind

        def score(self, embeddings: np.ndarray, logits: np.ndarray) -> np.ndarray:
            return np.asarray(self.rule.score(embeddings, logits), dtype=np.float64)

        def to_arrays(self) -> dict[str, np.ndarray]:
            return dict(self.rule.to_arrays())

        @classmethod
        def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Adapted:
            return cls(openset.OpenSetRule.from_arrays(arrays))

    def fit(
        train_x: np.ndarray,
        train_y: np.ndarray,
        val_x: np.ndarray,
        val_y: np.ndarray,
        head: BrandHead,
        *,
        seed: int = 0,
        max_known_reject: float = DEFAULT_MAX_KNOWN_REJECT,
        train_styles: Sequence[str] | None = None,
        val_styles: Sequence[str] | None = None,
        **_: Any,
    ) -> Adapted:
        rule = openset.fit_open_set(
            train_x,
            train_y,
            val_x,
            val_y,
            head,
            method=method,
            max_known_refused=max_known_reject,
            seed=seed,
            train_styles=train_styles,
            val_styles=val_styles,
        )
        return Adapted(rule)

    register_open_set(kind, Adapted, fit)


def choose_known_threshold(
    known_scores: np.ndarray, *, max_known_reject: float = DEFAULT_MAX_KNOWN_REJECT
) -> float | None:
    """The threshold below which ``max_known_reject`` of the known-brand validation scores fall.

    A photo is refused when ``score < threshold``; the threshold is the ``floor(max_known_reject * N)``-th
    lowest score (0-based), so at most that share of these photos is refused (ties may refuse fewer).

    Args:
        known_scores: ``(N,)`` open-set scores of validation photos of known brands.
        max_known_reject: share in [0, 1).

    Returns:
        The threshold, or None when N = 0 or ``max_known_reject`` refuses nothing (rule off).

    Raises:
        ValueError: ``max_known_reject`` outside [0, 1).
    """
    if not 0.0 <= max_known_reject < 1.0:
        raise ValueError(f"max_known_reject must be in [0, 1), got {max_known_reject}")
    scores = np.sort(np.asarray(known_scores, dtype=np.float64).reshape(-1))
    allowed = int(np.floor(max_known_reject * scores.size + 1e-9))
    if scores.size == 0 or allowed == 0:
        return None
    return float(scores[allowed])


@dataclass(frozen=True, eq=False)
class UnknownBrandRule:
    """A fitted open-set scorer with its threshold: refuse when ``score < threshold``.

    Attributes:
        scorer: the fitted ``OpenSetScorer``.
        threshold: scores below it are refused as ``unknown_brand``.
    """

    scorer: OpenSetScorer
    threshold: float

    @property
    def kind(self) -> str:
        """The scorer's kind."""
        return str(self.scorer.kind)

    def scores(self, embeddings: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """``(N,) float64`` scores (see ``OpenSetScorer.score``)."""
        return np.asarray(self.scorer.score(embeddings, logits), dtype=np.float64).reshape(-1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The scorer's arrays (names prefixed ``scorer_``) plus ``kind`` (unicode) and ``threshold`` (float64)."""
        arrays = {f"scorer_{name}": value for name, value in self.scorer.to_arrays().items()}
        arrays["kind"] = np.asarray(self.kind, dtype=np.str_)
        arrays["threshold"] = np.asarray(self.threshold, dtype=np.float64)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> UnknownBrandRule:
        """Inverse of ``to_arrays``.

        Raises:
            KeyError: a key is missing; ValueError: unknown kind.
        """
        kind = str(np.asarray(arrays["kind"]))
        if kind not in OPEN_SET_KINDS:
            resolve_kind(kind)
        state = {k[len("scorer_") :]: v for k, v in arrays.items() if k.startswith("scorer_")}
        return cls(scorer=OPEN_SET_KINDS[kind].from_arrays(state), threshold=float(np.asarray(arrays["threshold"])))
