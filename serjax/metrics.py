"""UA, WA, ACC = (UA + WA) / 2, macro-F1 and the confusion matrix."""

from __future__ import annotations

import numpy as np


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """Rows: true class; columns: predicted class."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


def scores(labels, predictions, num_classes: int) -> dict:
    """UA = mean recall over the classes present; WA = accuracy; F1 macro over the classes
    present in the labels or the predictions (as scikit-learn does)."""
    matrix = confusion_matrix(labels, predictions, num_classes)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    hits = np.diag(matrix)
    present = support > 0
    ua = float(np.mean(hits[present] / support[present]))
    wa = float(hits.sum() / support.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(support + predicted > 0, 2 * hits / (support + predicted), 0.0)
    return {
        "ua": ua,
        "wa": wa,
        "acc": (ua + wa) / 2,
        "f1": float(np.mean(f1[(support + predicted) > 0])),
        "confusion": matrix.tolist(),
    }
