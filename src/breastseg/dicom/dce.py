"""Per-patient DCE breast MRI conversion (the pipeline's ``convert`` job).

Output layout (``out_dir`` appears as a whole, only on success)::

    out_dir/
      patient.json                 {"patient", "studies": [{"key", "phases", "annotated_slices", "shape",
                                    "spacing", "labels_source"}]}
      study-<n>/                   studies ordered by StudyDate/StudyTime, then StudyInstanceUID
        pre.nii.gz  pre.json       pre-contrast phase + sidecar
        post<m>.nii.gz post<m>.json  post-contrast phases in time order
        sub.nii.gz                 post1 - pre, float32, pre grid (post1 resampled linearly when grids differ)
        labels.nii.gz              uint8 0/1/2, 255 = slice not annotated (all 255 when no labels exist), from a
                                   label file (see :mod:`breastseg.dicom.labelfiles`) or a DICOM SEG
      quarantine.json              with on_error="skip": what was skipped and why

Phase rule (default, ``phase_rule=None``):

1. Candidates are the study's volumes with at least two slices that are not DERIVED images (scanner
   subtractions/MIPs) and not one orientation of a split localiser.
2. If any candidate carries TemporalPositionIdentifier (or the Enhanced MR TemporalPositionIndex), the phases
   are the candidates that carry it, ordered by it.
3. Otherwise the phases are the largest group of candidates sharing one acquisition matrix (rows, columns,
   slice count, orientation), ordered by AcquisitionTime, else ContentTime, else SeriesTime (the first of
   these present on every phase; with its date, so midnight is handled).

The earliest phase is the pre-contrast; at least one post-contrast phase is required. ``phase_rule`` may be
one of ``"temporal-position"``, ``"acquisition-time"``, ``"content-time"``, ``"series-time"`` (force the
ordering key; step 3's matrix grouping still applies to the time keys), or a callable receiving a list of
candidate descriptions (dicts: index, series_number, description, temporal_position, acquisition_time,
content_time, series_time, shape, image_type) and returning the chosen indices in phase order, pre first.
"""
from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import atomic_dir, write_json
from ..labels import NOT_ANNOTATED
from .convert import order_studies
from .gridmatch import same_grid
from .labelfiles import is_label_file_name, load_label_file, parse_label_map
from .nifti import write_nifti
from .philips import study_scaling
from .pixels import read_stack
from .scan import scan
from .slices import Quarantine
from .series import Stack, build_stacks, series_location
from .sidecar import sanitize_text, stack_sidecar, stack_start_time

TIME_KEYS = {"acquisition-time": "acquisition", "content-time": "content", "series-time": "series"}
PhaseRule = str | Callable[[list[dict[str, Any]]], list[int]] | None


def describe(stacks: list[Stack]) -> list[dict[str, Any]]:
    """What a ``phase_rule`` callable sees: one dict per candidate volume, no identifying values."""
    out = []
    for i, st in enumerate(stacks):
        temporal = sorted({s.temporal_position for s in st.slices if s.temporal_position is not None})
        out.append({
            "index": i,
            "series_number": st.series_number,
            "description": sanitize_text(st.header.get("SeriesDescription"), st.header),
            "temporal_position": temporal[0] if temporal else None,
            "acquisition_time": stack_start_time(st, "acquisition"),
            "content_time": stack_start_time(st, "content"),
            "series_time": stack_start_time(st, "series"),
            "shape": st.shape,
            "image_type": [str(v) for v in (st.header.get("ImageType") or [])],
        })
    return out


def _is_candidate(st: Stack) -> bool:
    image_type = [str(v).upper() for v in (st.header.get("ImageType") or [])]
    if image_type and image_type[0] == "DERIVED":
        return False
    return len(st.slices) >= 2 and "orientation" not in st.split


def select_phases(stacks: list[Stack], phase_rule: PhaseRule = None) -> tuple[list[Stack], str]:
    """The DCE phases of one study in order (pre first) and the timing key used. See the module docstring."""
    if callable(phase_rule):
        idx = list(phase_rule(describe(stacks)))
        if len(set(idx)) != len(idx) or any(not 0 <= i < len(stacks) for i in idx):
            raise ValueError(f"phase_rule returned invalid indices {idx}")
        return [stacks[i] for i in idx], "phase_rule"
    if phase_rule is not None and phase_rule not in ("temporal-position", *TIME_KEYS):
        raise ValueError(f"unknown phase_rule {phase_rule!r}")
    cands = [st for st in stacks if _is_candidate(st)]
    temporal = [st for st in cands if any(s.temporal_position is not None for s in st.slices)]
    if phase_rule == "temporal-position" or (phase_rule is None and temporal):
        def tkey(st: Stack):
            t = min(s.temporal_position for s in st.slices if s.temporal_position is not None)
            start = stack_start_time(st)
            return (t, start if start is not None else 0.0)

        return sorted(temporal, key=tkey), "temporal_position"
    groups: dict[tuple, list[Stack]] = defaultdict(list)
    for st in cands:
        groups[(st.rows, st.cols, len(st.slices), tuple(np.round(st.iop, 3)))].append(st)
    if not groups:
        return [], "none"
    keys = [TIME_KEYS[phase_rule]] if phase_rule in TIME_KEYS else ["acquisition", "content", "series"]

    def group_rank(members: list[Stack]):
        times = [t for t in (stack_start_time(m) for m in members) if t is not None]
        return (-len(members), min(times) if times else float("inf"))

    best = sorted(groups.values(), key=group_rank)[0]
    for key in keys:
        times = [stack_start_time(st, key) for st in best]
        if all(t is not None for t in times):
            if len(best) > 1 and len(set(times)) < len(times):
                continue  # this key does not tell the phases apart; try the next one
            order = np.argsort(np.asarray(times), kind="stable")
            return [best[i] for i in order], f"{key}_time"
    return best, "none"


def select_dce_phases(members: list[Stack], root: Path, phase_rule: PhaseRule = None) -> tuple[list[Stack], str]:
    """:func:`select_phases`, refusing a study without a pre-contrast and at least one post-contrast phase."""
    phases, timing = select_phases(members, phase_rule)
    if len(phases) < 2:
        raise InputError(
            root, f"found {len(phases)} DCE phase(s) among {len(members)} volume(s); a pre-contrast and at least "
            "one post-contrast series are needed"
        )
    return phases, timing


def subtraction_on_pre_grid(pre: Stack, pre_data: np.ndarray, post1: Stack, post1_data: np.ndarray) -> np.ndarray:
    """The subtraction image (first post-contrast - pre-contrast, float32) on the pre-contrast grid; the post
    phase is resampled linearly onto that grid when the grids differ."""
    from .resample import resample_to_grid
    from .subtraction import subtraction

    if not same_grid(post1.shape, post1.affine, pre.shape, pre.affine):
        post1_data = resample_to_grid(post1_data, post1.affine, pre.shape, pre.affine, order=1)
    return subtraction(post1_data, pre_data)


def _study_roots(studies: list[tuple[str, list[Stack]]], patient_dir: Path) -> dict[str, Path]:
    roots = {}
    for key, members in studies:
        roots[key] = series_location([s for st in members for s in st.slices])
    return roots


def _find_label_files(patient_dir: Path, roots: dict[str, Path], dicom_files: set[Path]) -> dict[str, list[Path]]:
    """Label files (naming rule: :func:`breastseg.dicom.labelfiles.is_label_file_name`) by study key."""
    found: dict[str, list[Path]] = defaultdict(list)
    files = sorted(f for f in patient_dir.rglob("*")
                   if is_label_file_name(f.name) and f not in dicom_files and f.is_file())
    for f in files:
        owners = [k for k, r in roots.items() if _is_within(f, r)]
        if not owners:
            # a label file above the image folders belongs to the study whose folder is closest to it
            owners = [k for k, r in roots.items() if _is_within(r, f.parent)]
        if len(owners) >= 1:
            owner = max(owners, key=lambda k: len(roots[k].parts)) if len(owners) > 1 else owners[0]
            found[owner].append(f)
    return found


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def annotated_slices(labels: np.ndarray) -> list[int]:
    return [int(k) for k in range(labels.shape[2]) if np.any(labels[:, :, k] != NOT_ANNOTATED)]


def convert_dce_patient(
    patient_dir: str | Path,
    out_dir: str | Path,
    *,
    patient_id: str,
    on_error: str = "fail",
    phase_rule: PhaseRule = None,
    compress: bool = True,
    progress: bool = False,
    label_map: dict | None = None,
) -> dict[str, Any]:
    """Convert one patient's DCE studies (see the module docstring for the layout and the phase rule).

    ``patient_id`` is the pseudonym the caller computed; it is the only patient name written. ``label_map``
    (``cohort.label_map``) maps label values or Slicer segment names to the classes 0/1/2/255 (see
    :mod:`breastseg.dicom.labelfiles`). Returns the ``patient.json`` content.
    """
    classes_map = parse_label_map(label_map)
    patient_dir = Path(patient_dir)
    out_dir = Path(out_dir)
    if not patient_dir.is_dir():
        raise InputError(patient_dir, "is not a folder")
    quarantine = Quarantine(on_error, root=patient_dir)
    result = scan(patient_dir, quarantine)
    patients = {s.patient_key for s in result.slices if s.patient_key}
    if len(patients) > 1:  # the values themselves are identifying: only their count is said
        raise InputError(patient_dir, f"holds images of {len(patients)} different patients (PatientID differs "
                                      "between files); put one patient per folder")
    stacks = build_stacks(result.slices, quarantine)
    studies = order_studies(stacks)
    if not studies:
        first = quarantine.entries[0] if quarantine.entries else None
        why = f"; first problem: {first['path']}: {first['reason']}" if first else ""
        raise InputError(patient_dir, f"no DICOM image series found ({result.files_seen} file(s) examined){why}")
    roots = _study_roots(studies, patient_dir)
    dicom_files = {s.path for s in result.slices} | {path for path, _ in result.segs}
    label_files = _find_label_files(patient_dir, roots, dicom_files)
    segs_by_study: dict[str, list[Path]] = defaultdict(list)
    uid_to_key = {members[0].study_uid: key for key, members in studies}
    for path, ds in result.segs:
        key = uid_to_key.get(str(ds.get("StudyInstanceUID", "")))
        if key is None:
            quarantine.report(path, "DICOM SEG belongs to no study with images in this folder")
        else:
            segs_by_study[key].append(path)
    summary: dict[str, Any] = {"patient": patient_id, "studies": []}
    with atomic_dir(out_dir) as tmp:
        for study_key, members in studies:
            try:
                entry = _convert_study(
                    study_key, members, tmp / study_key, roots[study_key], label_files.get(study_key, []),
                    segs_by_study.get(study_key, []), phase_rule, compress, classes_map,
                )
            except InputError as err:
                quarantine.report(err.path, f"{study_key}: {err.reason}", kind="study")
                import shutil

                shutil.rmtree(tmp / study_key, ignore_errors=True)
                continue
            summary["studies"].append(entry)
            if progress:
                print(f"breastseg convert: {patient_id} {study_key} {len(entry['phases'])} phases", file=sys.stderr)
        if not summary["studies"]:
            first = quarantine.entries[0]
            raise InputError(patient_dir, f"no study could be converted; first problem: {first['path']}: {first['reason']}")
        if on_error == "skip":
            write_json(tmp / "quarantine.json", {"skipped": quarantine.entries})
        write_json(tmp / "patient.json", summary)
    return summary


def _convert_study(
    study_key: str, members: list[Stack], out: Path, root: Path, label_files: list[Path], seg_files: list[Path],
    phase_rule: PhaseRule, compress: bool, label_map=None,
) -> dict[str, Any]:
    phases, timing = select_dce_phases(members, root, phase_rule)
    scaling = study_scaling(phases)  # Philips: one intensity scale for every phase, or a refusal
    out.mkdir(parents=True, exist_ok=True)
    ext = ".nii.gz" if compress else ".nii"
    pre = phases[0]
    t_pre = _phase_time(pre, timing)
    names = ["pre"] + [f"post{i}" for i in range(1, len(phases))]
    pre_data = post1_data = None
    for name, st in zip(names, phases):
        data, info = read_stack(st)
        t = _phase_time(st, timing)
        rel = None if t is None or t_pre is None else t - t_pre
        same = same_grid(st.shape, st.affine, pre.shape, pre.affine)
        extra = {"phase": name, "phase_timing": timing, "on_pre_grid": bool(same)}
        write_nifti(out / f"{name}{ext}", data, st.affine)
        write_json(out / f"{name}.json", stack_sidecar(st, info, data, relative_time_s=rel, study_key=study_key, extra=extra))
        if name == "pre":
            pre_data = data
        elif name == "post1":
            post1_data = data
    sub = subtraction_on_pre_grid(pre, pre_data, phases[1], post1_data)
    write_nifti(out / f"sub{ext}", sub, pre.affine)
    if len(label_files) > 1:
        names = ", ".join(f.name for f in label_files[:4])
        raise InputError(root, f"{len(label_files)} label files found for one study ({names}); keep one")
    if label_files and seg_files:
        raise InputError(root, f"both a label file ({label_files[0].name}) and a DICOM SEG were found for this "
                               "study; keep one")
    if label_files:
        labels, source = load_label_file(label_files[0], pre.shape, pre.affine, label_map)
    elif seg_files:
        from .seg import seg_to_labels

        if len(seg_files) > 1:
            raise InputError(root, f"{len(seg_files)} DICOM SEG objects found for one study; keep one")
        labels = seg_to_labels(seg_files[0], pre)
        source = "dicom-seg"
    else:
        labels = np.full(pre.shape, NOT_ANNOTATED, dtype=np.uint8)
        source = None
    write_nifti(out / f"labels{ext}", labels, pre.affine)
    return {
        "key": study_key,
        "phases": names,
        "phase_timing": timing,
        "annotated_slices": annotated_slices(labels),
        "labels_source": source,
        "shape": list(pre.shape),
        "spacing": [round(float(v), 6) for v in pre.spacing],
        **({"philips_scaling": scaling} if scaling else {}),
    }


def _phase_time(st: Stack, timing: str) -> float | None:
    for key in ("acquisition", "content", "series"):
        if timing == f"{key}_time":
            return stack_start_time(st, key)
    for key in ("acquisition", "content", "series"):
        t = stack_start_time(st, key)
        if t is not None:
            return t
    return None
