"""Summary statistics over patients, the clinical BPE read-out and the paired comparison of two inputs.

Everything returned here is JSON-safe: undefined values are ``None``, never NaN. Non-finite inputs (NaN, inf,
``None``) are "undefined" and are left out of means, medians, confidence intervals and paired tests.

- :func:`bootstrap_ci`: percentile bootstrap of the mean (resampling the finite values with replacement).
- :func:`weighted_kappa`: Cohen's kappa with linear or quadratic weights over categories ``0..k-1``; ``None``
  when undefined: fewer than two cases, or a chance-expected weighted disagreement of zero (for instance every
  case in one and the same category in both ratings, where scikit-learn returns NaN).
- :func:`paired_wilcoxon`: Wilcoxon signed-rank test (two-sided, ``zero_method="wilcox"``: zero differences are
  dropped) on the patients present with finite values in both inputs; no test when fewer than two such
  patients or when every difference is zero (the ``note`` key says why).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..labels import BPE, FGT_LABELS, NOT_ANNOTATED


def _finite(values: Iterable[Any]) -> np.ndarray:
    x = np.asarray([np.nan if v is None else v for v in values], dtype=float).ravel()
    return x[np.isfinite(x)]


def _json_float(v: Any) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


def bootstrap_ci(values: Iterable[Any], *, n_boot: int = 2000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap ``(lo, hi)`` of the mean of the finite values; (nan, nan) if there are none."""
    x = _finite(values)
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float(x[0])
    if n_boot < 1 or not 0 < alpha < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < alpha < 1, got n_boot={n_boot}, alpha={alpha}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 1_000_000 // x.size)  # bounded memory for large samples
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        means[start:stop] = x[rng.integers(0, x.size, size=(stop - start, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def summarize(values: Iterable[Any], *, seed: int = 0) -> dict[str, Any]:
    """``n`` (finite values), ``n_undefined``, ``mean``, ``median``, ``std`` (ddof=1) and bootstrap ``ci95``."""
    values = list(values)
    x = _finite(values)
    n = int(x.size)
    lo, hi = bootstrap_ci(x, seed=seed)
    return {
        "n": n,
        "n_undefined": len(values) - n,
        "mean": _json_float(x.mean()) if n else None,
        "median": _json_float(np.median(x)) if n else None,
        "std": _json_float(x.std(ddof=1)) if n >= 2 else None,
        "ci95": [_json_float(lo), _json_float(hi)],
    }


def bpe_fraction(labels: np.ndarray) -> float | None:
    """BPE voxels (label 2) over FGT voxels (labels 1 and 2), annotated voxels only; None without FGT."""
    labels = np.asarray(labels)
    valid = labels != NOT_ANNOTATED
    fgt = int(np.count_nonzero(np.isin(labels, FGT_LABELS) & valid))
    if fgt == 0:
        return None
    return float(np.count_nonzero((labels == BPE) & valid)) / fgt


def _categories(values: Sequence[Any], k: int, name: str) -> np.ndarray:
    a = np.asarray(list(values), dtype=int).ravel()
    if a.size and (a.min() < 0 or a.max() >= k):
        raise ValueError(f"{name} categories must lie in 0..{k - 1}, got {sorted(set(a.tolist()))}")
    return a


def confusion_matrix(truth: Sequence[int], pred: Sequence[int], k: int) -> list[list[int]]:
    """k x k counts, rows = true category, columns = predicted category (all k present even if empty)."""
    t, p = _categories(truth, k, "true"), _categories(pred, k, "predicted")
    if t.size != p.size:
        raise ValueError(f"{t.size} true categories but {p.size} predicted")
    m = np.zeros((k, k), dtype=int)
    np.add.at(m, (t, p), 1)
    return m.tolist()


def weighted_kappa(truth: Sequence[int], pred: Sequence[int], k: int, weights: str | None = "linear") -> float | None:
    """Cohen's kappa over categories 0..k-1 (weights "linear", "quadratic" or None); None when undefined."""
    if weights not in ("linear", "quadratic", None):
        raise ValueError(f"weights must be 'linear', 'quadratic' or None, got {weights!r}")
    t, p = _categories(truth, k, "true"), _categories(pred, k, "predicted")
    if t.size != p.size:
        raise ValueError(f"{t.size} true categories but {p.size} predicted")
    if t.size < 2:
        return None
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined kappa: sklearn warns and returns NaN, reported here as None
        kappa = cohen_kappa_score(t, p, labels=list(range(k)), weights=weights)
    return _json_float(kappa)


def paired_wilcoxon(x: Mapping[str, Any], y: Mapping[str, Any]) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of x against y over the patients with finite values in both."""
    def ok(v: Any) -> bool:
        return v is not None and math.isfinite(float(v))

    patients = sorted(p for p in set(x) & set(y) if ok(x[p]) and ok(y[p]))
    n = len(patients)
    xa = np.array([float(x[p]) for p in patients])
    ya = np.array([float(y[p]) for p in patients])
    out: dict[str, Any] = {
        "n": n,
        "patients": patients,
        "mean_x": _json_float(xa.mean()) if n else None,
        "median_x": _json_float(np.median(xa)) if n else None,
        "mean_y": _json_float(ya.mean()) if n else None,
        "median_y": _json_float(np.median(ya)) if n else None,
        "mean_diff": _json_float((xa - ya).mean()) if n else None,
        "statistic": None,
        "p_value": None,
        "note": None,
    }
    if n < 2:
        out["note"] = f"no test: {n} paired patient(s) with finite values in both, need at least 2"
    elif np.all(xa == ya):
        out["note"] = "no test: every paired difference is zero"
    else:
        from scipy.stats import wilcoxon

        res = wilcoxon(xa, ya, alternative="two-sided", zero_method="wilcox")
        out["statistic"], out["p_value"] = _json_float(res.statistic), _json_float(res.pvalue)
    return out
