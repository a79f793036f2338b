"""Training a model version, in typed stages driven by one ``TrainingConfig``.

Modules: ``config`` (``TrainingConfig``, ``TrainingData``, ``TrainingSample``), ``splits`` (stage 1),
``augmentation`` and ``photos`` (stage 2), ``fitting`` (stage 3), ``finetuning`` (stage 4),
``reporting`` (stage 5) and ``run`` (``train_model``, the stages in order). Metrics live in
``worker.ml.metrics`` (shared with ``worker.ml.evaluation``).
"""

from worker.ml.training.config import (
    AUGMENT_COPIES,
    BRAND_C_GRID,
    MAX_AUGMENT_COPIES,
    MIN_PRICED_TRAIN,
    PRICE_ALPHA_GRID,
    WILD_TEST_FRACTION,
    WILD_VAL_FRACTION,
    TrainingConfig,
    TrainingData,
    TrainingSample,
)
from worker.ml.training.run import TrainingResult, train_model
from worker.ml.training.splits import Split, SplitPlan, grouped_split, plan_splits

__all__ = [
    "AUGMENT_COPIES",
    "BRAND_C_GRID",
    "MAX_AUGMENT_COPIES",
    "MIN_PRICED_TRAIN",
    "PRICE_ALPHA_GRID",
    "WILD_TEST_FRACTION",
    "WILD_VAL_FRACTION",
    "Split",
    "SplitPlan",
    "TrainingConfig",
    "TrainingData",
    "TrainingResult",
    "TrainingSample",
    "grouped_split",
    "plan_splits",
    "train_model",
]
