"""Label files beside DICOM studies: NIfTI label maps (``labels.nii.gz``, ITK-SNAP), NRRD label maps and 3D Slicer
segmentations (``.seg.nrrd``), placed on the pre-contrast grid and mapped to the classes 0 background, 1
non-enhancing FGT, 2 BPE, 255 not annotated.

Naming rule (:func:`is_label_file_name`): a file is a label file when its name ends in ``.nii``, ``.nii.gz`` or
``.nrrd`` (any case) and the part before that ending contains ``label`` or ``seg``: ``labels.nii.gz``,
``Segmentation.seg.nrrd``, ``pre-label.nrrd``, ``fgt_seg.nii``. Other NIfTI/NRRD files (e.g. image conversions)
and every file read as DICOM are never taken for labels. Hidden files (``.name``) are skipped.

Geometry: the voxel grid must be the pre-contrast grid within 0.05 mm, or the same voxel centres stored with
axes permuted or flipped. NIfTI affines are RAS; NRRD positions (``space directions``, ``space origin``) are
converted from their ``space`` (left-posterior-superior as Slicer writes, right-anterior-superior or
left-anterior-superior) to RAS. An NRRD without an anatomical ``space`` is refused.

Values (:func:`to_classes`): without a label map the stored values are the classes and must be 0, 1, 2 or 255.
With a label map (``cohort.label_map``), each value present is looked up by the name of the Slicer segment it
belongs to (names compared case-insensitively), else by the value itself (an integer key, or a string of
digits); value 0 (no segment) is class 0 unless the map says otherwise; any other value left unmapped refuses
the file. Slicer segmentations whose segments overlap (layered, 4-D files) take, per voxel, the class of the
covering segments in the order 2 > 1 > 255 > 0; voxels in no segment take the class of value 0.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..labels import BACKGROUND, BPE, FGT, MRI_LABEL_VALUES, NOT_ANNOTATED
from .gridmatch import grid_distance, reorient_to_grid, same_grid

CLASSES = MRI_LABEL_VALUES
LABEL_SUFFIXES = (".nii.gz", ".nii", ".nrrd")
NAME_TOKENS = ("label", "seg")
RANK = {BACKGROUND: 0, NOT_ANNOTATED: 1, FGT: 2, BPE: 3}  # which class wins where segments overlap
# NRRD 'space' -> sign flips turning its coordinates into RAS
SPACES = {
    "left-posterior-superior": (-1.0, -1.0, 1.0), "lps": (-1.0, -1.0, 1.0),
    "right-anterior-superior": (1.0, 1.0, 1.0), "ras": (1.0, 1.0, 1.0),
    "left-anterior-superior": (-1.0, 1.0, 1.0), "las": (-1.0, 1.0, 1.0),
}


def is_label_file_name(name: str) -> bool:
    """True for names the naming rule (module docstring) takes as label files."""
    low = name.lower()
    if low.startswith("."):
        return False
    for suffix in LABEL_SUFFIXES:
        if low.endswith(suffix):
            stem = low[: -len(suffix)]
            return any(token in stem for token in NAME_TOKENS)
    return False


@dataclass
class LabelMap:
    """``cohort.label_map`` split into value keys and (case-folded) segment-name keys."""

    by_value: dict[int, int] = field(default_factory=dict)
    by_name: dict[str, int] = field(default_factory=dict)


def parse_label_map(label_map: Mapping | None) -> LabelMap | None:
    """Check ``cohort.label_map`` (source value or segment name -> 0/1/2/255); one line on the first bad entry."""
    if label_map is None:
        return None
    if not isinstance(label_map, Mapping):
        raise InputError(None, f"cohort.label_map must be a mapping of label values or segment names to 0, 1, 2 or "
                               f"255, got {type(label_map).__name__}")
    out = LabelMap()
    for key, cls in label_map.items():
        if isinstance(cls, bool) or not isinstance(cls, Integral) or int(cls) not in CLASSES:
            raise InputError(None, f"cohort.label_map: {key!r} maps to {cls!r}; classes are 0, 1, 2 or 255")
        if isinstance(key, Integral) and not isinstance(key, bool):
            out.by_value[int(key)] = int(cls)
        elif isinstance(key, str) and key.strip():
            name = key.strip()
            out.by_name[name.casefold()] = int(cls)
            if re.fullmatch(r"[+-]?\d+", name):
                out.by_value[int(name)] = int(cls)
        else:
            raise InputError(None, f"cohort.label_map: key {key!r} is neither a label value nor a segment name")
    return out


@dataclass
class Segment:
    name: str
    value: int
    layer: int


@dataclass
class LabelVolume:
    data: np.ndarray  # (x, y, z, layers), voxel axes as the affine's columns
    affine: np.ndarray  # voxel -> RAS mm
    segments: list[Segment]
    source: str  # recorded as the study's labels_source


def read_label_file(path: Path) -> LabelVolume:
    name = path.name.lower()
    if name.endswith(".nrrd"):
        return read_nrrd(path)
    return read_nifti(path)


def read_nifti(path: Path) -> LabelVolume:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001
        raise InputError(path, f"cannot read label volume: {_short(exc)}") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(path, f"label volume must be 3-D, got shape {data.shape}")
    return LabelVolume(data[..., None], np.asarray(img.affine, float), [], "nifti")


def read_nrrd(path: Path) -> LabelVolume:
    import nrrd  # pynrrd; imported here so that commands not reading NRRD start fast

    try:
        data, hdr = nrrd.read(str(path), index_order="F")
    except Exception as exc:  # noqa: BLE001
        raise InputError(path, f"cannot read NRRD file: {_short(exc)}") from None
    space = str(hdr.get("space", "")).strip().lower()
    if space not in SPACES:
        what = f"'space: {hdr['space']}'" if "space" in hdr else "no 'space' field"
        raise InputError(path, f"NRRD header has {what}; an anatomical space (e.g. left-posterior-superior) is "
                               "needed to place the labels on the pre-contrast grid")
    dirs = hdr.get("space directions")
    origin = hdr.get("space origin")
    if dirs is None or origin is None:
        raise InputError(path, "NRRD header lacks 'space directions' or 'space origin'")
    dirs = np.asarray(dirs, dtype=float)
    spatial = [a for a in range(data.ndim) if np.all(np.isfinite(dirs[a]))]
    other = [a for a in range(data.ndim) if a not in spatial]
    if len(spatial) != 3 or len(other) > 1:
        raise InputError(path, f"NRRD label volume must have 3 spatial axes (plus at most one layer axis), got "
                               f"shape {tuple(data.shape)} with {len(spatial)} spatial")
    data = np.transpose(data, spatial + other)
    if data.ndim == 3:
        data = data[..., None]
    flips = np.asarray(SPACES[space])
    affine = np.eye(4)
    affine[:3, :3] = flips[:, None] * dirs[spatial].T  # column j: step along voxel axis j
    affine[:3, 3] = flips * np.asarray(origin, dtype=float)
    segments = _slicer_segments(hdr, layered=data.shape[3] > 1, path=path)
    return LabelVolume(data, affine, segments, "slicer-seg-nrrd" if segments else "nrrd")


def _slicer_segments(hdr: Mapping, *, layered: bool, path: Path) -> list[Segment]:
    """Segments of a Slicer segmentation: ``SegmentN_Name``, ``SegmentN_LabelValue`` (default 1) and
    ``SegmentN_Layer`` (default N in a 4-D file, as older Slicer versions wrote one layer per segment)."""
    segments = []
    for key in hdr:
        m = re.fullmatch(r"Segment(\d+)_Name", str(key))
        if not m:
            continue
        n = int(m.group(1))
        try:
            value = int(str(hdr.get(f"Segment{n}_LabelValue", "1")).strip())
            layer = int(str(hdr.get(f"Segment{n}_Layer", n if layered else 0)).strip())
        except ValueError:
            raise InputError(path, f"Slicer segment {n} has a non-integer LabelValue or Layer") from None
        segments.append(Segment(str(hdr[key]).strip(), value, layer))
    return segments


def place_on_grid(vol: LabelVolume, path: Path, pre_shape, pre_affine, tol_mm: float = 0.05) -> np.ndarray:
    """``vol.data`` on the pre-contrast grid (axes permuted/flipped when stored so); one line when it is not
    on that grid."""
    data, shape = vol.data, tuple(vol.data.shape[:3])
    if same_grid(shape, vol.affine, pre_shape, pre_affine, tol_mm):
        return data
    out = reorient_to_grid(data, vol.affine, pre_shape, pre_affine, tol_mm)
    if out is None:
        dist = grid_distance(shape, vol.affine, pre_affine) if shape == tuple(pre_shape) else None
        why = f"shape {shape} vs {tuple(pre_shape)}" if dist is None else f"corners differ by up to {dist:.3f} mm"
        raise InputError(path, f"label volume is not on the pre-contrast grid ({why}; tolerance {tol_mm} mm)")
    return out


def to_classes(data: np.ndarray, segments: list[Segment], label_map: LabelMap | None, path: Path) -> np.ndarray:
    """uint8 classes (x, y, z) from stored values (x, y, z, layers); see the module docstring for the rule."""
    if np.issubdtype(data.dtype, np.floating):
        if not np.all(np.isfinite(data)) or not np.all(data == np.round(data)):
            raise InputError(path, "label volume holds non-integer values")
    if not np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.int64)
    names = {(s.layer, s.value): s.name for s in segments}
    zero = label_map.by_value.get(0, 0) if label_map is not None else 0
    out = np.full(data.shape[:3], zero, dtype=np.uint8)
    rank = np.full(data.shape[:3], -1, dtype=np.int8)
    unmapped: dict[int, str | None] = {}
    for layer in range(data.shape[3]):
        stored = data[..., layer]
        values = np.unique(stored)
        classes = np.zeros(len(values), dtype=np.uint8)
        for i, v in enumerate(int(x) for x in values):
            name = names.get((layer, v))
            cls = _class_of(v, name, label_map)
            if cls is None:
                unmapped.setdefault(v, name)
            else:
                classes[i] = cls
        if unmapped:
            continue
        cls_vol = _lookup(stored, values, classes)
        if data.shape[3] == 1:  # one layer: every voxel takes its value's class (value 0's class included)
            out = cls_vol.astype(np.uint8, copy=False)
            break
        r = _lookup(stored, values, np.array([RANK[int(c)] for c in classes], dtype=np.int8))
        win = (stored != 0) & (r > rank)
        out[win] = cls_vol[win]
        rank[win] = r[win]
    if unmapped:
        shown = ", ".join(f"{v} ({n!r})" if n else str(v) for v, n in sorted(unmapped.items())[:8])
        if label_map is None:
            raise InputError(path, f"label values must be 0, 1, 2 or 255 (slice not annotated); found {shown}; "
                                   "map them with cohort.label_map")
        raise InputError(path, f"label values not mapped by cohort.label_map: {shown}")
    return out


def _lookup(stored: np.ndarray, values: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[i]`` wherever ``stored == values[i]`` (``values`` sorted, holding every stored value)."""
    lo, hi = int(values[0]), int(values[-1])
    if hi - lo < 1 << 16:
        lut = np.zeros(hi - lo + 1, dtype=table.dtype)
        lut[values.astype(np.int64) - lo] = table
        return lut[stored] if lo == 0 and stored.dtype.kind == "u" else lut[stored.astype(np.int64) - lo]
    return table[np.searchsorted(values, stored)]


def _class_of(value: int, name: str | None, label_map: LabelMap | None) -> int | None:
    if label_map is None:
        return value if value in CLASSES else None
    if name is not None and name.casefold() in label_map.by_name:
        return label_map.by_name[name.casefold()]
    if value in label_map.by_value:
        return label_map.by_value[value]
    if value == 0:
        return 0
    return None


def load_label_file(path: str | Path, pre_shape, pre_affine, label_map: LabelMap | Mapping | None = None,
                    *, tol_mm: float = 0.05) -> tuple[np.ndarray, str]:
    """The classes (uint8, pre-contrast grid) of the label file at ``path`` and its ``labels_source``."""
    path = Path(path)
    if label_map is not None and not isinstance(label_map, LabelMap):
        label_map = parse_label_map(label_map)
    vol = read_label_file(path)
    data = place_on_grid(vol, path, pre_shape, pre_affine, tol_mm)
    return to_classes(data, vol.segments, label_map, path), vol.source


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
