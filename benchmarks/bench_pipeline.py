"""End to end: ``make run`` on the demo cohort in a fresh clone, install included, then the no-op rerun.

The repository is cloned (``git clone`` of the committed state) into a temporary folder and run as a newcomer
runs it, with an empty HOME (so no pip or uv cache of the user's; the machine's own wheel folder and pip
configuration stay): ``make .venv/.breastseg-installed`` (the virtual environment: torch first, then the lock)
and then ``make run`` (synthetic cohort, conversion, tuning, training, evaluation, registration, report). Their
wall times add up to the first row's time. While the pipeline runs, the resident memory of every process of its
tree is sampled (psutil, every 0.2 s): the peak of the tree's sum and of its largest process are reported. Then
``snakemake -n`` (same profile) must report "Nothing to be done"; its median time over ``--repeats`` runs is the
no-op rerun. The Snakemake log of the run gives each job's span: the busiest rules, and the longest chain of
jobs that waited on each other (the critical path), are printed and kept in the row.

Ratios (lower is better): install + pipeline wall time / 2 min (the target on 2 cores); peak tree memory / the
memory the rules declare for the jobs that run side by side (``cores`` x 2000 MB); no-op dry run / 5 s.
``--reuse-venv`` links this checkout's ``.venv`` instead of installing (the pipeline alone); ``--quick`` runs the
pipeline with ``tests/e2e_config.yaml``'s tiny settings and this checkout's environment (the ratio then says
little).

    .venv/bin/python benchmarks/bench_pipeline.py [--repeats 3] [--reuse-venv] [--quick] [--keep DIR]
"""
from __future__ import annotations

import argparse
import datetime
import os
import re
import resource
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 120.0
NOOP_TARGET_S = 5.0
JOB_MEM_MB = 2000  # what the per-patient and training rules declare (resources: mem_mb)
STAMP = ".venv/.breastseg-installed"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="no-op dry runs; the median is compared")
    ap.add_argument("--keep", type=Path, default=None, help="clone into this (new) folder and keep it")
    ap.add_argument("--reuse-venv", action="store_true", help="link this checkout's .venv: the pipeline alone")
    ap.add_argument("--quick", action="store_true",
                    help="tests/e2e_config.yaml's tiny cohort, this checkout's .venv, one dry run")
    return ap


def clone(dst: Path, tiny: bool, link_venv: bool) -> Path:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dst)], check=True)
    if link_venv:
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


def environment(home: Path | None = None) -> dict[str, str]:
    drop = {"MLFLOW_TRACKING_URI", "MAKEFLAGS", "MFLAGS"}
    if home is not None:  # a newcomer's shell: no cache folders of ours
        drop |= {"XDG_CACHE_HOME", "UV_CACHE_DIR", "PIP_CACHE_DIR", "VIRTUAL_ENV"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(DVC_NO_ANALYTICS="1", PYTHONUNBUFFERED="1")
    if home is not None:
        env["HOME"] = str(home)
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                      if not p.startswith(str(ROOT)))
    return env


def fresh_home(folder: Path) -> Path:
    """An empty HOME holding only a git identity (DVC commits nothing, but git wants a name)."""
    folder.mkdir(parents=True)
    (folder / ".gitconfig").write_text("[user]\n\tname = bench\n\temail = bench@localhost\n")
    return folder


def install(repo: Path, log: Path, home: Path) -> float:
    """Wall seconds of ``make .venv/.breastseg-installed`` in a fresh clone (a RuntimeError when it fails)."""
    with open(log, "w") as fh:
        t0 = time.perf_counter()
        rc = subprocess.run(["make", STAMP], cwd=repo, stdout=fh, stderr=subprocess.STDOUT,
                            env=environment(home)).returncode
        seconds = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"make {STAMP} failed (exit {rc}):\n{log.read_text(errors='replace')[-3000:]}")
    return seconds


_STAMP_RE = re.compile(r"^\[(\w{3} \w{3}\s+\d+ [\d:]{8} \d{4})\]$")
_START_RE = re.compile(r"^(?:local)?(?:checkpoint|rule) (\w+):$")
_JOBID_RE = re.compile(r"^jobid: (\d+)$")
_DONE_RE = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")


def job_spans(log_text: str) -> list[tuple[float, float, str, str]]:
    """(start s, end s, rule, wildcards) of each job of a Snakemake log, seconds from the first job's start."""
    now, pending, started, spans = None, None, {}, []
    for raw in log_text.splitlines():
        line = raw.strip()
        if m := _STAMP_RE.match(line):
            now = datetime.datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        elif (m := _START_RE.match(line)) and now is not None:
            pending = [now, m.group(1), ""]
        elif pending is not None and line.startswith("wildcards:"):
            pending[2] = line.split(":", 1)[1].strip()
        elif pending is not None and (m := _JOBID_RE.match(line)):
            started[m.group(1)] = pending
        elif (m := _DONE_RE.match(line)) and m.group(1) in started and now is not None:
            t, rule, wc = started.pop(m.group(1))
            spans.append((t, now, rule, wc))
            pending = None
    if not spans:
        return []
    t0 = min(s[0] for s in spans)
    return sorted(((s - t0).total_seconds(), (e - t0).total_seconds(), r, w) for s, e, r, w in spans)


def summarise_jobs(spans: list[tuple[float, float, str, str]]) -> str:
    """The rules with the most job-seconds and the last job's chain (each job's predecessor: the job that
    ended last before it started), in one line; Snakemake logs whole seconds."""
    if not spans:
        return "no job spans in the log"
    per_rule: dict[str, float] = {}
    for s, e, r, _ in spans:
        per_rule[r] = per_rule.get(r, 0.0) + (e - s)
    busiest = sorted(per_rule.items(), key=lambda kv: -kv[1])[:4]
    chain, job = [], max(spans, key=lambda sp: sp[1])
    while job is not None:
        chain.append(job)
        before = [sp for sp in spans if sp[1] <= job[0] and sp is not job]
        job = max(before, key=lambda sp: sp[1]) if before else None
    longest = sorted(chain, key=lambda sp: sp[1] - sp[0], reverse=True)[:3]
    return ("job-seconds by rule: " + ", ".join(f"{r} {v:.0f}" for r, v in busiest)
            + f" (all {sum(per_rule.values()):.0f}); longest jobs on the critical path: "
            + ", ".join(f"{r}{' ' + w.split('=')[-1] if w else ''} {e - s:.0f} s" for s, e, r, w in longest))


def make_run(repo: Path, log: Path, home: Path | None = None) -> tuple[float, TreeMemory, int, float]:
    """Wall seconds, the memory sampler, the exit status and the CPU seconds of the whole process tree."""
    with open(log, "w") as fh:
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.Popen(["make", "-o", STAMP, "run"], cwd=repo, stdout=fh, stderr=subprocess.STDOUT,
                                env=environment(home))
        with TreeMemory(proc.pid) as mem:
            rc = proc.wait()
        seconds = time.perf_counter() - t0
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, mem, rc, (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)


def noop_dry_run(repo: Path, home: Path | None = None) -> tuple[float, bool, float]:
    """Wall seconds, whether Snakemake found nothing to do, CPU seconds."""
    cmd = [str(repo / ".venv" / "bin" / "python"), "-m", "snakemake", "--profile", "workflow/profiles/default", "-n"]
    env = environment(home)
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
    tiny = args.quick or quick
    fresh = not (tiny or args.reuse_venv)
    cohort = "tiny cohort (tests/e2e_config.yaml)" if tiny else "demo cohort"
    cores = os.cpu_count() or 1
    tmp = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    repo = args.keep or tmp / "repo"
    home = fresh_home(tmp / "home") if fresh else None
    install_s = 0.0
    try:
        clone(repo, tiny=tiny, link_venv=not fresh)
        if fresh:
            print(f"install (make {STAMP}) in a fresh clone, empty HOME ...", flush=True)
            install_s = install(repo, tmp / "install.log", home)
            print(f"install: {install_s:.0f} s", flush=True)
        log = tmp / "make_run.log"
        print(f"make run ({cohort}) in {repo}, {cores} CPUs ...", flush=True)
        seconds, mem, rc, cpu = make_run(repo, log, home)
        if rc != 0:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"make run failed (exit {rc}):\n{tail}")
        jobs = summarise_jobs(job_spans(log.read_text(errors="replace")))
        noop = [noop_dry_run(repo, home) for _ in range(max(1, args.repeats))]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    noop_s = statistics.median(t for t, _, _ in noop)
    noop_cpu = statistics.median(c for _, _, c in noop)
    nothing = all(ok for _, ok, _ in noop)
    budget = cores * JOB_MEM_MB * 1e6
    total = install_s + seconds
    print(f"make run: {seconds / 60:.1f} min ({seconds:.0f} s, CPU {cpu / 60:.1f} min)"
          + (f" after an install of {install_s:.0f} s: {total:.0f} s in all" if fresh else "")
          + f"; ratio to the {TARGET_S / 60:.0f} min target {total / TARGET_S:.2f}")
    print(jobs)
    print(f"peak resident memory: process tree {mem.peak_sum / 1e6:.0f} MB, largest process {mem.peak_one / 1e6:.0f} MB "
          f"({mem.peak_name}); declared budget {budget / 1e6:.0f} MB")
    print(f"no-op rerun (snakemake -n): median {noop_s:.2f} s (CPU {noop_cpu:.2f} s) of {len(noop)}; "
          f"{'Nothing to be done' if nothing else 'NOT a no-op'}")
    return [
        {"name": f"make run end to end, {cohort}" + (", fresh clone, install included" if fresh else ""),
         "ratio": total / TARGET_S, "target": 1.0,
         "reference": f"target {TARGET_S / 60:.0f} min on 2 cores" + (" (empty HOME)" if fresh else ""),
         "detail": (f"{total:.0f} s = install {install_s:.0f} s + pipeline {seconds:.0f} s" if fresh else
                    f"pipeline {seconds:.0f} s, installed environment")
                   + f" on {cores} cores (CPU time of the pipeline's processes {cpu / 60:.1f} min); {jobs}; one run"},
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
