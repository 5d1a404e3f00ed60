"""Choose the entropy map's window (``us_maps.window_pulses``) and histogram bins (``us_maps.bins``) on
validation phantoms, and write the choice to ``benchmarks/entropy_defaults.json``.

Validation data: phantoms of the project's ultrasound generator (:mod:`breastseg.synth.us`, the physics of the
demo cohort) at the demo's size (``synth.us_lines`` lines, ``synth.us_depth_mm`` deep, from params.yaml),
``--per-echogenicity`` of each echogenicity, drawn from seed 1001: not the demo cohort's seed (``synth.seed``,
7), whose test patients report the models, nor ``benchmarks/bench_maps.py``'s (0), which reports the chosen
maps afterwards. Nothing here reads a cohort, a split or a test set.

Score of a setting: per scan, the ROC AUC of the entropy map's value for mass pixels against tissue pixels at
the same depths more than 1.5 mm from the outline, in whichever direction separates them (as
``bench_maps.py``); mean over the scans of an echogenicity, then over the four echogenicities.

Grid: ``window_pulses`` in {1, 2, 3, 4} (entropy imaging uses windows of one to a few pulse lengths; Tsui et
al. 2017 found one enough) and ``bins`` in {16, 32, 64, 128} (tens to about a hundred); entropy of the RF
envelope (``entropy_on: envelope``, histogram over 0..99th percentile of each scan). The chosen pair has the
highest mean AUC (the first in grid order, smaller window first, on a tie). For that pair the script also
prints, for context, the same score for other binnings (the scan's min..max, each window normalised by its
own maximum or by 3 x its RMS) and for the B-mode itself; they do not enter the choice.

    .venv/bin/python benchmarks/choose_entropy_defaults.py [--per-echogenicity 16] [--out PATH] [--quick]

Under a minute on one core at the default size (64 phantoms).
"""
from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from breastseg.config import us_map_settings as with_maps

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SEED = 1001  # validation phantoms: neither the demo's synth.seed (7) nor bench_maps.py's seed (0)
WINDOW_PULSES = (1.0, 2.0, 3.0, 4.0)
BINS = (16, 32, 64, 128)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-echogenicity", type=int, default=16, help="phantoms per echogenicity")
    ap.add_argument("--out", type=Path, default=HERE / "entropy_defaults.json")
    ap.add_argument("--quick", action="store_true", help="2 phantoms per echogenicity, no file written")
    return ap


@functools.lru_cache(maxsize=None)
def _window_kernel():
    """Compiled once: entropy of each window with its own bins (over [0, max] or [0, 3 x RMS] of the window)."""
    from numba import njit

    @njit(cache=False)
    def kernel(img, hr, hc, nbins, rms):  # pragma: no cover - compiled
        rows, cols = img.shape
        out = np.empty((rows, cols))
        hist = np.zeros(nbins, np.int64)
        for i in range(rows):
            r0, r1 = max(i - hr, 0), min(i + hr + 1, rows)
            for j in range(cols):
                c0, c1 = max(j - hc, 0), min(j + hc + 1, cols)
                top, s2, n = 0.0, 0.0, 0
                for a in range(r0, r1):
                    for b in range(c0, c1):
                        v = img[a, b]
                        top = max(top, v)
                        s2 += v * v
                        n += 1
                if rms:
                    top = 3.0 * np.sqrt(s2 / n)
                if top <= 0.0:
                    out[i, j] = 0.0
                    continue
                hist[:] = 0
                for a in range(r0, r1):
                    for b in range(c0, c1):
                        hist[min(int(img[a, b] / top * nbins), nbins - 1)] += 1
                h = 0.0
                for k in range(nbins):
                    if hist[k] > 0:
                        p = hist[k] / n
                        h -= p * np.log2(p)
                out[i, j] = h
        return out

    return kernel


def _window_entropy(values: np.ndarray, window: tuple[int, int], bins: int, mode: str) -> np.ndarray:
    """Entropy with per-window bins: over [0, window max] (``"max"``) or [0, 3 x window RMS] (``"rms"``)."""
    return _window_kernel()(np.ascontiguousarray(values, np.float64), window[0] // 2, window[1] // 2, int(bins),
                            mode == "rms")


def phantoms(per_echogenicity: int) -> tuple[list[dict], dict]:
    from breastseg.config import load_params
    from breastseg.synth import us
    from breastseg.us.readers import Scan

    synth = load_params(ROOT / "params.yaml")["synth"]
    probe = us.probe_for(synth["us_lines"], synth["us_depth_mm"])
    spacing = (probe.c / (2.0 * probe.fs) * 1e3, probe.pitch * 1e3)
    out = []
    for k, echo in enumerate(us.ECHOGENICITIES):
        for i in range(per_echogenicity):
            rng = np.random.default_rng([SEED, k, i])
            scans = us.simulate_patient(rng, probe, malignant=(echo != "anechoic" and i % 2 == 1), echogenicity=echo)
            roi = scans["roi1"]
            scan = Scan("validation", "scan-1", scans["rf1"].astype(np.float64), None, roi, probe.fs, probe.f0,
                        probe.pitch, probe.c, probe.bandwidth, None, spacing, "npz")
            inner, outer = us._contrast_regions(roi, probe)
            out.append({"echogenicity": echo, "scan": scan, "inner": inner, "outer": outer})
    return out, {"lines": int(synth["us_lines"]), "depth_mm": float(synth["us_depth_mm"])}


def score(maps_of, cases: list[dict]) -> dict[str, float]:
    """Mean per-pixel AUC per echogenicity (and ``"mean"`` over them) of the map ``maps_of(case)``."""
    from bench_maps import separability

    per: dict[str, list[float]] = {}
    for case in cases:
        per.setdefault(case["echogenicity"], []).append(separability(maps_of(case), case["inner"], case["outer"]))
    out = {e: float(np.mean(v)) for e, v in per.items()}
    out["mean"] = float(np.mean([out[e] for e in per]))
    return out


def choose(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    if args.quick:
        args.per_echogenicity = 2
    sys.path.insert(0, str(HERE))
    from breastseg.us.entropy import entropy_map
    from breastseg.us.maps import compute_maps, envelope_range
    from breastseg.us.rf import envelope, window_from_pulses

    t0 = time.perf_counter()
    cases, size = phantoms(args.per_echogenicity)
    echoes = list(dict.fromkeys(c["echogenicity"] for c in cases))
    print(f"{len(cases)} validation phantoms (seed {SEED}; {size['lines']} lines, {size['depth_mm']:g} mm) "
          f"in {time.perf_counter() - t0:.1f} s", flush=True)

    def window_of(wp: float) -> tuple[int, int]:
        s = cases[0]["scan"]
        return window_from_pulses(wp, f0=s.f0, bandwidth=s.bandwidth, fs=s.fs, pitch=s.pitch, c=s.c)

    table = []
    print(f"\n{'window_pulses':>13} {'window':>8} {'bins':>5}  " + " ".join(f"{e:>11}" for e in echoes)
          + f"  {'mean AUC':>8}")
    for wp in WINDOW_PULSES:
        for bins in BINS:
            auc = score(lambda c: compute_maps(c["scan"], **with_maps(window_pulses=wp, bins=bins, entropy_on="envelope"))[0]["entropy"], cases)
            w = window_of(wp)
            table.append({"window_pulses": wp, "bins": bins, "window": list(w),
                          "auc": {e: round(auc[e], 4) for e in echoes}, "mean_auc": round(auc["mean"], 4),
                          "_mean": auc["mean"]})
            print(f"{wp:>13g} {f'{w[0]}x{w[1]}':>8} {bins:>5}  " + " ".join(f"{auc[e]:>11.3f}" for e in echoes)
                  + f"  {auc['mean']:>8.3f}", flush=True)
    best = max(table, key=lambda r: r["_mean"])  # max() keeps the first of equal ones: grid order
    for r in table:
        r.pop("_mean")
    wp, bins = best["window_pulses"], best["bins"]
    print(f"\nchosen: window_pulses {wp:g}, bins {bins} (mean AUC {best['mean_auc']:.3f})")

    # Context only: other binnings, and the B-mode, at the chosen pair.
    w = window_of(wp)
    envs = {id(c): envelope(c["scan"].rf) for c in cases}
    context = {
        "envelope, bins over 0..P99 of the scan (chosen)": score(
            lambda c: entropy_map(envs[id(c)], w, bins, envelope_range(envs[id(c)])), cases),
        "envelope, bins over min..max of the scan": score(lambda c: entropy_map(envs[id(c)], w, bins), cases),
        "envelope, each window over 0..its max": score(
            lambda c: _window_entropy(envs[id(c)], w, bins, "max"), cases),
        "envelope, each window over 0..3x its RMS": score(
            lambda c: _window_entropy(envs[id(c)], w, bins, "rms"), cases),
        "log-compressed B-mode, bins over [0, 1] (entropy_on: bmode)": score(
            lambda c: compute_maps(c["scan"], **with_maps(window_pulses=wp, bins=bins, entropy_on="bmode"))[0]["entropy"], cases),
        "the B-mode image itself": score(lambda c: compute_maps(c["scan"], maps=("bmode",), **with_maps())[0]["bmode"], cases),
    }
    print(f"\ncontext at the chosen pair (not used to choose):\n{'':<62}" + " ".join(f"{e:>11}" for e in echoes)
          + f"  {'mean AUC':>8}")
    for name, auc in context.items():
        print(f"{name:<62}" + " ".join(f"{auc[e]:>11.3f}" for e in echoes) + f"  {auc['mean']:>8.3f}")
    seconds = time.perf_counter() - t0
    print(f"\n{seconds:.0f} s")

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    result = {
        "chosen": {"window_pulses": wp, "bins": bins, "mean_auc": best["mean_auc"]},
        "criterion": "highest mean over echogenicities of the mean per-pixel AUC (mass vs same-depth tissue, "
                     "either direction) of the envelope entropy map; first in grid order on a tie",
        "validation_phantoms": {"generator": "breastseg.synth.us.simulate_patient (scan 1)", "seed": SEED,
                                "per_echogenicity": args.per_echogenicity, "echogenicities": echoes, **size},
        "entropy_on": "envelope",
        "grid": {"window_pulses": list(WINDOW_PULSES), "bins": list(BINS)},
        "table": table,
        "context_at_chosen": {k: {e: round(v, 4) for e, v in auc.items()} for k, auc in context.items()},
        "measured": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu}, {seconds:.0f} s",
    }
    if not args.quick:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    choose()
    raise SystemExit(0)
