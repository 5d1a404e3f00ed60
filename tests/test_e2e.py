"""End to end: the whole Snakemake pipeline on a tiny synthetic cohort, in a temporary copy of the repo."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ("bpe_mri", "mass_us_entropy", "mass_us_bmode")


def _copy_repo(dst: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    return dst


def _snakemake(repo: Path, *args: str) -> subprocess.CompletedProcess:
    bindir = str(Path(sys.executable).parent)
    env = {**__import__("os").environ, "PATH": f"{bindir}:{__import__('os').environ['PATH']}"}
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "tests/e2e_config.yaml",
                           *args], cwd=repo, capture_output=True, text=True, env=env, timeout=1500)


@pytest.mark.slow
def test_pipeline_end_to_end(tmp_path):
    repo = _copy_repo(tmp_path / "repo")
    r = _snakemake(repo)
    assert r.returncode == 0, r.stderr[-5000:]

    for e in EXPERIMENTS:
        m = json.loads((repo / "metrics" / f"{e}.json").read_text())
        assert m["n_patients"] >= 1 and m["dice_mean"] is not None and 0 <= m["dice_mean"] <= 1
        assert (repo / "results" / e / "overlays.png").exists()
        split = json.loads((repo / "data" / "splits" / f"{e}.json").read_text())["patients"]
        subsets = {s: {p for p, v in split.items() if v["subset"] == s} for s in ("train", "val", "test")}
        assert not (subsets["train"] & subsets["test"]) and not (subsets["val"] & subsets["test"])
    us = [json.loads((repo / "data" / "splits" / f"{e}.json").read_text())["patients"] for e in EXPERIMENTS[1:]]
    assert us[0] == us[1]
    assert (repo / "results" / "summary.html").read_text().count("<tr>") == 4
    assert (repo / "logs" / "train" / "bpe_mri.log").exists()

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    for e in EXPERIMENTS:
        champion = client.get_model_version_by_alias(f"breastseg-{e}", "champion")
        assert str(champion.version) == json.loads((repo / "models" / e / "model.json").read_text())["version"]
        runs = client.search_runs([client.get_experiment_by_name(e).experiment_id])
        stages = sorted(r.data.tags.get("breastseg.stage") for r in runs)
        assert stages == ["evaluate", "train", "trial", "trial", "tune"]

    # No patient-identifying value from the raw DICOM leaves the raw folder.
    truth = sorted((repo / "data" / "raw" / "demo" / "mri").iterdir())
    names = [p.name for p in truth]
    outputs = [p for d in ("data/interim", "data/processed", "data/splits", "results", "metrics", "logs", "models")
               for p in (repo / d).rglob("*") if p.is_file()]
    for p in outputs:
        blob = p.read_bytes()
        for name in names:
            assert name.encode() not in blob, f"{name} found in {p}"

    # Nothing left to do.
    dry = _snakemake(repo, "-n")
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]
