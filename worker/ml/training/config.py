"""What a training run is given: ``TrainingConfig`` (choices), ``TrainingData`` (photos), ``TrainingSample``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from worker.ml.augment import SCENE_CATEGORIES
from worker.ml.unknown_brand import DEFAULT_MAX_KNOWN_REJECT

BRAND_C_GRID: Final = (1.0, 3.0, 10.0, 30.0, 100.0)
"""Inverse L2 strengths tried for the brand and model heads; the one with the lowest validation log loss wins."""
PRICE_ALPHA_GRID: Final = (0.01, 0.03, 0.1, 0.3, 1.0)
"""Ridge strengths tried for the price head; the one with the lowest validation MAE (USD) wins."""
MIN_PRICED_TRAIN: Final = 4
"""Fewest priced training images for which a price head is fitted."""
WILD_VAL_FRACTION: Final = 0.3
"""Share of the wild photos (per style, grouped) used for validation (threshold, rule, variant choice)."""
WILD_TEST_FRACTION: Final = 0.4
"""Share of the wild photos (per style, grouped) held out untouched for evaluation; the rest trains."""
AUGMENT_COPIES: Final = 2
"""Augmented copies per training photo for fine-tuning (``worker.ml.augment.phone_photo``)."""
MAX_AUGMENT_COPIES: Final = 6
"""Most augmented copies per training photo of a rare brand with ``balanced_copies`` (asics: 51 photos in
``sneaker_models`` against nike's 1,336; 6 copies cost ~0.01-0.02 s each to draw, the trunk pass dominates)."""
MODEL_C_GRID: Final = (10.0, 30.0, 100.0)
"""Inverse L2 strengths tried for the model head: three, not five, as each fit over ~50 models costs minutes on
2 cores; a 700-photo run of ``sneaker_models`` chose 30 from ``BRAND_C_GRID``."""
MODEL_MIN_PHOTOS: Final = 20
"""Fewest training photos a named model needs to be a class of the model head."""
MODEL_TARGET_ACCURACY: Final = 0.90
"""Accuracy of trusted (not "not sure") validation model answers the model threshold aims at."""
MODEL_MAX_UNCERTAIN: Final = 0.25
"""Largest share of validation photos the model threshold may mark "not sure"."""


@dataclass(frozen=True)
class TrainingSample:
    """One labelled image for ``train_model``.

    Attributes:
        sha256: hex SHA-256 of the image bytes (embedding-cache key).
        brand: brand label.
        group: split group; photos of one product share it (e.g. brand + product name; the SHA-256 for
            images of unknown product).
        price_usd: list price in USD, or None.
        product_id: catalog product id for similarity search, or None (then not indexed).
        load: returns the image bytes; called only when the embedding is not cached.
        model: the product's display name (e.g. ``"Nike Air Jordan 1 High"``) when it is a named model,
            else None; named models with enough photos become classes of the model head.
        style: ``"real-world"``, ``"product-shot"`` or ``""`` (unlabelled): the catalog split is
            stratified by brand and style, so each brand's real-world photos have their share held out
            for test; test figures are reported per style.
        title: the product's listing title (``Product.name``, e.g. ``"Nike Air Max 270 - Men's"``) when it has a
            product, else None; the listing-text model (``worker.ml.text``) learns from the training side's titles.
    """

    sha256: str
    brand: str
    group: str
    price_usd: float | None
    product_id: int | None
    load: Callable[[], bytes]
    model: str | None = None
    style: str = ""
    title: str | None = None


@dataclass(frozen=True, eq=False)
class TrainingData:
    """The photos of a training run.

    Attributes:
        catalog: labelled catalog images (at least two brands; decodable).
        wild: labelled phone photos (``price_usd`` / ``product_id`` may be None), split by style.
        wild_styles: one style per wild photo (same length, e.g. ``"real-world"``), or empty.
        negatives: loaders of non-footwear photos (must be rejected).
        negative_categories: one category per negative (for per-category figures), or empty.

    Raises:
        ValueError: ``wild_styles`` given with another length than ``wild``.
    """

    catalog: Sequence[TrainingSample]
    wild: Sequence[TrainingSample] = ()
    wild_styles: Sequence[str] = ()
    negatives: Sequence[Callable[[], bytes]] = ()
    negative_categories: Sequence[str] = ()

    def __post_init__(self) -> None:
        """Check lengths; store tuples."""
        if self.wild_styles and len(self.wild_styles) != len(self.wild):
            raise ValueError(f"{len(self.wild)} wild photos but {len(self.wild_styles)} styles")
        for name in ("catalog", "wild", "wild_styles", "negatives", "negative_categories"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def styles(self) -> list[str]:
        """One style per wild photo (``"wild"`` for each when none were given)."""
        return [str(x) for x in self.wild_styles] if self.wild_styles else ["wild"] * len(self.wild)


@dataclass(frozen=True)
class TrainingConfig:
    """Every choice of a training run (``train_model``); the defaults are those of ``manage.py train``.

    Attributes:
        seed: split, augmentation and solver seed; the same data, backbone and config give the same model.
        flip_augment: add horizontally mirrored training photos.
        dedup: merge near-duplicate photos into one split group (``worker.ml.dedup``).
        val_fraction, test_fraction: catalog share per brand in validation / test (grouped).
        wild_val_fraction, wild_test_fraction: wild share per style in validation / test (held out).
        brand_c_grid: inverse L2 strengths tried for the brand and model heads.
        price_alpha_grid: Ridge strengths tried for the price head.
        class_weight: ``"balanced"`` (``n / (C n_c)``), ``"effective"`` (Cui et al. 2019) or ``"none"``:
            how the heads weigh rare brands and models (``worker.ml.heads.class_weights``).
        finetune: also fine-tune the top of the backbone and keep the better variant.
        augment_copies: augmented copies (``worker.ml.augment.phone_photo``) per training photo for
            fine-tuning; with ``balanced_copies`` the fewest a photo of any brand gets.
        balanced_copies: class-balanced sampling of the copies: photos of rarer brands get more
            (``worker.ml.training.augmentation.copies_per_brand``), up to ``max_augment_copies``.
        max_augment_copies: the most copies per photo with ``balanced_copies`` (``augment_copies`` when
            that is larger).
        scene_categories: categories of ``TrainingData.negative_categories`` whose photos (tuning half
            only) are the real backgrounds the copies are pasted on; empty or none found: synthetic ones.
        finetune_epochs: maximum fine-tuning epochs.
        finetune_budget_s: fine-tuning time budget in seconds (checked after each epoch).
        keep_variant: ``"head-only"`` or ``"fine-tuned"`` to override the validation choice; None: the
            variant with the lower calibrated validation log loss.
        model_min_photos: fewest training photos (catalog train + wild train) of a named model for it to
            be a class of the model head; fewer than two such models: no model head.
        model_c_grid: inverse L2 strengths tried for the model head.
        model_target_accuracy, model_max_uncertain: the model head's "not sure" threshold
            (``choose_confidence_threshold`` on validation).
        open_set: kind of the ``unknown_brand`` scorer (``worker.ml.unknown_brand``): ``"openset:<method>"``
            for ``worker.ml.openset``'s rules (default energy with per-style thresholds, the leave-one-brand-out
            finding), ``"energy"`` for the dependency-free baseline, or None for no ``unknown_brand`` rule.
        open_set_max_known_reject: share of known-brand validation photos the open-set threshold refuses.
        similarity_index: kind of the similarity index (``worker.ml.similarity.INDEX_KINDS``).
        imagenet_classifier_path: ``efficientnet_lite0_imagenet.keras``; enables ``not_footwear``.
        workdir: folder for caches of photo squares and trunk activations (reused across runs).

    Raises:
        ValueError: empty grids, bad fractions, unknown class weighting, ``model_min_photos < 1``,
            ``augment_copies < 0`` or ``max_augment_copies < 0``, an empty scene category or a string
            given as ``scene_categories``.
    """

    seed: int = 42
    flip_augment: bool = True
    dedup: bool = True
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    wild_val_fraction: float = WILD_VAL_FRACTION
    wild_test_fraction: float = WILD_TEST_FRACTION
    brand_c_grid: tuple[float, ...] = BRAND_C_GRID
    price_alpha_grid: tuple[float, ...] = PRICE_ALPHA_GRID
    class_weight: str = "balanced"
    finetune: bool = False
    augment_copies: int = AUGMENT_COPIES
    balanced_copies: bool = True
    max_augment_copies: int = MAX_AUGMENT_COPIES
    scene_categories: tuple[str, ...] = SCENE_CATEGORIES
    finetune_epochs: int = 6
    finetune_budget_s: float = 900.0
    keep_variant: str | None = None
    model_min_photos: int = MODEL_MIN_PHOTOS
    model_c_grid: tuple[float, ...] = MODEL_C_GRID
    model_target_accuracy: float = MODEL_TARGET_ACCURACY
    model_max_uncertain: float = MODEL_MAX_UNCERTAIN
    open_set: str | None = "openset:energy"
    open_set_max_known_reject: float = DEFAULT_MAX_KNOWN_REJECT
    similarity_index: str = "numpy"
    imagenet_classifier_path: Path | None = None
    workdir: Path | None = field(default=None)

    def __post_init__(self) -> None:
        """Validate and store grids as tuples."""
        object.__setattr__(self, "brand_c_grid", tuple(float(c) for c in self.brand_c_grid))
        object.__setattr__(self, "price_alpha_grid", tuple(float(a) for a in self.price_alpha_grid))
        object.__setattr__(self, "model_c_grid", tuple(float(c) for c in self.model_c_grid))
        if isinstance(self.scene_categories, str):
            raise ValueError("scene_categories must be a sequence of category names, not one string")
        object.__setattr__(self, "scene_categories", tuple(str(c) for c in self.scene_categories))
        if any(not c for c in self.scene_categories):
            raise ValueError("scene categories must not be empty strings")
        if self.augment_copies < 0:
            raise ValueError(f"augment_copies must be >= 0, got {self.augment_copies}")
        if self.max_augment_copies < 0:
            raise ValueError(f"max_augment_copies must be >= 0, got {self.max_augment_copies}")
        if not self.brand_c_grid or not self.price_alpha_grid or not self.model_c_grid:
            raise ValueError("hyper-parameter grids must not be empty")
        for low, high in ((self.val_fraction, self.test_fraction), (self.wild_val_fraction, self.wild_test_fraction)):
            if low < 0 or high < 0 or low + high >= 1:
                raise ValueError("split fractions must be >= 0 and sum to less than 1")
        if self.class_weight not in ("balanced", "effective", "none"):
            raise ValueError(f"class_weight must be 'balanced', 'effective' or 'none', got {self.class_weight!r}")
        if self.model_min_photos < 1:
            raise ValueError("model_min_photos must be at least 1")
        if self.keep_variant not in (None, "head-only", "fine-tuned"):
            raise ValueError(f"unknown variant {self.keep_variant!r}")

    @property
    def head_class_weight(self) -> str | None:
        """``class_weight`` as ``fit_brand_head`` takes it (None for ``"none"``)."""
        return None if self.class_weight == "none" else self.class_weight
