"""Overlap metrics that honour unannotated pixels (label 255)."""
from __future__ import annotations

import numpy as np

IGNORE = 255


def dice_per_class(pred: np.ndarray, label: np.ndarray, classes: int) -> np.ndarray:
    """Dice of each class c >= 1 over the annotated pixels; NaN where both prediction and truth are empty."""
    valid = label != IGNORE
    out = np.full(classes - 1, np.nan)
    for c in range(1, classes):
        p = (pred == c) & valid
        t = (label == c) & valid
        denom = p.sum() + t.sum()
        if denom:
            out[c - 1] = 2.0 * np.logical_and(p, t).sum() / denom
    return out
