"""Filtered sources: the confidence rule, per-class counts, and the filter stage on a real classifier."""

import numpy as np

from diffaug.data.filter import class_counts, keep_mask, own_class


def test_keeps_exactly_the_images_at_or_above_the_threshold():
    scores = np.array([0.1, 0.5, 0.49999, 0.9, 1.0, 0.0, 0.75])
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    assert keep_mask(scores, labels, 0.5).tolist() == [False, True, False, True, True, False, True]
    assert keep_mask(scores, labels, 0.0).all() and keep_mask(scores, labels, 1.0).tolist() == [0, 0, 0, 0, 1, 0, 0]


def test_drop_top_removes_each_class_s_most_confident_share():
    scores = np.array([0.6, 0.7, 0.8, 0.9, 0.95, 0.3, 0.99, 0.98])
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    # class 0: five above 0.5, 20% of them (1) dropped: the 0.95; class 1: 20% of 2 rounds to 0
    assert keep_mask(scores, labels, 0.5, drop_top=0.2).tolist() == [True, True, True, True, False, False, True, True]
    # 50% of class 1's two: the more confident one goes
    assert keep_mask(scores, labels, 0.5, drop_top=0.5).tolist() == [
        True,
        True,
        False,
        False,
        False,
        False,
        False,
        True,
    ]


def test_own_class_probability_and_counts():
    probabilities = np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    labels = np.array([0, 0, 1])
    scores = own_class(probabilities, labels)
    assert scores.tolist() == [0.7, 0.2, 0.4]
    counts = class_counts(keep_mask(scores, labels, 0.5), labels, ["a", "b"], 0.5)
    assert counts == {
        "a": {"candidates": 2, "kept": 1, "dropped": 1, "threshold": 0.5},
        "b": {"candidates": 1, "kept": 0, "dropped": 1, "threshold": 0.5},
    }
