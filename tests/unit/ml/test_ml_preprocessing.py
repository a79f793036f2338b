"""One backbone spec and one preprocessing function (``worker.ml.preprocessing``), and the shared metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.unit.ml.ml_helpers import draw_shoe
from worker.ml.background import Cutout, GrabCutRemover
from worker.ml.metrics import (
    classification_metrics,
    confusion_matrix,
    log_loss,
    per_class_precision_recall,
    regression_errors,
    top_k_accuracy,
)
from worker.ml.preprocessing import BackboneSpec, backbone_fingerprint, prepare_photo

# --- BackboneSpec --------------------------------------------------------------------------------


def test_spec_round_trips_through_metadata_and_names_its_fingerprint():
    spec = BackboneSpec(input_size=256, taps=(("block7_add", 0.4),), weights_fingerprint="ab" * 8)
    again = BackboneSpec.from_metadata({"backbone": spec.to_metadata()})
    assert again == spec and again.fingerprint == spec.fingerprint
    assert spec.fingerprint == backbone_fingerprint("ab" * 8, 256, (("block7_add", 0.4),)) != "ab" * 8
    # The plain 224 px set-up keeps the weights file's own fingerprint (older caches stay valid).
    assert BackboneSpec(input_size=224, weights_fingerprint="cd" * 8).fingerprint == "cd" * 8
    with pytest.raises(ValueError):
        BackboneSpec(input_size=8)


def test_spec_of_every_artifact_age():
    first = BackboneSpec.from_metadata({"backbone_fingerprint": "ef" * 8})  # neither key: 224 px, no taps
    assert (first.input_size, first.taps, first.fingerprint) == (224, (), "ef" * 8)
    multi = BackboneSpec.from_metadata({"backbone_input_size": 320, "backbone_taps": [["block7_add", 0.4]]})
    assert (multi.input_size, multi.taps, multi.offset, multi.scale) == (320, (("block7_add", 0.4),), 127.0, 128.0)


def test_spec_normalise_matches_the_backbone_convention():
    squares = np.array([[[[0, 127, 255]]]], dtype=np.uint8)
    np.testing.assert_allclose(BackboneSpec().normalise(squares), [[[[-127 / 128, 0.0, 128 / 128]]]])


# --- prepare_photo -------------------------------------------------------------------------------


def test_prepare_photo_pads_to_the_spec_size_and_is_what_the_backbone_uses(tiny_backbone):
    photo = draw_shoe((200, 30, 30), seed=1, size=(120, 60))
    prepared = prepare_photo(photo, BackboneSpec(input_size=64))
    assert prepared.square.shape == (64, 64, 3) and prepared.square.dtype == np.uint8
    assert prepared.square[0, 0].tolist() == [255, 255, 255] and prepared.cutout.method == "none"
    np.testing.assert_array_equal(tiny_backbone.preprocess(photo), prepare_photo(photo, tiny_backbone.spec).square)
    # With a remover the plain product shot is skipped; a given cut-out is used instead of the remover.
    assert prepare_photo(photo, tiny_backbone.spec, remover=GrabCutRemover()).cutout.method == "skipped"
    black = np.zeros((10, 10, 3), np.uint8)
    given = Cutout(image=black, mask=np.ones((10, 10), np.float32), method="mask")
    out = prepare_photo(photo, BackboneSpec(input_size=32), remover=GrabCutRemover(), cutout=given)
    assert out.cutout is given and out.square.max() == 0
    with pytest.raises(ValueError):
        prepare_photo(photo.astype(np.float32), BackboneSpec())


def test_backbone_from_spec_is_set_up_as_the_spec_says(tapped_backbone, tapped_backbone_path):
    from worker.ml.backbone import Backbone

    spec = BackboneSpec.from_metadata({"backbone": tapped_backbone.spec.to_metadata()})
    again = Backbone.from_spec(tapped_backbone_path, spec)
    assert again.spec == tapped_backbone.spec and again.fingerprint == tapped_backbone.fingerprint
    legacy = Backbone.from_spec(tapped_backbone_path, BackboneSpec.from_metadata({}))
    assert (legacy.input_size, legacy.taps, legacy.dim) == (224, (), 16)


# --- metrics -------------------------------------------------------------------------------------


def test_top_k_log_loss_and_confusion_against_hand_and_sklearn_values():
    from sklearn.metrics import confusion_matrix as sk_confusion
    from sklearn.metrics import log_loss as sk_log_loss

    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.4, 0.1], [0.2, 0.3, 0.5]])
    truth = np.array([0, 1, 1, 0])
    assert top_k_accuracy(proba, truth, 1) == 0.5 and top_k_accuracy(proba, truth, 2) == 0.75
    assert top_k_accuracy(proba, truth, 9) == 1.0 and top_k_accuracy(proba[:0], truth[:0], 1) is None
    assert log_loss(proba, truth) == pytest.approx(sk_log_loss(truth, proba, labels=[0, 1, 2]))
    assert log_loss(proba, truth) == pytest.approx(-(math.log(0.7 * 0.6 * 0.4 * 0.2)) / 4)
    predicted = proba.argmax(1)
    np.testing.assert_array_equal(
        confusion_matrix(truth, predicted, 3), sk_confusion(truth, predicted, labels=[0, 1, 2])
    )
    with pytest.raises(ValueError):
        confusion_matrix(truth, predicted + 5, 3)


def test_classification_metrics_report_top5_ece_and_per_class_precision():
    classes = [f"m{i}" for i in range(6)]
    proba = np.eye(6)[[0, 1, 2, 2]] * 0.5 + 0.5 / 6
    m = classification_metrics(proba, ["m0", "m1", "m2", "m3"], classes)
    # Row 4 (truth m3): m2 first, then the ties in column order m0, m1, m3: fourth, so top-5 only.
    assert m["top1"] == 0.75 and m["top3"] == 0.75 and m["top5"] == 1.0
    assert m["per_brand_precision"]["m2"] == 0.5 and m["per_brand_precision"]["m4"] is None
    assert m["per_brand_recall"] == {"m0": 1.0, "m1": 1.0, "m2": 1.0, "m3": 0.0}
    assert 0.0 <= m["ece"] <= 1.0
    empty = classification_metrics(np.zeros((0, 6)), [], classes)
    assert empty["top1"] is None and len(empty["confusion"]["matrix"]) == 6


def test_per_class_precision_recall_and_regression_errors():
    figures = per_class_precision_recall(["a", "a", "b"], ["a", None, "a"], ["a", "b"])
    assert figures["a"] == {"precision": 0.5, "recall": 0.5, "support": 2}
    assert regression_errors([110.0, 40.0], [100.0, 50.0]) == {
        "mae": pytest.approx(10.0),
        "mape": pytest.approx((0.1 + 0.2) / 2),
    }
    assert regression_errors([], []) == {"mae": None, "mape": None}
