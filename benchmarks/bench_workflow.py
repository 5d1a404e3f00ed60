"""Snakemake DAG build on a large user cohort: ``snakemake -n`` over 1000 ultrasound patients vs the 5 s target.

A copy of the repository (the files git sees) gets a cohort folder of ``--patients`` tiny per-patient RF files
(``<root>/us/P*.npz``: rf, roi, fs, f0, pitch) and a ``--configfile`` pointing ``cohort`` at it with both
ultrasound experiments. ``python -m snakemake -n`` is then timed as a whole process (interpreter start, the
Snakefile, schema validation, cohort discovery, pseudonyms, per-patient content fingerprints under
``.snakemake/breastseg/fingerprints/`` and the job DAG):

- *first*: no fingerprint digests cached yet (every raw file is read once);
- *again*: the same dry run repeated, digests cached by size and modification time (what every later
  ``snakemake`` call pays).

Each is repeated ``--repeats`` times (first: with the fingerprint folder removed before each run); median wall
times are compared with the 5 s target (ratio = median / 5 s, lower is better); the CPU time of the process
(user + system, less sensitive to other jobs on the machine) is printed beside it. ``--profile FILE`` writes a cProfile of
one cached dry run (``python -m pstats FILE``).

    .venv/bin/python benchmarks/bench_workflow.py [--patients 1000] [--repeats 3] [--profile out.prof] [--quick]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 5.0
EXPERIMENTS = ["mass_us_entropy", "mass_us_bmode"]


def copy_repo(dst: Path) -> Path:
    """The project's files (tracked and untracked-but-not-ignored) copied to ``dst``."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for f in files:
        src = ROOT / f
        if src.is_file() and not f.startswith(("data/splits/", "metrics/")):  # the copy makes its own
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    return dst


def write_us_cohort(root: Path, n: int, seed: int = 0) -> Path:
    """``root/us/B0000.npz`` ... : tiny RF scans (64 samples x 16 lines) with an elliptical mass ROI."""
    rng = np.random.default_rng(seed)
    us = root / "us"
    us.mkdir(parents=True, exist_ok=True)
    y, x = np.ogrid[:64, :16]
    for i in range(n):
        cy, cx = rng.uniform(24, 40), rng.uniform(5, 11)
        roi = (((y - cy) / 10) ** 2 + ((x - cx) / 4) ** 2 <= 1).astype(np.uint8)
        rf = (rng.normal(size=(64, 16)) * np.where(roi > 0, 300, 1000)).astype(np.int16)
        np.savez(us / f"B{i:04d}.npz", rf=rf, roi=roi, fs=40e6, f0=7e6, pitch=3e-4)
    return root


def write_config(repo: Path, cohort: Path) -> Path:
    import yaml

    cfg = {"cohort": {"name": "bench", "root": str(cohort), "pseudonym_key_file": str(repo / "bench.key")},
           "run": {"experiments": EXPERIMENTS}}
    path = repo / "bench_cohort.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def dry_run(repo: Path, config: Path, profile: Path | None = None) -> tuple[float, str, float]:
    """Wall seconds, output and CPU seconds (user + system) of one ``snakemake -n``."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           "DVC_NO_ANALYTICS": "1"}
    prefix = [sys.executable, "-m", "cProfile", "-o", str(profile)] if profile else [sys.executable]
    cmd = [*prefix, "-m", "snakemake", "-n", "--cores", "2", "--configfile", str(config)]
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    if r.returncode != 0:
        raise RuntimeError(f"snakemake -n failed: {(r.stderr or r.stdout)[-2000:]}")
    return seconds, r.stdout + r.stderr, cpu


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=1000, help="cohort size")
    ap.add_argument("--repeats", type=int, default=3, help="dry runs of each kind; medians are compared")
    ap.add_argument("--profile", type=Path, default=None, help="write a cProfile of one cached dry run here")
    ap.add_argument("--quick", action="store_true", help="one repeat on a 20-patient cohort")
    return ap


def bench(argv: list[str] | None = None, quick: bool = False) -> list[dict]:
    ap = parser()
    if quick:
        ap.set_defaults(patients=20, repeats=1)
    args = ap.parse_args([] if argv is None else argv)
    patients, repeats, profile, verbose = args.patients, max(1, args.repeats), args.profile, True
    tmp = Path(tempfile.mkdtemp(prefix="bench_workflow_"))
    try:
        repo = copy_repo(tmp / "repo")
        cohort = write_us_cohort(tmp / "cohort", patients)
        config = write_config(repo, cohort)
        fingerprints = repo / ".snakemake" / "breastseg" / "fingerprints"
        first, again, cpu_first, cpu_again = [], [], [], []
        for _ in range(repeats):
            shutil.rmtree(fingerprints, ignore_errors=True)
            seconds, out, cpu = dry_run(repo, config)
            first.append(seconds)
            cpu_first.append(cpu)
            seconds, out, cpu = dry_run(repo, config)
            again.append(seconds)
            cpu_again.append(cpu)
        jobs = _job_count(out)
        if profile:
            dry_run(repo, config, profile)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    f_med, a_med = statistics.median(first), statistics.median(again)
    fc_med, ac_med = statistics.median(cpu_first), statistics.median(cpu_again)
    if verbose:
        print(f"cohort: {patients} ultrasound patients (.npz RF), experiments {', '.join(EXPERIMENTS)}; "
              f"{jobs} jobs in the DAG; {os.cpu_count()} CPUs; {repeats} repeats")
        print(f"snakemake -n, fingerprints computed: median {f_med:.2f} s ({', '.join(f'{v:.2f}' for v in first)}); "
              f"CPU {fc_med:.2f} s")
        print(f"snakemake -n, fingerprints cached:   median {a_med:.2f} s ({', '.join(f'{v:.2f}' for v in again)}); "
              f"CPU {ac_med:.2f} s")
        print(f"ratio to the {TARGET_S:.0f} s target: {f_med / TARGET_S:.2f} (first), {a_med / TARGET_S:.2f} (cached)")
    detail = f"{patients} US patients, {jobs} jobs; median of {repeats}"
    return [
        {"name": f"snakemake -n, {patients} patients (first: digests computed)", "ratio": f_med / TARGET_S,
         "target": 1.0, "reference": f"target {TARGET_S:.0f} s",
         "detail": f"{f_med:.2f} s (CPU {fc_med:.2f} s); {detail}: {', '.join(f'{v:.2f}' for v in first)} s"},
        {"name": f"snakemake -n, {patients} patients (digests cached)", "ratio": a_med / TARGET_S,
         "target": 1.0, "reference": f"target {TARGET_S:.0f} s",
         "detail": f"{a_med:.2f} s (CPU {ac_med:.2f} s); {detail}: {', '.join(f'{v:.2f}' for v in again)} s"},
    ]


def _job_count(output: str) -> int | str:
    """The total from Snakemake's job-stats table (``total  N``), or '?'."""
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "total" and parts[1].isdigit():
            return int(parts[1])
    return "?"


if __name__ == "__main__":
    from run import standalone

    raise SystemExit(standalone(bench, parser))
