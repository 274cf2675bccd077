"""Test-set metrics: accuracy, balanced accuracy, macro-F1, per-class accuracy and the confusion matrix."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """cm[i, j] = images of class i predicted as j (sklearn's layout; numpy spares each stage 2 s of import)."""
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def macro_f1(cm: np.ndarray) -> float:
    """Mean over classes of 2·TP / (2·TP + FP + FN), 0 where a class is neither present nor predicted."""
    tp = np.diag(cm).astype(float)
    denominator = cm.sum(axis=0) + cm.sum(axis=1)  # = 2·TP + FP + FN
    return float(np.mean(np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)))


def score(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> tuple[dict, list[dict], list[dict]]:
    """Return (metrics, confusion rows for DVC's `confusion` template, per-class accuracy rows)."""
    cm = confusion_matrix(y_true, y_pred, len(classes))
    support = cm.sum(axis=1)
    per_class = {c: round(float(cm[i, i] / support[i]), 6) if support[i] else None for i, c in enumerate(classes)}
    metrics = {
        "accuracy": round(float((y_true == y_pred).mean()), 6),
        # The mean of the per-class accuracies: what class imbalance does not hide.
        "balanced_accuracy": round(float(np.mean([a for a in per_class.values() if a is not None])), 6),
        "macro_f1": round(macro_f1(cm), 6),
        "test_images": int(len(y_true)),
        "per_class_accuracy": per_class,
    }
    confusion = [{"actual": classes[t], "predicted": classes[p]} for t, p in zip(y_true.tolist(), y_pred.tolist())]
    bars = [{"class": c, "accuracy": a} for c, a in per_class.items()]
    return metrics, confusion, bars
