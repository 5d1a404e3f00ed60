"""End to end: the whole Snakemake pipeline on a tiny synthetic cohort, in a temporary copy of the repo."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
from workspace import _copy_repo, _run, _snakemake  # noqa: E402

EXPERIMENTS = ("bpe_mri", "mass_us_entropy", "mass_us_bmode")


RUNNABLE = "<!-- runnable"


def readme_blocks(readme: Path = ROOT / "README.md") -> list[str]:
    """The README's bash blocks marked ``<!-- runnable -->``: what a newcomer types after ``make run``."""
    lines, blocks = readme.read_text().splitlines(), []
    for i, line in enumerate(lines):
        if line.startswith(RUNNABLE):
            assert lines[i + 1] == "```bash", f"README.md:{i + 2}: a runnable mark precedes a bash block"
            end = lines.index("```", i + 2)
            blocks.append("\n".join(lines[i + 2:end]))
    return blocks


def run_in_clean_shell(repo: Path, block: str, home: Path) -> subprocess.CompletedProcess:
    """``block`` in a new login-less shell: no variables but a PATH without the environment, a HOME with git's
    identity (DVC experiments commit), stopping at the first failing command."""
    home.mkdir(parents=True, exist_ok=True)
    (home / ".gitconfig").write_text("[user]\n\tname = New User\n\temail = new.user@example.org\n")
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "TERM": "dumb",
           "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(["bash", "-e", "-c", block], cwd=repo, capture_output=True, text=True, env=env, timeout=1500)


def test_readme_marks_its_runnable_blocks():
    blocks = readme_blocks()
    assert len(blocks) >= 4
    assert sum("source .venv/bin/activate" in b for b in blocks) >= 3 and any("make dag" in b for b in blocks)
    assert any("breastseg predict" in b for b in blocks) and any("dvc exp run" in b for b in blocks)


@pytest.mark.slow
def test_pipeline_end_to_end(tmp_path):
    repo = _copy_repo(tmp_path / "repo")
    r = _snakemake(repo)
    assert r.returncode == 0, r.stderr[-5000:]

    for e in EXPERIMENTS:
        m = json.loads((repo / "metrics" / f"{e}.json").read_text())
        # Only the range: one epoch on a one-patient test split (one scan for ultrasound) gives Dice 0 for some
        # experiments; tests/training/test_learned_something.py checks that training beats trivial baselines.
        assert m["n_patients"] >= 1 and m["dice_mean"] is not None and 0 <= m["dice_mean"] <= 1
        assert len(m) <= 10 and all(v is None or isinstance(v, (int, float)) for v in m.values()), m  # flat
        assert m["dice_per_image"] is not None and m["split_by_image"] == 0  # RF per patient: women apart
        full = json.loads((repo / "results" / e / "evaluation.json").read_text())
        assert full["dice_mean"] == pytest.approx(m["dice_mean"], abs=5e-5) and full["environment"]["torch"]
        assert (repo / "results" / e / "overlays.png").exists()
        split = json.loads((repo / "data" / "splits" / f"{e}.json").read_text())["patients"]
        subsets = {s: {p for p, v in split.items() if v["subset"] == s} for s in ("train", "val", "test")}
        assert not (subsets["train"] & subsets["test"]) and not (subsets["val"] & subsets["test"])
        assert sorted(subsets["test"]) == full["test_patients"]
        decision = json.loads((repo / "results" / e / "decision.json").read_text())
        assert decision["decided_on"] == "val" and decision["val_patients"] == sorted(subsets["val"])
        assert decision["promoted"] and decision["comparable"]  # the first model: no champion yet
    us = [json.loads((repo / "data" / "splits" / f"{e}.json").read_text())["patients"] for e in EXPERIMENTS[1:]]
    assert us[0] == us[1]
    summary = (repo / "results" / "summary.html").read_text()
    assert all(e in summary for e in EXPERIMENTS) and "Wilcoxon" in summary and "kappa" in summary
    # overlays, box plots, calibration, comparison, learning curves
    assert summary.count("data:image/png;base64") == 3 + 3 + 1 + 1 + 1
    comparison = json.loads((repo / "results" / "comparisons" / "entropy_vs_bmode.json").read_text())
    assert comparison["wilcoxon"]["patients"] == json.loads(
        (repo / "results" / "mass_us_bmode" / "evaluation.json").read_text())["test_patients"]
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
    # ... nor any identifying DICOM value, in any output, database, log, artifact or page.
    import pydicom

    values = set()
    for f in (repo / "data" / "raw" / "demo" / "mri").rglob("*.dcm"):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        values |= {str(ds.get(k, "")) for k in ("PatientName", "PatientID", "PatientBirthDate")}
    values = {v for v in values if len(v) >= 4}
    assert values
    everything = [p for d in ("data/interim", "data/processed", "data/splits", "results", "metrics", "plots", "logs",
                              "models", "mlartifacts") for p in (repo / d).rglob("*") if p.is_file()]
    everything += list((repo / ".snakemake" / "log").glob("*.log"))  # Snakemake's own log: no raw path either
    for p in [*everything, repo / "mlflow.db", repo / "optuna.db"]:
        blob = p.read_bytes()
        for v in (*values, *names):
            assert v.encode() not in blob, f"an identifying value is in {p}"

    # The Snakemake report holds the figures with their captions and opens in a browser.
    rep = _snakemake(repo, "--report", "report.html")
    assert rep.returncode == 0 and (repo / "report.html").stat().st_size > 100_000, rep.stderr[-2000:]
    if shutil.which("chromium"):
        dom = _run(repo, "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync", "--dump-dom", "--virtual-time-budget=15000",
                   (repo / "report.html").as_uri()).stdout
        for text in ("Evaluation", "Comparisons", "Summary", "patient-level splits"):
            assert text in dom, text

    # Nothing left to do.
    dry = _snakemake(repo, "-n")
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]

    # DVC wraps the same pipeline: the first repro only records the lock (Snakemake has nothing to do),
    # the second skips the stage.
    first = _run(repo, sys.executable, "-m", "dvc", "repro")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "Nothing to be done" in first.stdout + first.stderr
    second = _run(repo, sys.executable, "-m", "dvc", "repro")
    assert second.returncode == 0 and "didn't change" in second.stdout, second.stdout[-2000:]
    # DVC caches `models` (for dvc push): it must leave the files and their timestamps alone, or Snakemake would
    # see the models newer than their evaluations and rerun them.
    assert (repo / ".dvc" / "cache").is_dir() and any((repo / ".dvc" / "cache").rglob("*"))
    dry = _snakemake(repo, "-n")
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]
    shown = _run(repo, sys.executable, "-m", "dvc", "metrics", "show", "--json")
    assert "dice_mean" in shown.stdout, shown.stdout + shown.stderr

    # What to annotate next: each champion ranks the unannotated slices (scans); the worklist and its montage
    # are logged on the champion's MLflow run.
    wl = _snakemake(repo, "worklists")
    assert wl.returncode == 0, wl.stderr[-3000:]
    import csv

    for e in EXPERIMENTS:
        rows = list(csv.DictReader((repo / "results" / e / "worklist.csv").open()))
        assert (repo / "results" / e / "worklist.png").read_bytes()[:4] == b"\x89PNG"
        champion = client.get_model_version_by_alias(f"breastseg-{e}", "champion")
        assert all(r["model_version"] == str(champion.version) for r in rows)
        logged = [a.path for a in client.list_artifacts(champion.run_id, "worklist/entropy")]
        assert sorted(Path(a).name for a in logged) == ["worklist.csv", "worklist.png"], logged
    mri_rows = list(csv.DictReader((repo / "results" / "bpe_mri" / "worklist.csv").open()))
    assert mri_rows and all(r["patient"].startswith("P") and r["strategy"] == "entropy" for r in mri_rows)

    # A newcomer follows the README after the run, in a clean shell: no "not found", no traceback.
    (repo / ".venv").symlink_to(Path(sys.executable).parents[1])  # the environment `make` made
    for block in readme_blocks(repo / "README.md"):
        r = run_in_clean_shell(repo, block, repo.parent / "home")
        out = r.stdout + r.stderr
        assert r.returncode == 0 and "not found" not in out and "Traceback" not in out, f"{block}\n---\n{out[-4000:]}"
    assert (repo / "out" / "demo-study" / "readout.json").exists() and (repo / "report.html").exists()
    assert (repo / "dag.svg").exists() or (repo / "dag.mmd").exists()
