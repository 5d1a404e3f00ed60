"""Per-case segmentation metrics that honour unannotated pixels (label 255).

Pixels labelled :data:`IGNORE` (255) are left out everywhere: they count towards no overlap or area, and they
are set to background in both prediction and truth before surfaces are extracted.

Surface distances come from MONAI (``compute_hausdorff_distance``, ``compute_average_surface_distance``): a
mask's surface is its set of edge pixels/voxels, ``mask XOR binary_erosion(mask)`` (scipy's default cross-shaped
structuring element), and distances are Euclidean between edge-pixel centres, scaled by the spacing in mm of
each axis. HD95 is symmetric as MONAI defines it: the 95th percentile (linear interpolation) of the distances
from the predicted edge to the true edge, the same from true to predicted, and the larger of the two. ASD is the
mean of both sets of directed distances pooled together.

Empty-mask conventions, per class (also in :data:`CONVENTIONS`, which reports print):

- Dice ``2TP / (2TP + FP + FN)``: both empty -> NaN (undefined; left out of means and counted as undefined);
  truth empty but prediction not -> 0; prediction empty but truth not -> 0.
- Precision ``TP / (TP + FP)``: prediction empty -> NaN.
- Recall ``TP / (TP + FN)``: truth empty -> NaN.
- HD95 and ASD: either mask empty -> NaN (undefined; the Dice already penalises the miss).
- Areas are always defined (0 for an empty mask).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

IGNORE = 255

CONVENTIONS: dict[str, str] = {
    "ignore": "pixels labelled 255 are excluded from every count and treated as background for surfaces",
    "dice": "2TP/(2TP+FP+FN); both masks empty -> undefined (NaN, excluded from means, counted); "
            "one mask empty -> 0",
    "precision": "TP/(TP+FP); prediction empty -> undefined (NaN)",
    "recall": "TP/(TP+FN); truth empty -> undefined (NaN)",
    "hd95": "symmetric 95th-percentile Hausdorff distance in mm between edge pixels (MONAI: max of the two "
            "directed 95th percentiles); either mask empty -> undefined (NaN)",
    "asd": "average symmetric surface distance in mm (MONAI: mean of both directed edge-to-edge distance sets); "
           "either mask empty -> undefined (NaN)",
    "area": "pixel (voxel) count times pixel area (voxel volume), mm^2 (mm^3); 0 when empty",
}


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


def _ratio(num: int, den: int) -> float:
    return float(num) / float(den) if den else float("nan")


def surface_distances(pred_mask: np.ndarray, true_mask: np.ndarray, spacing_mm: Sequence[float]) -> tuple[float, float]:
    """(HD95, ASD) in mm between two binary masks with MONAI; (NaN, NaN) if either mask is empty."""
    if not pred_mask.any() or not true_mask.any():
        return float("nan"), float("nan")
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    def one_hot(mask: np.ndarray) -> torch.Tensor:  # (1 batch, 2 channels: background, class, *spatial)
        m = torch.from_numpy(np.ascontiguousarray(mask, dtype=bool))
        return torch.stack([~m, m])[None].float()

    p, t = one_hot(pred_mask), one_hot(true_mask)
    spacing = [float(s) for s in spacing_mm]
    with warnings.catch_warnings():  # MONAI 1.6 passes its own deprecated argument to get_mask_edges
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)
        hd95 = compute_hausdorff_distance(p, t, include_background=False, percentile=95, spacing=spacing)
        asd = compute_average_surface_distance(p, t, include_background=False, symmetric=True, spacing=spacing)
    return float(hd95[0, 0]), float(asd[0, 0])


def case_metrics(pred: np.ndarray, label: np.ndarray, classes: int, spacing_mm: Sequence[float]) -> dict[str, float]:
    """Metrics of one case (2-D slice or 3-D volume) for every class 1..classes-1.

    Keys ``dice_c``, ``precision_c``, ``recall_c``, ``hd95_c`` (mm), ``asd_c`` (mm), ``area_pred_c`` and
    ``area_true_c`` (mm^2 or mm^3). ``spacing_mm`` has one entry per array axis. Values are plain floats; the
    empty-mask conventions are in the module docstring.
    """
    pred, label = np.asarray(pred), np.asarray(label)
    if pred.shape != label.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from label shape {label.shape}")
    if pred.ndim not in (2, 3):
        raise ValueError(f"expected a 2-D slice or a 3-D volume, got {pred.ndim} dimensions")
    spacing = tuple(float(s) for s in np.atleast_1d(np.asarray(spacing_mm, dtype=float)))
    if len(spacing) != pred.ndim:
        raise ValueError(f"spacing_mm has {len(spacing)} entries for a {pred.ndim}-D array")
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing_mm must be positive, got {spacing}")
    unit = float(np.prod(spacing))
    valid = label != IGNORE
    out: dict[str, float] = {}
    for c in range(1, classes):
        p = (pred == c) & valid
        t = (label == c) & valid
        tp = int(np.count_nonzero(p & t))
        fp = int(np.count_nonzero(p & ~t))
        fn = int(np.count_nonzero(~p & t))
        out[f"dice_{c}"] = _ratio(2 * tp, 2 * tp + fp + fn)
        out[f"precision_{c}"] = _ratio(tp, tp + fp)
        out[f"recall_{c}"] = _ratio(tp, tp + fn)
        out[f"hd95_{c}"], out[f"asd_{c}"] = surface_distances(p, t, spacing)
        out[f"area_pred_{c}"] = float((tp + fp) * unit)
        out[f"area_true_{c}"] = float((tp + fn) * unit)
    return out
