"""The split through Snakemake on one tiny converted demo cohort: the same on every machine and for every subset of
experiments; a run with another pseudonym key than the ledger's stops before any job."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from us_cohorts import write_busi_cohort
from workspace import _copy_repo

SPLITS = ("bpe_mri", "mass_us_entropy", "mass_us_bmode")
TARGETS = [f"data/splits/{e}.json" for e in SPLITS]


def _snakemake(repo: Path, *args: str, home: Path, key: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI",
                                                            "BREASTSEG_PSEUDONYM_KEY_FILE")}
    env.update(HOME=str(home), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    if key is not None:
        env["BREASTSEG_PSEUDONYM_KEY_FILE"] = str(key)
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=repo, capture_output=True,
                          text=True, env=env, timeout=900)


def _subsets(repo: Path, experiment: str) -> dict[str, str]:
    patients = json.loads((repo / "data" / "splits" / f"{experiment}.json").read_text())["patients"]
    return {p: v["subset"] for p, v in patients.items()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One tiny demo cohort, converted and split under an empty HOME (no key file anywhere)."""
    base = tmp_path_factory.mktemp("splitflow")
    repo, home = _copy_repo(base / "repo"), base / "home"
    home.mkdir()
    r = _snakemake(repo, *TARGETS, home=home)
    assert r.returncode == 0, r.stderr[-4000:]
    return repo, home


def test_two_clones_under_two_homes_draw_the_same_demo_split(tiny, tmp_path):
    repo, home = tiny
    other, other_home = _copy_repo(tmp_path / "repo"), tmp_path / "home"
    other_home.mkdir()
    r = _snakemake(other, *TARGETS, home=other_home)
    assert r.returncode == 0, r.stderr[-4000:]
    for dataset in ("mri", "us"):
        a = json.loads((repo / "data" / "splits" / "demo" / f"{dataset}-ledger.json").read_text())
        b = json.loads((other / "data" / "splits" / "demo" / f"{dataset}-ledger.json").read_text())
        assert a == b and len(a["patients"]) == 6
    tests = {e: sorted(p for p, s in _subsets(repo, e).items() if s == "test") for e in SPLITS}
    assert all(tests[e] for e in SPLITS)
    assert tests == {e: sorted(p for p, s in _subsets(other, e).items() if s == "test") for e in SPLITS}
    for h in (home, other_home):  # the demo reads and writes no key file
        assert not (h / ".config" / "breastseg").exists()


def test_the_ledgers_are_versioned_not_ignored(tiny):
    repo, _ = tiny
    for dataset in ("mri", "us"):
        path = f"data/splits/demo/{dataset}-ledger.json"
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=repo)
        assert ignored.returncode == 1, f"{path} is git-ignored"
    assert subprocess.run(["git", "check-ignore", "-q", "data/splits/bpe_mri.json"], cwd=repo).returncode == 0


@pytest.mark.parametrize("chosen", [("mass_us_entropy",), ("mass_us_bmode",), ("mass_us_bmode", "mass_us_entropy"),
                                    ("mass_us_entropy", "mass_us_bmode"), ("bpe_mri",)])
def test_any_subset_of_experiments_splits_the_same(tiny, tmp_path, chosen):
    repo, home = tiny
    splits = repo / "data" / "splits"
    reference = {e: _subsets(repo, e) for e in SPLITS}
    try:
        # a fresh split of the same converted patients, with only `chosen` in the run
        shutil.rmtree(splits / "demo")
        left = {}
        for e in SPLITS:
            (splits / f"{e}.json").unlink()
            if e not in chosen:
                (splits / f"{e}.json").write_text(f"{e}: not in this run\n")
                left[e] = (splits / f"{e}.json").read_text()
        config = tmp_path / "run.yaml"
        config.write_text(yaml.safe_dump({"run": {"experiments": list(chosen)}}))
        r = _snakemake(repo, *[f"data/splits/{e}.json" for e in chosen], "--configfile", str(config), home=home)
        assert r.returncode == 0, r.stderr[-4000:]
        for e in chosen:
            assert _subsets(repo, e) == reference[e]
        for e, text in left.items():
            assert (splits / f"{e}.json").read_text() == text
    finally:  # back to the whole run's split for the next case
        r = _snakemake(repo, *TARGETS, "--forcerun", "split_mri", "split_us", home=home)
        assert r.returncode == 0, r.stderr[-4000:]


def test_another_key_than_the_ledgers_is_refused_before_any_job(tiny, tmp_path):
    """A cohort's ledger names its key's fingerprint: another key, or none, stops the run in one line."""
    from breastseg.pseudonym import key_fingerprint

    repo, home = tiny
    team, laptop = tmp_path / "team.key", tmp_path / "laptop.key"
    team.write_text("a" * 64)
    laptop.write_text("b" * 64)
    config = tmp_path / "mycohort.yaml"
    config.write_text(yaml.safe_dump({"cohort": {"name": "mycohort", "root": "data/raw/demo"}}))
    ledger = repo / "data" / "splits" / "mycohort" / "mri-ledger.json"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    fingerprint = key_fingerprint(team.read_text().encode())
    ledger.write_text(json.dumps({"cohort": "mycohort", "key_fingerprint": fingerprint, "patients": {}}))
    try:
        before = sorted(p for p in repo.rglob("*") if ".snakemake" not in p.parts)
        r = _snakemake(repo, "-n", "--configfile", str(config), home=home, key=laptop)
        assert r.returncode == 2
        errors = [line for line in r.stderr.splitlines() if "breastseg: error" in line]
        assert len(errors) == 1 and fingerprint in errors[0] and str(laptop) in errors[0], r.stderr[-2000:]
        assert "Traceback" not in r.stderr
        r = _snakemake(repo, "-n", "--configfile", str(config), home=home, key=tmp_path / "missing.key")
        assert r.returncode == 2 and "no pseudonym key file" in r.stderr and not (tmp_path / "missing.key").exists()
        assert sorted(p for p in repo.rglob("*") if ".snakemake" not in p.parts) == before
        r = _snakemake(repo, "-n", "--configfile", str(config), home=home, key=team)
        assert r.returncode == 0, r.stderr[-3000:]
    finally:
        shutil.rmtree(ledger.parent)


def test_a_new_image_size_or_map_setting_prepares_again_without_a_decode_job(tiny, tmp_path):
    """Preparation is apart from decoding: new experiment settings run prepare jobs only, for the experiments
    whose settings changed, and decode no raw file."""
    repo, home = tiny
    processed = repo / "data" / "processed"
    before = {e: {p.name: p.stat().st_mtime_ns for p in (processed / e).glob("P*.npz")} for e in SPLITS}
    stamps = {p: p.stat().st_mtime_ns for p in (repo / "data" / "interim").glob("*/P*/.converted")}
    assert stamps
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["experiments"]["mass_us_bmode"]["image_size"] += 16
    params["us_maps"]["window_pulses"] = 3.0
    config = tmp_path / "changed.yaml"
    config.write_text(yaml.safe_dump({"experiments": params["experiments"], "us_maps": params["us_maps"]}))
    try:
        r = _snakemake(repo, "prepared", "--configfile", str(config), home=home)
        assert r.returncode == 0, r.stderr[-4000:]
        jobs = r.stdout + r.stderr
        assert "convert_mri" not in jobs and "convert_us" not in jobs, jobs[-3000:]
        assert "prepare" in jobs
        assert stamps == {p: p.stat().st_mtime_ns for p in stamps}  # no patient decoded again
        after = {e: {p.name: p.stat().st_mtime_ns for p in (processed / e).glob("P*.npz")} for e in SPLITS}
        assert after["bpe_mri"] == before["bpe_mri"]  # its settings did not change
        for e in ("mass_us_bmode", "mass_us_entropy"):
            assert all(after[e][f] != t for f, t in before[e].items()), e
        import numpy as np

        with np.load(next((processed / "mass_us_bmode").glob("P*.npz"))) as z:
            assert z["image"].shape[-1] == params["experiments"]["mass_us_bmode"]["image_size"]
    finally:  # back to the module's settings for the other cases
        r = _snakemake(repo, *TARGETS, home=home)
        assert r.returncode == 0, r.stderr[-4000:]


@pytest.mark.parametrize("root", ["missing", "present"])
def test_a_dry_run_writes_nothing_outside_the_project(tmp_path, root):
    """No key file (nor anything of ours) appears in an empty HOME from building the DAG or a dry run, whether
    the cohort's folder is wrong or holds patients; the first real run makes the key."""
    repo = _copy_repo(tmp_path / "repo")
    cohort = tmp_path / "cohort"
    if root == "present":
        write_busi_cohort(cohort, n=2)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "BREASTSEG_PSEUDONYM_KEY_FILE"}
    env.update(HOME=str(home), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--config",
                        f"cohort={{name: mine, root: {cohort}}}", "run={experiments: [mass_us_bmode]}"],
                       cwd=repo, capture_output=True, text=True, env=env, timeout=300)
    if root == "missing":
        assert r.returncode != 0 and "the cohort folder does not exist" in r.stderr, r.stderr[-2000:]
    else:
        assert r.returncode == 0, r.stderr[-3000:]
    # Snakemake keeps a cache of workflow sources of its own under ~/.cache/snakemake; nothing else may appear
    written = [p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file()]
    assert [p for p in written if not p.startswith(".cache/snakemake/")] == []
