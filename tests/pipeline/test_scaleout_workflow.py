"""Snakemake beyond one machine: the SLURM profile resolves without a cluster, every rule declares the resources
the profile maps, and the plugin turns them into the sbatch options a cluster expects."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROFILE = "workflow/profiles/slurm"


def _copy_workflow(dst: Path) -> Path:
    """The files Snakemake reads, in a scratch folder (a dry run writes .snakemake/ where it runs)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "Snakefile", "params.yaml", "workflow",
                            "src", "envs"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    return dst


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory):
    return _copy_workflow(tmp_path_factory.mktemp("workflow"))


def _dry_run(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SBATCH_", "SLURM_"))}
    environ.update(PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", **env)
    return subprocess.run([sys.executable, "-m", "snakemake", "--profile", PROFILE, "-n", *args], cwd=repo,
                          capture_output=True, text=True, env=environ, timeout=300)


def _jobs(stdout: str) -> dict[str, list[dict[str, str]]]:
    """rule name -> the resources of each of its jobs, as the dry run prints them."""
    jobs: dict[str, list[dict[str, str]]] = {}
    for block in re.split(r"\n(?=(?:localrule|rule|checkpoint) \w+:)", stdout):
        head = re.match(r"(?:localrule|rule|checkpoint) (\w+):", block)
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        if head and res:
            jobs.setdefault(head.group(1), []).append(dict(kv.split("=", 1) for kv in res.group(1).split(", ")))
    return jobs


def test_slurm_profile_dry_run_resolves_without_a_cluster(workflow_copy):
    r = _dry_run(workflow_copy, SBATCH_ACCOUNT="imaging-lab", SBATCH_PARTITION="cpu-short")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "This was a dry-run" in r.stdout
    jobs = _jobs(r.stdout)
    for rule in ("synth", "tune", "train", "evaluate_us", "register", "report"):
        assert rule in jobs, rule
        for res in jobs[rule]:
            assert res["slurm_account"] == "imaging-lab" and res["slurm_partition"] == "cpu-short"
    assert jobs["train"][0]["runtime"] == "240" and jobs["train"][0]["mem_mb"] == "4000"
    assert jobs["train"][0]["gpu"] == "0"  # train.accelerator: cpu in params.yaml


def test_several_tune_workers_share_one_study(workflow_copy):
    """tune.workers: 1 is one job per experiment (study, trials and best parameters in one process); with more,
    `study` opens the study once, the workers share it and `best_params` closes it, each job with its resources."""
    tune = {**yaml.safe_load((ROOT / "params.yaml").read_text())["tune"], "workers": 3}
    (workflow_copy / "workers.yaml").write_text(yaml.safe_dump({"tune": tune}))
    one = _jobs(_dry_run(workflow_copy).stdout)
    three = _jobs(_dry_run(workflow_copy, "--configfile", "workers.yaml").stdout)
    n = len(yaml.safe_load((ROOT / "params.yaml").read_text())["run"]["experiments"])
    assert len(one["tune"]) == n and "study" not in one and "best_params" not in one
    assert len(three["study"]) == n and len(three["tune"]) == 3 * n and len(three["best_params"]) == n
    assert all(job["mem_mb"] == "4000" for job in three["tune"]) and three["study"][0]["mem_mb"] == "1000"


def test_slurm_profile_maps_gpu_and_multi_node_training(workflow_copy):
    (workflow_copy / "ddp.yaml").write_text(yaml.safe_dump({"train": {
        **yaml.safe_load((ROOT / "params.yaml").read_text())["train"],
        "accelerator": "gpu", "devices": 4, "strategy": "ddp", "num_nodes": 1, "threads": 2}}))
    r = _dry_run(workflow_copy, "--configfile", "ddp.yaml", "--set-resources", "train:slurm_partition=gpu",
                 SBATCH_ACCOUNT="lab", SBATCH_PARTITION="cpu")
    assert r.returncode == 0, r.stderr[-3000:]
    train, tune = _jobs(r.stdout)["train"][0], _jobs(r.stdout)["tune"][0]
    assert train["gpu"] == "4" and train["slurm_partition"] == "gpu" and "nodes" not in train
    assert tune["gpu"] == "1"  # a tune worker trains its trials on one device

    (workflow_copy / "ddp.yaml").write_text((workflow_copy / "ddp.yaml").read_text().replace("num_nodes: 1",
                                                                                            "num_nodes: 2"))
    r = _dry_run(workflow_copy, "--configfile", "ddp.yaml", SBATCH_ACCOUNT="lab", SBATCH_PARTITION="gpu")
    assert r.returncode == 0, r.stderr[-3000:]
    train = _jobs(r.stdout)["train"][0]
    assert train["nodes"] == "2" and train["tasks"] == "8" and train["mpi"] == "srun"
    assert train["slurm_extra"] == "--ntasks-per-node=4 --gpus-per-node=4" and train["gpu"] == "0"
    assert re.search(r"Shell command: srun breastseg .* train ", r.stdout)  # one process per task, ranks from srun


def _rules(repo: Path):
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import OutputSettings, Quietness, ResourceSettings

    cwd = os.getcwd()
    try:
        with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
            wf = api.workflow(resource_settings=ResourceSettings(), snakefile=repo / "Snakefile", workdir=repo)
            return list(wf._workflow.rules)
    finally:
        os.chdir(cwd)


def test_every_rule_declares_threads_mem_runtime(workflow_copy):
    rules = _rules(workflow_copy)
    jobs = [r for r in rules if not r.norun]  # `all` only names targets: nothing runs, nothing is submitted
    assert {r.name for r in jobs} >= {"synth", "convert_mri", "convert_us", "split_mri", "split_us", "tune", "train",
                                      "evaluate_mri", "evaluate_us", "compare", "register", "report"}
    for rule in jobs:
        for key in ("mem_mb", "runtime"):
            assert key in rule.resources, f"{rule.name} declares no {key}"
            value = rule.resources[key].value
            assert isinstance(value, int) and value > 0, (rule.name, key, value)
    # threads: Snakemake gives every rule 1 by default, so read each rule's declaration in the rule files
    for rule in jobs:
        block = _declaration(workflow_copy, rule.name)
        assert re.search(r"^\s+threads:", block, re.M), f"rule {rule.name} declares no threads"
        assert re.search(r"^\s+mem_mb=", block, re.M) and re.search(r"^\s+runtime=", block, re.M), rule.name


def _declaration(repo: Path, name: str) -> str:
    """The text of the rule that defines ``name`` (`rule NAME:`, or `rule:` with `name: f"..."` in a loop)."""
    for smk in [repo / "Snakefile", *sorted((repo / "workflow/rules").glob("*.smk"))]:
        for block in re.split(r"^(?=[ \t]*(?:rule|checkpoint)\b[^:]*:)", smk.read_text(), flags=re.M)[1:]:
            head = re.match(r"\s*(?:rule|checkpoint)\s*(\w*)\s*:", block)
            if head and head.group(1) == name:
                return block
            pattern = re.search(r"^\s+name:\s*f?[\"']([^\"']+)[\"']", block, re.M)
            if not head.group(1) and pattern and re.fullmatch(re.sub(r"\{[^}]*\}", r"\\w+", pattern.group(1)), name):
                return block
    raise AssertionError(f"no declaration of rule {name} in the Snakefile or workflow/rules/")


def test_training_rules_declare_gpu(workflow_copy):
    jobs = [r for r in _rules(workflow_copy) if not r.norun]
    trainers = [r for r in jobs if re.search(r"\b(train|tune) \{wildcards", r.shellcmd or "")]
    assert {r.name for r in trainers} == {"train", "train_seed", "tune"}
    assert all("gpu" in r.resources for r in trainers)


def test_slurm_plugin_turns_rule_resources_into_sbatch_options():
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    class Resources(dict):
        __getattr__ = dict.__getitem__

    job = SimpleNamespace(threads=2, resources=Resources(mem_mb=4000, runtime=240, gpu=2))
    call = get_submit_command(job, {"run_uuid": "u", "slurm_logfile": "log", "comment_str": "train",
                                    "account": "-A lab", "partition": "-p gpu", "workdir": "/work"})
    call += set_gres_string(job)
    for option in ("-A lab", "-p gpu", "-t 240", "--mem 4000", "--cpus-per-task=2", "--gpus=2"):
        assert option in call, (option, call)
