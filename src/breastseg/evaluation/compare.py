"""Paired comparison of two experiments on the same test patients (entropy vs B-mode ultrasound).

Per-patient Dice (mean over foreground classes) of each experiment, a paired Wilcoxon signed-rank test on the
patients both evaluated, and a table in the style of the published comparison. Reads
``results/<experiment>/per_patient.csv`` and ``evaluation.json`` of both experiments.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import atomic_path, write_json


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


def compare(name: str, a: str, b: str, results_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Write ``out_dir/<name>.json``, ``.md`` and ``.png``; returns the JSON document."""
    from . import figures
    from .statistics import paired_wilcoxon

    da = per_patient_dice(results_dir / a / "per_patient.csv")
    db = per_patient_dice(results_dir / b / "per_patient.csv")
    test = paired_wilcoxon(da, db)
    versions = {}
    for e in (a, b):  # the model version each evaluation scored (results/<experiment>/evaluation.json)
        m = results_dir / e / "evaluation.json"
        versions[e] = json.loads(m.read_text()).get("model_version") if m.exists() else None
    doc = {"comparison": name, "a": a, "b": b, "model_versions": versions, "wilcoxon": test,
           "per_patient": {p: {a: da.get(p), b: db.get(p)} for p in test["patients"]}}
    write_json(out_dir / f"{name}.json", json.loads(json.dumps(doc, default=float).replace("NaN", "null")))

    def f(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    p = test.get("p_value")
    table = [
        f"# {name}: {a} vs {b} (same {test['n']} test patients)",
        "",
        "| input | mean Dice | median Dice | test patients | model version |",
        "| --- | --- | --- | --- | --- |",
        f"| {a} | {f(test['mean_x'])} | {f(test['median_x'])} | {test['n']} | v{versions[a]} |",
        f"| {b} | {f(test['mean_y'])} | {f(test['median_y'])} | {test['n']} | v{versions[b]} |",
        "",
        f"Paired Wilcoxon signed-rank test on per-patient Dice: statistic {f(test.get('statistic'))}, "
        f"p = {'n/a' if p is None else f'{p:.4g}'}" + (f" ({test['note']})" if test.get("note") else "") + ".",
        "",
    ]
    with atomic_path(out_dir / f"{name}.md") as tmp:
        tmp.write_text("\n".join(table))
    figures.box_plot({a: [da[p] for p in test["patients"]], b: [db[p] for p in test["patients"]]},
                     out_dir / f"{name}.png", f"{name}: per-patient Dice on the same test patients")
    return doc
