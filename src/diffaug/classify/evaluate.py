"""Test-set metrics: accuracy, macro-F1, per-class accuracy and the confusion matrix."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score


def score(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> tuple[dict, list[dict], list[dict]]:
    """Return (metrics, confusion rows for DVC's `confusion` template, per-class accuracy rows)."""
    labels = list(range(len(classes)))
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    support = cm.sum(axis=1)
    per_class = {c: round(float(cm[i, i] / support[i]), 6) if support[i] else None for i, c in enumerate(classes)}
    metrics = {
        "accuracy": round(float((y_true == y_pred).mean()), 6),
        "macro_f1": round(float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)), 6),
        "test_images": int(len(y_true)),
        "per_class_accuracy": per_class,
    }
    confusion = [{"actual": classes[t], "predicted": classes[p]} for t, p in zip(y_true.tolist(), y_pred.tolist())]
    bars = [{"class": c, "accuracy": a} for c, a in per_class.items()]
    return metrics, confusion, bars
