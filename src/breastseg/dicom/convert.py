"""Generic DICOM folder -> NIfTI conversion (``breastseg convert DICOM_DIR OUT_DIR``).

Output layout (``out_dir`` appears as a whole, only when the conversion succeeds)::

    out_dir/
      series-<SeriesNumber>-<k>.nii.gz   one volume per stack (k counts the volumes of that series number)
      series-<SeriesNumber>-<k>.json     sidecar: geometry, values, acquisition parameters, no PHI
      conversion.json                    summary (counts, keys, ignored files)
      quarantine.json                    with on_error="skip": every skipped file/series and why

With several studies in the input the keys are prefixed ``study-<n>_`` (studies ordered by date/time, then
UID). Keys never contain a raw DICOM value except the SeriesNumber, which identifies nobody.
"""
from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import atomic_dir, write_json
from .nifti import nifti_name, write_nifti, write_nifti_copy, write_nifti_stream
from .pixels import iter_native_slices, native_plan, native_segments, read_stack
from .scan import scan
from .slices import Quarantine
from .series import Stack, build_stacks
from .sidecar import stack_sidecar, stack_start_time


def order_studies(stacks: list[Stack]) -> list[tuple[str, list[Stack]]]:
    """``[(study-key, stacks)]`` with studies ordered by StudyDate/StudyTime, then StudyInstanceUID."""
    by_study: dict[str, list[Stack]] = defaultdict(list)
    for st in stacks:
        by_study[st.study_uid].append(st)

    def sort_key(uid: str):
        t = by_study[uid][0].slices[0].study_time
        return (t is None, t or 0.0, uid)

    ordered = sorted(by_study, key=sort_key)
    return [(f"study-{i}", by_study[uid]) for i, uid in enumerate(ordered, start=1)]


def write_stack(path: Path, st: Stack) -> tuple[np.ndarray, dict[str, Any]]:
    """Write ``st`` as NIfTI to ``path``; returns an array with the volume's shape and type (the values
    themselves when they had to be read into memory) and what was done to the values.

    Native little-endian stacks whose output type does not depend on the values are streamed slice by slice
    (for ``.nii`` with unchanged values the kernel copies the pixel bytes), so memory stays at a slice.
    """
    plan = native_plan(st)
    if plan is None:
        data, info = read_stack(st)
        write_nifti(path, data, st.affine)
        return data, info
    if plan.passthrough and not path.name.endswith(".gz"):
        write_nifti_copy(path, st.shape, plan.out_dtype, st.affine, native_segments(st))
    else:
        write_nifti_stream(path, st.shape, plan.out_dtype, st.affine, iter_native_slices(st, plan))
    return np.broadcast_to(np.zeros((), plan.out_dtype), st.shape), plan.info


def _prepare_out_dir(out_dir: Path, marker: str) -> None:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise InputError(out_dir, "exists and is not a folder")
        if any(out_dir.iterdir()) and not (out_dir / marker).exists():
            raise InputError(out_dir, "exists, is not empty and is not a previous breastseg output; refusing to replace it")


def convert_dicom_dir(
    dicom_dir: str | Path,
    out_dir: str | Path,
    *,
    on_error: str = "fail",
    progress: bool = False,
    compress: bool = True,
    workers: int | None = None,
) -> dict[str, Any]:
    """Convert every image series below ``dicom_dir`` into NIfTI + JSON sidecars in ``out_dir``.

    ``on_error="fail"`` raises :class:`~breastseg.errors.InputError` (naming the file or series folder) at the
    first bad input; ``"skip"`` converts the rest and lists what was skipped in ``out_dir/quarantine.json``.
    ``compress`` writes ``.nii.gz`` (gzip level 1) instead of ``.nii``. ``workers`` volumes are read and
    written at once (threads; default: up to 4, at most the CPU count). ``out_dir`` is replaced as a whole
    on success; an existing non-empty folder that is not a previous output is refused.

    Returns the summary also written to ``conversion.json``: ``{"series": [{key, file, sidecar, shape,
    spacing_mm, plane, dtype}], "n_series", "n_files", "ignored", "quarantined", "seconds"}``.
    """
    t0 = time.perf_counter()
    dicom_dir = Path(dicom_dir)
    out_dir = Path(out_dir)
    quarantine = Quarantine(on_error, root=dicom_dir if dicom_dir.is_dir() else dicom_dir.parent)
    _prepare_out_dir(out_dir, "conversion.json")
    result = scan(dicom_dir, quarantine)
    stacks = build_stacks(result.slices, quarantine)
    studies = order_studies(stacks)
    multi = len(studies) > 1
    jobs: list[tuple[str, str, Stack, float | None]] = []
    for study_key, members in studies:
        counts: dict[Any, int] = defaultdict(int)
        times = [t for t in (stack_start_time(s) for s in members) if t is not None]
        ref = min(times) if times else None
        for st in members:
            num = st.series_number if st.series_number is not None else "x"
            counts[num] += 1
            key = f"series-{num}-{counts[num]}"
            st.key = f"{study_key}_{key}" if multi else key
            start = stack_start_time(st)
            jobs.append((study_key, st.key, st, None if start is None or ref is None else start - ref))
    if not jobs:
        first = quarantine.entries[0] if quarantine.entries else None
        why = f"; first problem: {first['path']}: {first['reason']}" if first else ""
        raise InputError(dicom_dir, f"no convertible DICOM image series found ({result.files_seen} file(s) examined){why}")
    n_workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    n_workers = max(1, min(n_workers, len(jobs)))
    converted: list[dict[str, Any]] = []

    with atomic_dir(out_dir) as tmp:

        def one(job):
            study_key, key, st, rel = job
            fname = nifti_name(key, compress)
            try:
                data, info = write_stack(tmp / fname, st)
            except InputError as err:
                quarantine.report(err.path, f"{st.label()}: {err.reason}", kind="series")
                return None
            side = stack_sidecar(st, info, data, relative_time_s=rel, study_key=study_key)
            write_json(tmp / f"{key}.json", side)
            if progress:
                print(f"breastseg convert: {key} {tuple(data.shape)} {data.dtype}", file=sys.stderr)
            return {
                "key": key, "file": fname, "sidecar": f"{key}.json", "study": study_key,
                "shape": list(data.shape), "spacing_mm": side["spacing_mm"], "plane": side["orientation"]["plane"],
                "dtype": str(data.dtype),
            }

        if n_workers == 1:
            results = [one(j) for j in jobs]
        else:
            with ThreadPoolExecutor(n_workers) as pool:
                results = list(pool.map(one, jobs))
        converted = [r for r in results if r is not None]
        if not converted:
            first = quarantine.entries[0]
            raise InputError(dicom_dir, f"no series could be converted; first problem: {first['path']}: {first['reason']}")
        summary = {
            "series": converted,
            "n_series": len(converted),
            "n_files": result.files_seen,
            "ignored": len(result.ignored),
            "quarantined": len(quarantine.entries),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        if on_error == "skip":
            write_json(tmp / "quarantine.json", {"skipped": quarantine.entries})
        write_json(tmp / "conversion.json", summary)
    summary["out_dir"] = str(out_dir)
    return summary
