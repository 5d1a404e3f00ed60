"""Conversion of a whole ultrasound cohort through the workflow vs one ``breastseg us-maps`` process.

Two cohorts, each written once (deterministic seed) and measured side by side in the same run:

- *BUSI-like*: the public BUSI layout, ``<root>/us/{benign,malignant,normal}/<class> (N).png`` with
  ``<class> (N)_mask.png`` (0/255) and, for a few images, a second region in ``_mask_1.png``; 437 / 210 / 133
  grayscale PNGs (780) of BUSI's size (about 500 x 600 px, varying per image), speckle with a darker mass
  (``normal`` images: an empty mask). Experiment ``mass_us_bmode``; the reference makes B-mode maps only.
- *RF*: ``--rf-patients`` per-patient ``.npz`` files (``rf`` int16 samples x lines, ``roi``, ``fs``, ``f0``,
  ``pitch``: what :func:`breastseg.us.readers.read_npz` reads), 96 lines x 1024 samples (a 7 MHz probe, 0.3 mm
  pitch, 2 cm deep, as the demo). Experiments ``mass_us_entropy`` and ``mass_us_bmode``; the reference makes
  B-mode and entropy maps.

Measured, each as the wall time of the whole process:

- *workflow*: in a copy of the repository (the files git sees, without data/splits and metrics), a
  ``--configfile`` with ``cohort: {name, root}`` and ``run: {experiments}``, then ``snakemake --cores 2 prepared``
  (conversion and preparation only) from a clean state: ``.snakemake/`` (fingerprint digests included),
  ``data/interim``, ``data/processed``, ``logs`` and the tracking stores removed before each run;
- *reference*: one ``breastseg -q us-maps --maps ... <root>/us <out>`` over the same files (out removed first).

Repeated ``--repeats`` times, alternating; ratio = median workflow / median reference (target 1.5). The CPU time
of each process tree (user + system) is printed beside it. Then, once, where the workflow's time goes: the
``snakemake -n prepared`` planning from a clean state (cohort discovery, fingerprints, DAG), the onstart
``breastseg tracking-init``, the start of one ``breastseg --help`` process, and the jobs' own times (from a
job's log file being created, by its shell redirect, to its marker being written).

    .venv/bin/python benchmarks/bench_cohort.py [--which busi,rf] [--rf-patients 1000] [--repeats 3] [--keep DIR]
        [--quick]
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

from bench_workflow import copy_repo

TARGET = 1.5
BUSI_CLASSES = {"benign": 437, "malignant": 210, "normal": 133}
#: Every this-many-th benign / malignant image gets a second region (BUSI has a few such ``_mask_1.png``).
EXTRA_MASK_EVERY = 45
CLEAN = (".snakemake", "data/interim", "data/processed", "logs", "mlflow.db", "optuna.db", "mlartifacts")


# -- cohorts ---------------------------------------------------------------------------------------------------


def _ellipse(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    rows, cols = shape
    cy, cx = rng.uniform(0.3, 0.6) * rows, rng.uniform(0.3, 0.7) * cols
    ry, rx = rng.uniform(0.08, 0.2) * rows, rng.uniform(0.08, 0.2) * cols
    y, x = np.ogrid[:rows, :cols]
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1


def write_busi_like(root: Path, counts: dict[str, int] | None = None, shape: tuple[int, int] = (500, 600),
                    seed: int = 0) -> Path:
    """``root/us/<class>/<class> (N).png`` + ``_mask.png`` (+ ``_mask_1.png`` for a few), grayscale, 8-bit.

    Image sizes vary around ``shape`` (+-10 %), as BUSI's do. Returns ``root``.
    """
    from PIL import Image

    counts = BUSI_CLASSES if counts is None else counts
    rng = np.random.default_rng(seed)
    for cls, n in counts.items():
        folder = root / "us" / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, n + 1):
            rows = int(shape[0] * rng.uniform(0.9, 1.1))
            cols = int(shape[1] * rng.uniform(0.9, 1.1))
            depth = np.linspace(1.0, 0.45, rows)[:, None]  # attenuation with depth
            speckle = rng.rayleigh(0.3, (rows, cols)).astype(np.float32)
            mask = _ellipse((rows, cols), rng) if cls != "normal" else np.zeros((rows, cols), bool)
            image = np.clip(speckle * depth * np.where(mask, 0.3, 1.0) * 255, 0, 255).astype(np.uint8)
            stem = f"{cls} ({i})"
            Image.fromarray(image).save(folder / f"{stem}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{stem}_mask.png")
            if cls != "normal" and i % EXTRA_MASK_EVERY == 0:
                Image.fromarray(_ellipse((rows, cols), rng).astype(np.uint8) * 255).save(folder / f"{stem}_mask_1.png")
    return root


def write_rf_cohort(root: Path, n: int, samples: int = 1024, lines: int = 96, seed: int = 0) -> Path:
    """``root/us/R0000.npz`` ...: band-limited RF (int16, samples x lines) with a weaker-scattering mass ROI."""
    from scipy.signal import fftconvolve

    rng = np.random.default_rng(seed)
    us = root / "us"
    us.mkdir(parents=True, exist_ok=True)
    fs, f0 = 40e6, 7e6
    t = np.arange(-12, 13) / fs
    pulse = (np.cos(2 * np.pi * f0 * t) * np.exp(-(t * f0 / 0.9) ** 2))[:, None]
    for i in range(n):
        roi = _ellipse((samples, lines), rng).astype(np.uint8)
        scat = rng.normal(size=(samples, lines)) * np.where(roi > 0, 0.4, 1.0)
        rf = fftconvolve(scat, pulse, mode="same", axes=0)
        rf = np.round(rf / np.abs(rf).max() * 8000).astype(np.int16)
        np.savez(us / f"R{i:04d}.npz", rf=rf, roi=roi, fs=fs, f0=f0, pitch=3e-4)
    return root


# -- processes -------------------------------------------------------------------------------------------------


def _env() -> dict:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           "DVC_NO_ANALYTICS": "1"}
    for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):  # the copy's own params.yaml stores
        env.pop(k, None)
    return env


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds of the process tree (user + system) and output of one command."""
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=_env())
    seconds = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed: {(r.stderr or r.stdout)[-2000:]}")
    return seconds, (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime), r.stdout + r.stderr


def clean(repo: Path) -> None:
    for rel in CLEAN:
        p = repo / rel
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def write_config(repo: Path, name: str, cohort: Path, experiments: list[str]) -> Path:
    import yaml

    cfg = {"cohort": {"name": name, "root": str(cohort), "pseudonym_key_file": str(repo / f"{name}.key")},
           "run": {"experiments": experiments}}
    path = repo / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def snakemake(repo: Path, config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "prepared", "--cores", "2", *extra, "--configfile", str(config)]


def us_maps(cohort: Path, out: Path, maps: str) -> list[str]:
    exe = Path(sys.executable).parent / "breastseg"
    return [str(exe), "-q", "us-maps", "--maps", maps, str(cohort / "us"), str(out)]


def job_times(repo: Path) -> dict[str, list[float]]:
    """Step -> seconds per job: from a job's log file being created (its shell redirect, at the job's start) to
    its marker being written (at the job's end)."""
    out: dict[str, list[float]] = {}
    for log in sorted((repo / "logs").glob("*/*/shard-*.log")):
        step, sub = log.parts[-3], log.parts[-2]
        marker = repo / ("data/interim" if step == "convert" else "data/processed") / sub / f"{log.stem}.json"
        if marker.exists():
            out.setdefault(step, []).append(marker.stat().st_mtime - _birth(log))
    return out


def _birth(path: Path) -> float:
    """Creation time (GNU ``stat %W``: statx birth time), else the last change (the job's end: no split)."""
    try:
        return float(subprocess.run(["stat", "-c", "%.9W", str(path)], capture_output=True, text=True,
                                    check=True).stdout)
    except (OSError, ValueError, subprocess.CalledProcessError):
        return path.stat().st_mtime


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def measure(label: str, repo: Path, name: str, cohort: Path, experiments: list[str], maps: str, repeats: int,
            files: str) -> dict:
    config = write_config(repo, name, cohort, experiments)
    out = repo.parent / f"{name}-maps"
    wf, wf_cpu, ref, ref_cpu = [], [], [], []
    jobs = None
    for _ in range(repeats):
        clean(repo)
        s, c, text = timed(snakemake(repo, config), repo)
        wf.append(s)
        wf_cpu.append(c)
        jobs = job_times(repo)
        n_jobs = _job_count(text)
        shutil.rmtree(out, ignore_errors=True)
        s, c, _ = timed(us_maps(cohort, out, maps), repo)
        ref.append(s)
        ref_cpu.append(c)
    # where the workflow's time goes (once): planning from a clean state, one process start, the jobs
    clean(repo)
    plan, plan_cpu, _ = timed(snakemake(repo, config, "-n"), repo)
    exe = str(Path(sys.executable).parent / "breastseg")
    start = statistics.median(timed([exe, "--help"], repo)[0] for _ in range(3))
    tracking = timed([exe, "--params", ".snakemake/breastseg/params.yaml", "-q", "tracking-init"], repo)[0]
    w, r = statistics.median(wf), statistics.median(ref)
    conv, prep = sum(jobs.get("convert", [])), sum(jobs.get("prepare", []))
    n_conv, n_prep = len(jobs.get("convert", [])), len(jobs.get("prepare", []))
    print(f"{label}: {files}")
    print(f"  workflow (snakemake --cores 2 prepared, {n_jobs} jobs): median {w:.1f} s ({_fmt(wf)}); "
          f"CPU {statistics.median(wf_cpu):.1f} s")
    print(f"  us-maps --maps {maps} (one process):           median {r:.1f} s ({_fmt(ref)}); "
          f"CPU {statistics.median(ref_cpu):.1f} s")
    print(f"  ratio {w / r:.2f} (target {TARGET})")
    print(f"  planning (snakemake -n prepared, clean): {plan:.1f} s (CPU {plan_cpu:.1f} s); breastseg process start "
          f"{start:.2f} s; convert jobs {n_conv} x {conv / max(n_conv, 1):.1f} s = {conv:.1f} s, prepare jobs "
          f"{n_prep} x {prep / max(n_prep, 1):.1f} s = {prep:.1f} s (job-seconds, 2 at a time); onstart tracking-init "
          f"{tracking:.1f} s")
    detail = (f"{w:.1f} s vs {r:.1f} s (whole processes; CPU {statistics.median(wf_cpu):.1f} s vs "
              f"{statistics.median(ref_cpu):.1f} s); {files}; {n_jobs} jobs; median of {repeats}: workflow "
              f"{_fmt(wf)} s, us-maps {_fmt(ref)} s. Workflow time: planning (snakemake -n, clean) {plan:.1f} s, "
              f"onstart tracking-init {tracking:.1f} s, convert {n_conv} jobs {conv:.1f} job-s, prepare {n_prep} jobs "
              f"{prep:.1f} job-s (2 at a time), breastseg process start {start:.2f} s")
    return {"name": label, "ratio": w / r, "target": TARGET,
            "reference": f"one breastseg us-maps --maps {maps} process, same files, same run", "detail": detail}


def _job_count(output: str) -> int | str:
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "total" and parts[1].isdigit():
            return int(parts[1])
    return "?"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--which", default="busi,rf", help="cohorts to measure: busi, rf or both (comma-separated)")
    ap.add_argument("--rf-patients", type=int, default=1000, help="RF cohort size")
    ap.add_argument("--repeats", type=int, default=3, help="workflow / us-maps pairs; medians are compared")
    ap.add_argument("--keep", type=Path, default=None,
                    help="work in a new folder inside this one and keep it (default: a temporary one, removed)")
    ap.add_argument("--quick", action="store_true", help="one repeat on tiny cohorts (10 BUSI images, 10 RF files)")
    return ap


def bench(argv: list[str] | None = None, quick: bool = False) -> list[dict]:
    ap = parser()
    if quick:
        ap.set_defaults(rf_patients=10, repeats=1)
    args = ap.parse_args([] if argv is None else argv)
    which = [w.strip() for w in args.which.split(",") if w.strip()]
    bad = set(which) - {"busi", "rf"}
    if bad or not which:
        ap.error(f"--which: busi and/or rf, got {args.which!r}")
    repeats = max(1, args.repeats)
    tmp = Path(tempfile.mkdtemp(prefix="bench_cohort_", dir=args.keep))
    rows = []
    try:
        repo = copy_repo(tmp / "repo")
        if "busi" in which:
            counts = {"benign": 5, "malignant": 3, "normal": 2} if quick else BUSI_CLASSES
            shape = (60, 80) if quick else (500, 600)
            t0 = time.perf_counter()
            cohort = write_busi_like(tmp / "busi", counts, shape)
            n = sum(counts.values())
            size = sum(f.stat().st_size for f in (cohort / "us").rglob("*.png")) / 2**20
            print(f"BUSI-like cohort: {n} images written in {time.perf_counter() - t0:.0f} s ({size:.0f} MiB)")
            rows.append(measure(f"BUSI-like cohort ({n} images) conversion vs one us-maps process", repo, "busi",
                                cohort, ["mass_us_bmode"], "bmode", repeats,
                                f"{n} grayscale PNGs ~{shape[0]}x{shape[1]} + masks ({size:.0f} MiB), "
                                f"mass_us_bmode"))
            shutil.rmtree(cohort, ignore_errors=True)
        if "rf" in which:
            samples, lines = (128, 16) if quick else (1024, 96)
            t0 = time.perf_counter()
            cohort = write_rf_cohort(tmp / "rf", args.rf_patients, samples, lines)
            size = sum(f.stat().st_size for f in (cohort / "us").glob("*.npz")) / 2**20
            print(f"RF cohort: {args.rf_patients} files written in {time.perf_counter() - t0:.0f} s ({size:.0f} MiB)")
            rows.append(measure(f"RF cohort ({args.rf_patients} patients) conversion vs one us-maps process", repo,
                                "rf", cohort, ["mass_us_entropy", "mass_us_bmode"], "bmode,entropy", repeats,
                                f"{args.rf_patients} .npz RF {samples}x{lines} ({size:.0f} MiB), mass_us_entropy + "
                                f"mass_us_bmode"))
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return rows


if __name__ == "__main__":
    from run import standalone

    raise SystemExit(standalone(bench, parser))
