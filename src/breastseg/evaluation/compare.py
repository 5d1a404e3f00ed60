"""Paired comparison of two experiments on the same test patients (entropy vs B-mode ultrasound).

Per-patient Dice (mean over foreground classes) of each experiment, for every training seed of ``run.seeds``:
the mean paired difference with a 95 % interval that accounts for both patients and seeds (hierarchical
bootstrap, :mod:`breastseg.evaluation.intervals`), and a Wilcoxon signed-rank test per seed. Reads
``per_patient.csv`` and ``evaluation.json`` of both experiments, for each seed (:func:`seed_results`).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import atomic_path, write_json

METHOD_SHORT = "hierarchical bootstrap over patients, then seeds"


def per_patient_dice(per_patient_csv: Path) -> dict[str, float]:
    """patient -> mean Dice over the foreground classes, from ``results/<experiment>/per_patient.csv``."""
    if not per_patient_csv.exists():
        raise InputError(per_patient_csv, "no such file (evaluate the experiment first)")
    out = {}
    with open(per_patient_csv) as fh:
        for row in csv.DictReader(fh):
            vals = [float(v) for k, v in row.items() if k.startswith("dice_") and v not in ("", None)]
            out[row["patient"]] = float(np.mean(vals)) if vals else float("nan")
    return out


def seed_results(results_dir: Path, experiment: str, seed: int, first_seed: int) -> Path:
    """Where one seed's evaluation of ``experiment`` lies: ``results/<experiment>/`` for the first seed of
    ``run.seeds`` (the registered challenger), ``results/<experiment>/seeds/<seed>/`` for the others."""
    base = Path(results_dir) / experiment
    return base if int(seed) == int(first_seed) else base / "seeds" / str(int(seed))


def compare(name: str, a: str, b: str, results_dir: Path, out_dir: Path, seeds: list[int] | None = None,
            *, n_boot: int = 4000, bootstrap_seed: int = 0) -> dict[str, Any]:
    """Write ``out_dir/<name>.json``, ``.md`` and ``.png``; returns the JSON document.

    ``seeds``: the training seeds evaluated (``run.seeds``; None: the first seed's results only).
    """
    from . import figures
    from .intervals import hierarchical_bootstrap, paired_matrix
    from .statistics import paired_wilcoxon

    seeds = [int(s) for s in (seeds or [0])]
    dirs = {e: [seed_results(results_dir, e, s, seeds[0]) for s in seeds] for e in (a, b)}
    da_all = [per_patient_dice(d / "per_patient.csv") for d in dirs[a]]
    db_all = [per_patient_dice(d / "per_patient.csv") for d in dirs[b]]
    da, db = da_all[0], db_all[0]
    test = paired_wilcoxon(da, db)  # the first seed's (the registered models')
    per_seed = []
    for s, x, y in zip(seeds, da_all, db_all):
        w = paired_wilcoxon(x, y)
        per_seed.append({"seed": s, "n": w["n"], f"mean_{a}": w["mean_x"], f"mean_{b}": w["mean_y"],
                         "mean_diff": w["mean_diff"], "wilcoxon_p": w["p_value"], "note": w["note"]})
    d, paired = paired_matrix(da_all, db_all)
    difference = {"of": f"{a} - {b}", "patients": paired,
                  **hierarchical_bootstrap(d, n_boot=n_boot, seed=bootstrap_seed)}
    versions = {}
    for e in (a, b):  # the model version each evaluation scored (results/<experiment>/evaluation.json)
        m = dirs[e][0] / "evaluation.json"
        versions[e] = json.loads(m.read_text()).get("model_version") if m.exists() else None
    doc = {"comparison": name, "a": a, "b": b, "model_versions": versions, "seeds": seeds,
           "difference": difference, "per_seed": per_seed, "wilcoxon": test,
           "per_patient": {p: {a: da.get(p), b: db.get(p)} for p in test["patients"]}}
    write_json(out_dir / f"{name}.json", json.loads(json.dumps(doc, default=float).replace("NaN", "null")))

    def f(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    p = test.get("p_value")
    ci = ("n/a" if difference["ci_low"] is None
          else f"{difference['ci_low']:+.3f} to {difference['ci_high']:+.3f}")
    table = [
        f"# {name}: {a} vs {b} (same {test['n']} test patients, {len(seeds)} training seed(s))",
        "",
        "| input | mean Dice | median Dice | test patients | model version |",
        "| --- | --- | --- | --- | --- |",
        f"| {a} | {f(test['mean_x'])} | {f(test['median_x'])} | {test['n']} | v{versions[a]} |",
        f"| {b} | {f(test['mean_y'])} | {f(test['median_y'])} | {test['n']} | v{versions[b]} |",
        "",
        f"Mean paired difference {a} − {b} over {difference['n_patients']} patients × {len(seeds)} seed(s): "
        f"{'n/a' if difference['mean'] is None else format(difference['mean'], '+.3f')} (95 % interval {ci}; "
        f"{METHOD_SHORT})" + (f"; {difference['note']}" if difference.get("note") else "") + ".",
        "",
        "| seed | " + f"mean {a} | mean {b} | mean difference | Wilcoxon p |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {r['seed']} | {f(r[f'mean_{a}'])} | {f(r[f'mean_{b}'])} | {f(r['mean_diff'])} | "
          f"{'n/a' if r['wilcoxon_p'] is None else format(r['wilcoxon_p'], '.4g')} |" for r in per_seed],
        "",
        f"Paired Wilcoxon signed-rank test on per-patient Dice (first seed): statistic {f(test.get('statistic'))}, "
        f"p = {'n/a' if p is None else f'{p:.4g}'}" + (f" ({test['note']})" if test.get("note") else "") + ".",
        "",
    ]
    with atomic_path(out_dir / f"{name}.md") as tmp:
        tmp.write_text("\n".join(table))
    figures.box_plot({a: [da[p] for p in test["patients"]], b: [db[p] for p in test["patients"]]},
                     out_dir / f"{name}.png", f"{name}: per-patient Dice on the same test patients")
    return doc
