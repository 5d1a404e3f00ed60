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


#: The Okabe-Ito palette (Okabe & Ito 2008), distinguishable with every common colour-vision deficiency.
OKABE_ITO = {"orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73", "yellow": "#F0E442",
             "blue": "#0072B2", "vermillion": "#D55E00", "reddish purple": "#CC79A7", "black": "#000000"}
#: Overlay colour of each class key: non-enhancing FGT dark blue and BPE light orange (far apart in hue and in
#: lightness), the ultrasound mass vermillion. Other keys take the palette's unused colours in order.
CLASS_COLOURS = {"fgt": OKABE_ITO["blue"], "bpe": OKABE_ITO["orange"], "mass": OKABE_ITO["vermillion"]}
#: Opacity of the prediction's fill (the ground truth is drawn as an opaque outline).
FILL_ALPHA = 0.45
#: Legend entries explaining how truth and prediction are drawn.
TRUTH_STYLE = "ground truth: outline"
PRED_STYLE = "prediction: fill"


def class_colours(class_names: list[str]) -> dict[int, str]:
    """Overlay colour (hex, from :data:`OKABE_ITO`) of every foreground class id 1.. of ``class_names``; distinct
    within one experiment (black is used last: it hides on dark images)."""
    spare = [c for c in OKABE_ITO.values() if c not in CLASS_COLOURS.values()]
    out: dict[int, str] = {}
    for c, key in enumerate(class_names[1:], start=1):
        colour = CLASS_COLOURS.get(str(key))
        if colour is None or colour in out.values():
            colour = next(s for s in [*spare, *OKABE_ITO.values()] if s not in out.values())
        out[c] = colour
    return out


def _default_class_names(dataset: str, label: np.ndarray, pred: np.ndarray) -> list[str]:
    from ..labels import MRI_CLASS_NAMES, US_CLASS_NAMES

    names = list(MRI_CLASS_NAMES if dataset == "mri" else US_CLASS_NAMES)
    top = max(int(label[label != NOT_ANNOTATED].max(initial=0)), int(np.asarray(pred).max(initial=0)))
    return names + [f"class{i}" for i in range(len(names), top + 1)]


def us_native_geometry(interim_dir: Path | None, patients, cases) -> list[tuple[tuple[int, int], tuple[float, float]]
                                                                             | None]:
    """Each ultrasound slice's native (shape, spacing_mm), from its converted scan's
    ``<interim_dir>/<patient>/<case>/meta.json`` (None where it is missing): what tells :func:`content_box`
    where the scan lies inside the network's square grid."""
    import json

    out: list = []
    for pid, case in zip(patients, cases):
        f = Path(interim_dir, str(pid), str(case), "meta.json") if interim_dir else None
        try:
            meta = json.loads(f.read_text()) if f is not None else None
            out.append((tuple(int(v) for v in meta["shape"]), tuple(float(v) for v in meta["spacing_mm"]))
                       if meta else None)
        except (OSError, ValueError, KeyError, TypeError):
            out.append(None)
    return out


def content_box(image: np.ndarray, native: tuple[tuple[int, int], tuple[float, float]] | None = None
                ) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of an ultrasound scan inside its square grid (``image``: (C, S, S) or (S, S)).

    :func:`breastseg.us.maps.resample_to_square` keeps the physical aspect and centres the scan, filling the
    margins with each map's minimum. With the scan's native ``(shape, spacing_mm)`` the box is where that
    function puts it; without, it is read from the image: the lines at both ends of the letterboxed axis where
    every map is at its minimum (the same number at both ends, as the scan is centred).
    """
    chans = np.asarray(image).reshape(-1, *np.asarray(image).shape[-2:])
    size = chans.shape[-1]
    if native is not None:
        from ..us.maps import resample_to_square

        shape, spacing = native
        _, m, _ = resample_to_square(np.zeros(shape, np.float32), np.ones(shape, np.uint8), spacing, size)
        r, c = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        return int(r[0]), int(r[-1]) + 1, int(c[0]), int(c[-1]) + 1
    blank = np.all(chans == chans.reshape(len(chans), -1).min(axis=1)[:, None, None], axis=0)

    def margin(blank_lines: np.ndarray) -> int:  # blank lines at both ends (a blank image: no margin)
        if blank_lines.all():
            return 0
        return min(int(np.argmin(blank_lines)), int(np.argmin(blank_lines[::-1])))

    rows, cols = margin(blank.all(axis=1)), margin(blank.all(axis=0))
    if rows >= cols:
        return rows, size - rows, 0, size
    return 0, size, cols, size - cols


def _picks(data: dict[str, np.ndarray], pred: np.ndarray, slice_dice: np.ndarray, dataset: str
           ) -> tuple[list[tuple[str, int]], list[int], int]:
    """Rows of the overlay figure: ([(name, slice)] worst / median / best among the slices with a defined Dice,
    the images without a mass that have a predicted one (ultrasound; most predicted pixels first), and the number
    of images without a mass). An ultrasound image without a mass is never ranked: it has no Dice."""
    label = data["label"]
    fg = ((label != 0) & (label != NOT_ANNOTATED)).reshape(len(label), -1).any(axis=1)
    dice = np.asarray(slice_dice, dtype=float)
    no_mass = ~fg if dataset == "us" else np.zeros(len(label), bool)
    ranked = np.flatnonzero(np.isfinite(dice) & ~no_mass)
    picks: list[tuple[str, int]] = []
    if len(ranked):
        order = ranked[np.argsort(dice[ranked], kind="stable")]
        for name, i in (("worst", order[0]), ("median", order[len(order) // 2]), ("best", order[-1])):
            if picks and picks[-1][1] == i:
                picks[-1] = (f"{picks[-1][0]} = {name}", int(i))
            elif all(i != j for _, j in picks):
                picks.append((name, int(i)))
    valid = np.asarray(label) != NOT_ANNOTATED
    pred_px = ((np.asarray(pred) != 0) & valid).reshape(len(label), -1).sum(axis=1)
    fps = [int(i) for i in np.flatnonzero(no_mass & (pred_px > 0))]
    fps.sort(key=lambda i: -pred_px[i])
    return picks, fps, int(no_mass.sum())


def _draw(ax, img: np.ndarray, truth: np.ndarray | None, pred: np.ndarray | None, spacing: tuple[float, float],
          colours: dict[int, str]) -> None:
    """One panel: the image in grey with its physical aspect (``extent`` in mm, or source pixels where the spacing
    is unknown), the prediction as a translucent fill and the ground truth as an outline, in the class colours."""
    from matplotlib.colors import to_rgba
    from matplotlib.patheffects import Normal, Stroke

    h, w = img.shape
    dy, dx = spacing
    extent = (0.0, w * dx, h * dy, 0.0)
    ax.imshow(img, cmap="gray", extent=extent, interpolation="nearest")
    if pred is not None:
        rgba = np.zeros((h, w, 4))
        for c, colour in colours.items():
            rgba[pred == c] = to_rgba(colour, FILL_ALPHA)
        ax.imshow(rgba, extent=extent, interpolation="nearest")
    if truth is not None:
        x = (np.arange(-1, w + 1) + 0.5) * dx
        y = (np.arange(-1, h + 1) + 0.5) * dy
        for c, colour in colours.items():
            m = np.pad(truth == c, 1)
            if m.any():
                ax.contour(x, y, m.astype(float), levels=[0.5], colors=[colour], linewidths=1.4,
                           path_effects=[Stroke(linewidth=2.8, foreground="white"), Normal()])
    ax.set_xlim(0, w * dx)
    ax.set_ylim(h * dy, 0)
    ax.set_aspect("equal")
    ax.axis("off")


def overlay_plot(data: dict[str, np.ndarray], pred: np.ndarray, slice_dice: np.ndarray, title: str,
                 dataset: str = "mri", class_names: list[str] | None = None, native: list | None = None):
    """The overlay figure (a matplotlib Figure, not saved): see :func:`overlay_figure`."""
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.patheffects import Normal, Stroke

    label, pred = np.asarray(data["label"]), np.asarray(pred)
    names = list(class_names) if class_names and len(class_names) > 1 else _default_class_names(dataset, label, pred)
    colours = class_colours(names)
    picks, fps, n_no_mass = _picks(data, pred, slice_dice, dataset)
    spacings = np.asarray(data.get("spacing_mm", np.ones((len(label), 2))), dtype=float)

    def view(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float]]:
        img, truth, p = data["image"][i, -1], label[i], pred[i]
        truth = np.where(truth == NOT_ANNOTATED, 0, truth)
        sy, sx = (float(v) for v in spacings[i])
        if dataset == "us":  # the scan without the square grid's margins: its physical aspect
            t, b, l, r = content_box(data["image"][i], native[i] if native is not None else None)
            img, truth, p = img[t:b, l:r], truth[t:b, l:r], p[t:b, l:r]
            return display(img, dataset), display(truth, dataset), display(p, dataset), (sy, sx)
        return display(img, dataset), display(truth, dataset), display(p, dataset), (sx, sy)  # MRI: transposed

    rows = len(picks) + (1 if fps else 0)
    views = {i: view(i) for i in [*(i for _, i in picks), *fps[:2]]}
    # rows as tall as the tallest panel's physical depth : width (an ultrasound scan is often wider than deep)
    ratio = max([v[0].shape[0] * v[3][0] / (v[0].shape[1] * v[3][1]) for v in views.values()] or [1.0])
    height = (3.0 * min(ratio, 2.0) + 0.35) * max(rows, 1) + 0.9
    fig, axes = plt.subplots(max(rows, 1), 2, figsize=(6.4, height), squeeze=False)
    for r, (name, i) in enumerate(picks):
        img, truth, p, sp = views[i]
        _draw(axes[r, 0], img, None, None, sp, colours)
        _draw(axes[r, 1], img, truth, p, sp, colours)
        axes[r, 0].set_title(f"{name}: image", fontsize=8)
        axes[r, 1].set_title(f"{name}: truth and prediction (Dice {float(slice_dice[i]):.2f})", fontsize=8)
    for c, i in enumerate(fps[:2]):
        img, truth, p, sp = views[i]
        _draw(axes[len(picks), c], img, truth, p, sp, colours)
        axes[len(picks), c].set_title(f"no mass: false positive ({int((p != 0).sum())} px predicted)", fontsize=8)
    for ax in axes.flat:
        if not ax.has_data():
            ax.axis("off")
    notes = []
    if not picks:
        notes.append("no test image with a defined Dice")
    if n_no_mass:
        shown = f"{min(len(fps), 2)} shown in the last row" if fps else "none shown"
        notes.append(f"{n_no_mass} image(s) without a mass (no Dice, never ranked): {len(fps)} with a predicted "
                     f"mass, {shown}")
    fig.suptitle(title, fontsize=10, wrap=True)
    handles = [Patch(facecolor=colours[c], edgecolor=colours[c], label=display_name(names[c])) for c in colours]
    handles += [Line2D([], [], color="0.25", lw=1.4, label=TRUTH_STYLE,
                       path_effects=[Stroke(linewidth=2.8, foreground="white"), Normal()]),
                Patch(facecolor="0.25", alpha=FILL_ALPHA, label=PRED_STYLE)]
    ncol = min(len(handles), 4)
    legend_in = 0.25 * -(-len(handles) // ncol) + 0.1  # inches of legend at the bottom
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    bottom = legend_in / height
    if notes:
        fig.text(0.5, bottom, "; ".join(notes), ha="center", va="bottom", fontsize=7, wrap=True)
        bottom += 0.3 / height
    fig.tight_layout(rect=(0, bottom, 1, 0.96))
    return fig


def overlay_figure(data: dict[str, np.ndarray], pred: np.ndarray, slice_dice: np.ndarray, out: Path, title: str,
                   dataset: str = "mri", class_names: list[str] | None = None, native: list | None = None) -> None:
    """Worst, median and best test slices by mean Dice, among those whose Dice is defined: the image, and the
    image with the prediction filled and the ground truth outlined in the class colours (:func:`class_colours`),
    drawn with the pixels' physical aspect; a legend names the classes (``class_names``, the experiment's keys, by
    display name; default the dataset's) and the two styles.

    Ultrasound images are shown without the square grid's margins (:func:`content_box`; ``native``: each slice's
    native (shape, spacing_mm), :func:`us_native_geometry`), depth downward. Images without a mass have no Dice
    and are never ranked: those with a predicted mass are shown in a last row ("no mass: false positive"), and a
    note on the figure counts them all."""
    _save(overlay_plot(data, pred, slice_dice, title, dataset, class_names, native), out)


def worklist_montage(images: np.ndarray, pred: np.ndarray, titles: list[str], dataset: str,
                     class_names: list[str], out: Path, title: str, columns: int = 4) -> None:
    """The slices a worklist suggests, best first: each image (the network's first channel, as the modality is
    read) with the current model's prediction filled in the class colours, titled with its rank, unit and score;
    a legend names the classes. Unannotated slices have no truth to outline."""
    from matplotlib.patches import Patch

    plt = _pyplot()
    n = len(images)
    cols = max(1, min(columns, n))
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 3.0 * rows + 0.8), squeeze=False)
    colours = class_colours(class_names)
    for i in range(n):
        ax = axes.flat[i]
        _draw(ax, display(np.asarray(images[i]), dataset), None, display(np.asarray(pred[i]), dataset), (1.0, 1.0),
              colours)
        ax.set_title(titles[i], fontsize=7)
    for ax in axes.flat[n:]:
        ax.axis("off")
    if not n:
        axes.flat[0].text(0.5, 0.5, "nothing to annotate: every slice is annotated", ha="center", va="center")
    handles = [Patch(facecolor=colours[c], alpha=FILL_ALPHA, label=f"{display_name(class_names[c])} (prediction)")
               for c in colours]
    fig.legend(handles=handles, loc="lower center", ncol=max(1, len(handles)), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=9, wrap=True)
    fig.tight_layout(rect=(0, 0.5 / (3.0 * rows + 0.8), 1, 0.95), h_pad=1.2)
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
