"""Per-case segmentation metrics that honour unannotated pixels (label 255).

Pixels labelled :data:`~breastseg.labels.NOT_ANNOTATED` (255) are left out everywhere: they count towards no overlap or area, and they
are set to background in both prediction and truth before surfaces are extracted.

Surface distances are MONAI's own (``monai.metrics.compute_hausdorff_distance`` and
``compute_average_surface_distance``): a mask's surface is its set of edge pixels/voxels, ``mask XOR
binary_erosion(mask)`` (outside the image counts as background), and distances are Euclidean between edge-pixel
centres, scaled by the spacing in mm of each axis. HD95 is symmetric as MONAI defines it: the 95th percentile
(linear interpolation) of the distances from the predicted edge to the true edge, the same from true to
predicted, and the larger of the two. ASD is the mean of both sets of directed distances pooled together.

Empty-mask conventions, per class (also in :data:`CONVENTIONS`, which reports print):

- Dice ``2TP / (2TP + FP + FN)``: both empty -> NaN (undefined; left out of means and counted as undefined);
  truth empty but prediction not -> 0; prediction empty but truth not -> 0.
- Precision ``TP / (TP + FP)``: prediction empty -> NaN.
- Recall ``TP / (TP + FN)``: truth empty -> NaN.
- HD95 and ASD: either mask empty -> NaN (undefined; the Dice already penalises the miss).
- Areas are always defined (0 for an empty mask).

Where Dice is averaged (:func:`dice_figures`, shared by evaluation and the validation of a training, so that
checkpoints, early stopping and Optuna select on the figure the champion gate and the test report use):

- per patient: tp, fp and fn of all the patient's scored images pooled, then Dice per class; the mean over
  patients per class, and ``dice_mean``, the mean of those over the foreground classes;
- per image (the published conventions: MRI per slice, ultrasound per mass, one mass per scan): Dice of each
  scored image, the mean over images per class, then over classes;
- ultrasound images without a mass (truth mask empty, like BUSI "normal") are reported apart: they are not
  scored (no Dice of 0 for them, per image or pooled into a patient), and the image-level false-positive rate
  is the share of them with any predicted mass pixel. MRI slices are all scored.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from ..labels import NOT_ANNOTATED
#: Said wherever results are shown when the split could not tell women apart
#: (:func:`breastseg.evaluation.evaluate.split_check`).
SPLIT_BY_IMAGE_WARNING = "split by image: the same woman may be in train and test; results may be optimistic"

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
    "per_patient": "Dice per patient pools tp/fp/fn over the patient's scored images; dice_mean is the mean over "
                   "foreground classes of the mean over patients; dice_median the median over patients of each "
                   "patient's mean over its defined classes",
    "per_image": "Dice per slice (MRI) or per mass (ultrasound, one mass per scan): the mean over images per "
                 "class, then over classes; the median over images of each image's mean over defined classes",
    "no_mass_images": "ultrasound images whose truth mask is empty are not scored for Dice (neither per image nor "
                      "pooled per patient); reported apart as the image-level false-positive rate: the share of "
                      "them with any predicted mass pixel",
}


def dice_per_class(pred: np.ndarray, label: np.ndarray, classes: int) -> np.ndarray:
    """Dice of each class c >= 1 over the annotated pixels; NaN where both prediction and truth are empty."""
    valid = label != NOT_ANNOTATED
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
    """(HD95, ASD) in mm between two binary masks; (NaN, NaN) if either mask is empty.

    MONAI's ``compute_hausdorff_distance(percentile=95)`` and symmetric ``compute_average_surface_distance``
    on the one-hot pair, background excluded. Nonzero pixels are foreground; ``spacing_mm`` has one entry per axis.
    """
    pred, true = np.asarray(pred_mask, dtype=bool), np.asarray(true_mask, dtype=bool)
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {true.shape}")
    spacing = [float(s) for s in spacing_mm]
    if len(spacing) != pred.ndim:
        raise ValueError(f"spacing_mm has {len(spacing)} entries for a {pred.ndim}-D mask")
    if not pred.any() or not true.any():
        return float("nan"), float("nan")
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    def one_hot(mask: np.ndarray) -> torch.Tensor:  # (1, 2, *shape): background, foreground
        m = torch.from_numpy(np.ascontiguousarray(mask))
        return torch.stack([~m, m])[None].float()

    p, t = one_hot(pred), one_hot(true)
    with warnings.catch_warnings():  # MONAI 1.6 warns about an argument it passes itself (always_return_as_numpy)
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"monai\.")
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
    valid = label != NOT_ANNOTATED
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


def overlap_counts(pred: np.ndarray, label: np.ndarray, classes: int) -> np.ndarray:
    """(N, classes - 1, 3) int64: tp, fp and fn of each foreground class in each image (annotated pixels only)."""
    pred, label = np.asarray(pred), np.asarray(label)
    if pred.shape != label.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from label shape {label.shape}")
    valid = label != NOT_ANNOTATED
    axes = tuple(range(1, pred.ndim))
    out = np.zeros((len(pred), classes - 1, 3), np.int64)
    for c in range(1, classes):
        p, t = (pred == c) & valid, (label == c) & valid
        out[:, c - 1, 0] = np.count_nonzero(p & t, axis=axes)
        out[:, c - 1, 1] = np.count_nonzero(p & ~t, axis=axes)
        out[:, c - 1, 2] = np.count_nonzero(~p & t, axis=axes)
    return out


def dice_of_counts(counts: np.ndarray) -> np.ndarray:
    """Dice from (..., 3) tp/fp/fn counts: 2tp / (2tp + fp + fn); NaN where the denominator is 0 (both empty)."""
    counts = np.asarray(counts, dtype=np.float64)
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    den = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 2 * tp / np.where(den > 0, den, 1), np.nan)


def _nanmean(x: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    x = np.asarray(x, dtype=np.float64)
    n = np.isfinite(x).sum(axis=axis)
    s = np.where(np.isfinite(x), x, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.where(n > 0, n, 1), np.nan)


def dice_figures(counts: np.ndarray, patients, *, no_mass_apart: bool) -> dict:
    """Every Dice figure of a set of images from their tp/fp/fn counts (:func:`overlap_counts`).

    ``patients``: the patient of each image. ``no_mass_apart`` (ultrasound): images whose truth holds no
    foreground pixel are not scored; their image-level false-positive rate is reported instead. Returns numpy
    arrays and floats (NaN where undefined): ``patients`` (sorted), ``patient_counts`` (P, K, 3),
    ``patient_dice`` (P, K), ``patient_mean`` (P,: each patient's mean over its defined classes),
    ``class_mean`` (K,), ``dice_mean``, ``dice_median``, ``image_dice`` (N, K), ``image_mean`` (N,),
    ``scored`` (N,) bool, ``image_class_mean`` (K,), ``image_mean_over_classes``, ``image_median``, and
    ``no_mass`` (``n``, ``with_prediction``, ``fp_rate``, ``flagged``: per image without a mass, whether any
    mass pixel was predicted; only with ``no_mass_apart``).
    """
    counts = np.asarray(counts, dtype=np.int64)
    patients = np.asarray(patients).astype(str)
    if counts.ndim != 3 or counts.shape[-1] != 3 or len(counts) != len(patients):
        raise ValueError(f"counts must be (N, classes - 1, 3) with one patient per image, got {counts.shape} "
                         f"and {len(patients)} patients")
    k = counts.shape[1]
    has_mass = (counts[:, :, 0] + counts[:, :, 2]).sum(axis=1) > 0
    scored = has_mass if no_mass_apart else np.ones(len(counts), bool)
    names = sorted(set(patients.tolist()))
    code = {p: i for i, p in enumerate(names)}
    idx = np.array([code[p] for p in patients], dtype=np.int64)
    patient_counts = np.zeros((len(names), k, 3), np.int64)
    np.add.at(patient_counts, idx[scored], counts[scored])
    patient_dice = dice_of_counts(patient_counts)
    patient_mean = _nanmean(patient_dice, axis=1) if len(names) else np.zeros(0)
    class_mean = _nanmean(patient_dice, axis=0) if len(names) else np.full(k, np.nan)
    image_dice = dice_of_counts(counts)
    image_dice[~scored] = np.nan
    image_mean = _nanmean(image_dice, axis=1) if len(counts) else np.zeros(0)
    image_class_mean = _nanmean(image_dice, axis=0) if len(counts) else np.full(k, np.nan)

    def finite_mean(x):
        x = np.asarray(x, dtype=np.float64)
        x = x[np.isfinite(x)]
        return float(x.mean()) if x.size else float("nan")

    def finite_median(x):
        x = np.asarray(x, dtype=np.float64)
        x = x[np.isfinite(x)]
        return float(np.median(x)) if x.size else float("nan")

    out = {
        "patients": names, "patient_counts": patient_counts, "patient_dice": patient_dice,
        "patient_mean": patient_mean, "class_mean": np.asarray(class_mean, dtype=np.float64),
        "dice_mean": finite_mean(class_mean), "dice_median": finite_median(patient_mean),
        "image_dice": image_dice, "image_mean": image_mean, "scored": scored,
        "image_class_mean": np.asarray(image_class_mean, dtype=np.float64),
        "image_mean_over_classes": finite_mean(image_class_mean), "image_median": finite_median(image_mean[scored]),
    }
    if no_mass_apart:
        empty = ~has_mass
        flagged = counts[empty, :, 1].sum(axis=1) > 0
        n = int(empty.sum())
        out["no_mass"] = {"n": n, "with_prediction": int(flagged.sum()),
                          "fp_rate": float(flagged.mean()) if n else float("nan"), "flagged": flagged}
    return out
