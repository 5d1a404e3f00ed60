"""The split ledger: every patient's subset, once assigned, for one cohort and dataset, versioned with the project.

``data/splits/<cohort>/<dataset>-ledger.json`` is git-tracked (small, pseudonyms only, no identifying data): a
colleague's clone, a CI runner and ``dvc exp run`` see the same assignment. It records the fingerprint of the
pseudonym key it was made with (:func:`breastseg.pseudonym.key_fingerprint`); a run with another key is refused
before any job starts, since another key names every patient anew and would add them all again, a woman who
trained the champion possibly into the new test set.

Besides the check, this module holds the two operations a data steward needs: :func:`rekey` (rotate the key:
ledger and outputs follow the patients to their new names) and :func:`withdraw` (a patient's data removed on
request; the model versions trained with it are tagged).
"""
from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any, Iterable

from ..errors import InputError
from ..io import write_json
from ..paths import PATHS
from ..config import Settings, TrackingSettings
from ..pseudonym import (DEMO_COHORT, DEMO_FINGERPRINT, CohortKey, cohort_key, key_file, key_fingerprint, load_key,
                         provisional_key, pseudonym)

log = logging.getLogger(__name__)
SPLITS_DIR = Path(PATHS.splits())
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def ledger_path(splits_dir: str | Path, cohort: str, dataset: str) -> Path:
    """``<splits_dir>/<cohort>/<dataset>-ledger.json``: the path names the cohort, so ledgers never meet."""
    if not _NAME.fullmatch(cohort):
        raise InputError("params.yaml", f"cohort.name '{cohort}' must be letters, digits, '.', '_' or '-'")
    return Path(splits_dir) / cohort / f"{dataset}-ledger.json"


def legacy_ledger_path(splits_dir: str | Path, dataset: str) -> Path:
    """Where ledgers lived before they were versioned (untracked, without the key's fingerprint)."""
    return Path(splits_dir) / f"{dataset}-ledger.json"


def read_ledger(path: str | Path) -> dict[str, Any] | None:
    """The ledger at ``path``, or None when there is none yet."""
    p = Path(path)
    try:
        ledger = json.loads(p.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise InputError(p, f"not a breastseg ledger ({exc})") from None
    if not isinstance(ledger, dict) or not isinstance(ledger.get("patients"), dict):
        raise InputError(p, "not a breastseg ledger (no 'patients' mapping)")
    return ledger


def check_key(path: Path, ledger: dict[str, Any], key: CohortKey) -> None:
    """Refuse, in one line, a key whose fingerprint differs from the one the ledger was made with."""
    made_with = ledger.get("key_fingerprint")
    if made_with != key.fingerprint:
        raise InputError(path, f"made with pseudonym key {made_with}, but the key in force ({key.origin}) is "
                               f"{key.fingerprint}: another key renames every patient and would split them again; "
                               "use the team's key (cohort.pseudonym_key_file or $BREASTSEG_PSEUDONYM_KEY_FILE) "
                               "or rotate with `breastseg rekey`")


def workspace_key(cohort: dict[str, Any], datasets: Iterable[str], splits_dir: str | Path = SPLITS_DIR, *,
                  create: bool = True) -> CohortKey:
    """The cohort's key, checked against its ledgers before any job runs.

    Where a ledger exists the key file must exist too (never created anew) and match the ledger's fingerprint.
    A demo workspace made before the fixed demo key is refused with a line saying how to start over.
    ``create=False`` (a dry run): a missing key file is not created; a provisional key stands in for it.
    """
    datasets = list(datasets)
    name = cohort["name"]
    ledgers = {d: ledger_path(splits_dir, name, d) for d in datasets}
    present = {d: p for d, p in ledgers.items() if p.exists()}
    if name == DEMO_COHORT:
        for d in datasets:
            legacy = legacy_ledger_path(splits_dir, d)
            if legacy.exists() and d not in present:
                raise InputError(legacy, "a demo ledger made before the demo's fixed pseudonym key (its patients "
                                         "have other names): remove the demo's outputs with `make clean`, then rerun")
    if not create and not present and name != DEMO_COHORT and not cohort.get("public") \
            and not key_file(cohort.get("pseudonym_key_file")).exists():
        return provisional_key()
    key = cohort_key(cohort, create=not present)
    for d, p in present.items():
        check_key(p, read_ledger(p), key)
    return key


def migrate_legacy(cohort: dict[str, Any], dataset: str, key: CohortKey, found: Iterable[str],
                   splits_dir: str | Path = SPLITS_DIR) -> Path | None:
    """Move a ledger from before versioned ledgers to its cohort's path, stamped with the key's fingerprint.

    Only when some of its patients are found under the key in force (else it was made with another key, and is
    refused); returns the new path, or None when there was nothing to migrate.
    """
    old, new = legacy_ledger_path(splits_dir, dataset), ledger_path(splits_dir, cohort["name"], dataset)
    if not old.exists() or new.exists():
        return None
    ledger = read_ledger(old)
    found = set(found)
    if found and not (found & set(ledger["patients"])):
        raise InputError(old, f"none of its {len(ledger['patients'])} patients is found under the pseudonym key in "
                              f"force ({key.origin}): it was made with another key; point "
                              "cohort.pseudonym_key_file at that key")
    ledger.update(cohort=cohort["name"], key_fingerprint=key.fingerprint)
    write_json(new, ledger)
    old.unlink()
    log.warning("%s: moved to %s (now versioned with the project: git add it)", old, new)
    return new


def withdrawn(splits_dir: str | Path, cohort: str, dataset: str) -> set[str]:
    """Pseudonyms withdrawn from this cohort's dataset: discovery skips them even while raw files remain."""
    ledger = read_ledger(ledger_path(splits_dir, cohort, dataset))
    return set(ledger.get("withdrawn", [])) if ledger else set()


def _patient_outputs(pid: str, dataset: str, experiments: Iterable[str], *, interim_dir: Path,
                     processed_dir: Path) -> list[Path]:
    """What the pipeline wrote for one patient: the converted folder and each experiment's prepared slices."""
    return [interim_dir / dataset / pid, *(processed_dir / e / f"{pid}.npz" for e in experiments)]


def _remove(paths: Iterable[Path]) -> list[str]:
    gone = []
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
        else:
            continue
        gone.append(str(p))
    return gone


def _experiments_of(settings: Settings, dataset: str) -> list[str]:
    return sorted(n for n, e in settings.experiments.items() if e.dataset == dataset)


def _rewrite_split_files(experiments: list[str], splits_dir: Path, rename: dict[str, str | None]) -> None:
    """Apply ``rename`` (old pseudonym -> new, or None to drop) to the experiments' split files, if present."""
    for e in experiments:
        p = splits_dir / f"{e}.json"
        if not p.exists():
            continue
        split = json.loads(p.read_text())
        patients = {}
        for pid, v in split["patients"].items():
            new = rename.get(pid, pid)
            if new is not None:
                patients[new] = v
        split["patients"] = dict(sorted(patients.items()))
        split["counts"] = {s: sum(v["subset"] == s for v in patients.values()) for s in ("train", "val", "test")}
        write_json(p, split)


def rekey(settings: Settings, old_key_file: str | Path, new_key_file: str | Path, *,
          splits_dir: Path = SPLITS_DIR, interim_dir: Path = Path(PATHS.interim()),
          processed_dir: Path = Path(PATHS.processed())) -> dict[str, dict[str, str]]:
    """Rotate the pseudonym key: every ledger patient keeps its subset under its new name.

    Needs the raw cohort (names are keyed hashes of raw identifiers). The ledger and the split files are
    rewritten; each renamed patient's converted outputs are removed, so the next run converts them under the new
    name. Returns dataset -> {old pseudonym: new pseudonym}.
    """
    from .cohort import discover

    cohort = settings.cohort.as_dict()
    if cohort["name"] == DEMO_COHORT or cohort.get("public"):
        raise InputError("params.yaml", f"cohort '{cohort['name']}' has a fixed, public key (the demo, or "
                                        "cohort.public): there is nothing to rotate")
    old_file, new_file = Path(old_key_file).expanduser(), Path(new_key_file).expanduser()
    old, new = load_key(old_file, create=False), load_key(new_file, create=True)
    old_fp, new_fp = key_fingerprint(old), key_fingerprint(new)
    if new_fp == old_fp:
        raise InputError(new_file, "is the same key as the old one")
    if new_fp == DEMO_FINGERPRINT:
        raise InputError(new_file, "holds the public demo key: give real patients a key of their own")
    plans: dict[str, tuple[Path, dict[str, Any], dict[str, str]]] = {}
    for dataset in ("mri", "us"):
        path = ledger_path(splits_dir, cohort["name"], dataset)
        ledger = read_ledger(path)
        if ledger is None:
            continue
        check_key(path, ledger, CohortKey(old, str(old_file), old_fp))
        before = discover(cohort["root"], dataset, old, cohort.get("patient_map"))
        after = discover(cohort["root"], dataset, new, cohort.get("patient_map"))
        by_sources = {p.sources: pid for pid, p in after.items()}
        rename = {pid: by_sources[p.sources] for pid, p in before.items()}
        missing = sorted(set(ledger["patients"]) - set(rename))
        if missing:
            raise InputError(path, f"{len(missing)} ledger patients (e.g. {missing[0]}) have no raw data under "
                                   f"{cohort['root']}: check out the data version that holds them before re-keying")
        plans[dataset] = (path, ledger, rename)
    if not plans:
        raise InputError(splits_dir / cohort["name"], "no ledger to re-key")
    for dataset, (path, ledger, rename) in plans.items():
        ledger["patients"] = dict(sorted((rename[p], v) for p, v in ledger["patients"].items()))
        # withdrawn patients whose raw files are still there must stay out under their new names too
        ledger["withdrawn"] = sorted({rename.get(p, p) for p in ledger.get("withdrawn", [])})
        ledger["key_fingerprint"] = new_fp
        write_json(path, ledger)
        _rewrite_split_files(_experiments_of(settings, dataset), splits_dir, rename)
        for pid in rename:
            _remove(_patient_outputs(pid, dataset, _experiments_of(settings, dataset), interim_dir=interim_dir,
                                     processed_dir=processed_dir))
        log.info("%s: %d patients re-keyed (%s -> %s)", path, len(rename), old_fp, new_fp)
    return {d: plan[2] for d, plan in plans.items()}


def withdraw(settings: Settings, patient: str, *, splits_dir: Path = SPLITS_DIR,
             interim_dir: Path = Path(PATHS.interim()), processed_dir: Path = Path(PATHS.processed()),
             tag_models: bool = True) -> dict[str, Any]:
    """Withdraw one patient (a raw identifier, or its pseudonym) from the cohort, on request.

    Removed from the ledger (its pseudonym is listed under ``withdrawn``, so a run never adds it again while its
    raw files are still there), from the split files and from the converted data; every registered model version
    of the dataset's experiments that was trained on a data version holding the patient in train or val gets
    the tag ``breastseg.withdrawn_patients``. The raw files are the user's to delete (then ``dvc add`` again).
    """
    cohort = settings.cohort.as_dict()
    key = cohort_key(cohort, create=False)
    pid = patient if re.fullmatch(r"P[0-9a-f]{12}", patient) else pseudonym(patient, key.key)
    report: dict[str, Any] = {"patient": pid, "datasets": {}, "model_versions": []}
    for dataset in ("mri", "us"):
        path = ledger_path(splits_dir, cohort["name"], dataset)
        ledger = read_ledger(path)
        if ledger is None or pid not in ledger["patients"]:
            continue
        check_key(path, ledger, key)
        entry = ledger["patients"].pop(pid)
        ledger["withdrawn"] = sorted({*ledger.get("withdrawn", []), pid})
        write_json(path, ledger)
        _rewrite_split_files(_experiments_of(settings, dataset), splits_dir, {pid: None})
        removed = _remove(_patient_outputs(pid, dataset, _experiments_of(settings, dataset), interim_dir=interim_dir,
                                           processed_dir=processed_dir))
        report["datasets"][dataset] = {"subset": entry["subset"], "removed": removed}
        if tag_models and entry["subset"] in ("train", "val"):
            versions = ledger.get("data_versions", [])
            since = versions[versions.index(entry["joined"]):] if entry.get("joined") in versions else None
            report["model_versions"] += _tag_model_versions(settings.tracking, _experiments_of(settings, dataset), pid, since)
    if not report["datasets"]:
        raise InputError(splits_dir / cohort["name"], f"patient {pid} is in no ledger of cohort '{cohort['name']}'")
    return report


def _tag_model_versions(stores: TrackingSettings, experiments: list[str], pid: str,
                        data_versions: list[str] | None) -> list[str]:
    """Tag the model versions trained with ``pid`` (those of a data version in ``data_versions``; all if None)."""
    import mlflow

    from .. import tracking

    tracking.configure(stores)
    client = mlflow.MlflowClient()
    tagged = []
    for e in experiments:
        name = tracking.model_name(e)
        for mv in client.search_model_versions(f"name='{name}'"):
            if data_versions is not None and mv.tags.get("breastseg.data_version") not in data_versions:
                continue
            before = [p for p in mv.tags.get("breastseg.withdrawn_patients", "").split(",") if p]
            client.set_model_version_tag(name, mv.version, "breastseg.withdrawn_patients",
                                         ",".join(sorted({*before, pid})))
            tagged.append(f"{name}/{mv.version}")
    return tagged
