"""Crashes and concurrent runs lose nothing: jobs killed mid-way (convert, tune, train, and Snakemake itself),
then `snakemake --rerun-incomplete`, give the metrics of an uninterrupted run; a second Snakemake on the same
folder is refused by its lock."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from workspace import _copy_repo, _snakemake

EXP = "mass_us_bmode"
CONFIG = f"""run: {{experiments: [{EXP}]}}
train: {{max_epochs: 3}}
tune: {{n_trials: 2, workers: 1, max_epochs: 1, pruner: median,
       space: {{lr: {{type: float, low: 0.001, high: 0.01, log: true}}}}}}
"""


def _start(repo: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    env.update(PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    return subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "crash.yaml", *args],
                            cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _job(proc: subprocess.Popen, words: tuple[str, ...]) -> psutil.Process | None:
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    for child in children:
        try:
            cmd = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "breastseg.cli" in cmd or "/breastseg " in cmd or cmd.startswith("breastseg "):
            if all(w in cmd.split() for w in words) and child.name() != "sh":
                return child
    return None


def _wait(condition, proc: subprocess.Popen, what: str, timeout: float = 600):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = condition()
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {what}: {proc.stdout.read()[-3000:]}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def _running_trial(repo: Path) -> bool:
    db = repo / "mlflow.db"
    if not db.exists():
        return False
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("select count(*) from runs r join tags t on r.run_uuid = t.run_uuid where "
                               "t.key = 'breastseg.stage' and t.value = 'trial' and r.status = 'RUNNING'"
                               ).fetchone()[0] > 0
    except sqlite3.Error:
        return False


def _kill_job(repo: Path, words: tuple[str, ...], ready=lambda: True) -> str:
    """Run Snakemake until a job matching ``words`` is past ``ready``, SIGKILL that job, let Snakemake stop."""
    proc = _start(repo)
    job = _wait(lambda: ready() and _job(proc, words), proc, " ".join(words))
    job.kill()
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode != 0, out[-3000:]
    return out


def _metrics(repo: Path) -> dict:
    m = json.loads((repo / "results" / EXP / "evaluation.json").read_text())  # every figure (metrics/: headline)
    return {k: m[k] for k in ("dice_mean", "per_patient", "test_patients", "n_slices")}


@pytest.mark.slow
def test_killed_jobs_and_runs_resume_to_the_same_metrics(tmp_path):
    baseline = _copy_repo(tmp_path / "baseline")
    (baseline / "crash.yaml").write_text(CONFIG)
    r = _snakemake(baseline, "--configfile", "crash.yaml")
    assert r.returncode == 0, r.stderr[-4000:]

    repo = _copy_repo(tmp_path / "crash")
    (repo / "crash.yaml").write_text(CONFIG)
    # 1. a conversion job killed mid-way: Snakemake stops, removes its half-written output
    _kill_job(repo, ("convert-shard",))
    # 2. a tune worker killed inside a trial: the trial stays RUNNING in Optuna and MLflow
    _kill_job(repo, ("tune", EXP), ready=lambda: _running_trial(repo))
    # 3. the final training killed after its first checkpoint
    last = repo / "models" / EXP / "checkpoints" / "last.ckpt"
    _kill_job(repo, ("train", EXP), ready=last.exists)
    # 4. Snakemake itself killed (a lost terminal, a power cut) while it trains again: the job is incomplete
    proc = _start(repo, "--rerun-incomplete")
    _wait(lambda: _job(proc, ("train", EXP)), proc, "the training to restart")
    # ... and meanwhile a second Snakemake on the same folder is refused by the lock, with a clear message
    second = _snakemake(repo, "--configfile", "crash.yaml")
    assert second.returncode != 0 and "Directory cannot be locked" in second.stdout + second.stderr
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)

    unlock = _snakemake(repo, "--configfile", "crash.yaml", "--unlock")
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    final = _snakemake(repo, "--configfile", "crash.yaml", "--rerun-incomplete")
    assert final.returncode == 0, final.stderr[-4000:]
    assert _metrics(repo) == _metrics(baseline)

    import optuna

    storage = f"sqlite:///{repo / 'optuna.db'}"
    [summary] = optuna.get_all_study_summaries(storage)
    states = [t.state for t in optuna.load_study(study_name=summary.study_name, storage=storage).trials]
    assert states.count(optuna.trial.TrialState.FAIL) >= 1          # the killed trial, failed, not counted
    assert sum(s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for s in states) == 2
    assert optuna.trial.TrialState.RUNNING not in states
