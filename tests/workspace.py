"""A copy of the project to run the workflow in (the whole-pipeline and workflow tests share it)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _copy_repo(dst: Path) -> Path:
    """A git repository holding the project's files, with params.yaml shrunk by tests/e2e_config.yaml."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for f in files:  # not the working copy's ledgers and metrics: the copy's tiny cohort makes its own
        if (ROOT / f).is_file() and not f.startswith(("data/splits/", "metrics/")):
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    for key, value in yaml.safe_load((dst / "tests" / "e2e_config.yaml").read_text()).items():
        params[key] = value
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        subprocess.run(["git", *cmd], cwd=dst, check=True, capture_output=True)
    return dst


def _run(repo: Path, *cmd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):  # the copy's own params.yaml stores
        env.pop(k, None)
    return subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env=env, timeout=1500)


def _snakemake(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return _run(repo, sys.executable, "-m", "snakemake", "--cores", "2", *args)
