"""The BUSI recipe's benchmark row: ``configs/busi.yaml`` run end to end in a fresh clone, its test figures with
their intervals against the targets, and its validation figures (the ones every choice was made on).

The repository is cloned (``git clone`` of the committed state) into a temporary folder, the BUSI snapshot
given with ``--busi`` is copied under ``data/raw/busi/us/`` (either layout of README "Public cohorts: recipes"),
and the recipe runs as a newcomer runs it, with an empty HOME: ``make .venv/.breastseg-installed`` (timed
apart), then ``snakemake --profile workflow/profiles/default --configfile configs/busi.yaml`` (the time that
counts against the target). The row (``--out``, JSON) names the command, commit, machine, date and load, and
holds:

- ``test``: ``dice_mean`` over the test images with a mass and ``no_mass_fp_rate`` over the normal ones, each
  with its 95 % bootstrap interval over images (``results/<exp>/evaluation.json``), read once per recipe;
- ``validation``: the figures the recipe was chosen on (the gate's validation Dice, the post-processing
  choice and its scores from ``models/<exp>/postprocessing.json``) and the learning curve (val Dice per epoch);
- ``targets``: each target, the figure, whether it is met and by how much it is missed.

``--reuse-venv`` links this checkout's ``.venv`` (no install); ``--keep DIR`` keeps the clone there.

    .venv/bin/python benchmarks/bench_busi.py --busi PATH [--out benchmarks/busi.json] [--reuse-venv] [--keep DIR]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_dataloading import loadavg, machine  # noqa: E402
from bench_pipeline import ROOT, STAMP, environment, fresh_home, install, job_spans, summarise_jobs  # noqa: E402

CONFIG = "configs/busi.yaml"
EXPERIMENT = "mass_us_bmode"
COMMAND = ["snakemake", "--profile", "workflow/profiles/default", "--configfile", CONFIG]
#: the targets (issue: the recipe chosen on BUSI's validation images): (figure, bound, higher is better)
TARGETS = {"dice_mean": (0.80, True), "no_mass_fp_rate": (0.15, False), "run_minutes": (45.0, False)}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--busi", type=Path, required=True,
                    help="the BUSI snapshot: a folder with benign/ malignant/ normal/ (images and masks)")
    ap.add_argument("--out", type=Path, default=HERE / "busi.json", help="the row written (JSON)")
    ap.add_argument("--keep", type=Path, default=None, help="clone into this (new) folder and keep it")
    ap.add_argument("--reuse-venv", action="store_true", help="link this checkout's .venv instead of installing")
    return ap


def target_rows(figures: dict[str, float | None]) -> dict[str, dict[str, Any]]:
    """Each target: the figure, the bound, whether it is met, and the miss (how far on the wrong side; 0 if met)."""
    out = {}
    for name, (bound, higher) in TARGETS.items():
        v = figures.get(name)
        if v is None:
            out[name] = {"figure": None, "target": bound, "met": None, "missed_by": None}
            continue
        miss = max(0.0, bound - v) if higher else max(0.0, v - bound)
        out[name] = {"figure": v, "target": bound, "direction": ">=" if higher else "<=", "met": miss == 0.0,
                     "missed_by": round(miss, 4)}
    return out


def learning_curve(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as fh:
        return [{k: round(float(v), 4) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(fh)]


def next_hundredth(curve: list[dict[str, float]], train_seconds: float, last: int = 20) -> dict[str, Any]:
    """What the next 0.01 of validation Dice would cost if the curve went on as it ended: the least-squares slope
    of val Dice over the last ``last`` epochs, the epochs that slope needs for 0.01, and their minutes at this
    run's seconds per epoch. A linear extrapolation of a flattening curve: a lower bound on the cost."""
    pts = [(r["epoch"], r["val_dice"]) for r in curve if "val_dice" in r][-last:]
    if len(pts) < 3 or not curve:
        return {"slope_per_epoch": None, "epochs": None, "minutes": None}
    n = len(pts)
    mx, my = sum(x for x, _ in pts) / n, sum(y for _, y in pts) / n
    slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
    per_epoch = train_seconds / len(curve)
    epochs = 0.01 / slope if slope > 0 else None
    return {"over_last_epochs": n, "slope_per_epoch": round(slope, 6),
            "epochs": None if epochs is None else round(epochs, 1),
            "minutes": None if epochs is None else round(epochs * per_epoch / 60, 1),
            "seconds_per_epoch": round(per_epoch, 1),
            "how": "linear extrapolation of the last epochs' validation Dice (a lower bound: the curve flattens)"}


def collect(repo: Path) -> dict[str, Any]:
    """The test and validation figures of a finished run in ``repo``."""
    ev = json.loads((repo / "results" / EXPERIMENT / "evaluation.json").read_text())
    summary = ev["summary"] if "summary" in ev else ev
    nm = summary["no_mass_images"]
    patient = summary["dice_patient_mean"]
    post = json.loads((repo / "models" / EXPERIMENT / "postprocessing.json").read_text())
    decision = json.loads((repo / "results" / EXPERIMENT / "decision.json").read_text())
    curve = learning_curve(repo / "plots" / EXPERIMENT / "learning_curve.csv")
    best = max(curve, key=lambda r: r.get("val_dice", -1.0)) if curve else {}
    return {
        "test": {
            "dice_mean": summary["dice_mean"], "dice_mean_ci95": patient["ci95"], "n_mass_images": patient["n"],
            "dice_median": patient["median"],
            "no_mass_fp_rate": nm["fp_rate"], "no_mass_fp_rate_ci95": nm.get("fp_rate_ci95"),
            "n_no_mass_images": nm["n"], "with_predicted_mass": nm["with_predicted_mass"],
            "interval": "95 % percentile bootstrap over images (2000 resamples, evaluation.seed)",
        },
        "validation": {
            "gate": decision,
            "postprocessing": post,
            "best_epoch": best.get("epoch"), "best_val_dice": best.get("val_dice"),
            "epochs_run": len(curve),
            "learning_curve": curve,
        },
    }


def _ci(pair: list[float | None] | None) -> str:
    return "n/a" if not pair or None in pair else f"[{pair[0]:.3f}, {pair[1]:.3f}]"


def _target(t: dict[str, Any], unit: str = "") -> str:
    if t["met"] is None:
        return "n/a"
    bound = f"{t['direction']} {t['target']:g}{unit}"
    return f"{bound}: met" if t["met"] else f"{bound}: missed by {t['missed_by']:g}{unit}"


def markdown(row: dict[str, Any]) -> str:
    """The row as the README quotes it (``benchmarks/busi.md``; a test checks the README holds it verbatim)."""
    test, val, tg = row["test"], row["validation"], row["targets"]
    nxt = val.get("next_0.01") or {}
    m = row["machine"]
    lines = [
        f"Measured {row['date']} on {m['cpu']}, {m['cores']} cores, from a fresh clone with an empty HOME, commit "
        f"`{row['commit'][:7]}` (`benchmarks/busi.json`: `{row['bench_command']}`):",
        "",
        "| BUSI, `configs/busi.yaml` | figure | 95 % interval (bootstrap over images) | target |",
        "| --- | --- | --- | --- |",
        f"| test: Dice on images with a mass (`dice_mean`, {test['n_mass_images']} images) | {test['dice_mean']:.3f} "
        f"| {_ci(test['dice_mean_ci95'])} | {_target(tg['dice_mean'])} |",
        f"| test: normal images with a predicted mass (`no_mass_fp_rate`, {test['n_no_mass_images']} images) | "
        f"{test['no_mass_fp_rate']:.3f} | {_ci(test['no_mass_fp_rate_ci95'])} | {_target(tg['no_mass_fp_rate'])} |",
        f"| the whole Snakemake run | {row['run_seconds'] / 60:.1f} min | | {_target(tg['run_minutes'], ' min')} |",
        f"| validation: Dice the gate decided on ({val['gate']['n']} images) | {val['gate']['challenger']['score']:.3f} "
        f"| | chosen on |",
    ]
    if nxt.get("epochs") is not None:
        lines += ["", f"The validation curve rose {nxt['slope_per_epoch']:.4f} per epoch over its last "
                      f"{nxt['over_last_epochs']} epochs: the next 0.01 would take at least {nxt['epochs']:.0f} more "
                      f"epochs ({nxt['minutes']:.0f} min at {nxt['seconds_per_epoch']:.0f} s per epoch)."]
    return "\n".join(lines) + "\n"


def run(repo: Path, log: Path, home: Path) -> tuple[float, int]:
    env = environment(home)
    env["PATH"] = f"{repo / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    with open(log, "w") as fh:
        t0 = time.perf_counter()
        rc = subprocess.run(COMMAND, cwd=repo, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
    return time.perf_counter() - t0, rc


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    layout = [c for c in ("benign", "malignant", "normal") if (args.busi / c).is_dir()]
    if len(layout) != 3:
        print(f"error: {args.busi}: not a BUSI snapshot (needs benign/, malignant/ and normal/)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench_busi_"))
    repo = args.keep or tmp / "repo"
    home = fresh_home(tmp / "home")
    try:
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                              check=True).stdout.strip()
        shutil.copytree(args.busi, repo / "data" / "raw" / "busi" / "us")
        install_s = 0.0
        if args.reuse_venv:
            (repo / ".venv").symlink_to(ROOT / ".venv")
        else:
            print(f"install (make {STAMP}) in a fresh clone, empty HOME ...", flush=True)
            install_s = install(repo, tmp / "install.log", home)
        before = loadavg()
        print(f"{' '.join(COMMAND)} in {repo} ...", flush=True)
        seconds, rc = run(repo, tmp / "snakemake.log", home)
        after = loadavg()
        text = (tmp / "snakemake.log").read_text(errors="replace")
        if rc != 0:
            print(f"error: the recipe failed (exit {rc}):\n{text[-3000:]}", file=sys.stderr)
            return 1
        figures = collect(repo)
        spans = job_spans(text)
        jobs = summarise_jobs(spans)
        train_s = sum(e - b for b, e, rule, _ in spans if rule == "train")
        figures["validation"]["next_0.01"] = next_hundredth(figures["validation"]["learning_curve"], train_s)
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    test = figures["test"]
    row = {
        "benchmark": "busi",
        "what": "the BUSI recipe (configs/busi.yaml) end to end in a fresh clone with an empty HOME: test figures "
                "read once, validation figures the recipe was chosen on",
        "command": " ".join(COMMAND),
        "bench_command": ".venv/bin/python benchmarks/bench_busi.py --busi PATH"
                         + (" --reuse-venv" if args.reuse_venv else ""),
        "commit": head,  # the clone's: the committed state, whatever this checkout holds uncommitted
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load": {"before": before, "after": after},
        "install_seconds": round(install_s, 1),
        "run_seconds": round(seconds, 1),
        "jobs": jobs,
        **figures,
        "targets": target_rows({"dice_mean": test["dice_mean"], "no_mass_fp_rate": test["no_mass_fp_rate"],
                                "run_minutes": round(seconds / 60, 2)}),
    }
    args.out.write_text(json.dumps(row, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(row))
    lo, hi = test["dice_mean_ci95"]
    print(f"test: dice_mean {test['dice_mean']:.3f} [{lo:.3f}, {hi:.3f}] on {test['n_mass_images']} images with "
          f"a mass; no_mass_fp_rate {test['no_mass_fp_rate']:.3f} {test['no_mass_fp_rate_ci95']} on "
          f"{test['n_no_mass_images']}; run {seconds / 60:.1f} min; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
