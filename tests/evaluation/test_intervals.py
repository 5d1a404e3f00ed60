"""The interval of a paired comparison covers both patients and training seeds."""
import csv

import numpy as np
import pytest

from breastseg.evaluation.compare import compare, seed_results
from breastseg.evaluation.intervals import hierarchical_bootstrap, paired_matrix


def test_one_seed_is_the_patient_bootstrap_and_says_so():
    d = np.array([[0.1, 0.2, -0.05, 0.15, 0.0, 0.3]])
    out = hierarchical_bootstrap(d, n_boot=2000)
    assert out["mean"] == pytest.approx(d.mean())
    assert out["ci_low"] < out["mean"] < out["ci_high"] and "patients only" in out["note"]


def test_seed_spread_widens_the_interval():
    rng = np.random.default_rng(0)
    patient_effect = rng.normal(0.05, 0.05, 20)
    calm = np.stack([patient_effect + rng.normal(0, 0.001, 20) for _ in range(3)])
    noisy = np.stack([patient_effect + rng.normal(0, 0.2, 20) for _ in range(3)])
    w_calm = hierarchical_bootstrap(calm)
    w_noisy = hierarchical_bootstrap(noisy)
    assert (w_noisy["ci_high"] - w_noisy["ci_low"]) > 1.5 * (w_calm["ci_high"] - w_calm["ci_low"])
    assert hierarchical_bootstrap(calm) == w_calm  # seeded: the same interval every time


def test_paired_matrix_keeps_patients_defined_everywhere():
    a = [{"p1": 0.8, "p2": 0.5, "p3": float("nan")}, {"p1": 0.7, "p2": 0.6, "p3": 0.4}]
    b = [{"p1": 0.6, "p2": 0.5, "p3": 0.2}, {"p1": 0.6, "p2": 0.7, "p3": 0.1}]
    d, patients = paired_matrix(a, b)
    assert patients == ["p1", "p2"] and np.allclose(d, [[0.2, 0.0], [0.1, -0.1]])


def _per_patient(folder, values):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "per_patient.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["patient", "slices", "dice_mass"])
        w.writerows([p, 1, v] for p, v in values.items())


def test_compare_reports_the_interval_and_a_test_per_seed(tmp_path):
    rng = np.random.default_rng(1)
    patients = [f"P{i:012x}" for i in range(12)]
    for e, shift in (("mass_us_entropy", 0.05), ("mass_us_bmode", 0.0)):
        for s in (3, 4):
            _per_patient(seed_results(tmp_path / "results", e, s, 3),
                         {p: 0.6 + shift + 0.1 * np.sin(i) + rng.normal(0, 0.01) for i, p in enumerate(patients)})
    doc = compare("entropy_vs_bmode", "mass_us_entropy", "mass_us_bmode", tmp_path / "results",
                  tmp_path / "out", seeds=[3, 4])
    diff = doc["difference"]
    assert diff["n_seeds"] == 2 and diff["n_patients"] == 12 and diff["ci_low"] < 0.05 < diff["ci_high"]
    assert diff["ci_low"] > 0  # entropy ahead by 0.05 with little noise: the interval excludes zero
    assert [r["seed"] for r in doc["per_seed"]] == [3, 4] and all(r["wilcoxon_p"] < 0.01 for r in doc["per_seed"])
    table = (tmp_path / "out" / "entropy_vs_bmode.md").read_text()
    assert "95 % interval" in table and "| 4 |" in table
    assert (tmp_path / "results" / "mass_us_bmode" / "seeds" / "4" / "per_patient.csv").exists()
