"""ECE and the abstain threshold rules, on numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from worker.ml.abstain import choose_confidence_threshold, choose_footwear_threshold, rejection_rates
from worker.ml.metrics import expected_calibration_error, reliability_bins


def test_ece_matches_a_hand_computed_value():
    # Bin (0.8, 0.8667]: confidences 0.85, 0.85 -> accuracy 0.5, gap 0.35, weight 2/4.
    # Bin (0.2667, 0.3333]: confidences 0.3, 0.3 -> accuracy 0.5, gap 0.2, weight 2/4.
    ece = expected_calibration_error([0.85, 0.85, 0.3, 0.3], [True, False, True, False])
    assert ece == pytest.approx(0.5 * 0.35 + 0.5 * 0.2)


def test_ece_is_zero_when_confidence_equals_accuracy_and_bins_count_rows():
    confidences = [1.0] * 5 + [0.5] * 4
    correct = [True] * 5 + [True, False, True, False]
    assert expected_calibration_error(confidences, correct) == pytest.approx(0.0)
    bins = reliability_bins(confidences, correct)
    assert sum(bins["count"]) == 9 and bins["accuracy"][-1] == 1.0


def test_footwear_threshold_rejects_at_most_the_allowed_share_of_sneakers():
    scores = np.linspace(0.01, 1.0, 100)  # 100 validation sneakers
    threshold = choose_footwear_threshold(scores, max_positive_reject=0.02)
    assert rejection_rates(scores, threshold) == pytest.approx(0.02)
    assert choose_footwear_threshold([], max_positive_reject=0.02) == 0.0


def test_confidence_threshold_reaches_the_target_accuracy_on_the_accepted_rows():
    confidences = np.array([0.99, 0.95, 0.9, 0.8, 0.6, 0.55, 0.5, 0.45, 0.4, 0.35])
    correct = np.array([True, True, True, True, True, True, True, True, False, False])
    threshold = choose_confidence_threshold(confidences, correct, target_accuracy=0.97, max_abstain=0.3)
    accepted = confidences >= threshold
    assert threshold == pytest.approx(0.45) and correct[accepted].all() and accepted.mean() == pytest.approx(0.8)


def test_confidence_threshold_is_capped_by_the_largest_share_refused():
    confidences = np.array([0.9, 0.8, 0.7, 0.6])
    correct = np.array([False, True, True, True])  # the most confident is wrong: target unreachable
    threshold = choose_confidence_threshold(confidences, correct, target_accuracy=0.99, max_abstain=0.25)
    assert rejection_rates(confidences, threshold) <= 0.25
    assert choose_confidence_threshold(confidences, [True] * 4) == 0.0  # already accurate: never abstain
