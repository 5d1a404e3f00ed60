"""Evaluation on the test patients only: metrics per slice and per patient, clinical read-out, figures.

Per patient, Dice, precision and recall pool the pixels of all the patient's annotated slices (ultrasound: of
its images with a mass; images without one are reported apart, as the image-level false-positive rate); HD95
and ASD are the mean over the patient's slices where they are defined, in millimetres (``hd95_mm``) from each
slice's physical pixel spacing, or in pixels of the source image (``hd95_px``) where the source stores no
spacing. Summary statistics (mean, median, std, 95 % bootstrap CI) are over patients; beside them, the published
conventions: Dice per slice (MRI) and per mass (ultrasound). The empty-mask conventions are those of
:mod:`breastseg.evaluation.metrics`, whose :func:`~breastseg.evaluation.metrics.dice_figures` validation uses
too. Where the split could not tell women apart (:func:`split_check`), every output says so.

Two files per experiment: ``metrics/<experiment>.json`` holds about ten flat numeric headline figures
(:func:`headline`: what ``dvc metrics diff`` and ``dvc exp show`` compare), and
``results/<experiment>/evaluation.json`` everything else: per-class and per-slice statistics with bootstrap
CIs, the BPE read-out, the conventions, the test patients, the model version and the software/hardware
environment (:mod:`breastseg.environment`) the numbers were computed on.
"""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from .. import tracking
from ..config import EvaluationSettings, Experiment, Settings, TrackingSettings
from ..errors import InputError
from ..io import atomic_path, write_json
from ..labels import BPE_CUTOFFS, NOT_ANNOTATED, bpe_category
from ..models.bundle import load_model, predict_slices
from .metrics import CONVENTIONS, SPLIT_BY_IMAGE_WARNING, case_metrics, dice_figures, overlap_counts
from ..paths import interim_beside

log = logging.getLogger(__name__)
DISTANCES = ("hd95", "asd")
OVERLAPS = ("dice", "precision", "recall")


def _nan_to_none(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def pooled_overlap(pred: np.ndarray, label: np.ndarray, c: int) -> dict[str, float]:
    """Dice, precision and recall of class ``c`` over all annotated pixels of a stack of slices."""
    valid = label != NOT_ANNOTATED
    p, t = (pred == c) & valid, (label == c) & valid
    tp, fp, fn = int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())
    return {"dice": 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else np.nan,
            "precision": tp / (tp + fp) if (tp + fp) else np.nan,
            "recall": tp / (tp + fn) if (tp + fn) else np.nan}


#: Ultrasound source formats whose unit, without ``cohort.patient_map``, is not a woman, with the number of
#: scans one unit converts to: a BUSI image (1), an OASBUD record, i.e. one lesion in its two views (2).
IMAGE_UNITS = {"busi-png": 1, "oasbud-mat": 2}


def split_check(patient_map: str | None, dataset: str, split_file: Path, interim_dir: Path) -> dict[str, Any]:
    """Could the split tell women apart? ``by_image`` True when ``cohort.patient_map`` is not set and some patient
    of ``split_file`` is one BUSI image or one OASBUD record (lesion), as its converted scans say
    (``<interim_dir>/<patient>/*/meta.json``: ``source_format`` and the number of scans).

    Read from what conversion wrote, not the raw cohort: no key, no raw names needed. A patient folder
    (``us/<patient>/``) holding a single BUSI image or OASBUD record looks the same and is flagged too; patients
    whose converted scans are missing are not judged (``checked`` counts those that were).
    """
    out: dict[str, Any] = {"by_image": False, "patients": 0, "checked": 0, "warning": None, "reason": None}
    if dataset != "us" or patient_map:
        return out
    from ..data.split import read_split

    for pid in read_split(split_file):
        metas = sorted(Path(interim_dir, pid).glob("*/meta.json"))
        if not metas:
            continue
        out["checked"] += 1
        formats = [json.loads(m.read_text()).get("source_format") for m in metas]
        if len(set(formats)) == 1 and formats[0] in IMAGE_UNITS and len(formats) <= IMAGE_UNITS[formats[0]]:
            out["patients"] += 1
    if out["patients"]:
        out.update(by_image=True, warning=SPLIT_BY_IMAGE_WARNING,
                   reason=f"cohort.patient_map is not set and {out['patients']} of {out['checked']} patients are "
                          "single BUSI images or single OASBUD lesions (a CSV id,patient names the women)")
    return out


def split_tags(check: dict[str, Any]) -> dict[str, str]:
    """MLflow tags of :func:`split_check`: ``breastseg.split_by_image`` (true/false) and the warning."""
    tags = {"breastseg.split_by_image": str(bool(check["by_image"])).lower()}
    if check["by_image"]:
        tags["breastseg.split_warning"] = SPLIT_BY_IMAGE_WARNING
    return tags


def image_counts(pred, label, classes: int) -> np.ndarray:
    """(N, classes - 1, 3) tp/fp/fn per image of two sequences of label maps (each pair of one shape; images may
    differ in shape, as on their native grids)."""
    if len(pred) == 0:
        return np.zeros((0, classes - 1, 3), np.int64)
    return np.concatenate([overlap_counts(np.asarray(p)[None], np.asarray(t)[None], classes)
                           for p, t in zip(pred, label)])


def native_view(data: dict[str, Any]) -> dict[str, Any]:
    """Prepared slices (:func:`breastseg.data.slices.load_subset`) with their labels and pixel spacing on each
    image's native grid, where evaluation scores."""
    return {**data, "label": data["native_label"], "spacing_mm": data["native_spacing_mm"]}


def segment_subset(model: Any, exp: Experiment, data: dict[str, Any]) -> Any:
    """:func:`breastseg.models.segment.segment` of prepared slices with ``model`` (a model logged without a bundle:
    as ``exp``, one forward pass and nothing after it)."""
    from ..data.slices import to_native
    from ..models.segment import Segmentation, segment

    if model.config:
        return segment(model, data["image"], data["native_shape"], data["native_spacing_mm"])
    grid = predict_slices(model, data["image"])
    return Segmentation(grid, [to_native(g, tuple(s), tuple(d), exp) for g, s, d in
                               zip(grid, data["native_shape"], data["native_spacing_mm"])])


def network_grid_figures(exp: Experiment, data: dict[str, Any], grid: np.ndarray) -> dict[str, Any]:
    """Dice on the network's square grid (the labels as prepared for training): beside the native-grid figures,
    named as such; not comparable with published Dice."""
    figs = dice_figures(image_counts(grid, data["label"], exp.classes), data["patient"],
                        no_mass_apart=exp.dataset == "us")
    return {"dice_mean": _nan_to_none(figs["dice_mean"]),
            "definition": "Dice on the network's square grid (image_size), before mapping back to each image"}


def score(exp: Experiment, data: dict[str, np.ndarray], pred, *, cutoffs=BPE_CUTOFFS,
          seed: int = 0) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Per-slice rows, per-patient rows and the summary (``results/<experiment>/evaluation.json``; its
    headline figures, :func:`headline`, go to ``metrics/<experiment>.json``). ``pred`` and ``data["label"]``:
    one label map per image (the native grids: :func:`native_view`), ``data["spacing_mm"]`` their pixel spacing.

    The champion gate scores its validation patients with this same function (:mod:`breastseg.registry`)."""
    from . import statistics as st

    names = exp.class_names
    classes = range(1, exp.classes)
    known = np.asarray(data.get("spacing_known", np.ones(len(pred), bool)), dtype=bool)
    # Distances are in mm where the pixel spacing is known, in source-image pixels where it is not; never mixed.
    units = [u for u, present in (("mm", known.any()), ("px", (~known).any())) if present] or ["mm"]
    dist_keys = [f"{k}_{u}" for k in DISTANCES for u in units]
    slice_rows = []
    for i in range(len(pred)):
        m = case_metrics(pred[i], data["label"][i], exp.classes, tuple(float(s) for s in data["spacing_mm"][i]))
        unit = "mm" if known[i] else "px"
        slice_rows.append({"patient": str(data["patient"][i]), "case": str(data["case"][i]),
                           "slice": int(data["index"][i]),
                           **{f"{k}_{names[c]}": m[f"{k}_{c}"] for c in classes for k in OVERLAPS},
                           **{f"{k}_{u}_{names[c]}": m[f"{k}_{c}"] if u == unit else np.nan
                              for c in classes for k in DISTANCES for u in units}})
    # Dice, precision and recall from tp/fp/fn counts per image: the figures validation computes too
    # (metrics.dice_figures); ultrasound images without a mass are reported apart, never scored as Dice 0.
    no_mass_apart = exp.dataset == "us"
    figs = dice_figures(image_counts(pred, data["label"], exp.classes), data["patient"],
                        no_mass_apart=no_mass_apart)
    scored = figs["scored"]
    if no_mass_apart:
        for i, r in enumerate(slice_rows):
            r["mass"] = int(scored[i])
    patients = figs["patients"]
    patient_rows = []
    for j, pid in enumerate(patients):
        idx = np.flatnonzero(data["patient"] == pid)
        row: dict[str, Any] = {"patient": pid, "slices": len(idx)}
        if no_mass_apart:
            row["mass_images"] = int(scored[idx].sum())
        for c in classes:
            tp, fp, fn = (int(v) for v in figs["patient_counts"][j, c - 1])
            row[f"dice_{names[c]}"] = float(figs["patient_dice"][j, c - 1])
            row[f"precision_{names[c]}"] = tp / (tp + fp) if (tp + fp) else np.nan
            row[f"recall_{names[c]}"] = tp / (tp + fn) if (tp + fn) else np.nan
            for k in dist_keys:
                vals = np.array([slice_rows[i][f"{k}_{names[c]}"] for i in idx if scored[i]], dtype=float)
                row[f"{k}_{names[c]}"] = float(np.nanmean(vals)) if np.isfinite(vals).any() else np.nan
        if exp.dataset == "mri":
            truth = np.concatenate([np.ravel(data["label"][i]) for i in idx])
            masked_pred = np.where(truth == NOT_ANNOTATED, NOT_ANNOTATED,
                                   np.concatenate([np.ravel(pred[i]) for i in idx]))
            ft, fp = st.bpe_fraction(truth), st.bpe_fraction(masked_pred)
            row.update(bpe_fraction_true=ft, bpe_fraction_pred=fp,
                       bpe_category_true=None if ft is None else bpe_category(ft, cutoffs),
                       bpe_category_pred=None if fp is None else bpe_category(fp, cutoffs))
        patient_rows.append(row)

    per_patient = {names[c]: {k: st.summarize([r[f"{k}_{names[c]}"] for r in patient_rows], seed=seed)
                              for k in (*OVERLAPS, *dist_keys)} for c in classes}
    per_slice = {names[c]: {"dice": st.summarize(figs["image_dice"][scored, c - 1], seed=seed)} for c in classes}
    by_class = {names[c]: _nan_to_none(figs["class_mean"][c - 1]) for c in classes}
    unit = "mass" if no_mass_apart else "slice"
    per_image = {
        "unit": unit,
        "definition": CONVENTIONS["per_image"],
        "mean": _nan_to_none(figs["image_mean_over_classes"]),
        "median": _nan_to_none(figs["image_median"]),
        "by_class": {names[c]: _nan_to_none(figs["image_class_mean"][c - 1]) for c in classes},
        "summary": st.summarize(figs["image_mean"][scored], seed=seed),
    }
    summary: dict[str, Any] = {
        "dice_mean": _nan_to_none(figs["dice_mean"]),
        "dice": by_class,
        # each patient's mean Dice over its defined foreground classes (the per-patient figure the comparisons use)
        "dice_patient_mean": st.summarize(figs["patient_mean"], seed=seed),
        f"dice_per_{unit}": per_image,
        # the papers' conventions (MRI: per slice; ultrasound: per mass) beside ours (per patient)
        "conventions_side_by_side": {
            "per_patient": {"mean": _nan_to_none(figs["dice_mean"]), "median": _nan_to_none(figs["dice_median"]),
                            "n": len(patients)},
            f"per_{unit}": {"mean": per_image["mean"], "median": per_image["median"], "n": int(scored.sum())},
        },
        "per_patient": per_patient,
        "per_slice": per_slice,
        "distance_units": {u: {"mm": "millimetres (the images store their pixel spacing)",
                               "px": "pixels of the source image (its file stores no pixel spacing)"}[u]
                           for u in units},
        "n_patients": len(patients),
        "n_slices": len(slice_rows),
        "test_patients": patients,
        "conventions": CONVENTIONS,
    }
    if no_mass_apart:
        nm = figs["no_mass"]
        summary["no_mass_images"] = {
            "n": nm["n"], "with_predicted_mass": nm["with_prediction"], "fp_rate": _nan_to_none(nm["fp_rate"]),
            "fp_rate_ci95": [_nan_to_none(v) for v in st.bootstrap_ci(nm["flagged"].astype(float), seed=seed)],
            "mass_images": int(scored.sum()),
            "definition": CONVENTIONS["no_mass_images"],
        }
    if exp.dataset == "mri":
        pairs = [(r["bpe_category_true"], r["bpe_category_pred"]) for r in patient_rows
                 if r["bpe_category_true"] is not None and r["bpe_category_pred"] is not None]
        errors = [abs(r["bpe_fraction_true"] - r["bpe_fraction_pred"]) for r in patient_rows
                  if r["bpe_fraction_true"] is not None and r["bpe_fraction_pred"] is not None]
        truth_c, pred_c = [a for a, _ in pairs], [b for _, b in pairs]
        summary["bpe"] = {
            "cutoffs": list(cutoffs),
            "n": len(pairs),
            "kappa_linear": st.weighted_kappa(truth_c, pred_c, len(cutoffs) + 1, weights="linear"),
            "confusion_matrix": st.confusion_matrix(truth_c, pred_c, len(cutoffs) + 1),
            "fraction_mae": float(np.mean(errors)) if errors else None,
            "category_accuracy": float(np.mean([a == b for a, b in pairs])) if pairs else None,
        }
    return slice_rows, patient_rows, summary


def _r4(v: Any) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 4)


def figures_of(summary: dict[str, Any]) -> dict[str, float | int | None]:
    """Every flat figure of a summary (numbers only, floats to 4 decimals): what the champion gate and the mean
    over seeds read, and where :func:`headline` takes the DVC metrics from.

    ``dice_mean`` (mean over foreground classes of the mean over patients), ``dice_<class>``, ``dice_median``
    (median over patients of each patient's mean Dice), ``hd95_<unit>_median_<class>`` (mm, or px where the
    images store no spacing), ``n_patients``, ``n_slices``, ``distances_in_px`` (0/1) and, for MRI,
    ``bpe_kappa_linear``, ``bpe_fraction_mae`` and ``bpe_degree_mae`` (mean absolute difference of the mean
    relative enhancement over the predicted vs the true BPE, :mod:`breastseg.mri.bpe_degree`). Undefined values
    are null.

    The published conventions beside ours: ``dice_per_slice_mean`` (MRI: mean over slices) or
    ``dice_per_mass_mean`` and ``dice_per_mass_median`` (ultrasound: over the images with a mass), and for
    ultrasound ``no_mass_fp_rate`` (share of the images without a mass that have any predicted mass pixel; null
    when there are none). ``split_by_image`` (0/1): the split could not tell women apart (:func:`split_check`).
    """
    flat: dict[str, float | int | None] = {"dice_mean": _r4(summary["dice_mean"])}
    for cls, v in summary["dice"].items():
        flat[f"dice_{cls}"] = _r4(v)
    flat["dice_median"] = _r4((summary.get("dice_patient_mean") or {}).get("median"))
    for cls, stats in summary["per_patient"].items():
        for unit in ("mm", "px"):
            if f"hd95_{unit}" in stats:
                flat[f"hd95_{unit}_median_{cls}"] = _r4(stats[f"hd95_{unit}"]["median"])
    flat["n_patients"] = int(summary["n_patients"])
    flat["n_slices"] = int(summary["n_slices"])
    flat["distances_in_px"] = int("px" in (summary.get("distance_units") or {}))
    if "dice_per_slice" in summary:
        flat["dice_per_slice_mean"] = _r4(summary["dice_per_slice"]["mean"])
    if "dice_per_mass" in summary:
        flat["dice_per_mass_mean"] = _r4(summary["dice_per_mass"]["mean"])
        flat["dice_per_mass_median"] = _r4(summary["dice_per_mass"]["median"])
        flat["no_mass_fp_rate"] = _r4((summary.get("no_mass_images") or {}).get("fp_rate"))
    flat["split_by_image"] = int(bool((summary.get("split") or {}).get("by_image")))
    if "bpe" in summary:
        flat["bpe_kappa_linear"] = _r4(summary["bpe"]["kappa_linear"])
        flat["bpe_fraction_mae"] = _r4(summary["bpe"]["fraction_mae"])
    if "bpe_degree" in summary:
        flat["bpe_degree_mae"] = _r4(summary["bpe_degree"]["mae"])
    return flat


#: The DVC headline: few and short enough that ``dvc metrics show`` over all experiments fits 160 columns.
HEADLINE_HELP = {
    "dice_mean": "mean over foreground classes of the mean Dice over patients (ours)",
    "dice_median": "median over patients of each patient's mean Dice",
    "dice_<class>": "mean Dice over patients, per foreground class",
    "dice_per_image": "the published convention: mean Dice per slice (MRI) or per image with a mass (ultrasound)",
    "hd95_mm / hd95_px": "mean over classes of the median HD95 over patients (px: the images store no spacing)",
    "n_patients": "test patients",
    "split_by_image": "1: the split could not tell women apart (results may be optimistic)",
    "no_mass_fp_rate": "only where test images without a mass exist: share with any predicted mass pixel",
}


def headline(summary: dict[str, Any] | None = None, *, full: dict[str, Any] | None = None
             ) -> dict[str, float | int | None]:
    """``metrics/<experiment>.json``: the headline figures of :data:`HEADLINE_HELP`, taken from ``full`` (the
    figures of :func:`figures_of`, e.g. their mean over seeds) or from ``summary``.

    Everything else (per-class distances, BPE read-outs, counts, the per-seed figures) stays in
    ``results/<experiment>/evaluation.json``."""
    full = full if full is not None else figures_of(summary)
    flat: dict[str, float | int | None] = {"dice_mean": full["dice_mean"], "dice_median": full.get("dice_median")}
    flat.update({k: v for k, v in full.items() if k.startswith("dice_") and k.count("_") == 1 and k != "dice_mean"
                 and k != "dice_median"})
    flat["dice_per_image"] = full.get("dice_per_slice_mean", full.get("dice_per_mass_mean"))
    for unit in ("mm", "px"):
        hd = [v for k, v in full.items() if k.startswith(f"hd95_{unit}_median_") and v is not None]
        if hd:
            flat[f"hd95_{unit}"] = round(float(np.mean(hd)), 2)
    flat["n_patients"] = full["n_patients"]
    flat["split_by_image"] = full["split_by_image"]
    if full.get("no_mass_fp_rate") is not None:
        flat["no_mass_fp_rate"] = full["no_mass_fp_rate"]
    return flat



def evaluate_model(exp: Experiment, evaluation: EvaluationSettings, stores: TrackingSettings, model_uri: str,
                   split_file: Path, processed_dir: Path, subset: str = "test"):
    """Score ``model_uri`` on the ``subset`` patients of ``split_file`` (the test patients unless told otherwise)
    with evaluation's conventions; a ``models:/`` URI resolves in ``stores``: (slice rows, patient rows, summary,
    data, pred)."""
    from ..data.slices import load_subset

    data = load_subset(processed_dir, split_file, subset)
    if not data:
        raise InputError(split_file, f"no {subset} patients")
    # models this pipeline registered: the inference bundle, else (older versions) the pickled MLflow model, from
    # the store the params name (a models:/ URI is never resolved against a default store)
    tracking.configure(stores)
    seg = segment_subset(load_model(model_uri, allow_pickle=True), exp, data)
    native = native_view(data)
    rows, patients, summary = score(exp, native, seg.native, cutoffs=tuple(evaluation.bpe_cutoffs),
                                    seed=int(evaluation.seed))
    summary["network_grid"] = network_grid_figures(exp, data, seg.grid)
    return rows, patients, summary, data, seg


def write_csv(rows: list[dict], out: Path) -> None:
    with atomic_path(out) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["patient"])
            w.writeheader()
            w.writerows({k: ("" if v is None or (isinstance(v, float) and not np.isfinite(v)) else v)
                         for k, v in r.items()} for r in rows)


def seeds_summary(first_seed: int | None, first: dict[str, Any], others: list[Path]) -> dict[str, Any]:
    """The headline figures of every seed's evaluation and their mean over seeds (numbers only; a figure
    undefined in some seed is averaged over the seeds that define it)."""
    per_seed = {str(first_seed): first}
    for path in others:
        doc = json.loads(Path(path).read_text())
        per_seed[str(doc.get("seed", path.parent.name))] = figures_of(doc)
    keys = [k for k in first if isinstance(first[k], (int, float)) or first[k] is None]
    mean: dict[str, Any] = {}
    for k in keys:
        vals = [v[k] for v in per_seed.values() if isinstance(v.get(k), (int, float))]
        same = all(v.get(k) == first[k] for v in per_seed.values())
        mean[k] = first[k] if same else (_r4(float(np.mean(vals))) if vals else None)  # counts and flags agree
    return {"seeds": [int(x) if str(x).isdigit() else x for x in per_seed], "per_seed": per_seed, "mean": mean,
            "n_seeds": len(per_seed)}


def evaluate_experiment(s: Settings, name: str, *, model_json: Path, split_file: Path, processed_dir: Path,
                        metrics_json: Path, out_dir: Path, dice_plot_csv: Path | None = None,
                        evaluation_json: Path | None = None, interim_dir: Path | None = None,
                        seed_evaluations: list[Path] | None = None, with_figures: bool = True) -> dict[str, Any]:
    """Evaluate the challenger written by ``train`` on the test patients; log everything to an MLflow evaluation
    run. Writes the flat headline figures to ``metrics_json`` and the full summary to ``evaluation_json``
    (default ``out_dir/evaluation.json``); returns the full summary. ``interim_dir`` (default
    ``data/interim/<dataset>`` beside ``processed_dir``'s parent) tells :func:`split_check` how the patients were
    converted; for MRI, the degree of BPE is read from its converted phases.

    ``seed_evaluations``: the ``evaluation.json`` of the same experiment trained with the further ``run.seeds``
    (same split): ``metrics_json`` then holds the mean over all seeds of each headline figure, and the summary
    their per-seed values (``seeds``). A further seed's own evaluation (``model.json`` without a version) is
    logged as a run nested under its training run, without figures (``with_figures=False``)."""
    import mlflow

    from ..environment import environment, mlflow_tags
    from . import figures

    exp = s.experiments[name]
    model = json.loads(model_json.read_text())
    rows, patients, summary, data, seg = evaluate_model(exp, s.evaluation, s.tracking, model["model_uri"], split_file,
                                                        processed_dir)
    from ..data.slices import object_array

    pred = object_array(seg.native)  # each image's labels on its native grid
    env = environment(precision=exp.train.precision)
    interim_dir = Path(interim_dir) if interim_dir else interim_beside(processed_dir, exp.dataset)
    split = split_check(s.cohort.patient_map, exp.dataset, split_file, interim_dir)
    if split["by_image"]:
        log.warning("%s: %s (%s)", name, SPLIT_BY_IMAGE_WARNING, split["reason"])
    if exp.dataset == "mri":  # degree of BPE beside its area, from the converted phases (adds per-patient columns)
        from .degree import evaluate_degree

        summary["bpe_degree"] = evaluate_degree(s.evaluation, data, pred, interim_dir, patients,
                                                seed=int(s.evaluation.seed))
    summary.update({"experiment": name, "model_version": model["version"], "model_uri": model["model_uri"],
                    "seed": model.get("seed"), "split": split, "environment": env})
    evaluation_json = Path(evaluation_json) if evaluation_json else out_dir / "evaluation.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out_dir / "per_case.csv")
    write_csv(patients, out_dir / "per_patient.csv")
    if dice_plot_csv:  # DVC plot: Dice distribution over test patients
        write_csv([{"patient": r["patient"], **{k: r[k] for k in r if k.startswith("dice_")}} for r in patients],
                  dice_plot_csv)
    names = exp.class_names[1:]
    paths = figures.figure_paths(out_dir, exp.dataset) if with_figures else {}
    per_slice = np.array([[r[f"dice_{n}"] for n in names] for r in rows], dtype=float).reshape(len(rows), len(names))
    defined = np.isfinite(per_slice).any(axis=1)
    slice_dice = np.full(len(rows), np.nan)
    slice_dice[defined] = np.nanmean(per_slice[defined], axis=1)
    if with_figures:
        native = (figures.us_native_geometry(interim_dir, data["patient"], data["case"])
                  if exp.dataset == "us" else None)  # where each scan lies in the square grid
        figures.overlay_figure(data, seg.grid, slice_dice, paths["overlays"],
                               f"{name}: test slices (model v{model['version']})", dataset=exp.dataset,
                               class_names=exp.class_names, native=native)
        figures.box_plot({n: [r[f"dice_{n}"] for r in patients] for n in names}, paths["boxplot"],
                         f"{name}: Dice per test patient (v{model['version']})")
    if "calibration" in paths:
        ok = [r for r in patients if r["bpe_fraction_true"] is not None and r["bpe_fraction_pred"] is not None]
        figures.calibration_plot([r["bpe_fraction_true"] for r in ok], [r["bpe_fraction_pred"] for r in ok],
                                 summary["bpe"]["cutoffs"], paths["calibration"],
                                 f"{name}: BPE area fraction per patient")
    flat_metrics = headline(summary)
    if seed_evaluations:  # the DVC headline of the mean over seeds
        summary["seeds"] = seeds_summary(model.get("seed"), figures_of(summary), seed_evaluations)
        flat_metrics = headline(full=summary["seeds"]["mean"])
    write_json(evaluation_json, summary)
    tracking.configure(s.tracking)
    exp_id = tracking.experiment_id(s.tracking, name)
    further_seed = model.get("version") is None
    run_tags = {"breastseg.stage": "evaluate", "breastseg.experiment": name,
                "breastseg.model_version": str(model["version"]), "breastseg.train_run": model["run_id"],
                "breastseg.seed": str(model.get("seed")), **split_tags(split), **mlflow_tags(env)}
    if further_seed:
        run_tags["mlflow.parentRunId"] = model["run_id"]
    with mlflow.start_run(experiment_id=exp_id, tags=run_tags,
                          run_name=f"evaluate-{name}-seed{model.get('seed')}" if further_seed
                          else f"evaluate-{name}-v{model['version']}"):
        flat = {"test_dice_mean": summary["dice_mean"]}
        for unit in ("slice", "mass"):
            if f"dice_per_{unit}" in summary:
                flat[f"test_dice_per_{unit}_mean"] = summary[f"dice_per_{unit}"]["mean"]
                flat[f"test_dice_per_{unit}_median"] = summary[f"dice_per_{unit}"]["median"]
        if "no_mass_images" in summary:
            flat["test_no_mass_fp_rate"] = summary["no_mass_images"]["fp_rate"]
        for cls, stats in summary["per_patient"].items():
            for metric, st in stats.items():
                flat[f"test_{metric}_{cls}"] = st["mean"]
                flat[f"test_{metric}_{cls}_median"] = st["median"]
        if "bpe" in summary:
            flat["test_bpe_kappa_linear"] = summary["bpe"]["kappa_linear"]
            flat["test_bpe_fraction_mae"] = summary["bpe"]["fraction_mae"]
        if "bpe_degree" in summary:
            flat["test_bpe_degree_mae"] = summary["bpe_degree"]["mae"]
        # the split it was scored on (the runs table's Dataset column) and the model version it scored: the run page
        # links the model, and the model's page lists these metrics
        dataset, input_tags = tracking.split_input(s.cohort.name, exp, split_file)
        tracking.log_split(mlflow.active_run().info.run_id, dataset, input_tags, context="test")
        model_id = None if further_seed else model.get("model_id")  # absent from models trained before it
        mlflow.log_metrics({k: v for k, v in flat.items() if v is not None}, model_id=model_id)
        if not further_seed:  # the model version names its evaluation run, and links to it on its page
            run_id = mlflow.active_run().info.run_id
            client = mlflow.MlflowClient()
            client.set_model_version_tag(model["model_name"], str(model["version"]), "breastseg.evaluation_run", run_id)
            client.update_model_version(model["model_name"], str(model["version"]), description=(
                f"Evaluated on the test patients in [{name} / evaluate-{name}-v{model['version']}]"
                f"(#/experiments/{exp_id}/runs/{run_id}): test Dice {(summary['dice_mean'] or float('nan')):.3f} on "
                f"{summary['n_patients']} patients."))
        for f in (out_dir / "per_case.csv", out_dir / "per_patient.csv", *paths.values(), evaluation_json):
            mlflow.log_artifact(str(f))
    write_json(metrics_json, flat_metrics)
    log.info("%s: test Dice %.3f on %d patients", name, summary["dice_mean"] or float("nan"), summary["n_patients"])
    return summary
