"""From network inputs to label maps on each image's native grid: the one path evaluation, the champion gate and
predict share.

1. :func:`probabilities`: the softmax of the network, averaged over the mirrorings training allowed
   (``train.augment.mirror``; every combination of the allowed axes, as nnU-Net's test-time mirroring) when the
   model's ``inference.tta`` is on;
2. :func:`postprocess`, on the network grid: keep each foreground class's largest connected component
   (``keep_largest``), drop components smaller than a share of the image (``min_component``), and the image-level
   decision: an image whose predicted foreground covers less than ``empty_below`` of it comes back empty;
3. :func:`breastseg.data.slices.to_native`: back to the image's native grid (the inverse of preprocessing).

The post-processing settings left ``auto`` in params are chosen after training on the validation images by
:func:`choose_postprocessing` (nnU-Net's way: a step is kept only when it improves the validation score) and
recorded in the model bundle, so evaluation and predict apply exactly the same steps.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..config import Experiment, InferenceSettings
from ..labels import NOT_ANNOTATED

#: Array axes of a batch (N, C, H, W) each mirroring name flips.
MIRROR_DIMS = {"lr": -1, "ud": -2}
#: Candidates tried by :func:`choose_postprocessing`, the first being "off" (ties keep the earlier one).
CANDIDATES = {
    "keep_largest": (False, True),
    "min_component": (0.0, 0.0005, 0.001, 0.002, 0.005, 0.01),
    "empty_below": (0.0, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.04),
}


@dataclass
class Segmentation:
    """Labels of a set of images: on the network grid after post-processing (``grid``, (N, S, S) uint8), and on
    each image's native grid (``native``, a list of 2-D uint8 arrays)."""

    grid: np.ndarray
    native: list[np.ndarray]


def mirror_combinations(axes: Sequence[str]) -> list[tuple[int, ...]]:
    """Every subset of the mirrored dims (the identity first): nnU-Net's test-time mirroring."""
    dims = [MIRROR_DIMS[a] for a in axes]
    return [c for r in range(len(dims) + 1) for c in itertools.combinations(dims, r)]


def probabilities(net: Any, images: np.ndarray, mirror: Sequence[str] = (), batch_size: int = 16) -> np.ndarray:
    """Class probabilities (N, C, S, S) float32 of (N, C_in, S, S) images: softmax, averaged over the mirrorings of
    ``mirror`` (each flipped back before averaging)."""
    import torch

    combos = mirror_combinations(mirror)
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size], dtype=np.float32))
            acc = None
            for dims in combos:
                xi = x.flip(dims) if dims else x
                p = net(xi).float().softmax(1)
                p = p.flip(dims) if dims else p
                acc = p if acc is None else acc + p
            out.append((acc / len(combos)).numpy())
    if not out:
        return np.zeros((0, 0) + tuple(images.shape[2:]), np.float32)
    return np.concatenate(out)


def argmax_labels(probs: np.ndarray) -> np.ndarray:
    """(N, S, S) uint8 argmax over classes (the first maximum wins)."""
    from .bundle import label_map

    return label_map(probs)


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy import ndimage

    lab, n = ndimage.label(mask)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    return lab, sizes


def postprocess(labels: np.ndarray, classes: int, *, keep_largest: bool = False, min_component: float = 0.0,
                empty_below: float = 0.0) -> np.ndarray:
    """One (S, S) label map after nnU-Net-style post-processing (see the module doc); shares are of the S x S
    grid. A pixel removed from its class becomes background."""
    out = np.array(labels, dtype=np.uint8, copy=True)
    area = out.size
    if keep_largest or min_component > 0:
        for c in range(1, classes):
            mask = out == c
            if not mask.any():
                continue
            lab, sizes = _components(mask)
            keep = np.zeros(len(sizes), bool)
            fg = sizes[1:]
            if keep_largest:
                keep[1 + int(np.argmax(fg))] = True
            else:
                keep[1:] = True
            if min_component > 0:
                keep[1:] &= fg >= min_component * area
            out[mask & ~keep[lab]] = 0
    if empty_below > 0 and np.count_nonzero(out) < empty_below * area:
        out[:] = 0
    return out


def settings_of(inference: InferenceSettings) -> dict[str, Any]:
    """The post-processing keyword arguments of concrete (bundle) inference settings."""
    return {"keep_largest": bool(inference.keep_largest), "min_component": float(inference.min_component),
            "empty_below": float(inference.empty_below)}


def segment_probabilities(exp: Experiment, probs: np.ndarray, shapes: Sequence[Sequence[int]],
                          spacings: Sequence[Sequence[float]], post: dict[str, Any]) -> Segmentation:
    """Post-process probabilities on the network grid and map each image back to its native grid."""
    from ..data.slices import to_native

    grid = argmax_labels(probs) if len(probs) else np.zeros((0, exp.image_size, exp.image_size), np.uint8)
    grid = np.stack([postprocess(g, exp.classes, **post) for g in grid]) if len(grid) else grid
    native = [to_native(g, (int(s[0]), int(s[1])), (float(d[0]), float(d[1])), exp)
              for g, s, d in zip(grid, shapes, spacings)]
    return Segmentation(grid, native)


def segment(model: Any, images: np.ndarray, shapes: Sequence[Sequence[int]], spacings: Sequence[Sequence[float]],
            batch_size: int = 16) -> Segmentation:
    """Segment network inputs with a loaded model (:class:`breastseg.models.bundle.LoadedModel`) exactly as its
    bundle says: test-time mirroring, post-processing, the way back to each image's native ``shapes`` (with its
    pixel ``spacings``)."""
    exp = model.experiment
    inf = exp.inference
    probs = probabilities(model.net, images, inf.mirror if inf.tta else (), batch_size)
    return segment_probabilities(exp, probs, shapes, spacings, settings_of(inf))


# ------------------------------------------------------------------------------------------ choosing on validation


def image_scores(pred: Sequence[np.ndarray], truth: Sequence[np.ndarray], classes: int) -> np.ndarray:
    """Per image, the mean over foreground classes of Dice on annotated pixels, where a class absent from both the
    truth and the prediction scores 1 (an image without a mass predicted empty is right) and a class predicted on
    an image without it scores 0: the quantity :func:`choose_postprocessing` maximises."""
    out = np.zeros(len(pred))
    for i, (p, t) in enumerate(zip(pred, truth)):
        valid = t != NOT_ANNOTATED
        vals = []
        for c in range(1, classes):
            pc, tc = (p == c) & valid, (t == c) & valid
            tp, den = np.count_nonzero(pc & tc), np.count_nonzero(pc) + np.count_nonzero(tc)
            vals.append(1.0 if den == 0 else 2 * tp / den)
        out[i] = float(np.mean(vals))
    return out


def choose_postprocessing(exp: Experiment, probs: np.ndarray, truth: Sequence[np.ndarray],
                          shapes: Sequence[Sequence[int]], spacings: Sequence[Sequence[float]],
                          requested: InferenceSettings) -> dict[str, Any]:
    """The post-processing settings for the validation images' probabilities ``probs`` and native ``truth``:
    fixed values of ``requested`` are kept; each ``auto`` one is chosen in turn (keep_largest, min_component,
    empty_below; the others as chosen so far) as the candidate of :data:`CANDIDATES` with the highest mean
    :func:`image_scores`, the simpler one on a tie. Returns the settings and the scores (``validation``)."""
    chosen = {k: (CANDIDATES[k][0] if getattr(requested, k) == "auto" else getattr(requested, k))
              for k in CANDIDATES}
    chosen = {"keep_largest": bool(chosen["keep_largest"]), "min_component": float(chosen["min_component"]),
              "empty_below": float(chosen["empty_below"])}

    def score(post: dict[str, Any]) -> float:
        seg = segment_probabilities(exp, probs, shapes, spacings, post)
        return float(image_scores(seg.native, truth, exp.classes).mean()) if len(truth) else 0.0

    baseline = score(chosen)
    tried: dict[str, dict[str, float]] = {}
    best = baseline
    for key in CANDIDATES:
        if getattr(requested, key) != "auto":
            continue
        tried[key] = {}
        for value in CANDIDATES[key]:
            trial = {**chosen, key: value}
            s = best if trial == chosen else score(trial)
            tried[key][str(value)] = round(s, 6)
            if s > best + 1e-9:
                best, chosen = s, trial
    return {**chosen, "validation": {"objective": "mean per-image Dice, an empty image predicted empty = 1",
                                     "n_images": len(truth), "without": round(baseline, 6),
                                     "with": round(best, 6), "tried": tried}}
