"""The ``bpe_degree`` block of ``evaluation.json``: the degree of BPE over the true vs the predicted BPE
(:mod:`breastseg.mri.bpe_degree` computes it), with its agreement statistics."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..config import EvaluationSettings
from ..mri.bpe_degree import DEFINITION, _finite_or_none, category, combined, patient_degrees, settings
from . import statistics as st


def evaluate_degree(evaluation: EvaluationSettings, data: Mapping[str, np.ndarray], pred: np.ndarray, interim_dir: Path,
                    patient_rows: list[dict[str, Any]], *, seed: int = 0) -> dict[str, Any]:
    """The ``bpe_degree`` block of ``evaluation.json``: degree over the true vs the predicted BPE per patient.

    Adds ``bpe_re_mean_true``, ``bpe_re_mean_pred``, ``bpe_degree_category_true/_pred`` and
    ``bpe_combined_category_true/_pred`` to each row of ``patient_rows`` (which carry the area categories)."""
    area_cutoffs = list(evaluation.bpe_cutoffs)
    cfg = settings(evaluation)
    k_degree = len(cfg["cutoffs"]) + 1
    k_combined = k_degree if cfg["combine"] == "degree" else len(area_cutoffs) + 1
    per_patient = []
    for row in patient_rows:
        pid = str(row["patient"])
        idx = np.flatnonzero(np.asarray(data["patient"]).astype(str) == pid)
        true, predicted = patient_degrees(Path(interim_dir) / pid, data["case"][idx], data["index"][idx], pred[idx], cfg)
        d_true, d_pred = category(true["mean"], cfg["cutoffs"]), category(predicted["mean"], cfg["cutoffs"])
        row.update(bpe_re_mean_true=true["mean"], bpe_re_mean_pred=predicted["mean"],
                   bpe_degree_category_true=d_true, bpe_degree_category_pred=d_pred,
                   bpe_combined_category_true=combined(row.get("bpe_category_true"), d_true, cfg["combine"]),
                   bpe_combined_category_pred=combined(row.get("bpe_category_pred"), d_pred, cfg["combine"]))
        diff = (predicted["mean"] - true["mean"]) if None not in (true["mean"], predicted["mean"]) else None
        per_patient.append({"patient": pid, "re_mean_true": true["mean"], "re_mean_pred": predicted["mean"],
                            "re_median_true": true["median"], "re_median_pred": predicted["median"],
                            "voxels_true": true["n_voxels"], "voxels_pred": predicted["n_voxels"],
                            "excluded_low_pre_true": true["n_excluded_low_pre"],
                            "excluded_low_pre_pred": predicted["n_excluded_low_pre"], "difference": diff})
    diffs = [p["difference"] for p in per_patient if p["difference"] is not None]
    d = np.asarray(diffs, dtype=float)
    lo, hi = st.bootstrap_ci(d, seed=seed) if d.size else (float("nan"), float("nan"))
    sd = float(d.std(ddof=1)) if d.size >= 2 else None

    def agreement(key: str, k: int) -> dict[str, Any]:
        pairs = [(r[f"{key}_true"], r[f"{key}_pred"]) for r in patient_rows
                 if r[f"{key}_true"] is not None and r[f"{key}_pred"] is not None]
        t, p = [a for a, _ in pairs], [b for _, b in pairs]
        return {"n": len(pairs), "kappa_linear": st.weighted_kappa(t, p, k, weights="linear"),
                "accuracy": float(np.mean([a == b for a, b in pairs])) if pairs else None,
                "confusion_matrix": st.confusion_matrix(t, p, k)}

    return {
        "definition": DEFINITION,
        "compared": "mean RE over the predicted BPE voxels minus mean RE over the true BPE voxels, per patient, "
                    "both from the converted phases on the same annotated slices",
        "settings": cfg,
        "n": int(d.size),
        "n_undefined": len(per_patient) - int(d.size),
        "mean_difference": _finite_or_none(d.mean()) if d.size else None,
        "mean_difference_ci95": [_finite_or_none(lo), _finite_or_none(hi)],
        "mae": _finite_or_none(np.abs(d).mean()) if d.size else None,
        "limits_of_agreement": ([_finite_or_none(d.mean() - 1.96 * sd), _finite_or_none(d.mean() + 1.96 * sd)]
                                if sd is not None else None),
        "re_mean_true": st.summarize([p["re_mean_true"] for p in per_patient], seed=seed),
        "re_mean_pred": st.summarize([p["re_mean_pred"] for p in per_patient], seed=seed),
        "degree_category": agreement("bpe_degree_category", k_degree),
        "combined_category": agreement("bpe_combined_category", k_combined),
        "per_patient": per_patient,
    }
