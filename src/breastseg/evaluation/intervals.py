"""Intervals that account for both sources of spread in a comparison: which patients were tested, and which
training seed made the model.

A paired comparison of two experiments on the same test patients, trained with the same seeds, gives a matrix
``d[seed, patient]`` of differences (experiment a minus b). The hierarchical bootstrap resamples patients with
replacement, then, within each drawn patient, seeds with replacement, and takes the mean: its 2.5 and 97.5
percentiles are the 95 % interval of the mean paired difference. With one seed it is the ordinary bootstrap over
patients (and says so: the interval then ignores the run-to-run spread of training).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

METHOD = "hierarchical bootstrap: patients with replacement, then seeds with replacement within each patient"


def paired_matrix(a: Sequence[Mapping[str, float]], b: Sequence[Mapping[str, float]]
                  ) -> tuple[np.ndarray, list[str]]:
    """``d[seed, patient] = a[seed][patient] - b[seed][patient]`` over the patients defined for both in every
    seed (a patient whose Dice is undefined in any run is left out, and counted by the caller)."""
    if len(a) != len(b) or not a:
        raise ValueError("a and b need the same, non-zero number of seeds")
    common = set(a[0])
    for x, y in zip(a, b):
        common &= {p for p in x if np.isfinite(x[p])} & {p for p in y if np.isfinite(y[p])}
    patients = sorted(common)
    d = np.array([[x[p] - y[p] for p in patients] for x, y in zip(a, b)], dtype=float).reshape(len(a), len(patients))
    return d, patients


def hierarchical_bootstrap(d: np.ndarray, *, n_boot: int = 4000, alpha: float = 0.05, seed: int = 0
                           ) -> dict[str, Any]:
    """Mean of ``d`` (seeds x patients) with its ``1 - alpha`` interval from the hierarchical bootstrap."""
    d = np.asarray(d, dtype=float)
    n_seeds, n_patients = d.shape
    out: dict[str, Any] = {"mean": None, "ci_low": None, "ci_high": None, "n_patients": n_patients,
                           "n_seeds": n_seeds, "n_boot": n_boot, "alpha": alpha, "method": METHOD}
    if n_patients == 0:
        return out
    out["mean"] = float(d.mean())
    if n_patients < 2:
        return out
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    step = max(1, 2_000_000 // max(1, n_patients * n_seeds))  # bounded memory for large cohorts
    for start in range(0, n_boot, step):
        k = min(step, n_boot - start)
        pi = rng.integers(0, n_patients, (k, n_patients))
        si = rng.integers(0, n_seeds, (k, n_patients, n_seeds))
        means[start:start + k] = d[si, pi[..., None]].mean(axis=(1, 2))
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    out.update(ci_low=float(lo), ci_high=float(hi))
    if n_seeds == 1:
        out["note"] = "one training seed: the interval covers the patients only, not the run-to-run spread"
    return out
