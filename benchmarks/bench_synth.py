"""Time a 50-patient synthetic cohort with the default sizes against the 120 s target.

The ratio is the median time over ``--repeats`` runs divided by the target (scaled to the number of patients
when ``--patients`` is not 50); lower is better.

Run: ``.venv/bin/python benchmarks/bench_synth.py [--patients 50] [--seed 0] [--workers 1] [--repeats 1]
[--quick]``
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

TARGET_S = 120.0
TARGET_PATIENTS = 50


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1, help="cohorts written; the median time is compared")
    ap.add_argument("--quick", action="store_true", help="2 patients, one run")
    return ap


def bench(argv: list[str] | None = None, quick: bool = False) -> list[dict]:
    ap = parser()
    if quick:
        ap.set_defaults(patients=2, repeats=1)
    args = ap.parse_args([] if argv is None else argv)
    from breastseg.synth.cohort import DEFAULTS, write_cohort

    times = []
    for _ in range(max(1, args.repeats)):
        tmp = Path(tempfile.mkdtemp(prefix="bench_synth_"))
        try:
            t0 = time.perf_counter()
            summary = write_cohort(tmp / "cohort", args.patients, args.seed, progress=False, workers=args.workers)
            times.append(time.perf_counter() - t0)
            files = [p for p in (tmp / "cohort").rglob("*") if p.is_file()]
            size_mb = sum(p.stat().st_size for p in files) / 1e6
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    seconds = statistics.median(times)
    target = TARGET_S * args.patients / TARGET_PATIENTS

    print(f"defaults: {DEFAULTS}")
    print(f"cpus: {os.cpu_count()}  workers: {args.workers}")
    print(f"patients: {args.patients}  files: {len(files)}  size: {size_mb:.1f} MB  dicom files: {summary['dicom_files']}")
    print(f"seconds: {seconds:.1f} (median of {len(times)})  per patient: {seconds / args.patients:.2f}")
    print(f"ratio to the {target:.0f} s target: {seconds / target:.2f} ({'within' if seconds <= target else 'OVER'} target)")
    scaled = "" if args.patients == TARGET_PATIENTS else f", scaled to {args.patients}: {target:.1f} s"
    return [{"name": f"synthetic cohort, {args.patients} patients", "ratio": seconds / target, "target": 1.0,
             "reference": f"target {TARGET_S:.0f} s for {TARGET_PATIENTS} patients{scaled}",
             "detail": f"{seconds:.1f} s ({seconds / args.patients:.2f} s/patient, {args.workers} worker(s), "
                       f"{len(files)} files, {size_mb:.0f} MB); median of {len(times)}"}]


if __name__ == "__main__":
    from run import standalone

    raise SystemExit(standalone(bench, parser))
