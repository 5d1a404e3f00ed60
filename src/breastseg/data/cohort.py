"""Raw cohort discovery: which patients exist, what each one's raw inputs are, and its pseudonym.

MRI: ``<root>/mri/<patient folder>/`` (one folder per patient, studies inside).

Ultrasound, under ``<root>/us/`` (layouts may be mixed in one cohort):

* ``<patient>.npz``: per-patient RF (rf, roi, fs, f0, pitch);
* ``<name>.mat``: OASBUD struct array, one unit per record (lesion ``id``);
* ``benign/``, ``malignant/``, ``normal/``: BUSI class folders, one unit per image
  (``<class> (N).png`` with ``<class> (N)_mask.png`` and optional ``_mask_1.png``... beside it, or, as the public
  git snapshot of BUSI has them, ``<class>/images/<class> (N).png`` with the masks in ``<class>/mask/``; the unit
  is named by the image's stem in both layouts, so its pseudonym and split do not depend on the layout). A cohort
  whose class folders hold no mask at all is refused;
* ``<name>.dcm`` with ``<name>_mask.png`` or ``_mask.npy``: DICOM US images, one unit per PatientID;
* ``<patient>/``: any other folder is one patient holding any of the files above.

A unit is a patient unless ``cohort.patient_map`` (CSV, columns ``id,patient``) says which patient it belongs to
(OASBUD ids are lesions, BUSI images have no patient at all): the units of one patient are converted and split
together. Raw names are only ever input to the keyed hash (:mod:`breastseg.pseudonym`).
"""
from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..config import CohortSettings, Settings
from ..errors import InputError
from ..pseudonym import load_key, pseudonym

MRI_LAYOUT = "<root>/mri/<patient>/<study>/**.dcm with labels.nii.gz or a DICOM SEG per study"
US_LAYOUT = ("<root>/us/<patient>.npz (RF), <root>/us/<name>.mat (OASBUD), "
             "<root>/us/{benign,malignant,normal}/<image>.png + <image>_mask.png "
             "or .../images/<image>.png + .../mask/<image>_mask.png (BUSI), "
             "<root>/us/<name>.dcm + <name>_mask.png (DICOM US), or <root>/us/<patient>/ folders of these")
LAYOUTS = {"mri": MRI_LAYOUT, "us": US_LAYOUT}
BUSI_CLASSES = ("benign", "malignant", "normal")
RF_SUFFIXES = (".npz", ".mat")


@dataclass(frozen=True)
class RawPatient:
    """One patient's raw inputs: ``sources`` go to the converter (``select``: unit ids to keep inside them,
    empty for all), ``files`` are every raw file it reads (a change reconverts only this patient)."""

    pseudonym: str
    sources: tuple[str, ...]
    select: tuple[str, ...]
    files: tuple[str, ...]
    layouts: tuple[str, ...]
    has_rf: bool


@dataclass
class _Unit:
    id: str
    sources: list[str]
    select: str | None
    files: list[str]
    layout: str
    has_rf: bool


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _folder_files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and _visible(p))


@functools.lru_cache(maxsize=64)
def _mat_ids_cached(path: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    from ..us.readers import read_oasbud_ids

    return tuple(read_oasbud_ids(path))


def _mat_ids(path: Path) -> tuple[str, ...]:
    st = path.stat()
    return _mat_ids_cached(str(path), st.st_mtime_ns, st.st_size)


def _dicom_patient(path: Path) -> str:
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["PatientID"])
    except Exception as exc:  # pydicom raises several types for non-DICOM bytes
        raise InputError(path, f"cannot read as DICOM: {exc}") from None
    return str(ds.get("PatientID", "") or "").strip() or path.stem


def _us_units(base: Path) -> list[_Unit]:
    from ..us.readers import busi_images, dicom_mask_paths, is_dicom, masks_beside, unannotated_busi_error

    units: list[_Unit] = []
    dicom: dict[str, _Unit] = {}
    busi_annotated = busi_count = 0
    for p in sorted(filter(_visible, base.iterdir())):
        if p.is_dir():
            if p.name.lower() in BUSI_CLASSES:
                for img in busi_images(p):  # <class>/<image>.png or <class>/images/<image>.png: same unit id
                    masks = [str(m) for m in masks_beside(img)]
                    units.append(_Unit(img.stem, [str(img)], None, [str(img), *masks], "busi", False))
                    busi_count += 1
                    busi_annotated += bool(masks)
            else:
                files = _folder_files(p)
                if files:
                    has_rf = any(Path(f).suffix.lower() in RF_SUFFIXES for f in files)
                    units.append(_Unit(p.name, [str(p)], None, files, "folder", has_rf))
            continue
        suffix = p.suffix.lower()
        if suffix == ".npz":
            units.append(_Unit(p.stem, [str(p)], None, [str(p)], "rf-npz", True))
        elif suffix == ".mat":
            units += [_Unit(i, [str(p)], i, [str(p)], "oasbud-mat", True) for i in _mat_ids(p)]
        elif suffix in (".dcm", ".dicom") or (suffix == "" and is_dicom(p)):
            pid = _dicom_patient(p)
            unit = dicom.setdefault(pid, _Unit(pid, [], None, [], "dicom-us", False))
            unit.sources.append(str(p))
            unit.files += [str(p), *map(str, dicom_mask_paths(p))]
    if busi_count and not busi_annotated:  # masks where the reader does not look: all would be "not annotated"
        raise unannotated_busi_error(base, busi_count)
    return units + list(dicom.values())


def read_patient_map(path: str | Path) -> dict[str, str]:
    """``id -> patient`` from a CSV with the columns ``id`` and ``patient``."""
    p = Path(path).expanduser()
    try:
        with open(p, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        raise InputError(p, "patient map not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(p, f"cannot read the patient map ({exc})") from None
    if not rows or not {"id", "patient"} <= set(rows[0]):
        raise InputError(p, "patient map needs the columns 'id' and 'patient' and at least one row")
    out: dict[str, str] = {}
    for n, row in enumerate(rows, start=2):
        uid, patient = (row.get("id") or "").strip(), (row.get("patient") or "").strip()
        if not uid or not patient:
            raise InputError(p, f"line {n}: empty id or patient")
        if out.get(uid, patient) != patient:
            raise InputError(p, f"line {n}: id is mapped to two patients")
        out[uid] = patient
    return out


def raw_sources(cohort: dict[str, Any], key: bytes) -> dict[str, list[str]]:
    """Pseudonym -> the raw files and folders of that patient, over the datasets present under the ``cohort``
    block's root (``breastseg locate``: identifying paths, for the terminal only)."""
    found: dict[str, list[str]] = {}
    for dataset in ("mri", "us"):
        if (Path(cohort["root"]) / dataset).is_dir():
            for pid, patient in discover(cohort["root"], dataset, key, cohort["patient_map"]).items():
                found.setdefault(pid, []).extend(patient.sources)
    return found


def discover(root: str | Path, dataset: str, key: bytes | str | Path | None = None,
             patient_map: str | Path | None = None) -> dict[str, RawPatient]:
    """Pseudonym -> :class:`RawPatient` for one dataset of a cohort, sorted by pseudonym.

    ``key``: the pseudonym key itself (bytes, e.g. :func:`breastseg.pseudonym.cohort_key`), or a key file.
    """
    base = Path(root) / dataset
    if dataset not in LAYOUTS:
        raise ValueError(f"unknown dataset {dataset!r}")
    if not base.is_dir():
        return {}
    if dataset == "mri":
        units = [_Unit(p.name, [str(p)], None, _folder_files(p), "mri-dicom", False)
                 for p in sorted(base.iterdir()) if p.is_dir() and _visible(p)]
    else:
        units = _us_units(base)
    seen: dict[str, _Unit] = {}
    for u in units:
        if u.id in seen:
            raise InputError(base, f"two inputs give the same id: {seen[u.id].sources[0]} and {u.sources[0]}")
        seen[u.id] = u
    mapping = read_patient_map(patient_map) if patient_map else {}
    groups: dict[str, list[_Unit]] = {}
    for u in units:
        groups.setdefault(mapping.get(u.id, u.id), []).append(u)
    if not isinstance(key, bytes):
        key = load_key(key)
    out: dict[str, RawPatient] = {}
    for name, group in groups.items():
        pid = pseudonym(name, key)
        if pid in out:  # pragma: no cover - 48-bit collision
            raise RuntimeError(f"pseudonym collision for {name!r}")
        selects = [u.select for u in group if u.select is not None]
        if selects and len(selects) != len(group):  # a selection applies to every source of the patient
            selects = [u.select or u.id for u in group]
        out[pid] = RawPatient(
            pseudonym=pid,
            sources=tuple(dict.fromkeys(s for u in group for s in u.sources)),
            select=tuple(selects),
            files=tuple(sorted({f for u in group for f in u.files})),
            layouts=tuple(sorted({u.layout for u in group})),
            has_rf=all(u.has_rf for u in group),
        )
    return dict(sorted(out.items()))


def check_root(cohort: CohortSettings) -> None:
    """Refuse a cohort whose folder does not exist, in one line."""
    if not Path(cohort.root).is_dir():
        raise InputError(cohort.root, f"cohort '{cohort.name}': the cohort folder does not exist")


def check_cohort(s: Settings, experiments: list[str], patients: dict[str, dict[str, RawPatient]]) -> None:
    """Refuse, with one line, a cohort that cannot feed the chosen experiments (before any job runs)."""
    check_root(s.cohort)
    root = Path(s.cohort.root)
    label = f"cohort '{s.cohort.name}'"
    for dataset, found in patients.items():
        users = [e for e in experiments if s.experiments[e].dataset == dataset]
        if not found:
            raise InputError(root / dataset, f"{label}: no {dataset.upper()} patient found for "
                                             f"{', '.join(users)}; expected {LAYOUTS[dataset]}")
        if dataset != "us":
            continue
        bmode_only = [p for p in found.values() if not p.has_rf]
        for e in users:
            if "entropy" in s.experiments[e].channels and bmode_only:
                others = [x for x in experiments if "entropy" not in s.experiments[x].channels]
                hint = f"run.experiments: [{', '.join(others)}]" if others else "run.experiments"
                raise InputError(root / dataset, (
                    f"{label}: experiment {e} needs raw RF for its entropy map, but {len(bmode_only)} of "
                    f"{len(found)} ultrasound patients have B-mode images only "
                    f"({', '.join(sorted({l for p in bmode_only for l in p.layouts}))}); choose {hint}"))


# ------------------------------------------------------------------------------------------ change detection


def _file_digest(path: str, cache: dict[str, list], stat: os.stat_result) -> str:
    """BLAKE2 digest of a file's bytes, recomputed only when its size or modification time changed."""
    key = [stat.st_size, stat.st_mtime_ns]
    hit = cache.get(path)
    if hit and hit[:2] == key:
        return hit[2]
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    cache[path] = [*key, h.hexdigest()]
    return h.hexdigest()


def shard_of(pid: str, shards: int) -> str:
    """The conversion shard of a patient: fixed by its pseudonym alone, so adding patients moves no one."""
    width = max(2, len(str(shards - 1)))
    return f"{int(pid[1:], 16) % shards:0{width}d}"


def patient_entry(p: RawPatient, cache: dict[str, list]) -> dict[str, Any]:
    """What a patient's conversion reads: its sources, selection and layouts, and each raw file's digest."""
    files = {}
    for f in p.files:
        try:
            files[f] = _file_digest(f, cache, os.stat(f))
        except OSError as exc:
            raise InputError(f, f"cannot read ({exc.strerror})") from None
    return {"sources": list(p.sources), "select": list(p.select), "layouts": list(p.layouts), "files": files}


def entry_digest(entry: dict[str, Any]) -> str:
    """A short digest of one patient's fingerprint entry: equal digests, equal raw content."""
    return hashlib.blake2b(json.dumps(entry, sort_keys=True).encode(), digest_size=12).hexdigest()


def write_fingerprints(patients: dict[str, RawPatient], out_dir: str | Path, shards: int = 8,
                       cache_file: str | Path | None = None) -> dict[str, Path]:
    """One small file per shard of patients, rewritten only when the raw content of one of its patients changes.

    The convert rules take it as their input instead of the raw files, so Snakemake reconverts a shard when a
    file of one of its patients was added, removed or edited, and not when only timestamps moved (``dvc
    checkout``, a copy, ``git clone``); inside the job only the patients whose entry changed are converted. File
    digests are cached by size and modification time, so an unchanged cohort is not read again. Returns shard ->
    fingerprint file, for the shards that hold patients (files of shards left empty are removed).
    """
    out_dir = Path(out_dir)
    cache_path = Path(cache_file) if cache_file else out_dir / ".digests.json"
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    groups: dict[str, dict[str, Any]] = {}
    for pid, p in patients.items():
        groups.setdefault(shard_of(pid, shards), {})[pid] = patient_entry(p, cache)
    out_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for shard, entries in sorted(groups.items()):
        text = json.dumps({"shard": shard, "shards": shards, "patients": entries}, indent=1, sort_keys=True)
        target = out_dir / f"shard-{shard}.json"
        try:
            same = target.read_text() == text
        except OSError:
            same = False
        if not same:  # a half-written file (a crash) differs from the text, so the next build rewrites it
            target.write_text(text)
        out[shard] = target
    for stale in out_dir.glob("shard-*.json"):
        if stale.stem.removeprefix("shard-") not in out:
            stale.unlink()
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_path.with_name(f".{cache_path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(cache))
    os.replace(tmp, cache_path)
    return out


def read_fingerprints(path: str | Path) -> dict[str, dict[str, Any]]:
    """Pseudonym -> entry (``sources``, ``select``, ``layouts``, ``files``) of a shard's fingerprint file."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
        patients = doc["patients"]
        for pid, e in patients.items():
            e["sources"], e["select"] = [str(s) for s in e["sources"]], [str(s) for s in e.get("select") or []]
        return dict(sorted(patients.items()))
    except FileNotFoundError:
        raise InputError(p, "no such fingerprint file") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(p, f"not a breastseg fingerprint file ({exc})") from None


def dvc_hash(root: str | Path) -> str | None:
    """The DVC hash of the raw cohort when ``<root>.dvc`` beside it tracks it (as written there, a folder's
    ``.dir`` suffix included), else None."""
    meta = Path(str(root).rstrip("/") + ".dvc")
    if not meta.exists():
        return None
    import yaml

    try:
        outs = (yaml.safe_load(meta.read_text()) or {}).get("outs") or [{}]
    except yaml.YAMLError:
        raise InputError(meta, "not a valid .dvc file") from None
    value = outs[0].get("md5") or outs[0].get("hash")
    return str(value) if value else None


def data_version(root: str | Path, fingerprints: Iterable[Path] = ()) -> str:
    """The cohort's data version: its DVC hash when ``<root>.dvc`` tracks it (``dvc-<hash>``), else a digest of
    the patients' fingerprints (``content-<hex>``)."""
    value = dvc_hash(root)
    if value:
        return f"dvc-{value.removesuffix('.dir')}"
    h = hashlib.blake2b(digest_size=8)
    for f in sorted(map(Path, fingerprints)):
        h.update(f.read_bytes())
    return f"content-{h.hexdigest()}"
