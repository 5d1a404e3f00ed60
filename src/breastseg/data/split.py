"""Patient-level, stratified, seeded and append-only splits, plus the slice manifest.

A patient's subset, once written to ``data/splits/<experiment>.json``, never changes: new patients are
added to whichever subset of their stratum is furthest below its target fraction. Experiments on the same
dataset (entropy and B-mode ultrasound) share one assignment, so they are compared on the same patients.
"""
from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Settings
from ..errors import InputError
from ..io import atomic_path, write_json
from ..labels import NOT_ANNOTATED

SUBSETS = ("train", "val", "test")


def _order_key(seed: int, patient: str) -> str:
    return hashlib.sha256(f"{seed}:{patient}".encode()).hexdigest()


def patient_split(
    strata: dict[str, str], fractions: dict[str, float], seed: int, existing: dict[str, str] | None = None
) -> dict[str, str]:
    """Assign every patient in ``strata`` (patient -> stratum) to train/val/test.

    Patients in ``existing`` keep their subset. New ones are visited in a seeded order and each goes to the
    subset with the largest deficit against its target share, first within its stratum, then overall.
    """
    existing = existing or {}
    total = sum(fractions[s] for s in SUBSETS)
    share = {s: fractions[s] / total for s in SUBSETS}
    assignment = dict(existing)
    overall = Counter(assignment.values())
    by_stratum: dict[str, Counter] = {}
    for p, s in assignment.items():
        by_stratum.setdefault(strata.get(p, "?"), Counter())[s] += 1
    new = sorted((p for p in strata if p not in assignment), key=lambda p: _order_key(seed, p))
    n_all = len(set(strata) | set(assignment))
    for p in new:
        stratum_counts = by_stratum.setdefault(strata[p], Counter())
        n_stratum = sum(stratum_counts.values()) + 1
        n_total = sum(overall.values()) + 1

        def deficit(s: str) -> tuple[float, float, float]:
            # Fill empty subsets first once the cohort is large enough to have all three.
            empty = 1.0 if (overall[s] == 0 and share[s] > 0 and n_all >= len(SUBSETS)) else 0.0
            return (empty, share[s] * n_stratum - stratum_counts[s], share[s] * n_total - overall[s])

        best = max((s for s in SUBSETS if share[s] > 0), key=lambda s: (deficit(s), -SUBSETS.index(s)))
        assignment[p] = best
        stratum_counts[best] += 1
        overall[best] += 1
    return dict(sorted(assignment.items()))


def read_split(path: Path) -> dict[str, dict[str, str]]:
    """patient -> {"subset": ..., "stratum": ...} from a split file."""
    try:
        return json.loads(Path(path).read_text())["patients"]
    except FileNotFoundError:
        raise InputError(path, "no such split file") from None
    except (json.JSONDecodeError, KeyError) as exc:
        raise InputError(path, f"not a breastseg split file ({exc})") from None


def subset_patients(split_file: Path, subset: str) -> list[str]:
    return sorted(p for p, v in read_split(split_file).items() if v["subset"] == subset)


def split_data_files(processed_dir: Path, split_file: Path) -> list[Path]:
    """The prepared files of the patients in ``split_file`` (not every file in the folder: a patient that left
    the cohort, e.g. after ``dvc checkout`` of an older data version, keeps its file but is not in the data)."""
    return sorted(Path(processed_dir) / f"{p}.npz" for p in read_split(split_file))


def split_dataset(
    s: Settings, dataset: str, prepared: list[Path], *, splits_dir: Path, processed_dir: Path,
    data_version: str | None = None, key_fingerprint: str | None = None,
) -> dict[str, str]:
    """Update the ledger, and the split files and manifests of the experiments whose prepared files are given.

    The ledger (:mod:`breastseg.data.ledger`, ``<splits_dir>/<cohort>/<dataset>-ledger.json``) is the one record
    of assignments: patients in it keep their subset, new ones are assigned and added. Only the experiments of
    ``prepared`` (those of this run) get split files; the split files of other experiments on the dataset are
    left as they were. Each patient records the data version it joined in (``joined``; ``data_version`` of the
    run that first assigned it), and ``data_versions`` lists the versions in the order they added patients, so
    the test patients of any earlier model version stay identifiable: those that joined in or before its version.
    """
    from ..pseudonym import cohort_key
    from .ledger import check_key, ledger_path, read_ledger

    cohort = s.cohort.as_dict()
    ledger_file = ledger_path(splits_dir, cohort["name"], dataset)
    key = cohort_key(cohort, create=not ledger_file.exists())  # never a new key where a ledger exists
    if key_fingerprint is not None and key_fingerprint != key.fingerprint:
        raise InputError(key.origin, f"pseudonym key {key.fingerprint} is not the run's key {key_fingerprint}")
    of_dataset = {n for n, e in s.experiments.items() if e.dataset == dataset}
    if not of_dataset:
        raise InputError("params.yaml", f"no experiment uses dataset '{dataset}'")
    by_exp: dict[str, list[Path]] = {}
    for f in prepared:
        if f.parent.name in of_dataset:
            by_exp.setdefault(f.parent.name, []).append(f)
    if not by_exp:
        raise InputError(processed_dir, f"no prepared patient of dataset '{dataset}' was given")
    # Strata from the prepared files of this run's experiments (every experiment of a dataset writes the same
    # patients and strata, so any of them will do): not from an experiment outside the run.
    strata: dict[str, str] = {}
    for files in by_exp.values():
        for f in files:
            if f.stem not in strata:
                with np.load(f) as z:
                    strata[str(z["patient"])] = str(z["stratum"])
    # The ledger keeps every assignment ever made. It is no rule's output, so Snakemake never deletes it before
    # rerunning this step (it does delete the split files, which are), and a rerun cannot reassign anyone.
    ledger = read_ledger(ledger_file) or {}
    if ledger:
        check_key(ledger_file, ledger, key)
    entries: dict[str, dict[str, Any]] = ledger.get("patients", {})
    withdrawn = set(ledger.get("withdrawn", []))
    back = sorted(withdrawn & set(strata))
    if back:
        raise InputError(ledger_file, f"patient {back[0]} was withdrawn from the cohort but has prepared data; "
                                      "remove its raw files (withdrawn patients are never split again)")
    existing = {p: v["subset"] for p, v in entries.items()}
    versions: list[str] = list(ledger.get("data_versions", []))
    cfg = s.split
    fractions = cfg.fractions.as_dict()
    assignment = patient_split(strata, fractions, cfg.seed, existing)
    newcomers = [p for p in assignment if p not in existing]
    if newcomers and data_version and data_version not in versions:
        versions.append(data_version)
    record = {p: {"subset": s, "stratum": entries.get(p, {}).get("stratum") or strata.get(p, "?"),
                  "joined": entries[p].get("joined") if p in entries else data_version}
              for p, s in assignment.items()}
    write_json(ledger_file, {"cohort": cohort["name"], "dataset": dataset, "key_fingerprint": key.fingerprint,
                             "split": {"seed": cfg.seed, "fractions": fractions},
                             "data_versions": versions, "withdrawn": sorted(withdrawn), "patients": record})
    # The split files list the patients present now (an older data version checked out lists fewer), each
    # with the subset the ledger gave it.
    record = {p: v for p, v in record.items() if p in strata}
    assignment = {p: s for p, s in assignment.items() if p in strata}
    counts = Counter(assignment.values())
    for e in sorted(by_exp):
        write_json(splits_dir / f"{e}.json", {
            "experiment": e,
            "dataset": dataset,
            "cohort": cohort["name"],
            "seed": cfg.seed,
            "fractions": fractions,
            "counts": {s: counts.get(s, 0) for s in SUBSETS},
            "data_versions": versions,
            "patients": record,
        })
        write_manifest(by_exp[e], assignment, strata, processed_dir / e / "manifest.csv")
    return assignment


def write_manifest(files: list[Path], assignment: dict[str, str], strata: dict[str, str], out: Path) -> None:
    """One row per prepared slice: patient, case, slice index, annotated?, stratum, subset, file."""
    rows = []
    for f in sorted(files):
        with np.load(f) as z:
            patient = str(z["patient"])
            for case, idx, lab in zip(z["case"], z["index"], z["label"]):
                rows.append([patient, str(case), int(idx), bool(np.any(lab != NOT_ANNOTATED)), strata.get(patient, ""),
                             assignment.get(patient, ""), f.name])
    with atomic_path(out) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["patient", "case", "slice", "annotated", "stratum", "subset", "file"])
            w.writerows(rows)


# ------------------------------------------------------------------------------------------ folds


def fold_assignment(split_file: Path, k: int, seed: int) -> dict[str, int]:
    """``run.folds``: the train and val patients of ``split_file`` in ``k`` folds (patient -> fold), stratified:
    within each stratum, patients in the split seed's order are dealt to the folds in turn, the next stratum
    starting where the last one stopped. Test patients are in no fold. The same ledger and seed give the same
    folds on every machine."""
    if k < 2:
        raise ValueError(f"k-fold training needs at least 2 folds, got {k}")
    split = read_split(split_file)
    pool = sorted((p for p, v in split.items() if v["subset"] in ("train", "val")),
                  key=lambda p: (str(split[p].get("stratum", "")), _order_key(seed, p)))
    if len(pool) < k:
        raise InputError(split_file, f"{len(pool)} train and val patients cannot make {k} folds (run.folds)")
    return {p: i % k for i, p in enumerate(pool)}


def fold_split(split_file: Path, assignment: dict[str, int], fold: int, out: Path) -> Path:
    """Write the split of fold ``fold`` to ``out``: its patients are val, the other folds' train, test unchanged
    (the same format as ``split_file``, with ``fold`` recording the fold and the number of folds)."""
    doc = json.loads(Path(split_file).read_text())
    k = max(assignment.values()) + 1
    for pid, entry in doc["patients"].items():
        if pid in assignment:
            entry["subset"] = "val" if assignment[pid] == fold else "train"
    doc["fold"] = {"index": int(fold), "k": int(k), "of": str(split_file)}
    write_json(out, doc)
    return out
