"""Metrics are versioned and readable in DVC's own views: after a run and a commit DVC is up to date, the metrics
fit a terminal, `dvc exp show` has Dice for the baseline and an experiment, `dvc metrics diff` compares commits."""
import json
import subprocess
import sys

import pytest
from workspace import _copy_repo, _run


def _dvc(repo, *args):
    r = _run(repo, sys.executable, "-m", "dvc", *args)
    assert r.returncode == 0, f"dvc {' '.join(args)}: {r.stdout[-2000:]}{r.stderr[-3000:]}"
    return r.stdout


def _set_git_identity(repo):
    """A git identity in the repository's own config: ``dvc exp apply`` (and a commit) need one, and a fresh
    machine or an empty HOME has none; the user's global config is neither needed nor touched."""
    for key, value in (("user.name", "breastseg tests"), ("user.email", "tests@breastseg.invalid")):
        subprocess.run(["git", "config", "--local", key, value], cwd=repo, check=True, capture_output=True)


def _commit(repo, message):
    for cmd in (["add", "-A"], ["commit", "-qm", message]):
        subprocess.run(["git", *cmd], cwd=repo, check=True, capture_output=True)


@pytest.mark.slow
def test_metrics_in_dvc_views(tmp_path):
    repo = _copy_repo(tmp_path / "repo")
    _set_git_identity(repo)
    _dvc(repo, "repro")
    for e in ("bpe_mri", "mass_us_entropy", "mass_us_bmode"):
        metrics = json.loads((repo / "metrics" / f"{e}.json").read_text())
        assert metrics and all(v is None or isinstance(v, (int, float)) for v in metrics.values()), metrics  # flat
        assert len(metrics) <= 14 and "dice_mean" in metrics
    # the ledgers and the metrics are part of what a commit captures
    tracked_after = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo,
                                   capture_output=True, text=True).stdout
    assert "data/splits/demo/mri-ledger.json" in tracked_after and "metrics/bpe_mri.json" in tracked_after
    assert "dvc.lock" in tracked_after
    _commit(repo, "baseline run")
    status = _dvc(repo, "status")
    assert "up to date" in status, status
    shown = _dvc(repo, "metrics", "show")
    assert "dice_mean" in shown and max(map(len, shown.splitlines())) <= 160, shown

    _dvc(repo, "exp", "run", "-S", "train.max_epochs=2", "--name", "longer")
    table = json.loads(_dvc(repo, "exp", "show", "--json"))
    rows = []
    for commit in table:
        rows.append(commit)
        rows += [e for exp in (commit.get("experiments") or []) for e in exp.get("revs", [])]
    dice = {}
    for row in rows:
        data = row.get("data") or {}
        metrics = data.get("metrics") or {}
        found = [v["data"].get("dice_mean") for v in metrics.values() if isinstance(v.get("data"), dict)]
        dice[row.get("name") or data.get("rev")] = [d for d in found if d is not None]
    assert len(dice) >= 2 and all(len(v) == 3 for v in dice.values()), dice

    _dvc(repo, "exp", "apply", "longer")
    _commit(repo, "longer training")
    diff = _dvc(repo, "metrics", "diff", "HEAD~1", "HEAD")
    assert "dice_mean" in diff and "HEAD~1" in diff, diff
