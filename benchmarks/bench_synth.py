"""Time a 50-patient synthetic cohort with the default sizes against the 120 s target.

Run: ``.venv/bin/python benchmarks/bench_synth.py [--patients 50] [--seed 0] [--workers 1]``
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

TARGET_S = 120.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()

    from breastseg.synth.cohort import DEFAULTS, write_cohort

    tmp = Path(tempfile.mkdtemp(prefix="bench_synth_"))
    try:
        t0 = time.perf_counter()
        summary = write_cohort(tmp / "cohort", args.patients, args.seed, progress=False, workers=args.workers)
        seconds = time.perf_counter() - t0
        files = [p for p in (tmp / "cohort").rglob("*") if p.is_file()]
        size_mb = sum(p.stat().st_size for p in files) / 1e6
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"defaults: {DEFAULTS}")
    print(f"cpus: {os.cpu_count()}  workers: {args.workers}")
    print(f"patients: {args.patients}  files: {len(files)}  size: {size_mb:.1f} MB  dicom files: {summary['dicom_files']}")
    print(f"seconds: {seconds:.1f}  per patient: {seconds / args.patients:.2f}")
    print(f"ratio to the {TARGET_S:.0f} s target: {seconds / TARGET_S:.2f} ({'within' if seconds <= TARGET_S else 'OVER'} target)")


if __name__ == "__main__":
    main()
