"""Synthetic ultrasound RF: file formats, mass echogenicity, entropy contrast of isoechoic masses."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from scipy import ndimage
from scipy.signal import hilbert
from skimage.filters.rank import entropy
from skimage.morphology import footprint_rectangle

from breastseg.synth.cohort import write_cohort

LINES, DEPTH_MM = 64, 10.0
TINY = dict(mri_matrix=32, mri_slices=4, us_lines=LINES, us_depth_mm=DEPTH_MM, annotated_fraction=0.5, progress=False)
N_PATIENTS = 8
RAYLEIGH_SNR = np.sqrt(np.pi / (4.0 - np.pi))  # 1.913


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth_us") / "cohort"
    write_cohort(out, N_PATIENTS, 23, **TINY)
    return out


@pytest.fixture(scope="module")
def scans(cohort) -> list[dict]:
    """Every scan of the OASBUD file with its envelope and the patient's ground truth."""
    data = scipy.io.loadmat(cohort / "oasbud" / "OASBUD.mat")["data"][0]
    out = []
    for rec in data:
        pid = str(rec["id"][0])
        truth = json.loads((cohort / "truth" / "us" / f"{pid}.json").read_text())
        for s in (1, 2):
            rf = rec[f"rf{s}"]
            out.append({"pid": pid, "scan": s, "rf": rf, "roi": rec[f"roi{s}"].astype(bool), "truth": truth,
                        "env": np.abs(hilbert(rf.astype(float), axis=0))})
    return out


def _regions(roi: np.ndarray, fs: float = 40e6, c: float = 1540.0, pitch: float = 0.3e-3, margin: float = 1.5e-3):
    """Mass, and the tissue at the same depths at least ``margin`` away from it."""
    rows = np.flatnonzero(roi.any(axis=1))
    ry, rx = int(round(margin / (c / (2 * fs)))), int(round(margin / pitch))
    near = ndimage.binary_dilation(roi, np.ones((2 * ry + 1, 2 * rx + 1), bool))
    outer = np.zeros_like(roi)
    outer[rows[0]: rows[-1] + 1] = True
    return roi, outer & ~near


def test_npz_layout(cohort):
    files = sorted((cohort / "us").glob("*.npz"))
    assert len(files) == N_PATIENTS
    n_samples = int(round(2 * DEPTH_MM * 1e-3 / 1540.0 * 40e6))
    for f in files:
        with np.load(f) as d:
            assert {"rf", "roi", "fs", "f0", "pitch", "c", "bandwidth"} <= set(d.files)
            assert d["rf"].dtype == np.int16 and d["rf"].shape == (n_samples, LINES)
            assert d["roi"].dtype == np.uint8 and d["roi"].shape == d["rf"].shape
            assert set(np.unique(d["roi"])) == {0, 1}
            assert float(d["fs"]) == 40e6 and float(d["c"]) == 1540.0
            assert 6e6 <= float(d["f0"]) <= 8e6 and float(d["pitch"]) == pytest.approx(0.3e-3)
            assert 0.6 <= float(d["bandwidth"]) <= 0.9
            # RF is band-pass around f0: the spectrum peaks near the centre frequency
            spec = np.abs(np.fft.rfft(d["rf"].astype(float), axis=0)).mean(axis=1)
            freqs = np.fft.rfftfreq(d["rf"].shape[0], 1 / float(d["fs"]))
            assert abs(freqs[np.argmax(spec)] - float(d["f0"])) < 1.5e6


def test_oasbud_layout(cohort):
    data = scipy.io.loadmat(cohort / "oasbud" / "OASBUD.mat")["data"][0]
    assert len(data) == N_PATIENTS
    assert set(data.dtype.names) == {"id", "rf1", "rf2", "roi1", "roi2", "birads", "class"}
    classes = set()
    for rec in data:
        pid = str(rec["id"][0])
        for s in (1, 2):
            assert rec[f"rf{s}"].dtype == np.int16 and rec[f"rf{s}"].shape[1] == LINES
            assert rec[f"roi{s}"].shape == rec[f"rf{s}"].shape and rec[f"roi{s}"].any()
        assert not np.array_equal(rec["rf1"], rec["rf2"])
        with np.load(cohort / "us" / f"{pid}.npz") as d:
            np.testing.assert_array_equal(d["rf"], rec["rf1"])
            np.testing.assert_array_equal(d["roi"], rec["roi1"])
        truth = json.loads((cohort / "truth" / "us" / f"{pid}.json").read_text())
        assert int(rec["class"].squeeze()) == truth["class"]
        assert str(rec["birads"][0]) == truth["birads"]
        classes.add(truth["class"])
    assert classes == {0, 1}


def test_mass_contrast_matches_its_echogenicity(scans):
    echoes = set()
    for s in scans:
        inner, outer = _regions(s["roi"])
        e2 = s["env"] ** 2
        measured = 10 * np.log10(e2[inner].mean() / e2[outer].mean())
        truth = s["truth"]
        echoes.add(truth["echogenicity"])
        if truth["echogenicity"] == "anechoic":  # as dark as electronic noise and side lobes allow
            assert measured < -10.0, (s["pid"], s["scan"], measured)
        else:
            # the mass's core (inside an indistinct margin) is calibrated to the drawn contrast; over the whole
            # outline the margin band mixes in tissue and pulls the contrast towards 0; the surroundings hold fat
            # lobules and layers, so the measured contrast scatters around the target
            target, blur = truth["contrast_db"], truth["scan_params"]["margin_blur"]
            core = truth["scans"][s["scan"] - 1]["contrast_db_core_measured"]
            assert core == pytest.approx(target, abs=2.0), (s["pid"], s["scan"], truth["echogenicity"])
            if blur <= 0.05:
                assert measured == pytest.approx(target, abs=2.0), (s["pid"], s["scan"], truth["echogenicity"])
            else:
                assert abs(measured) <= abs(target) + 2.0, (s["pid"], s["scan"], measured, target)
                if abs(target) > 4.0:
                    assert np.sign(measured) == np.sign(target), (s["pid"], s["scan"], measured, target)
        if truth["echogenicity"] == "isoechoic":
            assert abs(measured) <= 4.0
    assert echoes == {"anechoic", "hypoechoic", "isoechoic", "hyperechoic"}


def test_entropy_separates_isoechoic_masses_from_background(scans):
    cnrs = []
    for s in scans:
        if s["truth"]["echogenicity"] != "isoechoic":
            continue
        env = s["env"][::4]  # ~0.08 mm axial pixels
        db = 20 * np.log10(env / env.max() + 1e-12)
        q = np.clip((db + 60.0) / 60.0 * 63.0, 0, 63).astype(np.uint8)
        ent = entropy(q, footprint_rectangle((25, 7)))  # ~2 mm x 2 mm window
        inner, outer = _regions(s["roi"])
        inner = ndimage.binary_erosion(inner[::4], np.ones((3, 3), bool))
        outer = outer[::4]
        cnrs.append(abs(ent[inner].mean() - ent[outer].mean()) / np.sqrt(ent[inner].var() + ent[outer].var()))
        # sparse scatterers: a more heterogeneous envelope, hence a higher local entropy
        assert ent[inner].mean() > ent[outer].mean(), (s["pid"], s["scan"])
    cnrs = np.array(cnrs)
    assert len(cnrs) >= 4 and np.median(cnrs) > 0.7, cnrs.round(2)


def test_isoechoic_masses_are_pre_rayleigh(scans):
    for s in scans:
        inner = ndimage.binary_erosion(s["roi"], np.ones((9, 3), bool))
        if s["truth"]["echogenicity"] != "isoechoic" or inner.sum() < 200:
            continue
        # few scatterers per resolution cell: the envelope is more heterogeneous than Rayleigh speckle
        assert s["env"][inner].mean() / s["env"][inner].std() < RAYLEIGH_SNR - 0.2


def test_truth_records_densities_and_contrast(cohort):
    for f in sorted((cohort / "truth" / "us").glob("*.json")):
        t = json.loads(f.read_text())
        assert t["density_background_per_cell"] >= 10.0
        assert 0.4 <= t["density_mass_per_cell"] <= 15.0
        assert t["margin"] in ("circumscribed", "lobulated", "spiculated")
        assert t["class"] in (0, 1) and t["birads"]
        assert len(t["contrast_db_measured"]) == 2
