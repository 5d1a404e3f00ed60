"""The everyday loop: new patients and new annotations arrive, `dvc add`, rerun. Only they are converted, no
earlier patient changes subset, each patient records the data version it joined in, a new model version is
trained and `champion` moves only if the gate allowed it; checking out the earlier data version reproduces that
version's metrics; the cohort and the models go to and come back from a DVC remote."""
from __future__ import annotations

import hashlib
import json
import time
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from workspace import _copy_repo, _run, _snakemake

CONFIG = """cohort: {name: c1, root: data/raw/c1}
run: {experiments: [bpe_mri, mass_us_bmode]}
tune: {n_trials: 2, workers: 1, max_epochs: 1, pruner: median,
       space: {lr: {type: float, low: 0.001, high: 0.01, log: true}}}
"""


def _jobs(out: str, rule: str) -> int:
    m = re.search(rf"^{rule}\s+(\d+)\s*$", out, re.M)
    return int(m.group(1)) if m else 0


def _synth(repo: Path, out: Path, patients: int, seed: int) -> None:
    r = _run(repo, sys.executable, "-m", "breastseg.cli", "-q", "synth", str(out), "--patients", str(patients),
             "--seed", str(seed), "--from-params")
    assert r.returncode == 0, r.stderr[-3000:]


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    r = _run(repo, sys.executable, "-m", "dvc", *args)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r


def _converted_since(repo: Path, dataset: str, start: float) -> list[str]:
    """The patients whose raw files were decoded since ``start`` (their conversion stamp is newer)."""
    return [p.parent.name for p in (repo / "data" / "interim" / dataset).glob("P*/.converted")
            if p.stat().st_mtime >= start]


def _split(repo: Path, exp: str) -> dict:
    return json.loads((repo / "data" / "splits" / f"{exp}.json").read_text())


@pytest.mark.slow
def test_new_patients_and_annotations_retrain_incrementally(tmp_path):
    repo = _copy_repo(tmp_path / "repo")
    (repo / "c1.yaml").write_text(CONFIG)
    cohort = repo / "data" / "raw" / "c1"
    _synth(repo, cohort, 6, 3)
    shutil.rmtree(cohort / "truth")
    _dvc(repo, "remote", "add", "-f", "-d", "local", str(tmp_path / "remote"))
    _dvc(repo, "add", "data/raw/c1")
    _dvc(repo, "push")  # the first data version is on the remote
    shutil.copytree(cohort / "mri", tmp_path / "c1-v1")
    sm = ("--configfile", "c1.yaml")

    dry = _snakemake(repo, *sm, "-n")
    assert _jobs(dry.stdout, "convert_mri") >= 1 and _jobs(dry.stdout, "convert_us") >= 1, dry.stdout[-3000:]
    start = time.time()
    first = _snakemake(repo, *sm)
    assert first.returncode == 0, first.stderr[-5000:]
    assert len(_converted_since(repo, "mri", start)) == 6 and len(_converted_since(repo, "us", start)) == 6
    before = {e: _split(repo, e) for e in ("bpe_mri", "mass_us_bmode")}
    metrics_v1 = {e: json.loads((repo / "metrics" / f"{e}.json").read_text()) for e in before}
    tested_v1 = {e: json.loads((repo / "results" / e / "evaluation.json").read_text())["test_patients"] for e in before}
    dvc_v1 = (repo / "data" / "raw" / "c1.dvc").read_text()
    v1 = before["bpe_mri"]["data_versions"]
    assert len(v1) == 1 and v1[0].startswith("dvc-")

    # Timestamps alone (a dvc checkout, a copy) change nothing: detection is by content.
    for f in cohort.rglob("*"):
        if f.is_file():
            os.utime(f, (f.stat().st_atime + 60, f.stat().st_mtime + 60))
    assert "Nothing to be done" in _snakemake(repo, *sm, "-n").stdout

    # New patients arrive, and one earlier MRI patient gets one more annotated slice.
    _synth(repo, tmp_path / "new", 2, 4)
    for dataset in ("mri", "us"):
        for p in (tmp_path / "new" / dataset).iterdir():
            assert not (cohort / dataset / p.name).exists()
            shutil.copytree(p, cohort / dataset / p.name) if p.is_dir() else shutil.copy2(p, cohort / dataset / p.name)
    earlier = sorted(p for p in (cohort / "mri").iterdir() if not (tmp_path / "new" / "mri" / p.name).exists())
    labels = sorted(earlier[0].rglob("labels.nii.gz"))[0]  # an earlier patient's, not a newcomer's
    img = nib.load(labels)
    lab = np.asarray(img.dataobj).copy()
    annotated = [k for k in range(lab.shape[2]) if (lab[:, :, k] != 255).any()]
    empty = [k for k in range(lab.shape[2]) if (lab[:, :, k] == 255).all()]
    assert annotated and empty
    lab[:, :, empty[0]] = lab[:, :, annotated[0]]
    nib.save(nib.Nifti1Image(lab, img.affine, img.header), labels)
    _dvc(repo, "add", "data/raw/c1")

    start = time.time()
    second = _snakemake(repo, *sm)
    assert second.returncode == 0, second.stderr[-5000:]
    # counted in patients converted, not in jobs (one job converts the changed patients of its shard)
    assert len(_converted_since(repo, "mri", start)) == 3  # 2 new + the one with a new annotation
    assert len(_converted_since(repo, "us", start)) == 2   # the 2 new ones only

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    for e in ("bpe_mri", "mass_us_bmode"):
        after = _split(repo, e)
        old, new = before[e]["patients"], after["patients"]
        assert all(new[p]["subset"] == v["subset"] and new[p]["joined"] == v1[0] for p, v in old.items())
        added = set(new) - set(old)
        assert len(added) == 2 and len(after["data_versions"]) == 2
        assert all(new[p]["joined"] == after["data_versions"][1] for p in added)
        model = json.loads((repo / "models" / e / "model.json").read_text())
        assert model["version"] == "2"
        tags = client.get_model_version(model["model_name"], "2").tags
        assert tags["breastseg.data_version"] == after["data_versions"][1] and tags["breastseg.git_commit"]
        assert tags["breastseg.split_hash"] and tags["breastseg.data_hash"].startswith(after["data_versions"][1][4:])
        decision = json.loads((repo / "results" / e / "decision.json").read_text())
        champion = str(client.get_model_version_by_alias(model["model_name"], "champion").version)
        assert champion == ("2" if decision["promoted"] else "1")
        assert decision["champion_before"]["version"] == "1"  # re-scored on the challenger's val patients
        assert decision["decided_on"] == "val" and decision["comparable"]
        assert decision["val_patients"] == sorted(p for p, v in after["patients"].items() if v["subset"] == "val")
        assert decision["reported_test"]["test_patients"] == sorted(p for p, v in after["patients"].items()
                                                                     if v["subset"] == "test")

    # The cohort and the models go to the DVC remote and come back, byte for byte (`dvc commit` records the
    # outputs of a plain snakemake run in dvc.lock, as `dvc repro` would).
    _dvc(repo, "commit", "-f")
    digests, models = _digests(cohort), _digests(repo / "models")
    assert any(name.endswith("inference/weights.pt") for name in models)
    _dvc(repo, "push")
    shutil.rmtree(cohort)
    shutil.rmtree(repo / "models")
    shutil.rmtree(repo / ".dvc" / "cache")
    _dvc(repo, "pull")
    assert _digests(cohort) == digests and _digests(repo / "models") == models

    # Back to the first data version (`git checkout <rev> data/raw/c1.dvc && dvc pull data/raw/c1.dvc`: the
    # local cache no longer holds it): the pipeline reproduces that version's metrics on that version's
    # patients, with a model trained from scratch again.
    (repo / "data" / "raw" / "c1.dvc").write_text(dvc_v1)
    _dvc(repo, "pull", "data/raw/c1.dvc")
    assert sorted(p.name for p in (cohort / "mri").iterdir()) == sorted(p.name for p in (tmp_path / "c1-v1").iterdir())
    again = _snakemake(repo, *sm)
    assert again.returncode == 0, again.stderr[-5000:]
    for e, old in metrics_v1.items():
        now = json.loads((repo / "metrics" / f"{e}.json").read_text())
        assert json.loads((repo / "results" / e / "evaluation.json").read_text())["test_patients"] == tested_v1[e]
        assert now["dice_mean"] == pytest.approx(old["dice_mean"], abs=1e-6), (e, now["dice_mean"], old["dice_mean"])
        assert json.loads((repo / "models" / e / "model.json").read_text())["version"] == "3"
