"""Read a stack's pixel data into one preallocated volume and apply the modality LUT.

Native little-endian files (explicit or implicit VR) are read straight from the file into the volume's
memory, once, at the Pixel Data offset found while parsing the header. Everything else (JPEG baseline /
extended / lossless, JPEG-LS, JPEG 2000, RLE, deflated, big endian) is decoded by pydicom's pixel handlers
(pylibjpeg and its plugins). The volume is Fortran-ordered ``(columns, rows, slices)``, so ``data[:, :, k]``
is frame ``k`` transposed and nibabel writes it without another copy.

Values: MONOCHROME1 stored values are inverted within the stored bit range (so higher is brighter, as for
MONOCHROME2); then RescaleSlope/RescaleIntercept are applied per frame. The result keeps an integer type when
every slope is 1 and every intercept an integer and the range fits (the stored type first, then int16,
uint16, int32); otherwise it is float32. Philips images with a private scale slope (2005,100E) get the
floating-point scaling instead, as dcm2niix gives them, always as float32 (see :mod:`.philips`).

When every frame of a stack is native little endian and the output type does not depend on the values
(slope 1 and intercept 0 everywhere, or a float32 result), :func:`native_plan` describes the conversion and
:func:`iter_native_slices` yields the converted volume one slice at a time, so a writer never needs the
whole volume in memory; :func:`native_segments` gives the raw byte ranges when the values are copied as they
are stored. The results are identical to :func:`read_stack`'s.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from ..errors import InputError
from .philips import FLOATING_POINT, modality_lut
from .series import Stack
from .slices import SliceRef


def _raw_dtype(header) -> np.dtype:
    bits = int(header.BitsAllocated)
    signed = int(header.get("PixelRepresentation", 0) or 0) == 1
    return np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")


def read_stack(stack: Stack) -> tuple[np.ndarray, dict[str, Any]]:
    """The stack's voxel values (modality LUT applied) as ``data[col, row, slice]`` and what was done."""
    header = stack.header
    dtype = _raw_dtype(header)
    raw = np.empty(stack.shape, dtype=dtype, order="F")
    flat = raw.reshape(-1, order="F")
    per = stack.rows * stack.cols
    decoded: dict[Any, np.ndarray] = {}
    for k, s in enumerate(stack.slices):
        if s.pixel_offset is not None and s.pixel_dtype == dtype.str:
            _read_native(s, flat[k * per:(k + 1) * per])
        else:
            frame = _decoded_frame(s, decoded)
            if frame.shape != (stack.rows, stack.cols):
                raise InputError(s.path, f"decoded frame has shape {frame.shape}, header says {stack.rows}x{stack.cols}")
            raw[:, :, k] = frame.T
    bits_stored = int(header.get("BitsStored", header.BitsAllocated) or header.BitsAllocated)
    signed = dtype.kind == "i"
    if bits_stored < dtype.itemsize * 8 and any(s.pixel_offset is not None for s in stack.slices):
        _fix_unused_bits(raw, bits_stored, signed)
    info: dict[str, Any] = {"stored_dtype": dtype.name, "bits_stored": bits_stored}
    photometric = str(header.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    info["photometric"] = photometric
    if photometric == "MONOCHROME1":
        if signed:
            np.subtract(-1, raw, out=raw, casting="unsafe")
        else:
            np.subtract((1 << bits_stored) - 1, raw, out=raw, casting="unsafe")
        info["inverted"] = True
    slopes, inters, philips = modality_lut(stack)
    data = apply_modality_lut(raw, slopes, inters, force_float=philips.get("philips_scaling") == FLOATING_POINT)
    info["rescale_slope"] = _unique_or_list(np.array([s.slope for s in stack.slices]))
    info["rescale_intercept"] = _unique_or_list(np.array([s.intercept for s in stack.slices]))
    info.update(philips)
    info["dtype"] = data.dtype.name
    return data, info


def _unique_or_list(v: np.ndarray):
    u = np.unique(v)
    return float(u[0]) if len(u) == 1 else [float(x) for x in v]


def _read_native(s: SliceRef, out: np.ndarray) -> None:
    offset = s.pixel_offset + (s.frame or 0) * s.frame_bytes  # type: ignore[operator]
    with open(s.path, "rb") as fh:
        fh.seek(offset)
        got = fh.readinto(memoryview(out).cast("B"))
    if got != s.frame_bytes:
        raise InputError(s.path, f"truncated pixel data: read {got} of {s.frame_bytes} bytes")


def _decoded_frame(s: SliceRef, cache: dict[Any, np.ndarray]) -> np.ndarray:
    key = s.path
    if key not in cache:
        cache.clear()  # frames of one file are consecutive in practice; keep one decoded file in memory
        ds = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(s.path, force=True)
                if "PixelData" not in ds:
                    raise InputError(s.path, "pixel data missing or unreadable")
                arr = ds.pixel_array
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - decoder errors become one clear reason
            ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            name = getattr(ts, "name", str(ts) if ts else "unknown transfer syntax")
            text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise InputError(s.path, f"pixel data cannot be decoded ({name}): {text}") from None
        nframes = int(ds.get("NumberOfFrames", 1) or 1)
        if nframes == 1 and arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise InputError(s.path, f"unexpected decoded pixel array shape {arr.shape}")
        cache[key] = arr
    arr = cache[key]
    f = s.frame or 0
    if f >= arr.shape[0]:
        raise InputError(s.path, f"frame {f + 1} missing from the decoded pixel data ({arr.shape[0]} frames)")
    return arr[f]


def _fix_unused_bits(raw: np.ndarray, bits_stored: int, signed: bool) -> None:
    """Clear bits above BitsStored (unsigned) or sign-extend from BitsStored (signed), in place."""
    width = raw.dtype.itemsize * 8
    if signed:
        shift = width - bits_stored
        np.left_shift(raw, shift, out=raw)
        np.right_shift(raw, shift, out=raw)
    else:
        np.bitwise_and(raw, (1 << bits_stored) - 1, out=raw)


def apply_modality_lut(raw: np.ndarray, slopes: np.ndarray, inters: np.ndarray, *,
                       force_float: bool = False) -> np.ndarray:
    """``raw * slope + intercept`` per slice (last axis), losslessly typed (see the module docstring);
    float32 whatever the values when ``force_float``."""
    if not force_float and np.all(slopes == 1.0) and np.all(inters == np.round(inters)):
        if raw.size == 0:
            return raw
        lo, hi = int(raw.min()), int(raw.max())
        lo_out, hi_out = lo + int(inters.min()), hi + int(inters.max())
        candidates = [raw.dtype, np.dtype(np.int16), np.dtype(np.uint16), np.dtype(np.int32)]
        for dt in candidates:
            info = np.iinfo(dt)
            if info.min <= lo_out and hi_out <= info.max and info.min <= lo and hi <= info.max:
                if np.all(inters == 0):
                    return raw if dt == raw.dtype else raw.astype(dt, order="F")
                out = raw.astype(dt, order="F", copy=dt != raw.dtype)
                if np.all(inters == inters[0]):
                    out += dt.type(int(inters[0]))
                else:
                    for k, b in enumerate(inters):
                        out[:, :, k] += dt.type(int(b))
                return out
    out = np.empty(raw.shape, dtype=np.float32, order="F")
    for k in range(raw.shape[2]):
        np.multiply(raw[:, :, k], np.float32(slopes[k]), out=out[:, :, k], casting="unsafe")
        out[:, :, k] += np.float32(inters[k])
    return out


@dataclass
class NativePlan:
    """How to produce a stack's volume slice by slice from native pixel data (see :func:`native_plan`)."""

    raw_dtype: np.dtype
    out_dtype: np.dtype
    bits_stored: int
    fix_bits: bool  # clear / sign-extend the bits above BitsStored
    invert: bool  # MONOCHROME1
    scale: bool  # float32 modality LUT
    slopes: np.ndarray
    inters: np.ndarray
    info: dict[str, Any]

    @property
    def passthrough(self) -> bool:
        """True when the output bytes are the stored bytes."""
        return not (self.fix_bits or self.invert or self.scale)


def native_plan(stack: Stack) -> NativePlan | None:
    """The slice-by-slice plan for ``stack``, or None when :func:`read_stack` is needed (encapsulated or
    mixed pixel data, or integer intercepts whose output type depends on the value range)."""
    header = stack.header
    dtype = _raw_dtype(header)
    if any(s.pixel_offset is None or s.pixel_dtype != dtype.str for s in stack.slices):
        return None
    slopes, inters, philips = modality_lut(stack)
    integer = philips.get("philips_scaling") != FLOATING_POINT and bool(
        np.all(slopes == 1.0) and np.all(inters == np.round(inters)))
    if integer and not np.all(inters == 0):
        return None
    bits_stored = int(header.get("BitsStored", header.BitsAllocated) or header.BitsAllocated)
    photometric = str(header.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    out_dtype = dtype if integer else np.dtype(np.float32)
    info: dict[str, Any] = {"stored_dtype": dtype.name, "bits_stored": bits_stored, "photometric": photometric}
    if photometric == "MONOCHROME1":
        info["inverted"] = True
    info["rescale_slope"] = _unique_or_list(np.array([s.slope for s in stack.slices]))
    info["rescale_intercept"] = _unique_or_list(np.array([s.intercept for s in stack.slices]))
    info.update(philips)
    info["dtype"] = out_dtype.name
    return NativePlan(dtype, out_dtype, bits_stored, bits_stored < dtype.itemsize * 8,
                      photometric == "MONOCHROME1", not integer, slopes, inters, info)


def native_segments(stack: Stack) -> list[tuple[Path, int, int]]:
    """``(file, offset, length)`` of each frame's stored bytes, in slice order."""
    return [(s.path, s.pixel_offset + (s.frame or 0) * s.frame_bytes, s.frame_bytes)  # type: ignore[operator]
            for s in stack.slices]


def iter_native_slices(stack: Stack, plan: NativePlan) -> Iterator[np.ndarray]:
    """The converted slices of ``stack`` in order (each ``data[:, :, k]`` in Fortran order, as a flat array).
    The same buffer is reused: consume each slice before asking for the next."""
    per = stack.rows * stack.cols
    raw = np.empty(per, dtype=plan.raw_dtype)
    out = np.empty(per, dtype=np.float32) if plan.scale else raw
    signed = plan.raw_dtype.kind == "i"
    for k, s in enumerate(stack.slices):
        _read_native(s, raw)
        if plan.fix_bits:
            _fix_unused_bits(raw, plan.bits_stored, signed)
        if plan.invert:
            if signed:
                np.subtract(-1, raw, out=raw, casting="unsafe")
            else:
                np.subtract((1 << plan.bits_stored) - 1, raw, out=raw, casting="unsafe")
        if plan.scale:
            np.multiply(raw, np.float32(plan.slopes[k]), out=out, casting="unsafe")
            out += np.float32(plan.inters[k])
        yield out
