"""`snakemake --lint`: the only findings left are the workflow constants in shell commands, explained in
workflow/rules/common.smk (and in a line at the top of every rule file)."""
import os
import re
import subprocess
import sys
from pathlib import Path

from workspace import _copy_repo

ROOT = Path(__file__).resolve().parents[2]
EXPLAINED = re.compile(r"Shell command directly uses variable (BREASTSEG|TRAIN_LAUNCH|SEEDS_ARG) from outside of the rule")


def test_lint_finds_only_the_explained_constants(tmp_path):
    repo = _copy_repo(tmp_path / "repo")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=repo, capture_output=True, text=True,
                       env=env, timeout=300)
    findings = [line.strip()[2:].rstrip(":") for line in (r.stdout + r.stderr).splitlines()
                if line.startswith("    * ")]
    assert findings, r.stdout[-2000:] + r.stderr[-2000:]  # the lint ran and reported
    assert [f for f in findings if not EXPLAINED.fullmatch(f)] == []
    for rules in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        if rules.name != "common.smk":
            assert rules.read_text().startswith("# snakemake --lint:"), rules.name
