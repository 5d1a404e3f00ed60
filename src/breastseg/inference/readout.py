"""Clinical read-outs of a predicted segmentation and the overlay pictures that go with them.

MRI (labels 0 background, 1 non-enhancing FGT, 2 BPE): volumes in ml from the voxel size; BPE area fraction as in
evaluation (``bpe_fraction`` of :mod:`breastseg.evaluation.statistics`: BPE voxels over all fibroglandular voxels,
labels 1 and 2); area category from the model's cut-offs (minimal / mild / moderate / marked: the area fraction
binned, not the radiologist's BPE category). Machine keys stay ``bpe_fraction``, ``bpe_category``, ``fgt_ml``;
``labels`` gives what to show for them. The degree beside the
area (relative enhancement of the predicted BPE at the first post-contrast phase, its category and the combined
category) comes from :func:`breastseg.mri.bpe_degree.degree_readout`.
Ultrasound (0 background, 1 mass): area in mm² (pixels x pixel area) when the pixel spacing is known, else in
px² (named so); bounding box in pixels and, with a known spacing, in mm.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..labels import BPE, FGT, bpe_category, category_name

#: What people read for the MRI read-out's keys (the keys themselves are stable).
MRI_LABELS = {
    "fgt_ml": "non-enhancing FGT (ml)",
    "bpe_ml": "BPE (ml)",
    "fibroglandular_total_ml": "all fibroglandular tissue: non-enhancing FGT + BPE (ml)",
    "bpe_fraction": "BPE area fraction",
    "bpe_category": "area category (BPE area fraction binned at the cut-offs; not the radiologist's BPE category)",
}


def mri_readout(labels: np.ndarray, voxel_mm: Sequence[float], cutoffs: Sequence[float]) -> dict[str, Any]:
    """Non-enhancing FGT and BPE volumes (ml), BPE area fraction and area category of a label volume with voxels of
    ``voxel_mm``."""
    voxel_ml = float(np.prod([float(v) for v in voxel_mm])) / 1000.0
    labels = np.asarray(labels)
    n_fgt, n_bpe = int(np.count_nonzero(labels == FGT)), int(np.count_nonzero(labels == BPE))
    # evaluation.statistics.bpe_fraction on a fully labelled volume, from the counts (one pass over the voxels)
    fraction = n_bpe / (n_fgt + n_bpe) if n_fgt + n_bpe else None
    out: dict[str, Any] = {
        "fgt_ml": n_fgt * voxel_ml,
        "bpe_ml": n_bpe * voxel_ml,
        "fibroglandular_total_ml": (n_fgt + n_bpe) * voxel_ml,
        "bpe_fraction": fraction,
        "bpe_fraction_definition": "BPE / (non-enhancing FGT + BPE) voxels",
        "bpe_cutoffs": [float(c) for c in cutoffs],
        "bpe_category": None,
        "bpe_category_index": None,
        "voxels": {"fgt": n_fgt, "bpe": n_bpe},
        "voxel_ml": voxel_ml,
        "labels": dict(MRI_LABELS),
    }
    if fraction is not None:
        idx = bpe_category(fraction, tuple(cutoffs))
        out.update(bpe_category_index=idx, bpe_category=category_name(idx, len(cutoffs) + 1))
    else:
        out["note"] = "no fibroglandular tissue found: BPE area fraction and area category undefined"
    return out


def us_readout(mask: np.ndarray, spacing_mm: Sequence[float], spacing_known: bool) -> dict[str, Any]:
    """Mass area and bounding box of a binary mask (rows x cols) with pixel spacing (row, col) in mm."""
    m = np.asarray(mask) > 0
    n = int(m.sum())
    dy, dx = (float(v) for v in spacing_mm)
    out: dict[str, Any] = {"mass_found": n > 0, "mass_pixels": n, "spacing_known": bool(spacing_known)}
    if spacing_known:
        out["mass_area_mm2"] = n * dy * dx
        out["pixel_spacing_mm"] = [dy, dx]
    else:
        out["mass_area_px2"] = n
        out["note"] = "the input stores no pixel spacing: area in px² (pixels of the input image)"
    if n:
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        box = {"row_min": int(rows[0]), "row_max": int(rows[-1]), "col_min": int(cols[0]), "col_max": int(cols[-1])}
        box["height_px"], box["width_px"] = box["row_max"] - box["row_min"] + 1, box["col_max"] - box["col_min"] + 1
        if spacing_known:
            box["height_mm"], box["width_mm"] = box["height_px"] * dy, box["width_px"] * dx
        out["bounding_box"] = box
    else:
        out["bounding_box"] = None
    return out


# ------------------------------------------------------------------------------------------ overlays


def _gray(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float32)
    lo, hi = np.percentile(a, [0.5, 99.5]) if a.size else (0.0, 1.0)
    scaled = np.zeros(a.shape, np.float32) if hi <= lo else np.clip((a - lo) / (hi - lo), 0, 1)
    return (scaled * 255).astype(np.uint8)


def mri_overlay(pre: np.ndarray, labels: np.ndarray, pixel_mm: Sequence[float], panels: int = 4, height: int = 256):
    """PIL image: the ``panels`` slices with the most fibroglandular tissue (pre-contrast, FGT green, BPE red)."""
    from PIL import Image

    tissue = np.count_nonzero(labels.reshape(-1, labels.shape[2], order="F"), axis=0)
    order = np.argsort(-tissue, kind="stable")[:panels] if tissue.any() else [labels.shape[2] // 2]
    ks = sorted(int(k) for k in order)
    gray = _gray(np.stack([pre[:, :, k] for k in ks], axis=-1))  # window from the shown slices
    rows, cols = pre.shape[1], pre.shape[0]  # data[col, row, slice]
    width = int(max(16, round(height * (cols * float(pixel_mm[0])) / (rows * float(pixel_mm[1])))))
    tiles = []
    for n, k in enumerate(ks):
        g = gray[:, :, n].T
        rgb = np.stack([g] * 3, axis=-1).astype(np.float32)
        lab = labels[:, :, k].T
        for value, colour in ((FGT, (0, 200, 0)), (BPE, (230, 30, 30))):
            sel = lab == value
            rgb[sel] = 0.55 * rgb[sel] + 0.45 * np.asarray(colour, np.float32)
        tiles.append(Image.fromarray(rgb.astype(np.uint8)).resize((width, height), Image.NEAREST))
    gap = 4
    canvas = Image.new("RGB", (len(tiles) * width + (len(tiles) - 1) * gap, height), (0, 0, 0))
    for i, t in enumerate(tiles):
        canvas.paste(t, (i * (width + gap), 0))
    return canvas


def us_overlay(bmode: np.ndarray, mask: np.ndarray, spacing_mm: Sequence[float]):
    """PIL image: B-mode | B-mode with the predicted mass outlined (physical aspect)."""
    from ..us.maps import preview_image

    return preview_image(bmode, None, mask.astype(np.uint8), tuple(float(v) for v in spacing_mm))
