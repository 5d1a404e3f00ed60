"""Group frames into volumes (stacks) and check their geometry.

Frames are grouped by StudyInstanceUID and SeriesInstanceUID, then split by orientation, matrix and pixel
spacing, by TemporalPositionIdentifier / TemporalPositionIndex and by echo. A series with more than
:data:`MAX_ORIENTATIONS` orientations (radial or otherwise non-parallel slices) is refused; up to that many
(three-plane localisers) it is split into one volume per orientation.

Slices are ordered by ImagePositionPatient projected on the slice normal (never by InstanceNumber or file
name). Duplicate positions, uneven spacing (missing slices) and sheared stacks (gantry tilt) are refused with
the numbers that show why. The affine comes from :func:`breastseg.dicom.geometry.affine_ras`.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .geometry import affine_ras, slice_normal
from .slices import Quarantine, SliceRef

MAX_ORIENTATIONS = 3
IOP_TOL = 1e-3
ABS_SPACING_TOL = 0.02  # mm
REL_SPACING_TOL = 0.01


@dataclass
class Stack:
    """One 3-D volume: frames in slice order and the grid they define."""

    slices: list[SliceRef]
    iop: tuple[float, ...]
    pixel_spacing: tuple[float, float]
    positions: np.ndarray  # slice positions along the normal (mm), increasing
    slice_step: float
    affine: np.ndarray
    split: str = ""  # why this series was split ("orientation 2 of 3", "temporal position 4", ...)
    notes: list[str] = field(default_factory=list)
    key: str = ""

    @property
    def rows(self) -> int:
        return self.slices[0].rows

    @property
    def cols(self) -> int:
        return self.slices[0].cols

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.cols, self.rows, len(self.slices))

    @property
    def spacing(self) -> tuple[float, float, float]:
        return (float(self.pixel_spacing[1]), float(self.pixel_spacing[0]), float(abs(self.slice_step)))

    @property
    def header(self):
        return self.slices[0].header

    @property
    def study_uid(self) -> str:
        return self.slices[0].study_uid

    @property
    def series_uid(self) -> str:
        return self.slices[0].series_uid

    @property
    def series_number(self) -> int | None:
        return self.slices[0].series_number

    def label(self) -> str:
        """How to name this stack in messages: its SeriesNumber (not identifying) and split, never a UID."""
        num = self.series_number if self.series_number is not None else "?"
        return f"series {num}" + (f" ({self.split})" if self.split else "")


def series_location(slices: list[SliceRef]) -> Path:
    """The deepest folder holding all of a series' files (used to name it in reports)."""
    parents = {s.path.parent for s in slices}
    if len(parents) == 1:
        return next(iter(parents))
    import os

    return Path(os.path.commonpath([str(p) for p in parents]))


def _cluster_orientations(slices: list[SliceRef]) -> list[list[SliceRef]]:
    clusters: list[tuple[np.ndarray, list[SliceRef]]] = []
    for s in slices:
        v = np.asarray(s.iop)
        for ref, members in clusters:
            if np.max(np.abs(ref - v)) <= IOP_TOL:
                members.append(s)
                break
        else:
            clusters.append((v, [s]))
    return [m for _, m in clusters]


def _split_by(groups: list[tuple[str, list[SliceRef]]], attr: str, name: str) -> list[tuple[str, list[SliceRef]]]:
    out = []
    for label, members in groups:
        values = sorted({getattr(s, attr) for s in members}, key=lambda v: (v is None, v if v is not None else 0))
        if len(values) <= 1:
            out.append((label, members))
            continue
        for v in values:
            sub = [s for s in members if getattr(s, attr) == v]
            out.append(((label + ", " if label else "") + f"{name} {v:g}" if v is not None else f"{name} none", sub))
    return out


def build_stacks(slices: list[SliceRef], quarantine: Quarantine) -> list[Stack]:
    """All volumes in ``slices``; series that cannot form a valid volume go to ``quarantine``."""
    by_series: dict[tuple[str, str], list[SliceRef]] = defaultdict(list)
    for s in slices:
        by_series[(s.study_uid, s.series_uid)].append(s)
    stacks: list[Stack] = []
    for members in by_series.values():
        try:
            stacks.extend(series_stacks(members))
        except InputError as err:
            quarantine.report(err.path, err.reason, kind="series")
    return stacks


def series_stacks(members: list[SliceRef]) -> list[Stack]:
    """The volumes of one series (raises InputError naming the series' folder when it cannot be stacked)."""
    where = series_location(members)
    num = members[0].series_number
    name = f"series {num if num is not None else '?'}"
    orientations = _cluster_orientations(members)
    if len(orientations) > MAX_ORIENTATIONS:
        raise InputError(
            where, f"{name}: slices are not parallel ({len(orientations)} different orientations, e.g. a radial "
            "acquisition); it cannot be stored as one volume"
        )
    groups: list[tuple[str, list[SliceRef]]] = []
    for idx, cluster in enumerate(orientations, start=1):
        label = f"orientation {idx} of {len(orientations)}" if len(orientations) > 1 else ""
        by_matrix: dict[tuple, list[SliceRef]] = defaultdict(list)
        for s in cluster:
            by_matrix[(s.rows, s.cols, round(s.pixel_spacing[0], 4), round(s.pixel_spacing[1], 4))].append(s)
        if len(by_matrix) > 1:
            for m, (mkey, sub) in enumerate(sorted(by_matrix.items(), key=lambda kv: -len(kv[1])), start=1):
                groups.append(((label + ", " if label else "") + f"matrix {mkey[1]}x{mkey[0]}", sub))
        else:
            groups.append((label, cluster))
    groups = _split_by(groups, "temporal_position", "temporal position")
    groups = _split_by(groups, "echo", "echo")
    stacks = []
    for label, sub in groups:
        stacks.extend(_stack_or_split_by_time(sub, label, name, where))
    return stacks


def _projections(sub: list[SliceRef]) -> tuple[np.ndarray, np.ndarray]:
    normal = slice_normal(sub[0].iop)
    d = np.array([np.dot(normal, s.ipp) for s in sub])
    return normal, d


def _stack_or_split_by_time(sub: list[SliceRef], label: str, name: str, where: Path) -> list[Stack]:
    _, d = _projections(sub)
    rounded = np.round(d / ABS_SPACING_TOL).astype(np.int64)
    counts = Counter(rounded.tolist())
    if max(counts.values()) > 1:
        # Several volumes in one series without a temporal index (e.g. all DCE phases in one series): split by
        # acquisition time when that gives volumes with one slice per position each.
        times = sorted({s.acq_time for s in sub if s.acq_time is not None})
        n_pos = len(counts)
        if (
            all(s.acq_time is not None for s in sub)
            and len(times) * n_pos == len(sub)
            and all(c == len(times) for c in counts.values())
        ):
            out = []
            for t_idx, t in enumerate(times, start=1):
                part = [s for s in sub if s.acq_time == t]
                out.append(make_stack(part, (label + ", " if label else "") + f"acquisition {t_idx} of {len(times)}", name, where))
            return out
        dup = [k for k, c in counts.items() if c > 1]
        examples = ", ".join(f"{k * ABS_SPACING_TOL:.2f} mm" for k in sorted(dup)[:3])
        raise InputError(
            where, f"{name}{' (' + label + ')' if label else ''}: duplicate slice positions "
            f"({len(dup)} position(s) occur more than once, e.g. {examples} along the slice normal)"
        )
    return [make_stack(sub, label, name, where)]


def make_stack(sub: list[SliceRef], label: str, name: str, where: Path) -> Stack:
    normal, d = _projections(sub)
    order = np.argsort(d, kind="stable")
    ordered = [sub[i] for i in order]
    d = d[order]
    tag = f"{name}{' (' + label + ')' if label else ''}"
    notes: list[str] = []
    if len(ordered) > 1:
        gaps = np.diff(d)
        step = float((d[-1] - d[0]) / (len(d) - 1))
        tol = max(ABS_SPACING_TOL, REL_SPACING_TOL * abs(step))
        if np.max(np.abs(gaps - step)) > tol:
            hist = Counter(np.round(gaps, 3).tolist())
            desc = ", ".join(f"{g:g} mm x{c}" for g, c in sorted(hist.items()))
            raise InputError(
                where, f"{tag}: uneven slice spacing (gaps along the normal: {desc}); "
                "slices are missing or the series mixes stacks"
            )
        p0 = np.asarray(ordered[0].ipp)
        for k, s in enumerate(ordered[1:], start=1):
            delta = np.asarray(s.ipp) - p0
            inplane = delta - np.dot(delta, normal) * normal
            if np.linalg.norm(inplane) > tol + 1e-3 * abs(d[k] - d[0]):
                raise InputError(
                    where, f"{tag}: slices are sheared (slice {k + 1} is offset {np.linalg.norm(inplane):.3f} mm "
                    "in-plane from the first; gantry tilt or a non-rectilinear stack)"
                )
    else:
        s0 = ordered[0]
        step = s0.spacing_between or s0.slice_thickness or 1.0
        notes.append(
            "single slice: slice step taken from "
            + ("SpacingBetweenSlices" if s0.spacing_between else "SliceThickness" if s0.slice_thickness else "a default of 1 mm")
        )
    first = ordered[0]
    affine = affine_ras(first.iop, first.ipp, first.pixel_spacing, step)
    return Stack(
        slices=ordered,
        iop=first.iop,
        pixel_spacing=first.pixel_spacing,
        positions=d,
        slice_step=step,
        affine=affine,
        split=label,
        notes=notes,
    )
