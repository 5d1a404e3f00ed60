"""Conversion and preparation in shards: one process converts (or prepares) many patients.

A cohort of many small units (BUSI's 780 images, a site's ultrasound archive) would otherwise pay a process
start and Snakemake's bookkeeping per patient for milliseconds of work. Patients are put in ``convert.shards``
shards by their pseudonym alone (:func:`breastseg.data.cohort.shard_of`), so a new patient never moves another
one. Two steps, each one job per shard:

* **convert** (decode): the raw files of each patient -> ``data/interim/<dataset>/<patient>/``, a cache that
  depends on the raw bytes only: NIfTI volumes and sidecars for MRI, the RF envelope (or the B-mode image) and
  mask for ultrasound. A patient is decoded again only when its fingerprint entry (raw files and their digests)
  changed: ``<patient>/.converted`` records the entry's digest, written last.
* **prepare**, per experiment: the cached patient -> ``data/processed/<experiment>/<patient>.npz``, the network's
  slices (image size, channels, ultrasound map settings). A change of those settings prepares again from the
  cache and decodes nothing; each file keeps what it was prepared from (``prepared_from``), so a rerun prepares
  only the patients whose cache or settings changed.

Each job writes a marker (``shard-NN.json``: its patients and their digests) that the next step takes as input.
A patient that fails gets its own log (``logs/convert/<dataset>/<patient>.log``: one line, the file and the
reason); the shard then fails after converting its other patients (``convert.on_error: fail``), or leaves the
patient out of this run (``skip``).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..config import Settings
from ..errors import InputError
from ..io import write_json
from .cohort import entry_digest, read_fingerprints

STAMP = ".converted"
#: Bumped when what conversion writes changes: every patient is converted again.
CONVERT_VERSION = 3
#: Bumped when what preparation writes changes: every patient is prepared again.
PREPARE_VERSION = 3  # 2: MRI patient files record the studies' intensities (data.ranges); 3: native labels, preprocess


def _progress(items: list[str], what: str, enabled: bool) -> Iterable[str]:
    if not enabled or not items:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=what, unit="patient", file=sys.stderr)


def _stamp_of(folder: Path) -> str | None:
    try:
        return (folder / STAMP).read_text().strip()
    except OSError:
        return None


def _converter(label_map: Mapping[str, int] | None, dataset: str, on_error: str
               ) -> Callable[[dict[str, Any], Path, str], None]:
    if dataset == "mri":
        from ..dicom.dce import convert_dce_patient

        label_map = dict(label_map) if label_map is not None else None

        def convert(entry: dict[str, Any], out: Path, pid: str) -> None:
            kwargs = {"label_map": label_map} if label_map else {}
            convert_dce_patient(Path(entry["sources"][0]), out, patient_id=pid, on_error=on_error, **kwargs)
        return convert

    from ..us.maps import write_decoded_patient

    def decode(entry: dict[str, Any], out: Path, pid: str) -> None:
        write_decoded_patient(entry["sources"], out, patient_id=pid, patients=entry["select"] or None)
    return decode


def convert_shard(s: Settings, dataset: str, fingerprints: Path, marker: Path, *, interim_dir: Path,
                  log_dir: Path, on_error: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Convert the new or changed patients of one shard (see the module doc); write ``marker``.

    Returns the marker's content: ``patients`` (pseudonym -> digest of what it was converted from), ``converted``
    (the patients decoded by this call), ``failed`` (pseudonym -> the one-line reason).
    """
    on_error = on_error or s.convert.on_error
    entries = read_fingerprints(fingerprints)
    convert = _converter(s.cohort.label_map, dataset, on_error)
    done: dict[str, str] = {}
    converted: list[str] = []
    failed: dict[str, str] = {}
    todo = []
    for pid, entry in entries.items():
        digest = f"v{CONVERT_VERSION}-{entry_digest(entry)}"
        if _stamp_of(Path(interim_dir) / pid) == digest:
            done[pid] = digest
        else:
            todo.append(pid)
    for pid in _progress(todo, f"convert {dataset}", progress):
        digest = f"v{CONVERT_VERSION}-{entry_digest(entries[pid])}"
        out, plog = Path(interim_dir) / pid, Path(log_dir) / f"{pid}.log"
        try:
            convert(entries[pid], out, pid)
        except InputError as exc:
            failed[pid] = str(exc)
            plog.parent.mkdir(parents=True, exist_ok=True)
            plog.write_text(f"breastseg: error: {exc}\n")
            continue
        (out / STAMP).write_text(digest + "\n")
        plog.unlink(missing_ok=True)
        done[pid] = digest
        converted.append(pid)
    doc = {"dataset": dataset, "shard": fingerprints.stem.removeprefix("shard-"), "patients": dict(sorted(done.items())),
           "converted": converted, "failed": failed}
    print(f"convert {dataset} shard {doc['shard']}: {len(converted)} patient(s) converted, "
          f"{len(done) - len(converted)} unchanged, {len(failed)} failed", file=sys.stderr)
    if failed and on_error != "skip":
        first = next(iter(failed))
        more = f" (and {len(failed) - 1} more patient(s): logs in {log_dir})" if len(failed) > 1 else ""
        raise InputError(None, f"patient {first}: {failed[first]}{more}")
    write_json(marker, doc)
    return doc


def preparation(s: Settings, name: str) -> dict[str, Any]:
    """What preparing a patient for experiment ``name`` reads besides the cache: the experiment's ``channels`` and
    ``image_size`` and, for ultrasound, the ``us_maps`` settings its channels depend on (a rerun trigger)."""
    from ..us.maps import settings_used
    from .slices import PREPARED_FROM

    exp = s.experiments[name]
    settings = exp.settings()
    out: dict[str, Any] = {k: settings[k] for k in PREPARED_FROM}
    if exp.maps is not None:
        out["us_maps"] = settings_used(exp.channels, exp.maps.as_dict())
    return out


def prepare_shard(s: Settings, name: str, converted: Path, marker: Path, *, interim_dir: Path,
                  processed_dir: Path, progress: bool = False) -> dict[str, Any]:
    """Prepare for experiment ``name`` the patients of one converted shard whose cache or settings changed.

    Returns the marker's content: ``patients`` (pseudonym -> stamp of what it was prepared from) and
    ``prepared`` (the patients prepared by this call).
    """
    import numpy as np

    from .slices import prepare_patient

    exp = s.experiments[name]
    settings = json.dumps({"v": PREPARE_VERSION, **preparation(s, name)}, sort_keys=True)
    try:
        shard = json.loads(Path(converted).read_text())["patients"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(converted, f"not a conversion marker ({exc})") from None
    maps = exp.maps
    stamps, todo = {}, []
    for pid, digest in shard.items():
        stamp = hashlib.blake2b(f"{digest}|{settings}".encode(), digest_size=12).hexdigest()
        stamps[pid] = stamp
        out = Path(processed_dir) / f"{pid}.npz"
        try:
            with np.load(out) as z:
                same = "prepared_from" in z.files and str(z["prepared_from"]) == stamp
        except (OSError, ValueError, KeyError):
            same = False
        if not same:
            todo.append(pid)
    for pid in _progress(todo, f"prepare {name}", progress):
        prepare_patient(exp, Path(interim_dir) / pid, Path(processed_dir) / f"{pid}.npz", patient_id=pid,
                        maps_settings=maps, stamp=stamps[pid])
    doc = {"experiment": name, "shard": Path(converted).stem.removeprefix("shard-"), "patients": stamps,
           "prepared": todo}
    print(f"prepare {name} shard {doc['shard']}: {len(todo)} patient(s) prepared, "
          f"{len(stamps) - len(todo)} unchanged", file=sys.stderr)
    write_json(marker, doc)
    return doc


def prepared_files(markers: Iterable[str | Path]) -> list[Path]:
    """The prepared patient files (``<folder>/<patient>.npz``) the preparation markers list."""
    files = []
    for m in markers:
        m = Path(m)
        try:
            patients = json.loads(m.read_text())["patients"]
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(m, f"not a preparation marker ({exc})") from None
        files += [m.parent / f"{pid}.npz" for pid in patients]
    return files
