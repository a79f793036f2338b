"""Training stage 3c: the listing-text model (``worker.ml.text``) on the titles of the catalog's training side.

Fitted after the brand and model heads of the chosen variant: C and the fusion weights are chosen on the validation
side's titled photos with those heads' probabilities; the test side's titled photos give the image-only, text-only
and fused figures (with the titles as they are and with their brand words removed, ``strip_brand_words``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from worker.ml.heads import BrandHead, ModelHead
from worker.ml.text import TextModel, fit_text_model, normalise_text, strip_brand_words, text_figures
from worker.ml.training.config import TrainingSample
from worker.ml.training.splits import Split


@dataclass(frozen=True, eq=False)
class ListingTextFit:
    """The listing-text model (None: fewer than two brands have titled training photos) and its report:
    ``fit_text_model``'s report plus ``"test"`` and ``"test_no_brand_word"`` (``text_figures``), or ``{"reason"}``."""

    model: TextModel | None
    report: dict[str, Any]


def fit_listing_text(
    samples: Sequence[TrainingSample],
    split: Split,
    vectors: np.ndarray,
    brand_head: BrandHead,
    model_head: ModelHead | None,
    *,
    seed: int,
) -> ListingTextFit:
    """Fit the text model on the training side's titles; weights on validation; figures on test.

    Args:
        samples: the catalog samples (``TrainingSample.title`` may be None).
        split: the catalog split (indices into ``samples``).
        vectors: ``(N, D) float32`` embeddings of the samples, of the chosen variant.
        brand_head, model_head: the chosen variant's heads (model head may be None).
        seed: solver seed.
    """
    titles = np.asarray([normalise_text(s.title) for s in samples], dtype=object)
    brands = np.asarray([s.brand for s in samples], dtype=object)
    models = np.asarray([s.model for s in samples], dtype=object)
    train, val, test = split.train, split.val, split.test
    model_classes = model_head.classes if model_head is not None else ()

    def model_proba(rows: np.ndarray) -> np.ndarray | None:
        return model_head.predict_proba(vectors[rows]) if model_head is not None else None

    fit = fit_text_model(
        titles[train].tolist(),
        brands[train].tolist(),
        models[train].tolist(),
        val_titles=titles[val].tolist(),
        val_brands=brands[val].tolist(),
        val_models=models[val].tolist(),
        brand_classes=brand_head.classes,
        val_brand_proba=brand_head.predict_proba(vectors[val]),
        model_classes=model_classes,
        val_model_proba=model_proba(val),
        seed=seed,
    )
    if fit is None:
        return ListingTextFit(None, {"reason": "fewer than two brands have titled training photos"})
    report = dict(fit.report)
    rows = test[np.asarray([bool(t) for t in titles[test]], dtype=bool)] if test.size else test
    if rows.size:
        known = sorted(set(brands.tolist()) | set(brand_head.classes))
        for key, texts in (
            ("test", titles[rows].tolist()),
            ("test_no_brand_word", [strip_brand_words(t, known) for t in titles[rows]]),
        ):
            report[key] = text_figures(
                fit.model,
                texts,
                brand_classes=brand_head.classes,
                brand_proba=brand_head.predict_proba(vectors[rows]),
                brands=brands[rows].tolist(),
                model_classes=model_classes,
                model_proba=model_proba(rows),
                models=models[rows].tolist(),
            )
    return ListingTextFit(fit.model, report)
