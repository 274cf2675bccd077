"""Filtering a synthetic source: keep the images a model judges to show their own class.

`confidence` (ALIA, Dunlap et al. 2023): the `reference` classifier of d_original gives each image a
probability for the class it was made for; images below a threshold are dropped, and optionally the
most confident share of each class too (too easy: they teach the classifier nothing new).
`clip` (He et al. 2023): the same rule on CLIP's softmax over the class prompts, with 1/classes as
the usual threshold. The rule is one function; only the probabilities differ.
"""

from __future__ import annotations

import numpy as np

from diffaug.rules import round_half_up


def own_class(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each image's probability for its own class."""
    return probabilities[np.arange(len(labels)), labels]


def keep_mask(scores: np.ndarray, labels: np.ndarray, threshold: float, drop_top: float = 0.0) -> np.ndarray:
    """True for the images kept: score >= threshold, less each class's `drop_top` share (of the images
    above the threshold, rounded half up) with the highest scores (ties: the later image goes first)."""
    keep = scores >= threshold
    if drop_top > 0:
        for c in np.unique(labels):
            idx = np.flatnonzero(keep & (labels == c))
            n_drop = round_half_up(drop_top * len(idx))
            if n_drop:
                order = idx[np.lexsort((-idx, -scores[idx]))]  # highest score first
                keep[order[:n_drop]] = False
    return keep


def class_counts(keep: np.ndarray, labels: np.ndarray, classes: list[str], threshold: float) -> dict[str, dict]:
    """Per class: candidates, kept, dropped and the threshold (the metric of filter@<source>)."""
    out = {}
    for i, c in enumerate(classes):
        in_class = labels == i
        kept = int((keep & in_class).sum())
        out[c] = {
            "candidates": int(in_class.sum()),
            "kept": kept,
            "dropped": int(in_class.sum()) - kept,
            "threshold": round(float(threshold), 6),
        }
    return out
