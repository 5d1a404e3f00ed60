"""Figures people would rather look at than tables: overlays, Dice box plots, BPE calibration."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path
from ..labels import NOT_ANNOTATED

#: What people read for the machine class keys (metrics, CSV columns and params keep the keys: ``dice_fgt``...).
DISPLAY_NAMES = {"fgt": "non-enhancing FGT", "bpe": "BPE", "mass": "mass", "background": "background"}


def display_name(key: str) -> str:
    """The user-facing name of a class key (``fgt`` -> "non-enhancing FGT"); unknown keys as they are."""
    return DISPLAY_NAMES.get(str(key), str(key))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> None:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=80, bbox_inches="tight", pad_inches=0.1)  # titles never cut off
    _pyplot().close(fig)


def display(image: np.ndarray, dataset: str) -> np.ndarray:
    """A prepared slice as the modality is read, rows top to bottom on screen.

    MRI slices are stored NIfTI-style (first axis along the DICOM rows' direction), so the transpose gives the
    DICOM display (axial: anterior on top, the patient's right on the left). Ultrasound maps are stored depth x
    lines: shown as they are, skin line on top and depth downward, as in the ``us-maps`` preview.
    """
    return image.T if dataset == "mri" else image


def overlay_figure(data: dict[str, np.ndarray], pred: np.ndarray, slice_dice: np.ndarray, out: Path, title: str,
                   dataset: str = "mri", class_names: list[str] | None = None) -> None:
    """Worst, median and best test slices (by mean Dice): image, ground truth, prediction; with ``class_names``
    (the experiment's keys), a legend of the overlay colours by display name."""
    plt = _pyplot()
    order = np.argsort(np.nan_to_num(slice_dice, nan=-1))
    picks = [("worst", order[0]), ("median", order[len(order) // 2]), ("best", order[-1])]
    vmax = max(2, int(data["label"][data["label"] != NOT_ANNOTATED].max(initial=1)))
    fig, axes = plt.subplots(3, 3, figsize=(7.5, 8.0))
    for r, (label, i) in enumerate(picks):
        img = data["image"][i, -1]
        truth = np.ma.masked_where((data["label"][i] == NOT_ANNOTATED) | (data["label"][i] == 0), data["label"][i])
        for c, (panel, overlay) in enumerate([("image", None), ("truth", truth), ("prediction", pred[i])]):
            ax = axes[r, c]
            ax.imshow(display(img, dataset), cmap="gray")
            if overlay is not None:
                ax.imshow(display(np.ma.masked_equal(overlay, 0), dataset), cmap="autumn", alpha=0.5, vmin=0,
                          vmax=vmax)
            dice = "" if c < 2 or np.isnan(slice_dice[i]) else f" (Dice {slice_dice[i]:.2f})"
            ax.set_title(f"{label} {panel}{dice}", fontsize=8)
            ax.axis("off")
    fig.suptitle(title, fontsize=10, wrap=True)
    bottom = 0.0
    if class_names and len(class_names) > 1:
        from matplotlib.patches import Patch

        cmap = plt.get_cmap("autumn")
        handles = [Patch(color=cmap(v / vmax), alpha=0.5, label=display_name(class_names[v]))
                   for v in range(1, len(class_names))]
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
        bottom = 0.04
    fig.tight_layout(rect=(0, bottom, 1, 0.96))
    _save(fig, out)


def box_plot(series: dict[str, list[float]], out: Path, title: str, ylabel: str = "Dice per patient") -> None:
    """One box per series (finite values), with the points overlaid; class keys shown by their display names."""
    plt = _pyplot()
    names = list(series)
    values = [[v for v in series[n] if v is not None and np.isfinite(v)] for n in names]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.8 + 1.4 * len(names)), 4))
    ax.boxplot(values, showmeans=True)
    ax.set_xticks(range(1, len(names) + 1), [display_name(n) for n in names])
    for i, v in enumerate(values, start=1):
        ax.scatter(np.full(len(v), i) + np.linspace(-0.08, 0.08, max(1, len(v)))[: len(v)], v, s=10, alpha=0.6)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10, wrap=True)
    fig.tight_layout()
    _save(fig, out)


def calibration_plot(truth: list[float], pred: list[float], cutoffs: list[float], out: Path, title: str) -> None:
    """Predicted vs ground-truth BPE area fraction (BPE / all fibroglandular tissue) per patient, with the
    area-category cut-offs (an area fraction, not the radiologist's BPE category)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1)
    for c in cutoffs:
        ax.axvline(c, color="lightgrey", lw=0.8)
        ax.axhline(c, color="lightgrey", lw=0.8)
    ax.scatter(truth, pred, s=20)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("BPE area fraction, ground truth")
    ax.set_ylabel("BPE area fraction, prediction")
    ax.set_title(title, fontsize=10, wrap=True)
    fig.tight_layout()
    _save(fig, out)


def figure_paths(out_dir: Path, dataset: str) -> dict[str, Any]:
    paths = {"overlays": out_dir / "overlays.png", "boxplot": out_dir / "dice_boxplot.png"}
    if dataset == "mri":
        paths["calibration"] = out_dir / "bpe_calibration.png"
    return paths
