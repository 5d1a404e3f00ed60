"""Summary statistics, BPE read-out, agreement and the paired test, checked against hand computations."""
import json
import math

import numpy as np
import pytest
from scipy.stats import wilcoxon

from breastseg.evaluation.statistics import (bootstrap_ci, bpe_fraction, confusion_matrix, paired_wilcoxon,
                                             summarize, weighted_kappa)
from breastseg.labels import bpe_category


def test_bootstrap_contains_mean_and_is_deterministic():
    x = np.random.default_rng(1).normal(0.7, 0.1, 40)
    lo, hi = bootstrap_ci(x, seed=3)
    assert lo < x.mean() < hi
    assert bootstrap_ci(x, seed=3) == (lo, hi)
    assert bootstrap_ci(x, seed=4) != (lo, hi)
    assert all(type(v) is float for v in (lo, hi))


def test_bootstrap_narrows_with_more_samples():
    rng = np.random.default_rng(0)
    small, large = rng.normal(0, 1, 10), rng.normal(0, 1, 1000)
    w_small = np.subtract(*bootstrap_ci(small)[::-1])
    w_large = np.subtract(*bootstrap_ci(large)[::-1])
    assert 0 < w_large < w_small / 5   # ~ 1/sqrt(n): 10x narrower expected


def test_bootstrap_nan_handling():
    x = [0.2, np.nan, 0.4, None, 0.6, float("inf")]
    assert bootstrap_ci(x, seed=0) == bootstrap_ci([0.2, 0.4, 0.6], seed=0)
    lo, hi = bootstrap_ci([np.nan, np.nan])
    assert math.isnan(lo) and math.isnan(hi)
    assert bootstrap_ci([]) != bootstrap_ci([])  # (nan, nan): NaN never equals itself
    assert bootstrap_ci([np.nan, 0.42]) == (0.42, 0.42)
    lo, hi = bootstrap_ci([0.5, 0.5, 0.5])
    assert lo == hi == 0.5


def test_summarize_by_hand_and_json_safe():
    s = summarize([0.2, 0.4, np.nan, 0.9, None])
    assert s["n"] == 3 and s["n_undefined"] == 2
    assert s["mean"] == pytest.approx(0.5)
    assert s["median"] == pytest.approx(0.4)
    assert s["std"] == pytest.approx(math.sqrt(((0.3) ** 2 + 0.1 ** 2 + 0.4 ** 2) / 2))
    assert s["ci95"][0] <= 0.5 <= s["ci95"][1]
    json.dumps(s, allow_nan=False)

    one = summarize([0.7, np.nan])
    assert one == {"n": 1, "n_undefined": 1, "mean": 0.7, "median": 0.7, "std": None, "ci95": [0.7, 0.7]}
    none = summarize([np.nan, np.nan])
    assert none == {"n": 0, "n_undefined": 2, "mean": None, "median": None, "std": None, "ci95": [None, None]}
    assert json.loads(json.dumps(none, allow_nan=False)) == none
    assert summarize([])["n"] == 0


def test_bpe_fraction():
    labels = np.array([[0, 1, 1, 2], [2, 255, 255, 0]], np.uint8)
    assert bpe_fraction(labels) == pytest.approx(2 / 4)
    labels[0, 0] = 2
    assert bpe_fraction(labels) == pytest.approx(3 / 5)
    assert bpe_fraction(np.array([[0, 255], [0, 0]])) is None     # no FGT
    assert bpe_fraction(np.array([[1, 1], [1, 0]])) == 0.0
    assert bpe_fraction(np.array([[[2, 2]], [[2, 0]]])) == 1.0     # volumes too


@pytest.mark.parametrize("f, cat", [(0.0, 0), (0.2499, 0), (0.25, 1), (0.3, 1), (0.5, 2), (0.74, 2),
                                    (0.75, 3), (1.0, 3)])
def test_bpe_category_boundaries(f, cat):
    assert bpe_category(f) == cat


def test_bpe_category_custom_cutoffs_and_nan():
    assert bpe_category(0.1, (0.1, 0.2)) == 1 and bpe_category(0.05, [0.1, 0.2]) == 0
    with pytest.raises(ValueError):
        bpe_category(float("nan"))


def test_confusion_matrix_keeps_absent_categories():
    m = confusion_matrix([0, 0, 1, 3], [0, 1, 1, 2], 4)
    assert m == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]]
    assert all(type(v) is int for row in m for v in row)
    assert confusion_matrix([], [], 3) == [[0] * 3] * 3
    with pytest.raises(ValueError):
        confusion_matrix([0, 4], [0, 1], 4)
    with pytest.raises(ValueError):
        confusion_matrix([0, 1], [0], 4)


def test_weighted_kappa_perfect_and_by_hand():
    assert weighted_kappa([0, 1, 2, 3], [0, 1, 2, 3], 4) == pytest.approx(1.0)
    # truth [0,1,2,2], prediction [0,2,2,1], k=3, weights |i-j|:
    # observed weighted disagreement (0+1+0+1)/4 = 0.5; marginals truth (1,1,2)/4, prediction (1,1,2)/4;
    # expected sum_ij |i-j| r_i c_j = .25(.25*1+.5*2) + .25(.25*1+.5*1) + .5(.25*2+.25*1) = 0.875
    truth, pred = [0, 1, 2, 2], [0, 2, 2, 1]
    r = np.bincount(truth, minlength=3) / 4
    c = np.bincount(pred, minlength=3) / 4
    w = np.abs(np.subtract.outer(np.arange(3), np.arange(3)))
    assert float((w * np.outer(r, c)).sum()) == pytest.approx(0.875)
    assert weighted_kappa(truth, pred, 3) == pytest.approx(1 - 0.5 / 0.875)   # = 3/7
    # quadratic weights (i-j)^2: observed (0+1+0+1)/4 = 0.5;
    # expected .25(.25*1+.5*4) + .25(.25*1+.5*1) + .5(.25*4+.25*1) = .5625 + .1875 + .625 = 1.375
    assert float((w ** 2 * np.outer(r, c)).sum()) == pytest.approx(1.375)
    assert weighted_kappa(truth, pred, 3, weights="quadratic") == pytest.approx(1 - 0.5 / 1.375)   # = 7/11


def test_weighted_kappa_undefined_is_none():
    assert weighted_kappa([], [], 4) is None
    assert weighted_kappa([2], [2], 4) is None
    assert weighted_kappa([1, 1, 1], [1, 1, 1], 4) is None    # one category in both: chance disagreement 0
    assert weighted_kappa([1, 1, 2], [1, 1, 1], 4) == pytest.approx(0.0)   # defined
    with pytest.raises(ValueError):
        weighted_kappa([0, 1], [0, 1], 4, weights="cubic")


def test_paired_wilcoxon_known_example():
    x = {"a": 0.6, "b": 0.7, "c": 0.5, "d": 0.9, "e": 0.65, "f": 0.8, "only_x": 0.99}
    y = {"a": 0.5, "b": 0.5, "c": 0.55, "d": 0.6, "e": 0.5, "f": 0.55, "only_y": 0.01}
    r = paired_wilcoxon(x, y)
    assert r["patients"] == ["a", "b", "c", "d", "e", "f"] and r["n"] == 6
    xs, ys = [x[p] for p in r["patients"]], [y[p] for p in r["patients"]]
    ref = wilcoxon(xs, ys, alternative="two-sided", zero_method="wilcox")
    assert r["statistic"] == pytest.approx(ref.statistic) and r["p_value"] == pytest.approx(ref.pvalue)
    # by hand: differences .1 .2 -.05 .3 .15 .25 -> ranks 2 4 1 6 3 5; W- = 1, W+ = 20; exact two-sided
    # p = 2 * P(W <= 1) = 2 * 2/64
    assert r["statistic"] == pytest.approx(1.0)
    assert r["p_value"] == pytest.approx(4 / 64)
    assert r["mean_x"] == pytest.approx(np.mean(xs)) and r["median_y"] == pytest.approx(np.median(ys))
    assert r["mean_diff"] == pytest.approx(np.mean(np.subtract(xs, ys)))
    assert r["note"] is None
    json.dumps(r, allow_nan=False)


def test_paired_wilcoxon_drops_nan_patients():
    x = {"a": 0.6, "b": np.nan, "c": 0.5, "d": 0.9, "e": None}
    y = {"a": 0.5, "b": 0.5, "c": 0.7, "d": 0.6, "e": 0.4}
    r = paired_wilcoxon(x, y)
    assert r["patients"] == ["a", "c", "d"] and r["n"] == 3
    ref = wilcoxon([0.6, 0.5, 0.9], [0.5, 0.7, 0.6], alternative="two-sided", zero_method="wilcox")
    assert r["p_value"] == pytest.approx(ref.pvalue)


@pytest.mark.parametrize("x, y", [({}, {}), ({"a": 0.5}, {"a": 0.4}), ({"a": 0.5, "b": np.nan}, {"a": 0.4, "b": 1})])
def test_paired_wilcoxon_too_few(x, y):
    r = paired_wilcoxon(x, y)
    assert r["statistic"] is None and r["p_value"] is None
    assert "at least 2" in r["note"]
    json.dumps(r, allow_nan=False)


def test_paired_wilcoxon_all_differences_zero():
    r = paired_wilcoxon({"a": 0.5, "b": 0.6}, {"a": 0.5, "b": 0.6})
    assert r["n"] == 2 and r["statistic"] is None and r["p_value"] is None
    assert "zero" in r["note"] and r["mean_diff"] == 0.0
