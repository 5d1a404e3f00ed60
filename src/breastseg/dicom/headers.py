"""DICOM headers read by pydicom, made into slice references.

:func:`read_header` parses a file's header (no pixel data) and notes where its Pixel Data element starts;
:func:`slice_refs` checks what an image needs (matrix, pixel data of the expected length, patient geometry) and
returns one :class:`~.slices.SliceRef` per frame, a classic file giving one, an Enhanced (multi-frame) file one
per frame with geometry taken from its per-frame or shared functional groups. Anything missing is an
:class:`~breastseg.errors.InputError` naming the file. Also here: the DICOM date/time conversions and the SOP
classes that are not images.
"""
from __future__ import annotations

import datetime as _dt
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from ..errors import InputError
from .philips import is_philips, scale_factors
from .slices import SliceRef, pixel_dtype

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
NON_IMAGE_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.88",  # structured reports
    "1.2.840.10008.5.1.4.1.1.11",  # presentation states
    "1.2.840.10008.5.1.4.1.1.481",  # RT objects
    "1.2.840.10008.5.1.4.1.1.104",  # encapsulated PDF/CDA
    "1.2.840.10008.5.1.4.1.1.66",  # raw data, spatial registration, SEG (SEG handled separately)
)


def dicom_time(value: Any) -> float | None:
    """DICOM TM (HHMMSS.ffffff, also HH:MM:SS) to seconds since midnight; None when absent or malformed."""
    if value is None:
        return None
    s = str(value).strip().replace(":", "")
    if not s:
        return None
    try:
        hh = int(s[0:2])
        mm = int(s[2:4]) if len(s) >= 4 else 0
        ss = float(s[4:]) if len(s) > 4 else 0.0
    except ValueError:
        return None
    return hh * 3600 + mm * 60 + ss


def dicom_datetime(date: Any, time: Any) -> float | None:
    """Seconds since the epoch for a DA + TM pair (or seconds since midnight when the date is missing)."""
    t = dicom_time(time)
    if t is None:
        return None
    d = str(date).strip() if date is not None else ""
    if len(d) >= 8 and d[:8].isdigit():
        try:
            day = _dt.date(int(d[:4]), int(d[4:6]), int(d[6:8]))
        except ValueError:
            return t
        return (day - _dt.date(1970, 1, 1)).days * 86400.0 + t
    return t


def dicom_dt(value: Any) -> float | None:
    """A DT (YYYYMMDDHHMMSS.ffffff) value to seconds since the epoch."""
    if value is None:
        return None
    s = str(value).strip()
    if len(s) < 8:
        return None
    for sign in ("+", "-"):  # drop a UTC offset suffix
        idx = s.find(sign, 8)
        if idx > 0:
            s = s[:idx]
    return dicom_datetime(s[:8], s[8:] or "000000")


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        vals = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(vals) != n or not all(np.isfinite(vals)):
        return None
    return vals


def _num(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _slope(value: Any) -> float:
    v = _num(value)
    return 1.0 if v is None or v == 0.0 else v


def _int(value: Any) -> int | None:
    v = _num(value)
    return None if v is None else int(v)


def _first(seq_owner: Dataset | None, seq_kw: str) -> Dataset | None:
    if seq_owner is None:
        return None
    seq = seq_owner.get(seq_kw)
    if seq is None or len(seq) == 0:
        return None
    return seq[0]


def _functional(frame_item: Dataset | None, shared: Dataset | None, seq_kw: str) -> Dataset | None:
    """A functional group macro for one frame: the per-frame item wins over the shared one."""
    return _first(frame_item, seq_kw) or _first(shared, seq_kw)


def patient_text(value: Any) -> str:
    return str(value or "").strip(" \x00")


@dataclass
class HeaderInfo:
    magic: bool  # 128-byte preamble + "DICM"
    size: int  # file size in bytes
    pixel_tag_offset: int | None  # where the Pixel Data element starts (native little endian only)
    pixel_head: bytes  # the first 12 bytes of that element


def read_header(path: Path) -> tuple[Dataset, HeaderInfo]:
    """Parse the header (no pixel data), opening the file once. For native little-endian files the
    position of the Pixel Data element is recorded so pixels can later be read straight into a volume."""
    with open(path, "rb") as fh, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        head = fh.read(132)
        size = os.fstat(fh.fileno()).st_size
        fh.seek(0)
        ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
        pos = fh.tell()
        tag = fh.read(12)
    magic = len(head) == 132 and head[128:132] == b"DICM"
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    offset = None
    if tag[:4] == b"\xe0\x7f\x10\x00":
        ds._breastseg_has_pixels = True  # type: ignore[attr-defined]
        if ts in NATIVE_LE or (not ts and getattr(ds, "is_little_endian", True)):
            offset = pos
    elif ts == "1.2.840.10008.1.2.1.99":
        # deflated: the parser read an inflated copy, so file positions say nothing; pixel data is checked
        # when it is decoded
        ds._breastseg_has_pixels = "Rows" in ds
    else:
        ds._breastseg_has_pixels = tag[:2] == b"\x7f\xe0" or tag[:4] in (b"\xe0\x7f\x08\x00", b"\xe0\x7f\x09\x00")
    return ds, HeaderInfo(magic, size, offset, tag)


def _pixel_element_length(head: bytes, implicit: bool) -> tuple[int, int] | None:
    """(value length, header size) of the Pixel Data element whose first 12 bytes are ``head``; None for
    undefined length (encapsulated)."""
    if len(head) < 8:
        return (0, 8)
    if implicit:
        length = int.from_bytes(head[4:8], "little")
        hdr = 8
    else:
        vr = head[4:6]
        if vr in (b"OB", b"OW", b"UN", b"OD", b"OF", b"OL", b"OV"):
            length = int.from_bytes(head[8:12], "little") if len(head) >= 12 else 0
            hdr = 12
        else:
            length = int.from_bytes(head[6:8], "little")
            hdr = 8
    if length == 0xFFFFFFFF:
        return None
    return length, hdr


def slice_refs(path: Path, ds: Dataset, hinfo: HeaderInfo) -> list[SliceRef]:
    """The frames of one image file, each with full geometry, or an InputError saying what is missing."""
    missing = [k for k in ("Rows", "Columns", "BitsAllocated") if k not in ds]
    if not getattr(ds, "_breastseg_has_pixels", False):
        missing.append("PixelData")
    if missing:
        if len(ds) <= 2:
            raise InputError(path, "empty dataset: the file parses but holds no DICOM elements (truncated or corrupt)")
        raise InputError(path, f"missing required element(s): {', '.join(missing)}")
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if not ts and hinfo.magic:
        raise InputError(path, "file meta information has no TransferSyntaxUID")
    spp = _int(ds.get("SamplesPerPixel", 1)) or 1
    if spp != 1:
        raise InputError(path, f"colour images are not supported (SamplesPerPixel={spp})")
    rows, cols = int(ds.Rows), int(ds.Columns)
    bits = int(ds.BitsAllocated)
    if rows <= 0 or cols <= 0 or bits not in (8, 16, 32):
        raise InputError(path, f"unsupported image matrix {rows}x{cols} with BitsAllocated={bits}")
    nframes = _int(ds.get("NumberOfFrames", 1)) or 1
    frame_bytes = rows * cols * bits // 8
    offset = hinfo.pixel_tag_offset
    if offset is not None:
        info = _pixel_element_length(hinfo.pixel_head, ts == "1.2.840.10008.1.2")
        if info is None:
            offset = None
        else:
            length, hdr = info
            size = hinfo.size
            if length < frame_bytes * nframes or offset + hdr + frame_bytes * nframes > size:
                have = max(0, min(length, size - offset - hdr))
                raise InputError(
                    path, f"truncated pixel data: {have} bytes present, {frame_bytes * nframes} expected "
                    f"({nframes} frame(s) of {rows}x{cols}, {bits} bits)"
                )
            offset = offset + hdr
    common = dict(
        path=path,
        study_uid=str(ds.get("StudyInstanceUID", "") or ""),
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        series_number=_int(ds.get("SeriesNumber")),
        sop_uid=str(ds.get("SOPInstanceUID", "") or ""),
        rows=rows,
        cols=cols,
        content_time=dicom_datetime(ds.get("ContentDate"), ds.get("ContentTime")),
        series_time=dicom_datetime(ds.get("SeriesDate"), ds.get("SeriesTime")),
        study_time=dicom_datetime(ds.get("StudyDate"), ds.get("StudyTime")),
        header_ds=ds,
        pixel_offset=offset,
        frame_bytes=frame_bytes,
        pixel_dtype=pixel_dtype(bits, _int(ds.get("PixelRepresentation", 0)) == 1),
        patient_key=patient_text(ds.get("PatientID")),
        philips=is_philips(ds.get("Manufacturer")),
    )
    if not common["study_uid"] or not common["series_uid"]:
        raise InputError(path, "missing StudyInstanceUID or SeriesInstanceUID")
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds or nframes > 1:
        return _enhanced_refs(path, ds, nframes, common)
    iop = _floats(ds.get("ImageOrientationPatient"), 6)
    ipp = _floats(ds.get("ImagePositionPatient"), 3)
    ps = _floats(ds.get("PixelSpacing"), 2)
    require_geometry(path, iop, ipp, ps, "")
    acq = dicom_datetime(ds.get("AcquisitionDate") or ds.get("SeriesDate"), ds.get("AcquisitionTime"))
    if acq is None and "AcquisitionDateTime" in ds:
        acq = dicom_dt(ds.get("AcquisitionDateTime"))
    ss, si = scale_factors(ds) if common["philips"] else (None, None)
    return [
        SliceRef(
            frame=None,
            iop=iop, ipp=ipp, pixel_spacing=ps,  # type: ignore[arg-type]
            slope=_slope(ds.get("RescaleSlope")),
            intercept=_num(ds.get("RescaleIntercept")) or 0.0,
            temporal_position=_int(ds.get("TemporalPositionIdentifier")),
            echo=_num(ds.get("EchoNumbers")) if "EchoNumbers" in ds else None,
            acq_time=acq,
            slice_thickness=_num(ds.get("SliceThickness")),
            spacing_between=_num(ds.get("SpacingBetweenSlices")),
            scale_slope=ss,
            scale_intercept=si,
            **common,
        )
    ]


def require_geometry(path: Path, iop, ipp, ps, where: str) -> None:
    missing = [name for name, v in (("ImageOrientationPatient", iop), ("ImagePositionPatient", ipp), ("PixelSpacing", ps)) if v is None]
    if missing:
        raise InputError(
            path, f"no patient geometry{where}: missing or malformed {', '.join(missing)} "
            "(a volume cannot be placed without it)"
        )
    row, col = np.asarray(iop[:3]), np.asarray(iop[3:])
    if abs(np.linalg.norm(row) - 1) > 1e-2 or abs(np.linalg.norm(col) - 1) > 1e-2 or abs(np.dot(row, col)) > 1e-2:
        raise InputError(path, f"ImageOrientationPatient{where} is not two orthonormal vectors: {list(iop)}")
    if ps[0] <= 0 or ps[1] <= 0:
        raise InputError(path, f"PixelSpacing{where} must be positive: {list(ps)}")


def _enhanced_refs(path: Path, ds: Dataset, nframes: int, common: dict) -> list[SliceRef]:
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = _first(ds, "SharedFunctionalGroupsSequence")
    if per_frame is None or len(per_frame) != nframes:
        raise InputError(
            path, f"multi-frame image without per-frame geometry: PerFrameFunctionalGroupsSequence has "
            f"{0 if per_frame is None else len(per_frame)} item(s) for {nframes} frame(s)"
        )
    file_acq = dicom_dt(ds.get("AcquisitionDateTime"))
    refs = []
    for f, item in enumerate(per_frame):
        where = f" for frame {f + 1}"
        orient = _functional(item, shared, "PlaneOrientationSequence")
        pos = _functional(item, shared, "PlanePositionSequence")
        meas = _functional(item, shared, "PixelMeasuresSequence")
        iop = _floats(orient.get("ImageOrientationPatient") if orient else None, 6)
        ipp = _floats(pos.get("ImagePositionPatient") if pos else None, 3)
        ps = _floats(meas.get("PixelSpacing") if meas else None, 2)
        require_geometry(path, iop, ipp, ps, where)
        trans = _functional(item, shared, "PixelValueTransformationSequence")
        slope = _num(trans.get("RescaleSlope")) if trans else _num(ds.get("RescaleSlope"))
        inter = _num(trans.get("RescaleIntercept")) if trans else _num(ds.get("RescaleIntercept"))
        content = _functional(item, None, "FrameContentSequence")
        temporal = _int(content.get("TemporalPositionIndex")) if content else None
        acq = dicom_dt(content.get("FrameAcquisitionDateTime")) if content else None
        echo_item = _functional(item, shared, "MREchoSequence")
        ss, si = scale_factors(ds, item, shared) if common["philips"] else (None, None)
        refs.append(
            SliceRef(
                frame=f,
                iop=iop, ipp=ipp, pixel_spacing=ps,  # type: ignore[arg-type]
                slope=slope if slope not in (None, 0.0) else 1.0,
                intercept=inter or 0.0,
                temporal_position=temporal,
                echo=_num(echo_item.get("EffectiveEchoTime")) if echo_item else None,
                acq_time=acq if acq is not None else file_acq,
                slice_thickness=_num(meas.get("SliceThickness")) if meas else None,
                spacing_between=_num(meas.get("SpacingBetweenSlices")) if meas else None,
                scale_slope=ss,
                scale_intercept=si,
                **common,
            )
        )
    return refs
