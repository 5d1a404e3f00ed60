"""Convert speed and memory: breastseg vs dcm2niix on the same synthetic cohort, side by side in one run.

    python benchmarks/bench_convert.py                      # 20 series x 120 slices of 512x512 int16
    python benchmarks/bench_convert.py --series 4 --slices 40 --repeat 1
    python benchmarks/bench_convert.py --quick              # 2 series x 8 slices of 64x64, one run

Times ``convert_dicom_dir(compress=False)`` against ``dcm2niix -z n`` and ``compress=True`` (gzip level 1)
against ``dcm2niix -z y`` over the same folder. Each tool runs ``--repeat`` times per mode, the two tools
alternating (and alternating which goes first), every run into a fresh output folder after ``sync`` so no
run pays for the previous one's disk write-back; the median times of the tools are compared. breastseg runs in
a fresh Python process each time (one process per conversion, as ``breastseg convert`` does); both tools
are timed as whole processes (for breastseg: interpreter start, imports and conversion), and the time spent
inside ``convert_dicom_dir`` alone is shown beside it in brackets.

Memory, relative to the largest series' size (rows x cols x slices x 2 bytes):

* **peak RSS growth** (the target's measure): the converting process' peak resident set (``VmHWM``) minus its
  resident set just before the conversion starts (after imports), from ``/proc/self/status``; the largest
  value over all timed runs;
* **tracemalloc peak**: the peak of memory allocated through Python's allocators, numpy array buffers
  included, during one extra untimed run per mode (tracemalloc slows allocation down).

Targets: wall time ratio <= 0.5 in both modes, peak RSS growth < 3x the largest
series. dcm2niix runs are skipped when it is not on PATH (Debian package: dcm2niix).
"""
from __future__ import annotations

import argparse
import json
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

TIME_TARGET = 0.5
MEMORY_TARGET = 3.0


def generate(root: Path, n_series: int, n_slices: int, size: int) -> int:
    """Write the cohort (unless ``root`` already holds this one) and return the largest series' bytes."""
    from breastseg.synth import dicom_files as syn

    stamp = root.with_name(root.name + ".cohort.json")  # beside the folder: not a file to convert
    want = {"series": n_series, "slices": n_slices, "size": size}
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        return n_slices * size * size * 2
    shutil.rmtree(root, ignore_errors=True)
    stamp.unlink(missing_ok=True)
    rng = np.random.default_rng(0)
    study = "1.2.826.0.1.3680043.10.1394.7"
    for s in range(n_series):
        values = rng.integers(-200, 3000, (n_slices, size, size), dtype=np.int16)
        spec = syn.SeriesSpec(rows=size, cols=size, slices=n_slices, series_number=s + 1, study_uid=study,
                              values=values, pixel_spacing=(0.7, 0.7), slice_step=1.5)
        syn.write_series(root / f"series{s:03d}", spec, shuffle_names=True)
    stamp.write_text(json.dumps(want))
    return n_slices * size * size * 2


def child(args) -> None:
    """Run one conversion in this process and print JSON timing/memory."""
    from breastseg.dicom.convert import convert_dicom_dir

    if args.trace:
        import tracemalloc

        tracemalloc.start()
    base = _status_kb("VmRSS")
    t0 = time.perf_counter()
    summary = convert_dicom_dir(args.src, args.out, compress=args.compress, workers=args.workers)
    dt = time.perf_counter() - t0
    peak = _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"seconds": dt, "rss_growth_kb": peak - base, "n_series": summary["n_series"]}
    if args.trace:
        out["tracemalloc_peak_b"] = tracemalloc.get_traced_memory()[1]
    print(json.dumps(out))


def _status_kb(field: str) -> int:
    """Current (VmRSS) or peak (VmHWM) resident memory in KiB from /proc (Linux); 0 elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _fresh(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    os.sync()


def run_ours(src: Path, out: Path, compress: bool, workers: int, trace: bool = False) -> dict:
    _fresh(out)
    cmd = [sys.executable, __file__, "--child", "--src", str(src), "--out", str(out), "--workers", str(workers)]
    if compress:
        cmd.append("--compress")
    if trace:
        cmd.append("--trace")
    t0 = time.perf_counter()
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    return {**json.loads(res.stdout.strip().splitlines()[-1]), "wall": wall}


def run_dcm2niix(src: Path, out: Path, compress: bool) -> float | None:
    exe = shutil.which("dcm2niix")
    if exe is None:
        return None
    _fresh(out)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    subprocess.run([exe, "-z", "y" if compress else "n", "-f", "%s", "-o", str(out), str(src)], check=True,
                   capture_output=True)
    return time.perf_counter() - t0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=20)
    ap.add_argument("--slices", type=int, default=120)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool and mode; medians are compared")
    ap.add_argument("--workers", type=int, default=0, help="breastseg worker threads (0: its default)")
    ap.add_argument("--no-trace", action="store_true", help="skip the extra tracemalloc runs")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the cohort here (reused when it matches)")
    ap.add_argument("--quick", action="store_true", help="2 series x 8 slices of 64x64, one run, no tracemalloc")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--compress", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    return ap


def main() -> None:
    args = parser().parse_args()
    if args.child:
        args.workers = args.workers or None
        child(args)
        return
    bench(sys.argv[1:], quick=args.quick)


def bench(argv: list[str] | None = None, quick: bool = False) -> list[dict]:
    ap = parser()
    if quick:
        ap.set_defaults(series=2, slices=8, size=64, repeat=1, no_trace=True)
    args = ap.parse_args([] if argv is None else argv)
    results: list[dict] = []
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_convert_"))
    try:
        src = work / "dicom"
        t0 = time.perf_counter()
        largest = generate(src, args.series, args.slices, args.size)
        print(f"cohort: {args.series} series x {args.slices} slices of {args.size}x{args.size} int16 "
              f"({args.series * largest / 2**20:.0f} MiB, largest series {largest / 2**20:.0f} MiB), "
              f"ready in {time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs; median of {args.repeat}")
        have_d2n = shutil.which("dcm2niix") is not None
        rows = []
        peak_rss = 0
        traced: dict[bool, int] = {}
        for compress in (False, True):
            ours_t: list[float] = []
            inner_t: list[float] = []
            theirs_t: list[float] = []
            for r in range(max(1, args.repeat)):
                order = ("theirs", "ours") if r % 2 == 0 else ("ours", "theirs")
                for who in order:
                    if who == "ours":
                        res = run_ours(src, work / "out_ours", compress, args.workers)
                        ours_t.append(res["wall"])
                        inner_t.append(res["seconds"])
                        peak_rss = max(peak_rss, res["rss_growth_kb"] * 1024)
                    elif have_d2n:
                        theirs_t.append(run_dcm2niix(src, work / "out_d2n", compress))  # type: ignore[arg-type]
            if not args.no_trace:
                traced[compress] = run_ours(src, work / "out_ours", compress, args.workers, trace=True)[
                    "tracemalloc_peak_b"]
            rows.append((compress, ours_t, inner_t, theirs_t))
        shutil.rmtree(work / "out_ours", ignore_errors=True)
        shutil.rmtree(work / "out_d2n", ignore_errors=True)

        print()
        print(f"{'mode':<16}{'breastseg s':>12}{'dcm2niix s':>12}{'ratio':>8}{'target':>9}  result   "
              "all runs (s): breastseg process [inside convert_dicom_dir] | dcm2niix")
        ok = True
        cohort = f"{args.series} series x {args.slices} slices of {args.size}x{args.size}"
        for compress, ours_t, inner_t, theirs_t in rows:
            mode = "gzip (.nii.gz)" if compress else "uncompressed"
            med = statistics.median(ours_t)
            runs = " ".join(f"{t:.2f} [{i:.2f}]" for t, i in zip(ours_t, inner_t))
            result = {"name": f"DICOM -> NIfTI {'.nii.gz' if compress else '.nii'} vs dcm2niix", "ratio": None,
                      "target": TIME_TARGET, "reference": f"dcm2niix -z {'y' if compress else 'n'}, same run",
                      "detail": "not measured: dcm2niix not on PATH"}
            if theirs_t:
                ratio = med / statistics.median(theirs_t)
                passed = ratio <= TIME_TARGET
                ok &= passed
                runs += " | " + " ".join(f"{t:.2f}" for t in theirs_t)
                print(f"{mode:<16}{med:>12.2f}{statistics.median(theirs_t):>12.2f}{ratio:>8.2f}"
                      f"{'<= ' + str(TIME_TARGET):>9}  {'PASS' if passed else 'FAIL':<7}  {runs}")
                inner = statistics.median(inner_t)
                result.update(ratio=ratio, detail=f"{med:.2f} s vs {statistics.median(theirs_t):.2f} s (whole "
                                                  f"processes), {cohort}; median of {len(ours_t)}. Ours: "
                                                  f"{inner:.2f} s converting, {med - inner:.2f} s interpreter start "
                                                  f"and imports; runs (s) ours {' '.join(f'{t:.2f}' for t in ours_t)}, "
                                                  f"dcm2niix {' '.join(f'{t:.2f}' for t in theirs_t)}")
            else:
                print(f"{mode:<16}{med:>12.2f}{'n/a':>12}{'n/a':>8}{'<= ' + str(TIME_TARGET):>9}  {'n/a':<7}  {runs}")
            results.append(result)
        mem_ratio = peak_rss / largest
        mem_ok = mem_ratio < MEMORY_TARGET
        ok &= mem_ok
        print()
        print(f"peak memory (peak RSS growth of the converting process, VmHWM - VmRSS before converting, max "
              f"over timed runs): {peak_rss / 2**20:.1f} MiB = {mem_ratio:.2f}x the largest series; target "
              f"< {MEMORY_TARGET}x  {'PASS' if mem_ok else 'FAIL'}")
        for compress, peak in traced.items():
            print(f"  tracemalloc peak (Python + numpy buffers, {'gzip' if compress else 'uncompressed'}): "
                  f"{peak / 2**20:.1f} MiB = {peak / largest:.2f}x (informational)")
        results.append({"name": "DICOM -> NIfTI peak memory vs largest series", "ratio": mem_ratio,
                        "target": MEMORY_TARGET, "reference": f"largest series ({largest / 2**20:.0f} MiB)",
                        "detail": f"peak RSS growth {peak_rss / 2**20:.0f} MiB, max over timed runs"})
        if not have_d2n:
            print("dcm2niix not on PATH (Debian package: dcm2niix): ratios not measured")
        print(f"\noverall: {'PASS' if ok else 'FAIL'}")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
