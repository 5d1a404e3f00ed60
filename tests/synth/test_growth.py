"""The synthetic cohort grows like a real one: a patient depends on (seed, index) only, and a larger annotated
fraction only adds annotated slices."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from breastseg.synth.cohort import write_cohort

TINY = dict(mri_matrix=32, mri_slices=4, us_lines=32, us_depth_mm=8.0, annotated_fraction=0.5, progress=False)
PATIENT_DIRS = ("mri", "us", "truth/mri", "truth/us")


def _patients(root: Path) -> list[str]:
    return json.loads((root / "truth" / "cohort.json").read_text())["patients"]


def _patient_files(root: Path) -> dict[str, dict[str, str]]:
    """sha256 of every file under the per-patient folders, grouped by the patient id its path names."""
    out: dict[str, dict[str, str]] = {}
    for sub in PATIENT_DIRS:
        for p in sorted((root / sub).rglob("*")):
            if p.is_file():
                rel = p.relative_to(root)
                pid = rel.parts[1] if sub == "mri" else p.stem
                out.setdefault(pid, {})[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("growth")
    runs = {"n3": (3, 7, {}), "n4": (4, 7, {}), "seed8": (3, 8, {}), "ann75": (3, 7, {"annotated_fraction": 0.75})}
    out = {}
    for name, (n, seed, extra) in runs.items():
        write_cohort(base / name, n, seed, **{**TINY, **extra})
        out[name] = base / name
    return out


def test_more_patients_keep_the_first_ones_byte_identical(cohorts):
    p3, p4 = _patients(cohorts["n3"]), _patients(cohorts["n4"])
    assert len(p3) == 3 and len(p4) == 4 and len(set(p4)) == 4
    assert p4[:3] == p3
    f3, f4 = _patient_files(cohorts["n3"]), _patient_files(cohorts["n4"])
    assert sorted(f3) == sorted(p3) and sorted(f4) == sorted(p4)
    for pid in p3:
        names = f3[pid]
        # every kind of per-patient file is compared
        assert any(k.endswith(".dcm") for k in names) and any(k.endswith("labels.nii.gz") for k in names)
        assert f"us/{pid}.npz" in names and f"truth/mri/{pid}.json" in names and f"truth/us/{pid}.json" in names
        assert f4[pid] == names, pid
    # the fourth patient is new: its own files, none of them a copy of another patient's
    new = p4[3]
    assert new not in f3 and f4[new]
    old_hashes = {h for files in f3.values() for h in files.values()}
    assert old_hashes.isdisjoint(f4[new].values())
    # the cohort-level files grow
    assert json.loads((cohorts["n4"] / "truth" / "cohort.json").read_text())["patients"] == p4


def test_larger_annotated_fraction_adds_slices_to_the_same_images(cohorts):
    a, b = cohorts["n3"], cohorts["ann75"]
    assert _patients(a) == _patients(b)
    fa, fb = _patient_files(a), _patient_files(b)
    grew = 0
    for pid in _patients(a):
        dicoms = {k: v for k, v in fa[pid].items() if k.endswith(".dcm")}
        assert dicoms and dicoms == {k: v for k, v in fb[pid].items() if k.endswith(".dcm")}, pid
        assert fa[pid][f"us/{pid}.npz"] == fb[pid][f"us/{pid}.npz"]
        (la,) = (a / "mri" / pid).glob("*/labels.nii.gz")
        lb = b / la.relative_to(a)
        img_a, img_b = nib.load(la), nib.load(lb)
        np.testing.assert_array_equal(img_a.affine, img_b.affine)
        lab_a, lab_b = np.asarray(img_a.dataobj), np.asarray(img_b.dataobj)
        ann_a = [k for k in range(lab_a.shape[2]) if (lab_a[:, :, k] != 255).all()]
        ann_b = [k for k in range(lab_b.shape[2]) if (lab_b[:, :, k] != 255).all()]
        assert ann_a and set(ann_a) <= set(ann_b), (pid, ann_a, ann_b)
        # a slice annotated before keeps its exact labels; the others are either new annotations or 255
        np.testing.assert_array_equal(lab_a[:, :, ann_a], lab_b[:, :, ann_a])
        rest = [k for k in range(lab_b.shape[2]) if k not in ann_b]
        assert (lab_b[:, :, rest] == 255).all()
        truth_a = json.loads((a / "truth" / "mri" / f"{pid}.json").read_text())
        truth_b = json.loads((b / "truth" / "mri" / f"{pid}.json").read_text())
        assert truth_a["annotated_slices"] == ann_a and truth_b["annotated_slices"] == ann_b
        grew += len(ann_b) > len(ann_a)
    assert grew > 0  # 0.75 of the slices is more than 0.5 of them wherever there are enough tissue slices


def test_another_seed_gives_other_patients(cohorts):
    fa, fc = _patient_files(cohorts["n3"]), _patient_files(cohorts["seed8"])
    assert set(fa).isdisjoint(fc)
    ha = {h for files in fa.values() for h in files.values()}
    hc = {h for files in fc.values() for h in files.values()}
    assert ha and hc and ha.isdisjoint(hc)
