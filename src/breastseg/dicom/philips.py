"""Philips floating-point ("precise") intensity scaling, as dcm2niix applies it by default (``-p y``).

Philips MR stores three intensity transforms. Besides the public RescaleSlope/RescaleIntercept (RS, RI: the
*display* value ``DV = PV * RS + RI`` of a stored value PV) each image carries a private scale slope
SS (2005,100E, FL, private creator "Philips MR Imaging DD 001" at (2005,0010)) and a scale intercept
(2005,100D). The *floating-point* value, the one comparable between series whose RS differ (e.g. DCE phases
rescaled each to its own range), is::

    FP = DV / (RS * SS) = (PV * RS + RI) / (RS * SS)

Source: dcm2niix, ``console/nii_dicom_batch.cpp``, ``PhilipsPreciseVal()`` returns
``(lPV * lRS + lRI) / (lRS * lSS)`` and ``PhilipsPrecise()`` turns it into the NIfTI ``scl_inter = FP(0)`` and
``scl_slope = FP(1) - FP(0)`` (float32), only when the manufacturer is Philips and SS is non-zero; dcm2niix's
``Philips/README.md`` ("Image Scaling") gives the same formulas (``DV = SV * RS + RI``, ``FP = DV / (RS * SS)``).
The scale intercept (2005,100D) takes no part in it; it is recorded only.

Like dcm2niix the element is read by its tag wherever Philips puts it: at the top level of a classic file and,
in an Enhanced (multi-frame) file, in each frame's functional groups (the Pixel Value Transformation item, the
private per-frame sequence (2005,140F), the frame item itself), then the shared groups, then the top level.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from .series import Stack

PHILIPS_CREATOR = "Philips MR Imaging DD 001"
SCALE_SLOPE = 0x2005100E  # (2005,100E) FL "MR Scale Slope"
SCALE_INTERCEPT = 0x2005100D  # (2005,100D) FL "MR Scale Intercept"
PRIVATE_PER_FRAME = 0x2005140F  # (2005,140F) SQ Philips private per-frame sequence
PIXEL_VALUE_TRANSFORMATION = 0x00289145  # (0028,9145) SQ, holds RescaleSlope/Intercept in functional groups
FLOATING_POINT = "floating-point"
DISPLAY = "display"


def is_philips(manufacturer: Any) -> bool:
    """True for a Manufacturer (0008,0070) naming Philips."""
    return "philips" in str(manufacturer or "").lower()


def fl_value(value: Any) -> float | None:
    """A single finite FL value as pydicom or the fast reader gives it (float, raw 4 bytes when the VR was
    unknown, text), else None."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        if len(value) != 4:
            return None
        value = struct.unpack("<f", bytes(value))[0]
    elif isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        if len(value) != 1:
            return None
        value = value[0]
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _element(ds: Dataset | None, tag: int) -> float | None:
    if ds is None or tag not in ds:
        return None
    try:
        return fl_value(ds[tag].value)
    except Exception:  # noqa: BLE001 - an unreadable private element counts as absent
        return None


def _items(ds: Dataset | None, tag: int) -> list[Dataset]:
    if ds is None or tag not in ds:
        return []
    try:
        value = ds[tag].value
    except Exception:  # noqa: BLE001
        return []
    return [item for item in value if hasattr(item, "get")] if type(value).__name__ == "Sequence" else []


def _candidates(group: Dataset | None) -> list[Dataset]:
    """Where a frame's scale factors may sit inside one functional-group item, most specific first."""
    if group is None:
        return []
    out = [*_items(group, PIXEL_VALUE_TRANSFORMATION), *_items(group, PRIVATE_PER_FRAME)]
    for item in _items(group, PRIVATE_PER_FRAME):
        out.extend(_items(item, PIXEL_VALUE_TRANSFORMATION))
    return out + [group]


def scale_factors(ds: Dataset | None, *groups: Dataset | None) -> tuple[float | None, float | None]:
    """(SS, scale intercept) of a frame: from its functional-group items ``groups`` (the frame's, then the
    shared one) first, then from the file ``ds``; SS must be non-zero, as dcm2niix requires."""
    for place in [c for g in groups for c in _candidates(g)] + [ds]:
        ss = _element(place, SCALE_SLOPE)
        if ss is not None and ss != 0.0:
            return ss, _element(place, SCALE_INTERCEPT)
    return None, None


def precise_lut(rs: float, ri: float, ss: float) -> tuple[float, float]:
    """(slope, intercept) giving ``FP = PV * slope + intercept``, computed as dcm2niix computes its
    ``scl_slope``/``scl_inter`` (float32 ``FP(1) - FP(0)`` and ``FP(0)``; the display scaling when these
    are equal, as there)."""
    f = np.float32
    rs32, ri32, ss32 = f(rs), f(ri), f(ss)
    with np.errstate(all="ignore"):
        l0 = f(f(f(0) * rs32 + ri32) / f(rs32 * ss32))
        l1 = f(f(f(1) * rs32 + ri32) / f(rs32 * ss32))
    if l0 == l1:
        return float(rs), float(ri)
    return float(f(l1 - l0)), float(l0)


def _unique_or_list(values: Sequence[float | None]) -> Any:
    u = list(dict.fromkeys(values))
    return u[0] if len(u) == 1 else list(values)


def stack_scaling(stack: Stack) -> str | None:
    """``"floating-point"`` when every frame of a Philips stack has SS, ``"display"`` when none has it, None
    for other manufacturers; an InputError when only some frames have it."""
    if not any(s.philips for s in stack.slices):
        return None
    have = [s for s in stack.slices if s.philips and s.scale_slope is not None]
    if not have:
        return DISPLAY
    if len(have) != len(stack.slices):
        lacking = next(s for s in stack.slices if not (s.philips and s.scale_slope is not None))
        raise InputError(
            lacking.path, f"{stack.label()}: Philips scale slope (2005,100E) present on {len(have)} of "
            f"{len(stack.slices)} frames; the floating-point scaling cannot be applied to the whole volume"
        )
    return FLOATING_POINT


def modality_lut(stack: Stack) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Per-slice (slopes, intercepts) to apply to the stored values and what the sidecar records: the
    display scaling (RescaleSlope/Intercept), or for Philips with SS the floating-point scaling."""
    rs = np.array([s.slope for s in stack.slices], dtype=np.float64)
    ri = np.array([s.intercept for s in stack.slices], dtype=np.float64)
    mode = stack_scaling(stack)
    info: dict[str, Any] = {}
    if mode is not None:
        info["philips_scaling"] = mode
    if mode != FLOATING_POINT:
        return rs, ri, info
    pairs = [precise_lut(s.slope, s.intercept, s.scale_slope) for s in stack.slices]  # type: ignore[arg-type]
    info["philips_scale_slope"] = _unique_or_list([s.scale_slope for s in stack.slices])
    info["philips_scale_intercept"] = _unique_or_list([s.scale_intercept for s in stack.slices])
    info["philips_formula"] = "(PV * RescaleSlope + RescaleIntercept) / (RescaleSlope * ScaleSlope)"
    return (np.array([p[0] for p in pairs], dtype=np.float64), np.array([p[1] for p in pairs], dtype=np.float64),
            info)


def study_scaling(phases: Sequence[Stack]) -> str | None:
    """The scaling shared by a study's DCE phases; an InputError when some phases have the floating-point
    scaling and others cannot have it (the subtraction would mix two intensity scales)."""
    from .series import series_location

    modes = [stack_scaling(st) for st in phases]
    if FLOATING_POINT in modes and any(m != FLOATING_POINT for m in modes):
        i = next(i for i, m in enumerate(modes) if m != FLOATING_POINT)
        n = sum(m == FLOATING_POINT for m in modes)
        raise InputError(
            series_location(phases[i].slices), f"{phases[i].label()}: no Philips scale slope (2005,100E) while "
            f"{n} of {len(phases)} DCE phases have one; their floating-point and display scales cannot be mixed"
        )
    return modes[0] if modes else None
