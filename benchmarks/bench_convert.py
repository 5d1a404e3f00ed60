"""Convert speed and memory: breastseg vs dcm2niix on the same synthetic cohort, side by side in one run.

    python benchmarks/bench_convert.py                      # 20 series x 120 slices of 512x512 int16
    python benchmarks/bench_convert.py --series 4 --slices 40

Times ``convert_dicom_dir(compress=False)`` against ``dcm2niix -z n`` and ``compress=True`` (gzip level 1)
against ``dcm2niix -z y``, and prints the ratios (breastseg / dcm2niix; <= 1.0 is the target) and breastseg's
peak resident memory above its start-up footprint, relative to the largest series' size. Each breastseg run
happens in a fresh process so peaks do not mix. dcm2niix runs are skipped when it is not on PATH (Debian
package: dcm2niix).
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def generate(root: Path, n_series: int, n_slices: int, size: int) -> int:
    from breastseg.dicom import synthetic as syn

    rng = np.random.default_rng(0)
    study = "1.2.826.0.1.3680043.10.1394.7"
    for s in range(n_series):
        values = rng.integers(-200, 3000, (n_slices, size, size), dtype=np.int16)
        spec = syn.SeriesSpec(rows=size, cols=size, slices=n_slices, series_number=s + 1, study_uid=study,
                              values=values, pixel_spacing=(0.7, 0.7), slice_step=1.5)
        syn.write_series(root / f"series{s:03d}", spec, shuffle_names=True)
    return n_slices * size * size * 2


def child(args) -> None:
    """Run one conversion in this process and print JSON timing/memory."""
    from breastseg.dicom.convert import convert_dicom_dir

    base = _status_kb("VmRSS")
    t0 = time.perf_counter()
    summary = convert_dicom_dir(args.src, args.out, compress=args.compress, workers=args.workers)
    dt = time.perf_counter() - t0
    peak = _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": dt, "peak_kb": peak - base, "n_series": summary["n_series"]}))


def _status_kb(field: str) -> int:
    """Current (VmRSS) or peak (VmHWM) resident memory in KiB from /proc (Linux); 0 elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_ours(src: Path, out: Path, compress: bool, workers: int) -> dict:
    cmd = [sys.executable, __file__, "--child", "--src", str(src), "--out", str(out), "--workers", str(workers)]
    if compress:
        cmd.append("--compress")
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def run_dcm2niix(src: Path, out: Path, compress: bool) -> float | None:
    exe = shutil.which("dcm2niix")
    if exe is None:
        return None
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    subprocess.run([exe, "-z", "y" if compress else "n", "-f", "%s", "-o", str(out), str(src)], check=True,
                   capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=20)
    ap.add_argument("--slices", type=int, default=120)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--workers", type=int, default=0, help="breastseg worker threads (0: its default)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--compress", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.workers = args.workers or None
        child(args)
        return
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_convert_"))
    try:
        src = work / "dicom"
        t0 = time.perf_counter()
        largest = generate(src, args.series, args.slices, args.size)
        print(f"cohort: {args.series} series x {args.slices} slices of {args.size}x{args.size} int16 "
              f"({args.series * largest / 2**20:.0f} MiB), generated in {time.perf_counter() - t0:.1f} s")
        rows = []
        for compress in (False, True):
            theirs = run_dcm2niix(src, work / f"d2n_{compress}", compress)
            ours = run_ours(src, work / f"ours_{compress}", compress, args.workers)
            rows.append((compress, ours, theirs))
        print(f"{'output':<10}{'breastseg s':>13}{'dcm2niix s':>12}{'ratio':>8}{'peak RSS / largest series':>28}")
        for compress, ours, theirs in rows:
            ratio = f"{ours['seconds'] / theirs:.2f}" if theirs else "n/a"
            peak = ours["peak_kb"] * 1024 / largest
            print(f"{'.nii.gz' if compress else '.nii':<10}{ours['seconds']:>13.2f}"
                  f"{(f'{theirs:.2f}' if theirs else 'n/a'):>12}{ratio:>8}{peak:>27.2f}x")
        if shutil.which("dcm2niix") is None:
            print("dcm2niix not on PATH (Debian package: dcm2niix): ratios not measured")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
