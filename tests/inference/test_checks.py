"""`breastseg predict` before and after the model: an unresolvable model URI and a bad input are refused in one
line (no store created, no model loaded), the last line names the outputs, and an input unlike the training data
(geometry outside the ranges recorded in the bundle) is warned about on stderr and in the read-out."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference_fixtures import mri_bundle, us_bundle, us_dicom
from inference_fixtures import rf_npz

URI = "models:/breastseg-bpe_mri@champion"


def _rf_npz(path: Path, **kw) -> Path:
    return rf_npz(path, **{"roi": False, **kw})  # without a mask unless asked


def _predict_in_fresh_shell(cwd: Path, argv: list[str], env_extra: dict | None = None):
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd.parent / "home"), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "breastseg.cli", "predict", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_no_registry_gives_one_line_and_creates_nothing(tmp_path):
    """Outside the project, no MLFLOW_TRACKING_URI: one line saying where it looked and how to point it; no
    mlflow.db (MLflow's default store) appears in the current folder. A params file naming a store that does
    not exist: refused the same way, the file not created."""
    cwd, study = tmp_path / "cwd", tmp_path / "study"
    cwd.mkdir()
    study.mkdir()
    (study / "x.dcm").write_bytes(b"\0" * 200)
    proc = _predict_in_fresh_shell(cwd, [URI, str(study), str(tmp_path / "out")])
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"breastseg: error: {URI}: cannot resolve the model: no model registry is configured")
    assert "MLFLOW_TRACKING_URI" in err[0] and "run from the project folder" in err[0] and "bundle folder" in err[0]
    assert os.listdir(cwd) == [] and not (tmp_path / "out").exists()

    (cwd / "params.yaml").write_text("tracking:\n  mlflow_uri: sqlite:///mlflow.db\n")
    proc = _predict_in_fresh_shell(cwd, [URI, str(study), str(tmp_path / "out")])
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, err
    assert "the store sqlite:///mlflow.db (from the params file params.yaml) does not exist" in err[0]
    assert sorted(os.listdir(cwd)) == ["params.yaml"]


def test_missing_sqlite_store_from_environment_is_refused(tmp_path, monkeypatch, capsys):
    from breastseg.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///nowhere/mlflow.db")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)  # tracking.configure in earlier tests exports it
    scan = _rf_npz(tmp_path / "scan.npz")
    for uri in (URI, "runs:/0123456789abcdef/model"):
        assert main(["-q", "--params", str(tmp_path / "none.yaml"), "predict", uri, str(scan), "out"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "(from $MLFLOW_TRACKING_URI) does not exist" in err[0], err
        assert "sqlite:///nowhere/mlflow.db" in err[0] and "set MLFLOW_TRACKING_URI" in err[0]
    assert sorted(os.listdir(tmp_path)) == ["scan.npz"]


@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if predict loads a network."""
    import breastseg.inference.api as api

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(api, "load_bundle", refuse)


def test_bad_input_is_refused_before_the_model_loads(tmp_path, capsys, no_loading, monkeypatch):
    import pydicom

    from breastseg.cli import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    us = str(us_bundle(tmp_path / "us"))
    mri = str(mri_bundle(tmp_path / "mri"))
    empty = tmp_path / "empty"
    empty.mkdir()
    mr = us_dicom(tmp_path / "mr.dcm")
    ds = pydicom.dcmread(mr)
    ds.Modality = "MR"
    ds.save_as(mr)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    cases = [
        (URI, tmp_path / "missing", "no such file or folder"),  # checked before the registry is consulted
        (us, tmp_path / "missing", "no such file or folder"),
        (us, empty, "is an empty folder"),
        (us, mr, "is a MR image; ultrasound models segment US images"),
        (us, text, "unsupported input type '.txt'"),
        (mri, _rf_npz(tmp_path / "scan.npz"), "expected a DICOM study folder"),
    ]
    for model, path, reason in cases:
        assert main(["-q", "--params", str(tmp_path / "none.yaml"), "predict", model, str(path),
                     str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and reason in err[0] and str(path) in err[0], (reason, err)
    assert not (tmp_path / "out").exists()


def test_last_line_names_the_outputs(tmp_path, capsys):
    from breastseg.cli import main

    bundle = str(us_bundle(tmp_path / "m"))
    out = tmp_path / "out"
    assert main(["-q", "predict", bundle, str(_rf_npz(tmp_path / "scan.npz")), str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"breastseg: wrote {out}: labels.nii.gz, overlay.png, readout.json"
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in ("a", "b"):
        _rf_npz(folder / f"{name}.npz")
    assert main(["-q", "predict", bundle, str(folder), str(tmp_path / "out2")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == (f"breastseg: wrote {tmp_path / 'out2'}: predictions.json and 2 input folders (a, b) with "
                    "labels.nii.gz, overlay.png, readout.json")


def test_library_info_logs_are_quiet(tmp_path):
    """Without -q: no INFO line of highdicom (source UIDs), mlflow or lightning; the outputs line on stdout."""
    src = us_dicom(tmp_path / "in" / "img.dcm")
    bundle = us_bundle(tmp_path / "m")
    proc = _predict_in_fresh_shell(tmp_path, [str(bundle), str(src), str(tmp_path / "out")])
    assert proc.returncode == 0, proc.stderr
    assert not [line for line in proc.stderr.splitlines() if " INFO highdicom" in line or " INFO mlflow" in line
                or " INFO lightning" in line], proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == \
        f"breastseg: wrote {tmp_path / 'out'}: labels.nii.gz, overlay.png, readout.json, seg.dcm"


# ------------------------------------------------------------------------------------------ training ranges


def test_us_input_deeper_than_training_is_warned(tmp_path, capsys):
    from breastseg.cli import main
    from breastseg.data.ranges import training_ranges
    from breastseg.us.maps import write_decoded_patient

    write_decoded_patient([_rf_npz(tmp_path / "train.npz", samples=200, roi=True)], tmp_path / "interim" / "P1",
                          patient_id="P1")
    ranges = training_ranges("us", tmp_path / "interim", ["P1", "P-not-converted"])
    dz = 1540 / (2 * 40e6) * 1e3
    assert ranges["patients"] == 1 and ranges["quantities"]["depth_mm"]["max"] == pytest.approx(200 * dz, abs=1e-5)
    assert ranges["quantities"]["lines"] == {"min": 24.0, "max": 24.0, "unit": ""}
    bundle = str(us_bundle(tmp_path / "m", training_ranges=ranges))

    deep = _rf_npz(tmp_path / "deep.npz", samples=400, seed=1)  # twice the training depth
    assert main(["-q", "predict", bundle, str(deep), str(tmp_path / "o1")]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(err) == 1, err
    assert err[0].startswith(f"breastseg: warning: {deep}: image depth 7.7 mm is outside the training range 3.85 mm")
    (w,) = json.loads((tmp_path / "o1" / "readout.json").read_text())["warnings"]
    assert w["quantity"] == "depth_mm" and w["value"] == pytest.approx(400 * dz, abs=1e-5)
    assert w["training_min"] == w["training_max"] == pytest.approx(200 * dz, abs=1e-5) and w["message"] in err[0]

    same = _rf_npz(tmp_path / "same.npz", samples=220, seed=2)
    assert main(["-q", "predict", bundle, str(same), str(tmp_path / "o2")]) == 0
    assert "warning" not in capsys.readouterr().err
    assert json.loads((tmp_path / "o2" / "readout.json").read_text())["warnings"] == []
    # a bundle without ranges: no warning, no error
    assert main(["-q", "predict", str(us_bundle(tmp_path / "old")), str(deep), str(tmp_path / "o3")]) == 0
    assert "warning" not in capsys.readouterr().err
    assert training_ranges("us", tmp_path / "interim", ["P-not-converted"]) is None


def test_mri_study_with_thick_slices_is_warned(tmp_path, capsys):
    from breastseg.cli import main
    from breastseg.dicom.dce import convert_dce_patient
    from breastseg.data.ranges import training_ranges
    from breastseg.synth import mri as mri_mod

    identity = {"patient_id": "BRS-1", "name": "Doe^Jane", "birth_date": "19700101", "age": "050Y",
                "study_date": "20200101", "accession": "A1", "study_id": "1", "institution": "Test Hospital",
                "referring": "Keller^Thomas"}
    studies = {}
    for slice_mm in (3.0, 9.0):
        rng = np.random.default_rng(5)  # same field of view: only the slice spacing differs
        phantom = mri_mod.simulate_mri(rng, 24, 6, 1, slice_mm=slice_mm)
        studies[slice_mm] = tmp_path / f"raw{slice_mm:g}" / "BRS-1" / "study"
        mri_mod.write_study(studies[slice_mm], phantom, identity, rng, (5, int(slice_mm)), annotated_fraction=0.7,
                            layout="flat")
    convert_dce_patient(studies[3.0].parent, tmp_path / "interim" / "P0", patient_id="P0")
    ranges = training_ranges("mri", tmp_path / "interim", ["P0"])
    assert ranges["quantities"]["slice_spacing_mm"]["min"] == ranges["quantities"]["slice_spacing_mm"]["max"] == 3.0
    bundle = str(mri_bundle(tmp_path / "m", training_ranges=ranges))

    assert main(["-q", "predict", bundle, str(studies[9.0]), str(tmp_path / "o1")]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(err) == 1 and "slice spacing 9 mm is outside the training range 3 mm" in err[0], err
    (w,) = json.loads((tmp_path / "o1" / "readout.json").read_text())["warnings"]
    assert (w["quantity"], w["value"], w["training_min"], w["training_max"]) == ("slice_spacing_mm", 9.0, 3.0, 3.0)

    assert main(["-q", "predict", bundle, str(studies[3.0]), str(tmp_path / "o2")]) == 0
    assert "warning" not in capsys.readouterr().err
    assert json.loads((tmp_path / "o2" / "readout.json").read_text())["warnings"] == []


def test_mri_study_with_other_intensities_is_warned(tmp_path, capsys):
    """Preparation records each training study's intensities (the pre-contrast 99.5th percentile and the
    enhancement relative to it); a study from a scanner whose values are 6x lower is named in a warning."""
    from breastseg.cli import main
    from breastseg.config import Experiment
    from breastseg.data.slices import prepare_patient
    from breastseg.dicom.dce import convert_dce_patient
    from breastseg.data.ranges import training_ranges
    from breastseg.synth import mri as mri_mod

    identity = {"patient_id": "BRS-2", "name": "Doe^Jane", "birth_date": "19700101", "age": "050Y",
                "study_date": "20200101", "accession": "A2", "study_id": "1", "institution": "Test Hospital",
                "referring": "Keller^Thomas"}
    studies = {}
    for gain in (1.0, 1 / 6):
        rng = np.random.default_rng(6)  # the same phantom and files: only the signal's scale differs
        phantom = mri_mod.simulate_mri(rng, 24, 6, 1, slice_mm=3.0)
        phantom.phases = [p * gain for p in phantom.phases]
        studies[gain] = tmp_path / f"raw{gain:.3f}" / "BRS-2" / "study"
        mri_mod.write_study(studies[gain], phantom, identity, rng, (5, 3), annotated_fraction=0.7, layout="flat",
                            rescaled=False)
    convert_dce_patient(studies[1.0].parent, tmp_path / "interim" / "P0", patient_id="P0")
    exp = Experiment.from_dict({"name": "bpe_mri", "dataset": "mri", "channels": ["pre", "sub"], "classes": 3,
                                "image_size": 24, "model": {"name": "unet", "features": [4, 8]}})
    prepare_patient(exp, tmp_path / "interim" / "P0", tmp_path / "processed" / "P0.npz", patient_id="P0")
    ranges = training_ranges("mri", tmp_path / "interim", ["P0"], tmp_path / "processed")
    q = ranges["quantities"]
    assert q["pre_p995"]["min"] == q["pre_p995"]["max"] > 0 and 0 < q["enhancement_p995"]["min"] < 5
    bundle = str(mri_bundle(tmp_path / "m", training_ranges=ranges))

    assert main(["-q", "predict", bundle, str(studies[1 / 6]), str(tmp_path / "o1")]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(err) == 1 and "pre-contrast intensity (99.5th percentile)" in err[0], err
    (w,) = json.loads((tmp_path / "o1" / "readout.json").read_text())["warnings"]
    assert w["quantity"] == "pre_p995" and w["value"] == pytest.approx(q["pre_p995"]["min"] / 6, rel=0.02)

    assert main(["-q", "predict", bundle, str(studies[1.0]), str(tmp_path / "o2")]) == 0
    assert "warning" not in capsys.readouterr().err
