"""Listing text: a character n-gram text model of catalog titles, fused with the image's brand and model answers.

A shop that sends a photo often has its listing's title ("Nike Air Force 1 '07 - Men's") and description too.
``TextModel`` reads that text with two small classifiers trained on the catalog's product titles (``train_model``
fits them on the training side of the split):

- the **brand** classifier: titles -> brand slug, plus a reserved class ``NONE`` ("this text names no brand of
  ours") trained on made-up listing phrases that name no shoe (``GENERIC_TEXTS``: sizes, condition, colours,
  shipping) and titles of brands outside the catalog (``OTHER_BRAND_TITLES``);
- the **model** classifier: named-model titles -> model name (``"Nike Air Jordan 1 High"``), with ``NONE`` too.

Each is scikit-learn's ``TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)`` and a
multinomial ``LogisticRegression`` (class weights balanced over distinct titles, C chosen on validation). Character
n-grams inside word boundaries make misspellings, run-together words and abbreviations ("airmax", "NB 550") still
match (Cavnar & Trenkle 1994; the ``char_wb`` analyzer of scikit-learn's text feature extraction). Every training title
is also given once with its brand words removed (``strip_brand_words``), so the classifiers learn what the model
names say about the brand ("Air Max" -> nike), not only the brand word; each brand's own words (``brand_words``) are
brand texts too, and each label's name is repeated inside a few generic phrases (``GENERIC_PER_LABEL``), so a title
like "puma size 10" counts as naming puma although only one puma title exists.

**Fusion** (a product of experts, Hinton 2002, written as Bayes with the text as a second observation): for the
image head's classes ``c``::

    log p(c | image, text) = log p_image(c) + w * (log p~_text(c) - log p_text(c | "")) + const
    p~_text(c) = (1 - e) p_text(c) + e p_text(c | "")

``p_text(c | "")`` is the text classifier's answer to the empty text (its intercept alone, the class prior it
learned), so the text adds only the evidence it carries beyond that prior; ``e`` (``TITLE_ERROR_RATE``) is the share
of listings assumed to carry a wrong title, which bounds the evidence against any class by ``w log e``; brands of
the image head the text model does not know get no text evidence (0). ``w`` (``brand_weight``, ``model_weight``) is
chosen on the validation split by fused log loss (``choose_weight``), never on test. The text is **used** only when
it is not empty and either its ``NONE`` probability is below one half (``NONE_LIMIT``) or it names a class in whole
words; otherwise the image's answer is returned unchanged, bit for bit.

Storage: ``to_arrays`` / ``from_arrays`` (NumPy arrays only: the vocabulary as a unicode array, idf, coefficients),
so artifacts load with ``allow_pickle=False`` like the heads. scikit-learn is imported only when a model is fitted
or text is scored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from worker.ml.metrics import log_loss
from worker.ml.results import BrandScore, ModelScore

NONE: Final = "_none"
"""Reserved class of the text classifiers: the text names no brand (or model) the catalog has."""
NONE_LIMIT: Final = 0.5
"""The text is used only when its ``NONE`` probability is below this."""
NGRAM_RANGE: Final = (2, 5)
"""Character n-gram lengths of the TF-IDF features (inside word boundaries, ``char_wb``)."""
TEXT_C_GRID: Final = (1.0, 10.0, 100.0)
"""Inverse L2 strengths tried for the text classifiers; the lowest validation log loss wins."""
WEIGHT_GRID: Final = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
"""Text weights ``w`` tried on validation (0: image only)."""
TITLE_ERROR_RATE: Final = 0.02
"""Assumed share of listings whose title names another shoe than the photo (a copied listing, a bundle, a typo'd
brand). The text's answer is read as ``(1 - e) p_text + e prior`` (a mixture with "the title says nothing about this
photo"), so its evidence against a class is at most ``log e`` (about -3.9) per unit of weight, and the weight is
chosen on validation photos of which this share carry another brand's title. An assumption, not a measurement:
the catalog's own titles are all right, and no partner's error rate is known yet."""
GENERIC_PER_LABEL: Final = 6
"""Training copies of each label's name inside a generic phrase (``GENERIC_TEXTS``), drawn with the seed."""
MAX_TEXT_CHARS: Final = 2000
"""Characters of title + description read (a long description adds little over its first paragraphs)."""

GENERIC_TEXTS: Final = (
    "brand new in box",
    "new with box",
    "new without box",
    "worn once",
    "worn twice",
    "lightly worn",
    "barely used",
    "used condition",
    "great condition",
    "good condition",
    "excellent condition",
    "some signs of wear",
    "no box",
    "original box included",
    "size 9",
    "size 10",
    "size 10.5 us",
    "size 11 mens",
    "uk 8",
    "eu 42",
    "eu 44.5",
    "womens size 7",
    "mens size 12",
    "kids",
    "men's",
    "women's",
    "unisex",
    "sneakers",
    "trainers",
    "shoes",
    "sneaker",
    "running shoes",
    "casual shoes",
    "walking shoes",
    "gym shoes",
    "white",
    "black",
    "red",
    "blue",
    "green",
    "grey",
    "white and black",
    "triple white",
    "all black",
    "free shipping",
    "fast shipping",
    "ships within 24 hours",
    "price is firm",
    "open to offers",
    "no returns",
    "authentic",
    "100% authentic",
    "deadstock",
    "vintage",
    "rare",
    "limited",
    "cleaned and ready to wear",
    "smoke free home",
    "pet free home",
    "see photos for details",
    "please ask questions before buying",
    "comfortable and stylish",
    "perfect for everyday",
    "gift for him",
    "gift for her",
    "lace up",
    "low top",
    "high top",
    "mid top",
    "leather upper",
    "rubber sole",
    "mesh upper",
    "summer sale",
    "clearance",
    "bundle deal",
    "lot of shoes",
    "pair of shoes",
    "photo of my shoes",
    "test",
    "asdf",
    "hello",
    "listing",
    "item",
    "product",
)
"""Made-up listing phrases that name no brand or model: the ``NONE`` class's text (with ``OTHER_BRAND_TITLES``)."""

OTHER_BRAND_TITLES: Final = (
    ("hoka", "Hoka Clifton 9"),
    ("hoka", "Hoka Bondi 8 running shoe"),
    ("on", "On Cloud 5"),
    ("on", "On Running Cloudmonster"),
    ("brooks", "Brooks Ghost 15"),
    ("saucony", "Saucony Jazz Original"),
    ("skechers", "Skechers D'Lites"),
    ("fila", "Fila Disruptor II"),
    ("under-armour", "Under Armour Curry 10"),
    ("mizuno", "Mizuno Wave Rider 27"),
    ("veja", "Veja V-10 leather"),
    ("dr-martens", "Dr. Martens 1460 boots"),
    ("crocs", "Crocs Classic Clog"),
    ("birkenstock", "Birkenstock Arizona"),
    ("timberland", "Timberland 6-inch Premium boot"),
    ("golden-goose", "Golden Goose Superstar"),
    ("common-projects", "Common Projects Achilles Low"),
    ("allbirds", "Allbirds Wool Runners"),
    ("diadora", "Diadora N9000"),
    ("k-swiss", "K-Swiss Classic VN"),
)
"""``(brand slug, made-up title)`` of brands outside today's catalog, for the ``NONE`` class; a pair whose brand is
a class of the catalog is left out (``none_texts``)."""


def normalise_text(text: str | None) -> str:
    """Lower-cased text with runs of whitespace made one space and cut to ``MAX_TEXT_CHARS``; ``""`` for None."""
    if not text:
        return ""
    return re.sub(r"\s+", " ", str(text)).strip().lower()[:MAX_TEXT_CHARS]


def listing_text(title: str | None, description: str | None) -> str:
    """The text the model reads: title and description joined by a space (each may be empty or None)."""
    return normalise_text(" ".join(part for part in (title or "", description or "") if part.strip()))


def text_inputs(title: str | None, description: str | None) -> tuple[str, ...]:
    """``("image", "title"?, "description"?)``: the inputs of an answer made with the given (non-blank) text."""
    return ("image",) + tuple(
        name for name, value in (("title", title), ("description", description)) if value and value.strip()
    )


def brand_scores(classes: Sequence[str], proba: np.ndarray, k: int) -> list[BrandScore]:
    """The ``min(k, C)`` most probable of ``(C,)`` probabilities as ``BrandScore`` values, best first (ties by class
    order, as ``BrandHead.top_k``)."""
    order = np.argsort(-np.asarray(proba, dtype=np.float64), kind="stable")[: min(k, len(classes))]
    return [BrandScore(brand=str(classes[i]), probability=float(proba[i])) for i in order]


def model_scores(classes: Sequence[str], brands: Sequence[str], proba: np.ndarray, k: int) -> list[ModelScore]:
    """The ``min(k, M)`` most probable named models of ``(M,)`` probabilities as ``ModelScore`` values, best first."""
    return [
        ModelScore(name=s.brand, brand=str(brands[list(classes).index(s.brand)]), probability=s.probability)
        for s in brand_scores(classes, proba, k)
    ]


def brand_words(brand: str) -> tuple[str, ...]:
    """Spellings of a brand slug that a title may use: ``"new-balance"`` -> ``("new balance", "new-balance",
    "newbalance")``; ``"nike"`` -> ``("nike",)``. Lower case."""
    slug = brand.strip().lower()
    return tuple(dict.fromkeys((slug.replace("-", " "), slug, slug.replace("-", ""))))


def strip_brand_words(text: str, brands: Iterable[str]) -> str:
    """``text`` with every whole-word spelling of the given brand slugs removed (case-insensitive), spaces tidied.

    ``strip_brand_words("Nike Air Max 90 - Men's", ["nike"])`` -> ``"Air Max 90 - Men's"``.
    """
    words = sorted({w for brand in brands for w in brand_words(brand)}, key=len, reverse=True)
    if not words:
        return re.sub(r"\s+", " ", text).strip()
    pattern = r"(?<![\w])(?:" + "|".join(re.escape(w) for w in words) + r")(?![\w])"
    return re.sub(r"\s+", " ", re.sub(pattern, " ", text, flags=re.IGNORECASE)).strip()


def none_texts(known_brands: Iterable[str]) -> list[str]:
    """The ``NONE`` class's texts: ``GENERIC_TEXTS`` and those ``OTHER_BRAND_TITLES`` whose brand is not known."""
    known = {b.strip().lower() for b in known_brands}
    return list(GENERIC_TEXTS) + [title for brand, title in OTHER_BRAND_TITLES if brand not in known]


@dataclass(frozen=True, eq=False)
class TextClassifier:
    """TF-IDF over character n-grams and a linear softmax, stored as arrays.

    ``p = softmax(tfidf(text) @ coef.T + intercept)``, where ``tfidf`` is scikit-learn's ``TfidfVectorizer``
    (``analyzer="char_wb"``, ``ngram_range``, ``sublinear_tf=True``, l2 norm) rebuilt from ``vocabulary`` and
    ``idf``.

    Attributes:
        classes: labels in column order (scikit-learn's sorted order); may include ``NONE``.
        vocabulary: ``(V,)`` n-grams in feature order.
        idf: ``(V,) float64`` inverse document frequencies.
        coef: ``(C, V) float32``.
        intercept: ``(C,) float32``.
        ngram_range: ``(min_n, max_n)`` character n-gram lengths.

    Raises:
        ValueError: inconsistent shapes, fewer than two classes.
    """

    classes: tuple[str, ...]
    vocabulary: tuple[str, ...]
    idf: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    ngram_range: tuple[int, int] = NGRAM_RANGE
    _vectorizer: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Coerce arrays and check shapes."""
        classes = tuple(str(c) for c in self.classes)
        coef = np.asarray(self.coef, dtype=np.float32)
        intercept = np.asarray(self.intercept, dtype=np.float32).reshape(-1)
        idf = np.asarray(self.idf, dtype=np.float64).reshape(-1)
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ValueError(f"need at least two distinct classes, got {classes}")
        if coef.shape != (len(classes), len(self.vocabulary)) or intercept.shape != (len(classes),):
            raise ValueError(
                f"coef must be (C, V) = ({len(classes)}, {len(self.vocabulary)}), got {coef.shape}; "
                f"intercept {intercept.shape}"
            )
        if idf.shape != (len(self.vocabulary),):
            raise ValueError(f"idf must be ({len(self.vocabulary)},), got {idf.shape}")
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "vocabulary", tuple(str(t) for t in self.vocabulary))
        object.__setattr__(self, "coef", coef)
        object.__setattr__(self, "intercept", intercept)
        object.__setattr__(self, "idf", idf)
        object.__setattr__(self, "ngram_range", (int(self.ngram_range[0]), int(self.ngram_range[1])))

    def _features(self, texts: Sequence[str]) -> Any:
        """``(N, V)`` sparse TF-IDF rows of normalised texts (the vectorizer is rebuilt once per object)."""
        if self._vectorizer is None:
            from sklearn.feature_extraction.text import TfidfVectorizer

            vectorizer = TfidfVectorizer(
                analyzer="char_wb",
                ngram_range=self.ngram_range,
                sublinear_tf=True,
                lowercase=True,
                vocabulary={term: i for i, term in enumerate(self.vocabulary)},
            )
            vectorizer.idf_ = self.idf
            object.__setattr__(self, "_vectorizer", vectorizer)
        return self._vectorizer.transform([normalise_text(t) for t in texts])

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """``(N, C) float64`` logits of N texts (the empty text gives the intercept)."""
        if len(texts) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float64)
        return np.asarray(self._features(texts) @ self.coef.T.astype(np.float64)) + self.intercept

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """``(N, C) float64`` class probabilities of N texts; rows sum to 1."""
        return _softmax(self.logits(texts))

    def prior(self) -> np.ndarray:
        """``(C,) float64``: the probabilities of the empty text (the class prior the classifier learned)."""
        return _softmax(self.intercept.astype(np.float64)[None])[0]

    def _names_pattern(self) -> re.Pattern[str]:
        """A regular expression matching any class name (``brand_words`` of it) as whole words, lower case."""
        words = sorted({w for c in self.classes if c != NONE for w in brand_words(c)}, key=len, reverse=True)
        return re.compile(r"(?<![\w])(?:" + "|".join(re.escape(w) for w in words) + r")(?![\w])")

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Arrays for ``np.savez`` under ``prefix``: ``classes``, ``vocabulary`` (unicode), ``idf``, ``coef``,
        ``intercept``, ``ngram_range``."""
        return {
            f"{prefix}classes": np.asarray(self.classes, dtype=np.str_),
            f"{prefix}vocabulary": np.asarray(self.vocabulary, dtype=np.str_),
            f"{prefix}idf": self.idf,
            f"{prefix}coef": self.coef,
            f"{prefix}intercept": self.intercept,
            f"{prefix}ngram_range": np.asarray(self.ngram_range, dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str = "") -> TextClassifier:
        """Inverse of ``to_arrays``.

        Raises:
            KeyError: a key is missing.
            ValueError: inconsistent shapes.
        """
        ngram = np.asarray(arrays[f"{prefix}ngram_range"]).reshape(-1)
        return cls(
            classes=tuple(str(c) for c in np.asarray(arrays[f"{prefix}classes"]).reshape(-1)),
            vocabulary=tuple(str(t) for t in np.asarray(arrays[f"{prefix}vocabulary"]).reshape(-1)),
            idf=np.asarray(arrays[f"{prefix}idf"]),
            coef=np.asarray(arrays[f"{prefix}coef"]),
            intercept=np.asarray(arrays[f"{prefix}intercept"]),
            ngram_range=(int(ngram[0]), int(ngram[1])),
        )

    def evidence(self, texts: Sequence[str], classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per text, the log evidence for each of ``classes`` and whether the text is used.

        Returns:
            ``(log_ratio, used)``: ``(N, K) float64`` ``log((1 - e) p_text(c) + e p_text(c | "")) - log p_text(c | "")``
            (``e``: ``TITLE_ERROR_RATE``; so every value is at least ``log e``) over the classes this
            classifier knows among ``classes`` (renormalised over them; 0 for the others and for texts not used),
            and ``(N,) bool``: the text is not empty and either its ``NONE`` probability is below ``NONE_LIMIT`` or it
            names one of the classes as whole words (``brand_words``: "nike running shoe" names nike although its
            generic words make ``NONE`` likely).
        """
        texts = [normalise_text(t) for t in texts]
        out = np.zeros((len(texts), len(classes)), dtype=np.float64)
        used = np.asarray([bool(t) for t in texts], dtype=bool)
        position = {c: i for i, c in enumerate(self.classes)}
        shared = [(k, position[c]) for k, c in enumerate(classes) if c in position]
        if not texts or not shared:
            return out, np.zeros(len(texts), dtype=bool)
        proba = self.predict_proba(texts)
        if NONE in position:
            names = self._names_pattern()
            used &= (proba[:, position[NONE]] < NONE_LIMIT) | np.asarray([bool(names.search(t)) for t in texts])
        columns = [j for _, j in shared]
        eps = 1e-12
        current = proba[:, columns]
        current = current / np.maximum(current.sum(axis=1, keepdims=True), eps)
        prior = self.prior()[columns]
        prior = prior / max(float(prior.sum()), eps)
        # A title is wrong now and then (TITLE_ERROR_RATE): mix the text's answer with its prior, which bounds
        # how far one confident but wrong title can push the photo's answer.
        mixed = (1.0 - TITLE_ERROR_RATE) * current + TITLE_ERROR_RATE * prior[None, :]
        ratio = np.log(np.maximum(mixed, eps)) - np.log(np.maximum(prior, eps))
        out[:, [k for k, _ in shared]] = ratio
        out[~used] = 0.0
        return out, used


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(N, C)`` logits, float64."""
    shifted = np.asarray(logits, dtype=np.float64) - np.max(logits, axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def fuse(image_proba: np.ndarray, log_ratio: np.ndarray, weight: float) -> np.ndarray:
    """Product-of-experts fusion: ``softmax(log image_proba + weight * log_ratio)`` row-wise.

    Args:
        image_proba: ``(N, C)`` or ``(C,)`` image probabilities (rows sum to 1).
        log_ratio: the same shape, text evidence (``TextClassifier.evidence``).
        weight: ``w >= 0``; 0 returns the image probabilities.

    Returns:
        float64 array of the input shape, rows summing to 1.
    """
    image = np.asarray(image_proba, dtype=np.float64)
    single = image.ndim == 1
    image2 = image[None] if single else image
    ratio = np.asarray(log_ratio, dtype=np.float64).reshape(image2.shape)
    fused = _softmax(np.log(np.maximum(image2, 1e-12)) + float(weight) * ratio)
    return fused[0] if single else fused


def fit_text_classifier(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    none: Sequence[str] = (),
    C: float = 10.0,
    seed: int = 0,
    ngram_range: tuple[int, int] = NGRAM_RANGE,
) -> TextClassifier:
    """Fit TF-IDF (char n-grams) + multinomial logistic regression on distinct ``(text, label)`` pairs.

    Args:
        texts, labels: N training titles and their labels; repeats (one title per photo) are counted once.
        none: texts of the ``NONE`` class (``none_texts``); empty: no ``NONE`` class.
        C: inverse L2 strength of ``LogisticRegression`` (lbfgs; ``class_weight="balanced"`` over the distinct
            texts, so a brand with few titles counts as much as one with many).
        seed: solver seed.
        ngram_range: character n-gram lengths.

    Raises:
        ValueError: lengths differ, or fewer than two labels (with ``NONE``) remain.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    pairs = sorted({(normalise_text(t), str(y)) for t, y in zip(texts, labels, strict=True) if normalise_text(t)})
    pairs += sorted({(normalise_text(t), NONE) for t in none if normalise_text(t)} - set(pairs))
    if len({y for _, y in pairs}) < 2:
        raise ValueError("a text classifier needs at least two labels")
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=ngram_range, sublinear_tf=True, lowercase=True)
    matrix = vectorizer.fit_transform([t for t, _ in pairs])
    model = LogisticRegression(C=C, class_weight="balanced", max_iter=2000, random_state=seed)
    model.fit(matrix, [y for _, y in pairs])
    coef, intercept = model.coef_, model.intercept_
    if coef.shape[0] == 1:  # scikit-learn keeps one row for two classes: logits (0, z) give the same softmax.
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    return TextClassifier(
        classes=tuple(str(c) for c in model.classes_),
        vocabulary=tuple(str(t) for t in vectorizer.get_feature_names_out()),
        idf=vectorizer.idf_,
        coef=coef,
        intercept=intercept,
        ngram_range=ngram_range,
    )


def choose_weight(
    image_proba: np.ndarray,
    log_ratio: np.ndarray,
    truth: np.ndarray,
    grid: Sequence[float] = WEIGHT_GRID,
) -> tuple[float, dict[float, float]]:
    """The text weight with the lowest fused log loss (``worker.ml.metrics.log_loss``) on validation rows.

    Args:
        image_proba: ``(N, C)`` image probabilities of validation photos that have text.
        log_ratio: ``(N, C)`` their text evidence.
        truth: ``(N,)`` int class indices (-1: label outside the classes; such rows are skipped).
        grid: weights tried; ties go to the smaller weight.

    Returns:
        ``(weight, {weight: log loss})``; ``(0.0, {})`` when no row has a label among the classes.
    """
    keep = np.asarray(truth) >= 0
    if not keep.any():
        return 0.0, {}
    losses = {}
    for weight in grid:
        loss = log_loss(fuse(image_proba[keep], log_ratio[keep], weight), np.asarray(truth)[keep])
        losses[float(weight)] = float(loss) if loss is not None else float("inf")
    best = min(losses, key=lambda w: (losses[w], w))
    return best, losses


@dataclass(frozen=True)
class TextFusion:
    """The image's answers fused with a listing text.

    Attributes:
        brand_proba: ``(C,) float64`` brand probabilities in the brand head's class order (the image's own when the
            text was not used).
        model_proba: ``(M,) float64`` model probabilities in the model head's order, or None without a model head.
        used: the text was used (not empty, not ``NONE``).
    """

    brand_proba: np.ndarray
    model_proba: np.ndarray | None
    used: bool


@dataclass(frozen=True, eq=False)
class TextModel:
    """The brand and model text classifiers of an artifact and their fusion weights (chosen on validation).

    Attributes:
        brand: titles -> brand (with ``NONE``).
        model: titles -> named model (with ``NONE``), or None when training had fewer than two named models.
        brand_weight, model_weight: ``w >= 0`` of ``fuse`` for brands and models.
    """

    brand: TextClassifier
    model: TextClassifier | None = None
    brand_weight: float = 1.0
    model_weight: float = 1.0

    def fuse(
        self,
        text: str,
        brand_classes: Sequence[str],
        brand_proba: np.ndarray,
        model_classes: Sequence[str] = (),
        model_proba: np.ndarray | None = None,
    ) -> TextFusion:
        """Fuse one photo's ``(C,)`` brand and ``(M,)`` model probabilities with its listing text.

        The text is used when the brand classifier says it names something (``TextClassifier.evidence``);
        otherwise both probability vectors are returned unchanged (the same arrays). The model answer uses the
        model classifier's evidence when that classifier also finds the text useful.
        """
        ratio, used = self.brand.evidence([text], brand_classes)
        if not bool(used[0]):
            return TextFusion(brand_proba=brand_proba, model_proba=model_proba, used=False)
        fused_brand = fuse(brand_proba, ratio[0], self.brand_weight)
        fused_model = model_proba
        if model_proba is not None and self.model is not None and len(model_classes):
            model_ratio, model_used = self.model.evidence([text], model_classes)
            if bool(model_used[0]):
                fused_model = fuse(model_proba, model_ratio[0], self.model_weight)
        return TextFusion(brand_proba=fused_brand, model_proba=fused_model, used=True)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez``: ``brand.*``, ``model.*`` (when present), ``brand_weight``, ``model_weight``."""
        arrays = {
            **self.brand.to_arrays("brand."),
            "brand_weight": np.asarray(self.brand_weight, dtype=np.float64),
            "model_weight": np.asarray(self.model_weight, dtype=np.float64),
        }
        if self.model is not None:
            arrays.update(self.model.to_arrays("model."))
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> TextModel:
        """Inverse of ``to_arrays``.

        Raises:
            KeyError: a key is missing.
            ValueError: inconsistent shapes.
        """
        model = TextClassifier.from_arrays(arrays, "model.") if "model.classes" in arrays else None
        return cls(
            brand=TextClassifier.from_arrays(arrays, "brand."),
            model=model,
            brand_weight=float(np.asarray(arrays["brand_weight"])),
            model_weight=float(np.asarray(arrays["model_weight"])),
        )


@dataclass(frozen=True, eq=False)
class TextFit:
    """What ``fit_text_model`` returns: the model and a JSON-ready report.

    ``report``: ``{"titles": distinct training titles, "brand_C", "model_C", "brand_weight", "model_weight",
    "val_brand_log_loss": {w: loss}, "val_model_log_loss": {w: loss}, "val_rows"}``.
    """

    model: TextModel
    report: dict[str, Any]


def _indices(labels: Sequence[Any], classes: Sequence[str]) -> np.ndarray:
    """``(N,) int`` column of each label in ``classes``, -1 when absent or None."""
    position = {c: i for i, c in enumerate(classes)}
    return np.asarray([position.get(str(y), -1) if y is not None else -1 for y in labels], dtype=np.int64)


def fit_text_model(
    train_titles: Sequence[str | None],
    train_brands: Sequence[str],
    train_models: Sequence[str | None],
    *,
    val_titles: Sequence[str | None],
    val_brands: Sequence[str],
    val_models: Sequence[str | None],
    brand_classes: Sequence[str],
    val_brand_proba: np.ndarray,
    model_classes: Sequence[str] = (),
    val_model_proba: np.ndarray | None = None,
    seed: int = 0,
    c_grid: Sequence[float] = TEXT_C_GRID,
    weight_grid: Sequence[float] = WEIGHT_GRID,
) -> TextFit | None:
    """Fit the listing-text model on training titles and choose C and the fusion weights on validation.

    Training texts: each distinct training title and its copy without brand words (``strip_brand_words``), and the
    ``NONE`` texts (``none_texts``). C: the lowest text-only log loss of the validation titles. Weights: the lowest
    fused log loss (``choose_weight``) over the validation photos with titles, each counted twice, with its title
    and with the title stripped of brand words (listings that name only the model are common), plus
    ``TITLE_ERROR_RATE`` of them once more with another brand's title (wrong listings happen).

    Args:
        train_titles, train_brands, train_models: per training photo its title (None or "" when it has none), brand
            and named model (None when not a named model).
        val_titles, val_brands, val_models: the same for validation photos.
        brand_classes: the image brand head's classes (column order of ``val_brand_proba``).
        val_brand_proba: ``(N_val, C)`` image brand probabilities of the validation photos.
        model_classes, val_model_proba: the image model head's classes and ``(N_val, M)`` probabilities, or empty /
            None without a model head.
        seed: solver seed.

    Returns:
        ``TextFit``, or None when fewer than two brands have titled training photos.
    """
    titled = [(normalise_text(t), b, m) for t, b, m in zip(train_titles, train_brands, train_models, strict=True) if t]
    titled = [row for row in titled if row[0]]
    if len({b for _, b, _ in titled}) < 2:
        return None
    known = sorted({b for _, b, _ in titled} | set(brand_classes))
    none = none_texts(known)

    rng = np.random.default_rng(seed)

    def variants(rows: list[tuple[str, str]], extra: Sequence[tuple[str, str]] = ()) -> tuple[list[str], list[str]]:
        texts, labels = [], []
        for text, label in [*rows, *extra]:
            for form in (text, strip_brand_words(text, known)):
                if form:
                    texts.append(form)
                    labels.append(label)
        # Each label once more inside generic words: the names, not the words around them, carry the answer.
        for label in sorted({label for _, label in rows}):
            name = next(text for text, y in [*extra, *rows] if y == label)
            for phrase in rng.choice(GENERIC_TEXTS, size=GENERIC_PER_LABEL, replace=False):
                texts.append(f"{name} {phrase}" if rng.random() < 0.5 else f"{phrase} {name}")
                labels.append(label)
        return texts, labels

    val_rows = [i for i, t in enumerate(val_titles) if normalise_text(t)]
    val_texts = [normalise_text(val_titles[i]) for i in val_rows]
    val_stripped = [strip_brand_words(t, known) for t in val_texts]
    doubled = val_texts + val_stripped
    both = val_rows + val_rows
    # For the weights only: TITLE_ERROR_RATE of the rows again with another brand's title (a wrong listing), so
    # the weight is the best one for a shop whose titles are right that often, not always.
    wrong_rows, wrong_texts = [], []
    n_wrong = int(round(len(doubled) * TITLE_ERROR_RATE / (1.0 - TITLE_ERROR_RATE)))
    for k in rng.permutation(len(doubled))[:n_wrong] if doubled else ():
        row = both[k]
        others = [j for j, i in enumerate(val_rows) if val_brands[i] != val_brands[row]]
        if others:
            wrong_rows.append(row)
            wrong_texts.append(val_texts[others[int(rng.integers(len(others)))]])
    weighted_texts, weighted_rows = doubled + wrong_texts, both + wrong_rows

    def fit_best(
        rows: list[tuple[str, str]], val_labels: list[Any], extra: Sequence[tuple[str, str]] = ()
    ) -> tuple[TextClassifier, float]:
        texts, labels = variants(rows, extra)
        best: tuple[float, float, TextClassifier] | None = None
        for c in c_grid:
            classifier = fit_text_classifier(texts, labels, none=none, C=c, seed=seed)
            truth = _indices(val_labels, classifier.classes)
            keep = truth >= 0
            loss = log_loss(classifier.predict_proba([doubled[i] for i in np.flatnonzero(keep)]), truth[keep])
            score = float(loss) if loss is not None else float("inf")
            if best is None or score < best[0]:
                best = (score, c, classifier)
        assert best is not None
        return best[2], best[1]

    brand_names = [(word, brand) for brand in known for word in brand_words(brand)]
    brand_text, brand_c = fit_best([(t, b) for t, b, _ in titled], [val_brands[i] for i in both], brand_names)
    brand_ratio, _ = brand_text.evidence(weighted_texts, brand_classes)
    brand_truth = _indices([val_brands[i] for i in weighted_rows], brand_classes)
    brand_weight, brand_losses = choose_weight(
        np.asarray(val_brand_proba)[weighted_rows] if weighted_rows else np.zeros((0, len(brand_classes))),
        brand_ratio,
        brand_truth,
        weight_grid,
    )
    model_text, model_c, model_weight, model_losses = None, None, 0.0, {}
    named = [(t, m) for t, _, m in titled if m]
    if len({m for _, m in named}) >= 2 and val_model_proba is not None and len(model_classes) >= 2:
        model_text, model_c = fit_best(named, [val_models[i] for i in both])
        model_ratio, _ = model_text.evidence(weighted_texts, model_classes)
        model_truth = _indices([val_models[i] for i in weighted_rows], model_classes)
        model_weight, model_losses = choose_weight(
            np.asarray(val_model_proba)[weighted_rows], model_ratio, model_truth, weight_grid
        )
    report = {
        "titles": len({t for t, _, _ in titled}),
        "brand_C": brand_c,
        "model_C": model_c,
        "brand_weight": brand_weight,
        "model_weight": model_weight,
        "val_brand_log_loss": {str(w): round(v, 4) for w, v in brand_losses.items()},
        "val_model_log_loss": {str(w): round(v, 4) for w, v in model_losses.items()},
        "val_rows": len(val_rows),
    }
    return TextFit(
        model=TextModel(brand=brand_text, model=model_text, brand_weight=brand_weight, model_weight=model_weight),
        report=report,
    )


def _top1(proba: np.ndarray, truth: np.ndarray) -> float | None:
    """Share of rows whose argmax is the true column (None for no rows)."""
    if truth.size == 0:
        return None
    return float(np.mean(np.argmax(proba, axis=1) == truth))


def text_only_proba(classifier: TextClassifier, texts: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """``(N, K)`` the text classifier's probabilities over ``classes`` alone (``NONE`` and foreign classes dropped,
    renormalised; classes it does not know get a floor of 1e-6 before renormalising): the "text only" answer."""
    proba = classifier.predict_proba(list(texts)) if texts else np.zeros((0, len(classifier.classes)))
    position = {c: i for i, c in enumerate(classifier.classes)}
    out = np.full((len(texts), len(classes)), 1e-6, dtype=np.float64)
    for k, name in enumerate(classes):
        if name in position:
            out[:, k] += proba[:, position[name]]
    return out / out.sum(axis=1, keepdims=True)


def text_figures(
    text_model: TextModel,
    texts: Sequence[str],
    *,
    brand_classes: Sequence[str],
    brand_proba: np.ndarray,
    brands: Sequence[str],
    model_classes: Sequence[str] = (),
    model_proba: np.ndarray | None = None,
    models: Sequence[str | None] = (),
) -> dict[str, Any]:
    """Image-only, text-only and fused figures of photos that have listing text.

    Args:
        text_model: the fitted model (its weights are used as they are).
        texts: N listing texts (titles), one per photo.
        brand_classes, brand_proba: the image brand head's classes and ``(N, C)`` probabilities.
        brands: N true brands (rows whose brand is not a class are left out).
        model_classes, model_proba: the image model head's classes and ``(N, M)`` probabilities, or empty / None.
        models: N true named models (None: not a named model); model figures use the rows whose model is a class.

    Returns:
        ``{"rows", "model_rows", "text_used": share of rows whose text was used, "image" / "text" / "fused":
        {"brand_top1", "brand_log_loss", "model_top1"}}`` (``model_top1`` None without a model head).
    """
    truth = _indices(list(brands), brand_classes)
    keep = truth >= 0
    texts = [texts[i] for i in np.flatnonzero(keep)]
    truth = truth[keep]
    image = np.asarray(brand_proba, dtype=np.float64)[keep]
    ratio, used = text_model.brand.evidence(texts, brand_classes)
    answers = {
        "image": image,
        "text": text_only_proba(text_model.brand, texts, brand_classes),
        "fused": fuse(image, ratio, text_model.brand_weight) if len(texts) else image,
    }
    report: dict[str, Any] = {"rows": int(truth.size), "text_used": float(np.mean(used)) if used.size else None}
    model_answers: dict[str, np.ndarray | None] = {name: None for name in answers}
    model_truth = np.zeros(0, dtype=np.int64)
    if model_proba is not None and len(model_classes) and len(models):
        all_truth = _indices([models[i] for i in np.flatnonzero(keep)], model_classes)
        rows = all_truth >= 0
        model_truth = all_truth[rows]
        model_texts = [t for t, r in zip(texts, rows, strict=True) if r]
        m_image = np.asarray(model_proba, dtype=np.float64)[keep][rows]
        model_answers["image"] = m_image
        if text_model.model is not None and model_texts:
            m_ratio, m_used = text_model.model.evidence(model_texts, model_classes)
            # As ``TextModel.fuse``: model evidence only where the brand classifier used the text too.
            m_ratio[~used[rows]] = 0.0
            model_answers["text"] = text_only_proba(text_model.model, model_texts, model_classes)
            model_answers["fused"] = fuse(m_image, m_ratio, text_model.model_weight)
        else:
            model_answers["fused"] = m_image
    report["model_rows"] = int(model_truth.size)
    for name, proba in answers.items():
        loss = log_loss(proba, truth) if truth.size else None
        model = model_answers[name]
        report[name] = {
            "brand_top1": _top1(proba, truth),
            "brand_log_loss": float(loss) if loss is not None else None,
            "model_top1": _top1(model, model_truth) if model is not None else None,
        }
    return report
