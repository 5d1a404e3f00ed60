"""Bad input through the real command line: one line naming the file and the reason, exit 2, no traceback,
nothing half-written; with ``--on-error skip`` the rest converts and the bad input is a quarantine entry."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from us_cohorts import oasbud_records

from breastseg.synth import dicom_files as syn

AFFINE = np.array([[-0.7, 0, 0, 12.5], [0, -0.8, 0, 30.0], [0, 0, 2.5, 40.0], [0, 0, 0, 1]])


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "breastseg.cli", *args], capture_output=True, text=True, timeout=120)


def _series(root: Path, number: int, **kw) -> list[Path]:
    return syn.write_series(root, syn.SeriesSpec(series_number=number, **kw))


def _dce(root: Path, patient_id: str = "MARKERPID123", study_uid: str = "1.2.826.0.1.5") -> Path:
    for n, t in ((1, "101500.0"), (2, "102000.0")):
        syn.write_series(root / "st" / f"s{n}", syn.SeriesSpec(
            study_uid=study_uid, series_number=n, acquisition_time=t, seed=n,
            identity=syn.Identity(patient_id=patient_id)))
    return root


# Each case: (files to write under tmp_path) -> (command args with {out}, the path the error must name, reason).
def corrupt_dicom(tmp):
    _series(tmp / "in" / "good", 2)
    bad = _series(tmp / "in" / "bad", 5, slices=1)[0]
    bad.write_bytes(gzip.compress(bad.read_bytes()))
    return ["convert", str(tmp / "in"), "{out}"], bad, "gzip-compressed data, not DICOM"


def truncated_dicom(tmp):
    _series(tmp / "in" / "good", 2)
    bad = _series(tmp / "in" / "bad", 5, slices=1)[0]
    bad.write_bytes(bad.read_bytes()[:-50])
    return ["convert", str(tmp / "in"), "{out}"], bad, "truncated pixel data"


def dicom_without_pixels(tmp):
    _series(tmp / "in" / "good", 2)
    bad = _series(tmp / "in" / "bad", 5, slices=1)[0]
    ds = pydicom.dcmread(bad)
    del ds.PixelData
    ds.save_as(bad)
    return ["convert", str(tmp / "in"), "{out}"], bad, "missing required element(s): PixelData"


def uneven_slice_spacing(tmp):
    _series(tmp / "in" / "good", 2)
    syn.write_series(tmp / "in" / "bad", syn.SeriesSpec(series_number=4, slices=7), skip_slices=[2, 5])
    return ["convert", str(tmp / "in"), "{out}"], tmp / "in" / "bad", "uneven slice spacing"


def mixed_patients(tmp):
    pdir = _dce(tmp / "P")
    syn.write_series(pdir / "st" / "s3", syn.SeriesSpec(study_uid="1.2.826.0.1.5", series_number=3,
                                                        acquisition_time="102500.0",
                                                        identity=syn.Identity(patient_id="OTHERPATIENT")))
    return (["convert", "--dce", "--patient-id", "P000000000001", str(pdir), "{out}"], pdir,
            "holds images of 2 different patients")


def labels_wrong_shape(tmp):
    pdir = _dce(tmp / "P")
    nib.save(nib.Nifti1Image(np.zeros((8, 10, 3), np.uint8), AFFINE), pdir / "st" / "labels.nii.gz")
    return (["convert", "--dce", "--patient-id", "P000000000001", str(pdir), "{out}"], pdir / "st" / "labels.nii.gz",
            "not on the pre-contrast grid")


def labels_unknown_values(tmp):
    pdir = _dce(tmp / "P")
    nib.save(nib.Nifti1Image(np.full((8, 10, 5), 7, np.uint8), AFFINE), pdir / "st" / "labels.nii.gz")
    return (["convert", "--dce", "--patient-id", "P000000000001", str(pdir), "{out}"], pdir / "st" / "labels.nii.gz",
            "label values must be 0, 1, 2 or 255")


def oasbud_missing_fields(tmp):
    recs = oasbud_records(2, shape=(32, 8))
    for r in recs:
        del r["roi2"]
    path = tmp / "o.mat"
    import scipy.io

    fields = ("id", "rf1", "rf2", "roi1", "birads", "class")
    data = np.zeros((1, len(recs)), dtype=[(f, object) for f in fields])
    for i, rec in enumerate(recs):
        for f in fields:
            data[f][0, i] = rec[f]
    scipy.io.savemat(str(path), {"data": data})
    return ["us-maps", str(path), "{out}"], path, "'data' lacks field(s) roi2"


def params_wrong_type(tmp):
    params = tmp / "params.yaml"
    text = (Path(__file__).resolve().parents[1] / "params.yaml").read_text()
    params.write_text(text.replace("  max_epochs: ", "  max_epochs: many #", 1))
    return ["--params", str(params), "report", "m.json", "--out", "{out}"], params, "key 'train.max_epochs'"


def params_unknown_key(tmp):
    params = tmp / "params.yaml"
    text = (Path(__file__).resolve().parents[1] / "params.yaml").read_text()
    params.write_text(text.replace("train:\n", "train:\n  epochs: 3\n", 1))
    return ["--params", str(params), "report", "m.json", "--out", "{out}"], params, "unknown key 'train.epochs'"


def cohort_path_missing(tmp):
    return ["us-maps", str(tmp / "no" / "such" / "cohort"), "{out}"], tmp / "no" / "such" / "cohort", "no such file"


CASES = [corrupt_dicom, truncated_dicom, dicom_without_pixels, uneven_slice_spacing, mixed_patients, labels_wrong_shape,
         labels_unknown_values, oasbud_missing_fields, params_wrong_type, params_unknown_key,
         cohort_path_missing]
SKIPPABLE = {corrupt_dicom, truncated_dicom, dicom_without_pixels, uneven_slice_spacing}


@pytest.mark.parametrize("make", CASES, ids=[c.__name__ for c in CASES])
def test_one_line_exit_2_nothing_written(tmp_path, make):
    args, bad, reason = make(tmp_path)
    out = tmp_path / "out"
    r = cli(*[a.replace("{out}", str(out)) for a in args])
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("breastseg: error: "), r.stderr
    assert "Traceback" not in r.stderr and str(bad) in r.stderr and reason in r.stderr, r.stderr
    assert not out.exists() and not list(tmp_path.glob(".out*")), "partial output left behind"


@pytest.mark.parametrize("make", sorted(SKIPPABLE, key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_skip_converts_the_rest_and_quarantines(tmp_path, make):
    args, bad, reason = make(tmp_path)
    out = tmp_path / "out"
    r = cli(*[a.replace("{out}", str(out)) for a in args], "--on-error", "skip")
    assert r.returncode == 0, r.stderr
    skipped = json.loads((out / "quarantine.json").read_text())["skipped"]
    assert len(skipped) == 1 and reason in skipped[0]["reason"]
    assert (tmp_path / "in" / skipped[0]["path"]) in (bad, *bad.parents)


def test_dicom_values_never_reach_a_path(tmp_path):
    """PatientID ``../../etc`` and a SeriesDescription with ``/`` leave no trace in output paths."""
    ident = syn.Identity(patient_id="../../etc", patient_name="../../x^y")
    syn.write_series(tmp_path / "in", syn.SeriesSpec(series_number=3, description="a/../../b", identity=ident))
    out = tmp_path / "work" / "out"
    r = cli("convert", str(tmp_path / "in"), str(out))
    assert r.returncode == 0, r.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "in" not in p.relative_to(tmp_path).parts[:1]]
    assert written and all(out in p.parents for p in written)
    assert not any(part in ("..", "etc", "b") for p in written for part in p.relative_to(out).parts)
    # and in the DCE path, the folder is named by the pseudonym the caller gives, never by a DICOM value
    pdir = _dce(tmp_path / "pat", patient_id="../../etc")
    r = cli("convert", "--dce", "--patient-id", "P000000000002", str(pdir), str(tmp_path / "dce"))
    assert r.returncode == 0, r.stderr
    assert all((tmp_path / "dce") in p.parents for p in (tmp_path / "dce").rglob("*"))
    assert not (tmp_path / "etc").exists() and not (tmp_path.parent / "etc").exists()
