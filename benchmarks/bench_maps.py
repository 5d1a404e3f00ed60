"""Where each ultrasound map sees the mass: per-pixel separability of mass and tissue, entropy vs B-mode.

Simulates phantoms of each echogenicity at the demo's size (``synth.us_lines`` lines, ``synth.us_depth_mm``
deep; the same physics the demo cohort uses), computes both maps with the ``us_maps`` defaults and measures, per
scan, the ROC AUC of the map's value for mass pixels against tissue pixels at the same depths (more than 1.5 mm
from the outline), taken in whichever direction separates them (``max(AUC, 1 - AUC)``: a dark and a bright mass
count alike). Ratio per echogenicity: B-mode AUC / entropy AUC (lower is better); target 1 for isoechoic masses
(entropy should see what B-mode barely shows), reported without a target for the others (their brightness
differs from the tissue's, which both maps see). The ``us_maps`` defaults were chosen by
``choose_entropy_defaults.py`` on other phantoms (seed 1001), never on these (seed 0).

    .venv/bin/python benchmarks/bench_maps.py [--per-echogenicity 8] [--seed 0] [--quick]
"""
from __future__ import annotations

import argparse
import statistics

from pathlib import Path

import numpy as np
from breastseg.config import us_map_settings as with_maps

ROOT = Path(__file__).resolve().parent.parent


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-echogenicity", type=int, default=8, help="phantoms per echogenicity")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="2 phantoms per echogenicity")
    return ap


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC of ``pos`` vs ``neg`` (Mann-Whitney U over both samples, ties counted half)."""
    values = np.concatenate([pos, neg])
    order = values.argsort(kind="mergesort")
    ranks = np.empty(values.size)
    ranks[order] = np.arange(1, values.size + 1)
    # average ranks of ties
    sorted_v = values[order]
    edges = np.flatnonzero(np.diff(sorted_v)) + 1
    starts, ends = np.r_[0, edges], np.r_[edges, values.size]
    mean_rank = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(mean_rank, ends - starts)
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def separability(image: np.ndarray, inner: np.ndarray, outer: np.ndarray) -> float:
    a = auc(image[inner].ravel(), image[outer].ravel())
    return max(a, 1.0 - a)


def bench(argv: list[str] | None = None, quick: bool = False) -> list[dict]:
    ap = parser()
    if quick:
        ap.set_defaults(per_echogenicity=2)
    args = ap.parse_args([] if argv is None else argv)
    from breastseg.config import load_params
    from breastseg.synth import us
    from breastseg.us.maps import compute_maps
    from breastseg.us.readers import Scan

    synth = load_params(ROOT / "params.yaml")["synth"]
    probe = us.probe_for(synth["us_lines"], synth["us_depth_mm"])
    spacing = (probe.c / (2.0 * probe.fs) * 1e3, probe.pitch * 1e3)
    results = []
    for k, echo in enumerate(us.ECHOGENICITIES):
        scores: dict[str, list[float]] = {"bmode": [], "entropy": []}
        for i in range(args.per_echogenicity):
            rng = np.random.default_rng([args.seed, k, i])
            scans = us.simulate_patient(rng, probe, malignant=(echo != "anechoic" and i % 2 == 1), echogenicity=echo)
            roi = scans["roi1"]
            scan = Scan("bench", "scan-1", scans["rf1"].astype(np.float64), None, roi, probe.fs, probe.f0, probe.pitch,
                        probe.c, probe.bandwidth, None, spacing, "npz")
            maps, meta = compute_maps(scan, **with_maps())
            inner, outer = us._contrast_regions(roi, probe)
            for name in scores:
                scores[name].append(separability(maps[name], inner, outer))
        b, e = statistics.median(scores["bmode"]), statistics.median(scores["entropy"])
        results.append({
            "name": f"maps: {echo} masses, B-mode vs entropy separability",
            "ratio": b / e,
            "target": 1.0 if echo == "isoechoic" else None,
            "reference": "entropy map AUC, same phantoms" + ("" if echo == "isoechoic" else
                                                             "; no target: both maps see the brightness"),
            "detail": f"median per-pixel AUC B-mode {b:.2f}, entropy {e:.2f} over {len(scores['bmode'])} phantoms "
                      f"({synth['us_lines']} lines, {synth['us_depth_mm']:g} mm); entropy of the "
                      f"{meta['entropy_on']}, {meta['window_pulses']:g}-pulse window, {meta['bins']} bins",
        })
    for r in results:
        print(f"{r['name']:<58} ratio {r['ratio']:.3f}: {r['detail']}")
    return results


if __name__ == "__main__":
    from run import standalone

    raise SystemExit(standalone(bench, parser))
