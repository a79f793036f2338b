"""Small immutable result values of ``worker.ml``; standard library only (safe in the web process)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BrandScore:
    """One brand and its calibrated probability.

    Attributes:
        brand: the brand label as used in training (e.g. ``"nike"``).
        probability: softmax probability in [0, 1] after temperature scaling.
    """

    brand: str
    probability: float


@dataclass(frozen=True, slots=True)
class ModelScore:
    """One named model (a product's display name) and its calibrated probability.

    Attributes:
        name: the model's display name as used in training (e.g. ``"Nike Air Jordan 1 High"``).
        brand: the brand of that model (e.g. ``"nike"``).
        probability: softmax probability in [0, 1] of the model head after temperature scaling.
    """

    name: str
    brand: str
    probability: float


@dataclass(frozen=True, slots=True)
class PriceEstimate:
    """An estimated list price and its range, all in USD.

    Attributes:
        estimate: point estimate in USD (> 0).
        low: lower end of the range in USD (<= estimate).
        high: upper end of the range in USD (>= estimate).
    """

    estimate: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class SimilarItem:
    """A catalog product visually close to the query.

    Attributes:
        product_id: the catalog product's id (the id given to the similarity index at training time).
        score: cosine similarity in [-1, 1] between the query embedding and the product's best image.
    """

    product_id: int
    score: float


ABSTAIN_REASONS = ("not_footwear", "unknown_brand", "low_confidence")
"""Values of ``Abstain.reason``."""


@dataclass(frozen=True, slots=True)
class Abstain:
    """Why the model declines to answer for a photo.

    Attributes:
        reason: ``"not_footwear"`` (the photo does not show footwear), ``"unknown_brand"`` (a shoe,
            but its open-set score says it is of none of the catalog's brands) or ``"low_confidence"``
            (the calibrated top-1 brand probability is below the artifact's threshold).
        score: the number compared with the threshold: for ``not_footwear`` the ImageNet footwear
            probability mass in [0, 1]; for ``unknown_brand`` the open-set score (higher: more like a
            known brand; its scale depends on the scorer, see ``worker.ml.unknown_brand``); for
            ``low_confidence`` the calibrated top-1 probability in [0, 1].
    """

    reason: str
    score: float
