"""DICOM SEG -> label volume on the pre-contrast grid.

Frames are placed on pre-contrast slices by the SOP instance they were derived from
(DerivationImageSequence / SourceImageSequence), else by their ImagePositionPatient projected on the slice
normal; their in-plane grid must equal the pre-contrast grid (no in-plane resampling of masks). Segment
numbers map to label values by their label text ("FGT", "fibroglandular" -> 1; "BPE", "enhancement" -> 2;
"background" -> 0), else by segment number (1 -> 1, 2 -> 2). Slices the SEG references (its
ReferencedSeriesSequence lists the source instances) or holds frames for are annotated (0 where no segment);
all other slices are 255.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pydicom

from ..errors import InputError
from ..labels import BACKGROUND, BPE, FGT, NOT_ANNOTATED
from .series import Stack


def segment_value(number: int, label: str) -> int:
    text = (label or "").lower()
    if re.search(r"\bbpe\b|enhanc", text):
        return BPE
    if re.search(r"\bfgt\b|fibroglandular|dense|parenchyma", text):
        return FGT
    if "background" in text:
        return BACKGROUND
    if number in (FGT, BPE):
        return number
    raise InputError(None, f"segment {number} ({label!r}) cannot be mapped to a label value (0/1/2)")


def seg_to_labels(path: str | Path, pre: Stack) -> np.ndarray:
    """The label volume (uint8, pre grid, 255 = not annotated) described by the SEG file at ``path``."""
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path)
            frames = ds.pixel_array
        except Exception as exc:  # noqa: BLE001
            raise InputError(path, f"DICOM SEG cannot be read: {exc}") from None
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.shape != (nframes, pre.rows, pre.cols):
        raise InputError(
            path, f"DICOM SEG frames are {frames.shape[-1]}x{frames.shape[-2]}, the pre-contrast series is "
            f"{pre.cols}x{pre.rows}; masks must be drawn on the pre-contrast grid"
        )
    if str(ds.get("SegmentationType", "BINARY")).upper() == "FRACTIONAL":
        frames = frames > (int(ds.get("MaximumFractionalValue", 255)) / 2)
    values = {}
    for seg in ds.get("SegmentSequence", []):
        try:
            values[int(seg.SegmentNumber)] = segment_value(int(seg.SegmentNumber), str(seg.get("SegmentLabel", "")))
        except InputError as err:
            raise InputError(path, err.reason) from None
    by_sop = {s.sop_uid: k for k, s in enumerate(pre.slices) if s.frame is None}
    by_sop_frame = {(s.sop_uid, s.frame + 1): k for k, s in enumerate(pre.slices) if s.frame is not None}
    normal = np.cross(np.asarray(pre.iop[:3]), np.asarray(pre.iop[3:]))
    labels = np.full(pre.shape, NOT_ANNOTATED, dtype=np.uint8)
    annotated: set[int] = set()
    for ref_series in ds.get("ReferencedSeriesSequence", []):
        for inst in ref_series.get("ReferencedInstanceSequence", []):
            k = by_sop.get(str(inst.get("ReferencedSOPInstanceUID", "")))
            if k is not None:
                annotated.add(k)
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared = shared[0] if shared else None
    placed: list[tuple[int, int, int]] = []  # (value, slice, frame)
    for f, item in enumerate(ds.get("PerFrameFunctionalGroupsSequence", [])):
        seg_id = item.get("SegmentIdentificationSequence") or (shared.get("SegmentIdentificationSequence") if shared else None)
        if not seg_id:
            raise InputError(path, f"SEG frame {f + 1} names no segment")
        number = int(seg_id[0].ReferencedSegmentNumber)
        k = _frame_slice(item, by_sop, by_sop_frame)
        if k is None:
            pos = item.get("PlanePositionSequence")
            if not pos:
                raise InputError(path, f"SEG frame {f + 1} references no pre-contrast image and has no position")
            ipp = np.asarray([float(v) for v in pos[0].ImagePositionPatient])
            d = float(np.dot(normal, ipp))
            k = int(np.argmin(np.abs(pre.positions - d)))
            inplane = (ipp - np.asarray(pre.slices[k].ipp)) - (d - pre.positions[k]) * normal
            if abs(pre.positions[k] - d) > 0.05 * abs(pre.slice_step) + 0.01 or np.linalg.norm(inplane) > 0.05:
                raise InputError(path, f"SEG frame {f + 1} (position {d:.2f} mm) matches no pre-contrast slice")
        placed.append((values.get(number, number), k, f))
        annotated.add(k)
    for k in annotated:
        labels[:, :, k] = 0
    for value, k, f in sorted(placed):
        if value == 0:
            continue
        labels[:, :, k][frames[f].T > 0] = value
    return labels


def _frame_slice(item, by_sop: dict, by_sop_frame: dict) -> int | None:
    for deriv in item.get("DerivationImageSequence", []) or []:
        for src in deriv.get("SourceImageSequence", []) or []:
            uid = str(src.get("ReferencedSOPInstanceUID", ""))
            if uid in by_sop:
                return by_sop[uid]
            frames = src.get("ReferencedFrameNumber")
            if frames is not None:
                fnum = int(frames[0] if isinstance(frames, (list, tuple)) or type(frames).__name__ == "MultiValue" else frames)
                if (uid, fnum) in by_sop_frame:
                    return by_sop_frame[(uid, fnum)]
    return None
