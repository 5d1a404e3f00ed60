"""Segmentation quality of a finished quality-profile run, with the published reference points as context.

Reads ``results/<experiment>/evaluation.json`` (else the flat ``metrics/<experiment>.json``) and
``results/comparisons/entropy_vs_bmode.json`` under ``--quality-dir``
(the repository a ``snakemake --configfile configs/quality.yaml`` run finished in); runs nothing itself.

The published Dice (BPE/FGT 0.76; ultrasound entropy 0.60, B-mode 0.53) were measured on real patients, these
on synthetic phantoms: the rows that show them carry no ratio, no target and no verdict, only the result
"not comparable: synthetic vs real" (a phantom Dice above a published one says nothing about the method).
Like-for-like rows: the paired comparison on the same test patients (ratio B-mode Dice / entropy Dice, no
target; the published pair is quoted as context only), and the highest mean Dice over the 0.95 ceiling of the
synthetic tasks (a task easy enough to pass it cannot tell a good method from a weak one). Experiments without
an evaluation are "not measured".

    .venv/bin/python benchmarks/bench_quality.py --quality-dir PATH [--quick]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PUBLISHED = {"bpe_mri": 0.76, "mass_us_entropy": 0.60, "mass_us_bmode": 0.53}
PUBLISHED_ON = {"bpe_mri": "real MRI, multiclass BPE/FGT, 3441 slices", "mass_us_entropy": "real RF, 81 test masses",
                "mass_us_bmode": "real RF, the same 81 masses"}
LABELS = {"bpe_mri": "BPE/FGT (MRI)", "mass_us_entropy": "US mass, entropy map", "mass_us_bmode": "US mass, B-mode"}
COMPARISON = "entropy_vs_bmode"
CEILING = 0.95
NOT_COMPARABLE = "not comparable: synthetic vs real"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quality-dir", type=Path, default=None,
                    help="repository folder of a finished quality-profile run (default: not measured)")
    ap.add_argument("--quick", action="store_true", help="the same (reading files is quick)")
    return ap


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _evaluation(where: Path, exp: str) -> dict | None:
    """The experiment's evaluation summary, else its flat headline metrics (``dice_<class>`` keys)."""
    m = _read(where / "results" / exp / "evaluation.json") or _read(where / "metrics" / f"{exp}.json")
    if m is not None and not isinstance(m.get("dice"), dict):
        m = {**m, "dice": {k[5:]: v for k, v in m.items()
                           if k.startswith("dice_") and k not in ("dice_mean", "dice_median")}}
    return m


def bench(argv: list[str] | None = None, quick: bool = False) -> list[dict]:
    args = parser().parse_args([] if argv is None else argv)
    where = args.quality_dir
    results = []
    dice: dict[str, float] = {}
    for exp, ref in PUBLISHED.items():
        m = _evaluation(where, exp) if where else None
        row = {"name": f"quality: {LABELS[exp]} test Dice (synthetic phantoms)", "ratio": None, "target": None,
               "reference": f"published mean Dice {ref:.2f} ({PUBLISHED_ON[exp]}): context only",
               "detail": "not measured"}
        if m and m.get("dice_mean"):
            dice[exp] = float(m["dice_mean"])
            per_class = ", ".join(f"{k} {v:.3f}" for k, v in (m.get("dice") or {}).items() if v is not None)
            row.update(result=NOT_COMPARABLE, detail=f"mean Dice {dice[exp]:.3f} ({per_class}) on "
                                                     f"{m.get('n_patients', '?')} test patients")
        results.append(row)
    published = PUBLISHED["mass_us_bmode"] / PUBLISHED["mass_us_entropy"]
    row = {"name": "quality: entropy vs B-mode (paired, same patients)", "ratio": None, "target": None,
           "reference": f"B-mode Dice / entropy Dice on the same test patients; published {published:.3f} "
                        f"(0.53 / 0.60, real RF) is context only, {NOT_COMPARABLE}",
           "detail": "not measured"}
    comp = _read(where / "results" / "comparisons" / f"{COMPARISON}.json") if where else None
    test = (comp or {}).get("wilcoxon") or {}
    if test.get("mean_x") and test.get("mean_y") is not None:
        ent, bmode = float(test["mean_x"]), float(test["mean_y"])
        if comp.get("a") == "mass_us_bmode":
            ent, bmode = bmode, ent
        p = test.get("p_value")
        row.update(ratio=bmode / ent,
                   detail=f"entropy {ent:.3f} vs B-mode {bmode:.3f}: difference {ent - bmode:+.3f} on "
                          f"{test.get('n', '?')} paired patients, Wilcoxon p = {'n/a' if p is None else f'{p:.3g}'}")
    results.append(row)
    row = {"name": "quality: highest Dice vs the 0.95 ceiling (task difficulty)", "ratio": None, "target": 1.0,
           "reference": f"Dice {CEILING}: the synthetic tasks must stay below it (phantoms vs phantoms)",
           "detail": "not measured"}
    if dice:
        top = max(dice, key=dice.get)
        row.update(ratio=dice[top] / CEILING, detail=f"{top} {dice[top]:.3f}; "
                   + ", ".join(f"{e} {v:.3f}" for e, v in dice.items() if e != top))
    results.append(row)
    for r in results:
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.3f}"
        label = f" [{r['result']}]" if r.get("result") else ""
        print(f"{r['name']:<52} ratio {ratio:>6}{label}  ({r['reference']}): {r['detail']}")
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    bench(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
