"""Listing text (``worker.ml.text``): the text classifiers, fusion with the image, weights chosen on validation,
and the pipeline's use of a title; on tiny made-up titles and photos."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest

from tests.unit.ml.ml_helpers import draw_shoe, to_bytes
from worker.ml.artifact import TEXT_MODEL_FILE, ModelArtifact
from worker.ml.embeddings import EmbeddingCache
from worker.ml.pipeline import Pipeline
from worker.ml.text import (
    NONE,
    TITLE_ERROR_RATE,
    TextClassifier,
    TextModel,
    choose_weight,
    fit_text_classifier,
    fit_text_model,
    fuse,
    listing_text,
    none_texts,
    strip_brand_words,
    text_figures,
    text_inputs,
)
from worker.ml.training import TrainingConfig, TrainingData, TrainingSample, train_model

BRANDS = ("adidas", "new-balance", "nike", "vans")
TITLES = {
    "nike": ["Nike Air Max 90 - Men's", "Nike Air Force 1 Low", "Nike Dunk High Retro", "Nike Cortez Leather"],
    "adidas": ["adidas Samba OG", "adidas Stan Smith", "adidas Superstar Shoes", "adidas Gazelle Indoor"],
    "vans": ["Vans Old Skool", "Vans Sk8-Hi", "Vans Authentic Canvas", "Vans Slip-On Checkerboard"],
    "new-balance": ["New Balance 550", "New Balance 990v5", "New Balance 574 Core", "New Balance 327"],
}
MODELS = {"Nike Air Max 90 - Men's": "Nike Air Max 90", "adidas Samba OG": "adidas Samba"}


def _rows() -> tuple[list[str], list[str], list[str | None]]:
    titles = [t for brand in BRANDS for t in TITLES[brand]]
    brands = [brand for brand in BRANDS for _ in TITLES[brand]]
    return titles, brands, [MODELS.get(t) for t in titles]


@pytest.fixture(scope="module")
def brand_text() -> TextClassifier:
    titles, brands, _ = _rows()
    texts = titles + [strip_brand_words(t, BRANDS) for t in titles]
    return fit_text_classifier(texts, brands * 2, none=none_texts(BRANDS), C=10.0, seed=0)


def test_strip_brand_words_and_listing_text():
    assert strip_brand_words("Nike Air Max 90 - Men's", ["nike"]) == "Air Max 90 - Men's"
    assert strip_brand_words("NEW BALANCE 550 by new-balance", ["new-balance"]) == "550 by"
    assert strip_brand_words("Nikesque runner", ["nike"]) == "Nikesque runner"  # whole words only
    assert listing_text("  Nike  Dunk\n", None) == "nike dunk"
    assert listing_text("", "  ") == "" and listing_text(None, "Vans") == "vans"
    assert text_inputs("Nike", "") == ("image", "title") and text_inputs(None, "x") == ("image", "description")
    assert (
        NONE not in BRANDS and "Hoka Clifton 9" in none_texts(BRANDS) and "Hoka Clifton 9" not in none_texts(["hoka"])
    )


def test_text_classifier_reads_brand_names_and_model_names(brand_text):
    classes = brand_text.classes
    assert set(classes) == {*BRANDS, NONE}

    def top(text: str) -> str:
        proba = brand_text.predict_proba([text])[0]
        return classes[int(np.argmax(proba))]

    assert top("nike air max 97") == "nike"
    assert top("Old Skool black") == "vans"  # a model name without its brand word
    assert top("size 10 great condition") == NONE
    assert brand_text.prior().shape == (len(classes),) and brand_text.prior().sum() == pytest.approx(1.0)
    again = TextClassifier.from_arrays(brand_text.to_arrays("x."), "x.")
    texts = ["nike", "adidas samba", "", "nothing at all"]
    np.testing.assert_allclose(again.predict_proba(texts), brand_text.predict_proba(texts))


def test_fusion_moves_the_answer_when_the_title_names_a_brand(brand_text):
    image_classes = ("adidas", "converse", "new-balance", "nike", "vans")  # converse: an image class without titles
    image = np.array([0.05, 0.05, 0.05, 0.80, 0.05])  # the photo says nike
    model = TextModel(brand=brand_text, brand_weight=1.0)
    fused = model.fuse("adidas Samba OG white", image_classes, image)
    assert fused.used and image_classes[int(np.argmax(fused.brand_proba))] == "adidas"
    assert fused.brand_proba.sum() == pytest.approx(1.0)
    # The brand word alone moves it too, even among generic words.
    assert model.fuse("vans size 10 worn once", image_classes, image).brand_proba[4] > image[4]
    # Converse gets no text evidence: its share relative to nike's is what the image said when the title names neither.
    neutral = model.fuse("nike", image_classes, image).brand_proba
    assert neutral[3] > image[3]


def test_a_wrong_title_cannot_push_a_class_down_by_more_than_the_title_error_rate_allows(brand_text, monkeypatch):
    classes = ("adidas", "new-balance", "nike", "vans")
    columns = [brand_text.classes.index(c) for c in classes]
    sure = np.full((1, len(brand_text.classes)), 1e-6)  # a text classifier sure the title is adidas
    sure[0, columns[0]] = 1.0
    monkeypatch.setattr(TextClassifier, "predict_proba", lambda self, texts: sure / sure.sum())
    ratio, used = brand_text.evidence(["adidas Samba OG white"], classes)
    assert used[0] and int(np.argmax(ratio[0])) == 0
    # Without the mixture the other brands would get about log(1e-6 / prior), below -11; with it, log(e) at worst.
    assert ratio.min() >= np.log(TITLE_ERROR_RATE) - 1e-9
    assert ratio[0, 2] < np.log(TITLE_ERROR_RATE) + 0.1
    # A photo sure of nike (0.999) and that wrong adidas title at weight 1: nike keeps most of the answer.
    image = np.array([0.0003, 0.0003, 0.999, 0.0004])
    fused = TextModel(brand=brand_text, brand_weight=1.0).fuse("adidas Samba OG white", classes, image)
    assert fused.brand_proba[2] > 0.5


@pytest.mark.parametrize("text", ["", "   ", "size 10 great condition", "free shipping, price is firm"])
def test_no_title_or_a_title_that_says_nothing_leaves_the_image_answer_untouched(brand_text, text):
    classes = ("adidas", "new-balance", "nike", "vans")
    image = np.array([0.1, 0.2, 0.6, 0.1])
    models = np.array([0.7, 0.3])
    fused = TextModel(brand=brand_text, brand_weight=2.0).fuse(text, classes, image, ("a", "b"), models)
    assert not fused.used
    assert fused.brand_proba is image and fused.model_proba is models


def test_fuse_is_a_weighted_product_of_experts():
    image = np.array([[0.7, 0.2, 0.1]])
    ratio = np.log(np.array([[0.1, 0.8, 0.1]]) / (1 / 3))
    np.testing.assert_allclose(fuse(image, ratio, 0.0), image)
    expected = image * np.array([[0.1, 0.8, 0.1]]) / np.sum(image * np.array([[0.1, 0.8, 0.1]]))
    np.testing.assert_allclose(fuse(image, ratio, 1.0), expected)
    assert fuse(image[0], ratio[0], 2.0).shape == (3,)


def test_weight_is_chosen_on_validation():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, size=60)
    image = np.full((60, 3), 1 / 3)  # an image head that knows nothing
    helpful = np.where(np.eye(3)[truth] > 0, 1.0, -1.0)  # text evidence pointing at the truth
    weight, losses = choose_weight(image, helpful, truth)
    assert weight == max(losses) and losses[weight] < losses[0.0]
    misleading = -helpful  # text evidence pointing away from the truth: image only
    weight, losses = choose_weight(image, misleading, truth)
    assert weight == 0.0 and losses[0.0] == min(losses.values())
    assert choose_weight(image, helpful, np.full(60, -1)) == (0.0, {})


def test_fit_text_model_chooses_weights_on_validation_and_reports_figures():
    titles, brands, models = _rows()
    classes = ("adidas", "new-balance", "nike", "vans")
    val_titles = ["Nike Air Max 97", "adidas Samba Classic", "Vans Era", "New Balance 2002R", "photo of my shoes"]
    val_brands = ["nike", "adidas", "vans", "new-balance", "nike"]
    uniform = np.full((len(val_titles), 4), 0.25)
    fit = fit_text_model(
        titles,
        brands,
        models,
        val_titles=val_titles,
        val_brands=val_brands,
        val_models=[None] * len(val_titles),
        brand_classes=classes,
        val_brand_proba=uniform,
        seed=0,
    )
    assert fit is not None and fit.model.model is None  # fewer than two named models with validation photos
    assert fit.model.brand_weight > 0 and fit.report["val_rows"] == 5
    losses = {float(k): v for k, v in fit.report["val_brand_log_loss"].items()}
    assert losses[fit.model.brand_weight] == min(losses.values())
    figures = text_figures(
        fit.model, val_titles[:4], brand_classes=classes, brand_proba=uniform[:4], brands=val_brands[:4]
    )
    assert figures["rows"] == 4 and figures["image"]["brand_top1"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert figures["fused"]["brand_top1"] == 1.0 and figures["text"]["brand_top1"] == 1.0
    assert figures["fused"]["brand_log_loss"] < figures["image"]["brand_log_loss"]
    again = TextModel.from_arrays(fit.model.to_arrays())
    assert again.brand_weight == fit.model.brand_weight and again.model is None
    # One brand with titles: nothing to learn.
    assert (
        fit_text_model(
            ["Nike A", "Nike B"],
            ["nike", "nike"],
            [None, None],
            val_titles=[],
            val_brands=[],
            val_models=[],
            brand_classes=classes,
            val_brand_proba=np.zeros((0, 4)),
        )
        is None
    )


# --- the pipeline with a text model --------------------------------------------------------------

COLOURS = {"nike": (210, 30, 30), "adidas": (30, 170, 40), "vans": (30, 50, 200)}


def _samples() -> list[TrainingSample]:
    """3 colour-coded brands x 10 photos, each with a made-up title of its brand."""
    samples, seed = [], 0
    for brand, colour in COLOURS.items():
        for i in range(10):
            seed += 1
            data = to_bytes(draw_shoe(colour, seed=seed, size=(96, 64)), "PNG")
            sha = hashlib.sha256(data).hexdigest()
            title = TITLES[brand][i % 4]
            samples.append(TrainingSample(sha, brand, sha, 100.0, seed, lambda data=data: data, title=title))
    return samples


@pytest.fixture(scope="module")
def trained(tiny_backbone, tmp_path_factory):
    config = TrainingConfig(seed=0, dedup=False, open_set=None)
    cache = EmbeddingCache(tmp_path_factory.mktemp("cache"), tiny_backbone.fingerprint)
    return train_model(TrainingData(catalog=_samples()), config, backbone=tiny_backbone, cache=cache)


def test_training_fits_the_text_model_and_the_artifact_keeps_it(trained, tmp_path):
    artifact = trained.artifact
    assert artifact.text_model is not None and set(BRANDS) - {"new-balance"} <= set(artifact.text_model.brand.classes)
    report = trained.metrics["text"]
    assert report["titles"] == 12 and "brand_weight" in report
    artifact.save(tmp_path)
    assert (tmp_path / TEXT_MODEL_FILE).exists()
    loaded = ModelArtifact.load(tmp_path)
    assert loaded.text_model is not None and loaded.text_model.brand.vocabulary == artifact.text_model.brand.vocabulary
    replace(artifact, text_model=None).save(tmp_path)
    assert not (tmp_path / TEXT_MODEL_FILE).exists()


def test_pipeline_fuses_a_title_and_says_which_inputs_it_used(trained, tiny_backbone):
    titles, brands, models = _rows()
    text = fit_text_model(
        titles,
        brands,
        models,
        val_titles=[],
        val_brands=[],
        val_models=[],
        brand_classes=trained.artifact.brand_head.classes,
        val_brand_proba=np.zeros((0, 3)),
        seed=0,
    )
    assert text is not None
    # A flatter image head (as for a photo it is unsure of), so that a title can decide.
    unsure = trained.artifact.brand_head.with_temperature(trained.artifact.brand_head.temperature * 200)
    artifact = replace(
        trained.artifact, brand_head=unsure, text_model=replace(text.model, brand_weight=3.0), unknown_brand=None
    )
    pipeline = Pipeline(artifact, tiny_backbone, None)
    photo = draw_shoe(COLOURS["nike"], seed=999, size=(96, 64))
    alone = pipeline.predict_rgb(photo)
    assert alone.inputs == ("image",) and alone.embedding is not None and alone.embedding.shape == (tiny_backbone.dim,)
    image_top = alone.brands[0].brand
    other = next(b for b in ("vans", "adidas") if b != image_top)
    titled = pipeline.predict_rgb(photo, title=TITLES[other][0], description="")
    assert titled.inputs == ("image", "title")
    before = {s.brand: s.probability for s in alone.brands}.get(other, 0.0)
    after = {s.brand: s.probability for s in titled.brands}[other]
    assert after > before and titled.brands[0].brand == other, (alone.brands, titled.brands)
    # Text that names nothing: the image's answer, exactly.
    useless = pipeline.predict_rgb(photo, title="size 10 great condition", description="ships fast")
    assert useless.inputs == ("image",) and useless.brands == alone.brands
    # No text model in the artifact: the title is ignored.
    plain = Pipeline(replace(artifact, text_model=None), tiny_backbone, None).predict_rgb(photo, title="Vans Old Skool")
    assert plain.inputs == ("image",) and plain.brands == alone.brands
