"""Safe loading and safe serving, checked on the source itself: no unpickling of what a user passes, no
YAML object construction, servers bound to loopback unless told otherwise."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "src" / "breastseg").rglob("*.py"))
# The pipeline's own registry may hold models logged before the safe bundle existed: only evaluation, the
# champion gate and the warm start, which read models this pipeline registered, may fall back to MLflow's
# pickled flavour.
PICKLE_FALLBACK_ALLOWED = {"evaluation/evaluate.py", "evaluation/gate.py", "registry.py", "training/train.py"}
# Training tells cloudpickle to save the network classes by value with the model MLflow logs (serialisation of
# the pipeline's own model; nothing is unpickled there).
PICKLE_IMPORT_ALLOWED = {"training/train.py": {"cloudpickle"}}


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            yield owner, name, {k.arg: k.value for k in node.keywords}, node


def _true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def test_no_unsafe_deserialisation_in_the_package():
    problems = []
    for path in SOURCES:
        rel = path.relative_to(ROOT / "src" / "breastseg").as_posix()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                allowed = PICKLE_IMPORT_ALLOWED.get(rel, set())
                if any(n.split(".")[0] in ("pickle", "cloudpickle", "dill", "marshal", "shelve") and n not in allowed
                       for n in names):
                    problems.append(f"{rel}:{node.lineno}: imports a pickle module")
        for owner, name, kw, node in _calls(tree):
            where = f"{rel}:{node.lineno}"
            if owner == "torch" and name == "load" and not _true(kw.get("weights_only")):
                problems.append(f"{where}: torch.load without weights_only=True")
            if owner in ("np", "numpy") and name == "load" and _true(kw.get("allow_pickle")):
                problems.append(f"{where}: np.load(allow_pickle=True)")
            safe_loader = "Safe" in ast.unparse(kw["Loader"]) if "Loader" in kw else False
            if owner == "yaml" and (name in ("unsafe_load", "full_load") or (name == "load" and not safe_loader)):
                problems.append(f"{where}: yaml.{name} without a safe loader")
            if name == "load_model" and _true(kw.get("allow_pickle")) and rel not in PICKLE_FALLBACK_ALLOWED:
                problems.append(f"{where}: pickled MLflow model loading outside the pipeline's own registry")
            if isinstance(node.func, ast.Name) and name in ("eval", "exec"):
                problems.append(f"{where}: {name}()")
    assert not problems, "\n".join(problems)


def test_checks_would_catch_the_unsafe_patterns():
    bad = ast.parse("import pickle\ntorch.load(p)\nnp.load(p, allow_pickle=True)\nyaml.load(t, Loader=yaml.Loader)\n")
    found = [(o, n) for o, n, kw, _ in _calls(bad)]
    assert ("torch", "load") in found and ("np", "load") in found and ("yaml", "load") in found


def test_tracking_servers_listen_on_loopback_unless_told_otherwise():
    make = (ROOT / "Makefile").read_text()
    host = re.search(r"^HOST\s*[:?]?=\s*(\S+)", make, re.M)
    lines = [l for l in make.splitlines() if re.search(r"\bmlflow (ui|server)\b", l)]
    assert lines, "no MLflow server target"
    for line in lines:
        m = re.search(r"--host\s+(\S+)", line)
        if m is None:
            continue  # mlflow's own default host is 127.0.0.1
        value = m.group(1)
        if value == "$(HOST)":
            assert host and host.group(1) == "127.0.0.1", "HOST must default to 127.0.0.1"
        else:
            assert value in ("127.0.0.1", "localhost"), line
    assert "0.0.0.0" not in make


GENERATED = ["dag.svg", "dag.mmd", "dvc_plots/index.html", "out/study1/seg.dcm", "out/batch/readout.json",
             "report.html", "results/summary.html", "results/bpe_mri/worklist.csv", "mlflow.db", "optuna.db",
             "mlartifacts/1/x", "logs/train/bpe_mri.log", "models/bpe_mri/model.json", "plots/bpe_mri/x.csv",
             "data/interim/mri/P1/patient.json", "data/processed/bpe_mri/P1.npz", "data/splits/bpe_mri.json",
             ".snakemake/log/x", "data/raw/demo/mri/BRS-00000/x.dcm"]
VERSIONED = ["metrics/bpe_mri.json", "data/splits/demo/mri-ledger.json", "dvc.lock", "params.yaml"]


def test_what_a_run_makes_is_ignored_and_what_the_readme_says_to_commit_is_not():
    """`git add -A` after a run, `make dag`, `make report`, `dvc plots show` and the README's predict examples
    adds only the metrics, the ledgers and dvc.lock (README, "To version the run")."""
    import subprocess

    ignored = subprocess.run(["git", "check-ignore", "--no-index", *GENERATED, *VERSIONED], cwd=ROOT,
                             capture_output=True, text=True).stdout.split()
    assert sorted(ignored) == sorted(GENERATED)
