"""End to end: ``make run`` on the demo cohort in a scratch clone, its wall time and peak memory, then the no-op rerun.

The repository is cloned (``git clone`` of the committed state) into a temporary folder that links this
checkout's ``.venv``; ``make run`` runs there as a whole (synthetic cohort, conversion, tuning, training,
evaluation, registration, report) with the installed environment taken as up to date (``make -o <stamp>``).
While it runs, the resident memory of every process of its tree is sampled (psutil, every 0.2 s): the peak of
the tree's sum and of its largest process are reported. Then ``snakemake -n`` (same profile) must report
"Nothing to be done"; its median time over ``--repeats`` runs is the no-op rerun.

Ratios (lower is better): wall time / 10 min (the target on 2 cores); peak tree memory / the memory the rules
declare for the jobs that run side by side (``cores`` x 2000 MB); no-op dry run / 5 s.
``--quick`` runs the pipeline with ``tests/e2e_config.yaml``'s tiny settings (the ratio then says little).

    .venv/bin/python benchmarks/bench_pipeline.py [--repeats 3] [--quick] [--keep DIR]
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
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 600.0
NOOP_TARGET_S = 5.0
JOB_MEM_MB = 2000  # what the per-patient and training rules declare (resources: mem_mb)
STAMP = ".venv/.breastseg-installed"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="no-op dry runs; the median is compared")
    ap.add_argument("--keep", type=Path, default=None, help="clone into this (new) folder and keep it")
    ap.add_argument("--quick", action="store_true", help="tests/e2e_config.yaml's tiny cohort, one dry run")
    return ap


def clone(dst: Path, tiny: bool) -> Path:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dst)], check=True)
    (dst / ".venv").symlink_to(ROOT / ".venv")
    if tiny:
        import yaml

        params = yaml.safe_load((dst / "params.yaml").read_text())
        params.update(yaml.safe_load((dst / "tests" / "e2e_config.yaml").read_text()))
        (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dst


class TreeMemory:
    """Samples the resident memory of a process and all its descendants in a background thread."""

    def __init__(self, pid: int, interval: float = 0.2):
        import psutil

        self.root, self.interval = psutil.Process(pid), interval
        self.peak_sum = self.peak_one = 0
        self.peak_name = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            total = 0
            for p in procs:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                if rss > self.peak_one:
                    self.peak_one = rss
                    try:
                        self.peak_name = command_label(p.cmdline())
                    except psutil.Error:
                        pass
            self.peak_sum = max(self.peak_sum, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def command_label(cmdline: list[str]) -> str:
    """``breastseg train``, ``snakemake``, ... from a process' command line."""
    args = list(cmdline)
    if args and Path(args[0]).name.startswith("python"):
        args = args[2:] if args[1:2] == ["-m"] else args[1:]
    if not args:
        return "?"
    rest, skip = [], False
    for w in args[1:]:
        if skip:
            skip = False
        elif w in ("--params", "--profile", "--configfile", "--cores", "-o"):
            skip = True
        elif not w.startswith("-"):
            rest.append(w)
    return " ".join([Path(args[0]).name, *rest[:1]])


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MAKEFLAGS", "MFLAGS")}
    env.update(DVC_NO_ANALYTICS="1", PYTHONUNBUFFERED="1")
    return env


def make_run(repo: Path, log: Path) -> tuple[float, TreeMemory, int, float]:
    """Wall seconds, the memory sampler, the exit status and the CPU seconds of the whole process tree."""
    with open(log, "w") as fh:
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.Popen(["make", "-o", STAMP, "run"], cwd=repo, stdout=fh, stderr=subprocess.STDOUT,
                                env=environment())
        with TreeMemory(proc.pid) as mem:
            rc = proc.wait()
        seconds = time.perf_counter() - t0
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, mem, rc, (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)


def noop_dry_run(repo: Path) -> tuple[float, bool, float]:
    """Wall seconds, whether Snakemake found nothing to do, CPU seconds."""
    cmd = [sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/default", "-n"]
    env = environment()
    env["PATH"] = f"{repo / '.venv' / 'bin'}:{env.get('PATH', '')}"
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    return seconds, r.returncode == 0 and "Nothing to be done" in r.stdout + r.stderr, cpu


def bench(argv: list[str] | None = None, quick: bool = False) -> list[dict]:
    ap = parser()
    if quick:
        ap.set_defaults(repeats=1)
    args = ap.parse_args([] if argv is None else argv)
    cohort = "tiny cohort (tests/e2e_config.yaml)" if args.quick or quick else "demo cohort"
    cores = os.cpu_count() or 1
    tmp = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    repo = args.keep or tmp / "repo"
    try:
        clone(repo, tiny=args.quick or quick)
        log = tmp / "make_run.log"
        print(f"make run ({cohort}) in {repo}, {cores} CPUs ...", flush=True)
        seconds, mem, rc, cpu = make_run(repo, log)
        if rc != 0:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"make run failed (exit {rc}):\n{tail}")
        noop = [noop_dry_run(repo) for _ in range(max(1, args.repeats))]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    noop_s = statistics.median(t for t, _, _ in noop)
    noop_cpu = statistics.median(c for _, _, c in noop)
    nothing = all(ok for _, ok, _ in noop)
    budget = cores * JOB_MEM_MB * 1e6
    print(f"make run: {seconds / 60:.1f} min ({seconds:.0f} s, CPU {cpu / 60:.1f} min); ratio to the "
          f"{TARGET_S / 60:.0f} min target {seconds / TARGET_S:.2f}")
    print(f"peak resident memory: process tree {mem.peak_sum / 1e6:.0f} MB, largest process {mem.peak_one / 1e6:.0f} MB "
          f"({mem.peak_name}); declared budget {budget / 1e6:.0f} MB")
    print(f"no-op rerun (snakemake -n): median {noop_s:.2f} s (CPU {noop_cpu:.2f} s) of {len(noop)}; "
          f"{'Nothing to be done' if nothing else 'NOT a no-op'}")
    return [
        {"name": f"make run end to end, {cohort}", "ratio": seconds / TARGET_S, "target": 1.0,
         "reference": f"target {TARGET_S / 60:.0f} min on 2 cores",
         "detail": f"{seconds / 60:.1f} min on {cores} cores (CPU time of all processes {cpu / 60:.1f} min); one run"},
        {"name": f"make run peak memory, {cohort}", "ratio": mem.peak_sum / budget, "target": 1.0,
         "reference": f"{cores} jobs x {JOB_MEM_MB} MB declared (mem_mb)",
         "detail": f"process tree {mem.peak_sum / 1e6:.0f} MB, largest process {mem.peak_one / 1e6:.0f} MB "
                   f"({mem.peak_name or '?'}); sampled every 0.2 s"},
        {"name": f"snakemake -n no-op rerun, {cohort}", "ratio": noop_s / NOOP_TARGET_S if nothing else None,
         "target": 1.0, "reference": f"target {NOOP_TARGET_S:.0f} s",
         "detail": (f"{noop_s:.2f} s (CPU {noop_cpu:.2f} s), 'Nothing to be done'; median of {len(noop)}" if nothing else
                    "failed: the dry run after make run was not a no-op")},
    ]


if __name__ == "__main__":
    from run import standalone

    raise SystemExit(standalone(bench, parser))
