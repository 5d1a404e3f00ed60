"""Degree of background parenchymal enhancement (BPE): how strongly the BPE voxels enhance, next to how much of
the fibroglandular tissue they cover (the area fraction, :func:`breastseg.evaluation.statistics.bpe_fraction`).

Degree: the relative enhancement at the first post-contrast phase, ``RE = (S_post1 - S_pre) / S_pre`` per voxel,
over the voxels labelled BPE, from the converted phases on the pre-contrast grid (``sub.nii.gz`` = post1 - pre,
post1 resampled onto the pre grid when the grids differ, and ``pre.nii.gz``; in ``predict`` the same volumes made
from the DICOM study), never from the network's normalised inputs. Voxels whose pre-contrast signal is below
``pre_floor`` times the median pre-contrast signal of the fibroglandular tissue (labels 1 and 2 of the same label
map) are left out: there the ratio is noise. Reported: mean (the degree), median, standard deviation, the 10th,
25th, 75th and 90th percentiles and a histogram on fixed bin edges (with the counts below and above them).

Category: the mean RE against ``cutoffs`` (default 0.35, 0.55, 0.80: minimal, mild, moderate, marked; the
boundaries of the first-phase BPE enhancement ranges the synthetic cohort draws for the four BPE categories,
:data:`breastseg.synth.mri._RE1_BPE`). Combined category (``combine``): ``max``, the higher of the area and the
degree category (BPE that is wide *or* strong is called so); ``area`` or ``degree``, one of them alone. An
undefined component (no fibroglandular tissue; no usable BPE voxel) is left out; both undefined: none.

Settings: ``evaluation.bpe_degree`` of params.yaml over the schema's defaults (:func:`settings`); a trained
model carries them in its inference bundle, as it carries the area cut-offs.

Evaluation (:func:`breastseg.evaluation.degree.evaluate_degree`): per test patient, the degree over the *true* BPE voxels (the converted
``labels.nii.gz``) and over the *predicted* BPE voxels (the network's slices mapped back to the pre-contrast grid
by nearest neighbour, as ``predict`` maps them), on the same annotated slices; their difference over patients
(mean with a 95 % bootstrap interval, mean absolute difference, limits of agreement) and the agreement of the
degree and combined categories.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import EvaluationSettings, schema_defaults
from ..errors import InputError
from ..labels import BPE, FGT, NOT_ANNOTATED, category_name

PHASE = "post1"
DEFINITION = "(S_post1 - S_pre) / S_pre per BPE voxel, first post-contrast phase, pre-contrast grid"
COMBINE_RULES = ("max", "area", "degree")
QUANTILES = (10, 25, 75, 90)


# ------------------------------------------------------------------------------------------ settings


def settings(evaluation: EvaluationSettings, *, source: str | Path = "params.yaml") -> dict[str, Any]:
    """``evaluation.bpe_degree`` (:func:`breastseg.config.resolve_params` filled a partial block from the schema's
    defaults), checked: ascending cut-offs and bin edges; with ``combine: max``, as many degree as area cut-offs
    (the categories are compared level by level)."""
    block = evaluation.as_dict()
    return check_settings(block["bpe_degree"], block["bpe_cutoffs"], source)


def default_settings(area_cutoffs: Sequence[float] | None = None, *, source: str | Path = "params.yaml") -> dict[str, Any]:
    """The schema's ``evaluation.bpe_degree`` defaults, checked (for a model bundle from before the degree was
    recorded)."""
    evaluation = schema_defaults("evaluation")
    return check_settings(evaluation["bpe_degree"], area_cutoffs if area_cutoffs is not None
                          else evaluation["bpe_cutoffs"], source)


def check_settings(cfg: Mapping[str, Any], area_cutoffs: Sequence[float] | None, source: str | Path) -> dict[str, Any]:
    """The degree settings ``cfg`` as plain floats and lists, or one InputError naming the offending key."""
    key = "evaluation.bpe_degree"
    missing = [k for k in ("cutoffs", "combine", "pre_floor", "histogram_edges") if k not in cfg]
    if missing:
        raise InputError(source, f"key '{key}' lacks {', '.join(missing)}")
    cutoffs = [float(c) for c in cfg["cutoffs"]]
    edges = [float(e) for e in cfg["histogram_edges"]]
    if not cutoffs or any(b <= a for a, b in zip(cutoffs, cutoffs[1:])):
        raise InputError(source, f"key '{key}.cutoffs': must be strictly ascending, got {cutoffs}")
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise InputError(source, f"key '{key}.histogram_edges': need at least two strictly ascending edges, got {edges}")
    if cfg["combine"] not in COMBINE_RULES:
        raise InputError(source, f"key '{key}.combine': one of {', '.join(COMBINE_RULES)}, got {cfg['combine']!r}")
    floor = float(cfg["pre_floor"])
    if not 0.0 <= floor < 1.0:
        raise InputError(source, f"key '{key}.pre_floor': a fraction in [0, 1), got {floor}")
    if cfg["combine"] == "max" and area_cutoffs is not None and len(area_cutoffs) != len(cutoffs):
        raise InputError(source, f"key '{key}.cutoffs': combine 'max' compares the categories level by level and "
                                 f"needs as many cut-offs as evaluation.bpe_cutoffs ({len(area_cutoffs)}), "
                                 f"got {len(cutoffs)}")
    return {"cutoffs": cutoffs, "combine": str(cfg["combine"]), "pre_floor": floor, "histogram_edges": edges}


# ------------------------------------------------------------------------------------------ one label map


def _finite_or_none(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(float(v)) else None


def pre_threshold(pre_tissue: np.ndarray, floor: float) -> float:
    """``floor`` times the median pre-contrast signal of the tissue voxels (0 without tissue)."""
    owned = np.array(pre_tissue, dtype=np.float64)  # a copy, so the median may reorder it in place
    return float(floor * np.median(owned, overwrite_input=True)) if owned.size else 0.0


def edge_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(values, bins=edges)[0]`` for values within ``[edges[0], edges[-1]]``: bins ``[e_i, e_i+1)``, the
    last one closed; one binary search per value instead of numpy's sort (twice as fast on millions of voxels)."""
    if not values.size:
        return np.zeros(len(edges) - 1, int)
    idx = np.searchsorted(edges, values, side="right") - 1
    idx[idx == len(edges) - 1] = len(edges) - 2  # a value on the top edge belongs to the last bin
    return np.bincount(idx, minlength=len(edges) - 1)


def degree_stats(pre_bpe: np.ndarray, sub_bpe: np.ndarray, pre_tissue: np.ndarray, cfg: Mapping[str, Any]
                 ) -> dict[str, Any]:
    """RE summary of the BPE voxels given their pre-contrast signal and subtraction values (flat arrays) and the
    pre-contrast signal of the fibroglandular tissue they belong to (the floor's reference)."""
    pre_bpe = np.asarray(pre_bpe, dtype=np.float64).ravel()
    sub_bpe = np.asarray(sub_bpe, dtype=np.float64).ravel()
    threshold = pre_threshold(pre_tissue, float(cfg["pre_floor"]))
    ok = (pre_bpe > threshold) & (pre_bpe > 0) & np.isfinite(pre_bpe) & np.isfinite(sub_bpe)
    re = sub_bpe[ok] / pre_bpe[ok]
    edges = np.asarray(cfg["histogram_edges"], dtype=np.float64)
    inside = re[(re >= edges[0]) & (re <= edges[-1])]
    counts = edge_counts(inside, edges)
    below, above = int((re < edges[0]).sum()), int((re > edges[-1]).sum())
    mean = _finite_or_none(re.mean()) if re.size else None  # mean and std sum in the voxels' order: before any
    std = _finite_or_none(re.std(ddof=1)) if re.size >= 2 else None  # reordering
    median, quantiles = None, [None] * len(QUANTILES)
    if re.size:  # order statistics: the median's partition of ``re`` (in place) leaves less for the percentiles'
        median = _finite_or_none(np.median(re, overwrite_input=True))
        quantiles = [_finite_or_none(v) for v in np.percentile(re, QUANTILES, overwrite_input=True)]
    out: dict[str, Any] = {
        "phase": PHASE,
        "definition": DEFINITION,
        "n_voxels": int(re.size),
        "n_excluded_low_pre": int(pre_bpe.size - re.size),
        "pre_threshold": threshold,
        "mean": mean,
        "median": median,
        "std": std,
        "quantiles": {f"p{q}": v for q, v in zip(QUANTILES, quantiles)},
        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts],
                      "below": below, "above": above},
    }
    return out


def labels_degree(labels: np.ndarray, pre: np.ndarray, sub: np.ndarray, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`degree_stats` of the BPE voxels of a label volume (0/1/2, 255 ignored) on the grid of ``pre`` and
    ``sub``."""
    labels = np.asarray(labels)
    if labels.shape != np.shape(pre) or labels.shape != np.shape(sub):
        raise ValueError(f"labels {labels.shape}, pre {np.shape(pre)} and sub {np.shape(sub)} differ in shape")
    # flat C-order copies first: selecting from a contiguous 1-D array is several times faster than a boolean index
    # of a Fortran-ordered volume, and the voxels come out in the same (C) order, which the mean and std sum in
    lab = np.ascontiguousarray(labels).ravel()
    pre_c, sub_c = np.ascontiguousarray(pre).ravel(), np.ascontiguousarray(sub).ravel()
    bpe = lab == BPE
    tissue = bpe | (lab == FGT)
    return degree_stats(np.compress(bpe, pre_c), np.compress(bpe, sub_c), np.compress(tissue, pre_c), cfg)


def category(value: float | None, cutoffs: Sequence[float]) -> int | None:
    """Category 0..len(cutoffs) of a mean RE (a value at a cut-off goes to the higher one); None if undefined."""
    if value is None or not math.isfinite(float(value)):
        return None
    return int(np.searchsorted(np.asarray(cutoffs, dtype=float), float(value), side="right"))


def combined(area_index: int | None, degree_index: int | None, rule: str) -> int | None:
    """The combined category of an area and a degree category under ``rule`` (see the module docstring)."""
    if rule == "area":
        return area_index
    if rule == "degree":
        return degree_index
    if rule != "max":
        raise ValueError(f"unknown combine rule {rule!r}")
    defined = [i for i in (area_index, degree_index) if i is not None]
    return max(defined) if defined else None


# ------------------------------------------------------------------------------------------ predict


def first_post_subtraction(study: Any, members: list[Any], root: Path) -> np.ndarray:
    """post1 - pre on the pre-contrast grid of a study read by :func:`breastseg.inference.preprocess.load_mri_study`
    (its ``sub`` volume when the model used one, else made as ``convert`` makes it)."""
    if "sub" in study.volumes:
        return study.volumes["sub"]
    from ..dicom.dce import select_dce_phases, subtraction_on_pre_grid
    from ..dicom.pixels import read_stack

    phases, _ = select_dce_phases(members, root)
    post1_data, _ = read_stack(phases[1])
    return subtraction_on_pre_grid(study.pre, study.volumes["pre"], phases[1], post1_data)


def degree_readout(labels: np.ndarray, pre: np.ndarray, sub: np.ndarray, cfg: Mapping[str, Any],
                   area_index: int | None, n_area_categories: int) -> dict[str, Any]:
    """The degree fields of ``readout.json``: ``bpe_degree`` (RE summary, category) and the combined category."""
    stats = labels_degree(labels, pre, sub, cfg)
    cutoffs = list(cfg["cutoffs"])
    idx = category(stats["mean"], cutoffs)
    stats.update(cutoffs=cutoffs, pre_floor=float(cfg["pre_floor"]), category_index=idx,
                 category=None if idx is None else category_name(idx, len(cutoffs) + 1))
    if stats["n_voxels"] == 0:
        stats["note"] = "no BPE voxel with a usable pre-contrast signal: degree undefined"
    both = combined(area_index, idx, cfg["combine"])
    n = n_area_categories if cfg["combine"] != "degree" else len(cutoffs) + 1
    return {
        "bpe_degree": stats,
        "bpe_combined_rule": cfg["combine"],
        "bpe_combined_category_index": both,
        "bpe_combined_category": None if both is None else category_name(both, n),
    }


# ------------------------------------------------------------------------------------------ evaluation


def _load(path: Path) -> np.ndarray:
    import nibabel as nib

    if not path.exists():
        raise InputError(path, "missing (was the patient converted?)")
    return np.asarray(nib.load(str(path)).dataobj)


def patient_degrees(folder: Path, cases: Sequence[str], index: Sequence[int], pred: np.ndarray,
                    cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Degree over the true and over the predicted BPE voxels of one patient's evaluated slices.

    ``folder``: the patient's converted studies (``data/interim/mri/<patient>``); ``cases``, ``index``: each
    evaluated slice's study key and slice index; ``pred``: its predicted labels at the network's size, mapped back
    to the pre-contrast grid by nearest neighbour (as ``predict`` does). Voxels are pooled over the slices."""
    from ..data.slices import resize_to

    parts: dict[str, dict[str, list[np.ndarray]]] = {w: {"pre": [], "sub": [], "tissue": []} for w in ("true", "pred")}
    cases, index = np.asarray(cases).astype(str), np.asarray(index, dtype=int)
    for key in sorted(set(cases.tolist())):
        sdir = Path(folder) / key
        pre, sub, lab = _load(sdir / "pre.nii.gz"), _load(sdir / "sub.nii.gz"), _load(sdir / "labels.nii.gz")
        for i in np.flatnonzero(cases == key):
            k = int(index[i])
            p, s, t = pre[:, :, k].astype(np.float64), sub[:, :, k].astype(np.float64), lab[:, :, k]
            q = pred[i] if pred[i].shape == t.shape else resize_to(pred[i], t.shape, 0)
            valid = t != NOT_ANNOTATED
            for which, m in (("true", t), ("pred", q)):
                bpe = (m == BPE) & valid
                parts[which]["pre"].append(p[bpe])
                parts[which]["sub"].append(s[bpe])
                parts[which]["tissue"].append(p[((m == FGT) | (m == BPE)) & valid])
    out = []
    for which in ("true", "pred"):
        cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts[which].items()}
        out.append(degree_stats(cat["pre"], cat["sub"], cat["tissue"], cfg))
    return out[0], out[1]
