"""A minimal reader for the headers of plain, uncompressed little-endian DICOM images.

Parsing a header with pydicom costs about a millisecond per file, which dominates the conversion of a folder
of thousands of single-frame MR slices. This reader walks the raw elements of the common case only: a file
with the 128-byte preamble and ``DICM``, an explicit-VR file meta group, Explicit or Implicit VR Little Endian
data, and a Pixel Data element of defined length. It skips sequences (defined or undefined length, nested)
without decoding them and keeps the values of a fixed set of top-level elements, decoded the way pydicom
decodes them (``iso8859``, trailing spaces and NULs removed, multiple values split on ``\\``).

Anything it does not fully understand makes :func:`read_fast` return ``None``; the caller then uses pydicom,
which also produces the error messages for bad files. It never raises for malformed input.

:func:`fast_slice_ref` makes the :class:`~.slices.SliceRef` of such a file from these values: a single-frame
image with full geometry whose values read exactly as pydicom would read them, else ``None`` (the file is then
read by :mod:`.headers`).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .headers import (MEDIA_STORAGE_DIRECTORY, NON_IMAGE_PREFIXES, SEG_SOP_CLASS, dicom_datetime, dicom_dt,
                      patient_text, require_geometry)
from .philips import fl_value, is_philips
from .slices import SliceRef, pixel_dtype

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
PIXEL_DATA = 0x7FE00010
UNDEFINED = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_END = 0xFFFEE00D
SEQ_END = 0xFFFEE0DD

_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"})
_VRS = _LONG_VRS | frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"PN", b"SH", b"SL",
     b"SS", b"ST", b"SV", b"TM", b"UI", b"UL", b"US", b"UV"}
)

# tag -> (keyword, VR) of the top-level elements kept
WANTED: dict[int, tuple[str, str]] = {
    0x00020002: ("MediaStorageSOPClassUID", "UI"),
    0x00020010: ("TransferSyntaxUID", "UI"),
    0x00080016: ("SOPClassUID", "UI"),
    0x00080018: ("SOPInstanceUID", "UI"),
    0x00080020: ("StudyDate", "DA"),
    0x00080021: ("SeriesDate", "DA"),
    0x00080022: ("AcquisitionDate", "DA"),
    0x00080023: ("ContentDate", "DA"),
    0x0008002A: ("AcquisitionDateTime", "DT"),
    0x00080030: ("StudyTime", "TM"),
    0x00080031: ("SeriesTime", "TM"),
    0x00080032: ("AcquisitionTime", "TM"),
    0x00080033: ("ContentTime", "TM"),
    0x00080070: ("Manufacturer", "LO"),
    0x00100020: ("PatientID", "LO"),  # compared between files of one patient folder, never written
    0x00180050: ("SliceThickness", "DS"),
    0x00180086: ("EchoNumbers", "IS"),
    0x00180088: ("SpacingBetweenSlices", "DS"),
    0x0020000D: ("StudyInstanceUID", "UI"),
    0x0020000E: ("SeriesInstanceUID", "UI"),
    0x00200011: ("SeriesNumber", "IS"),
    0x00200032: ("ImagePositionPatient", "DS"),
    0x00200037: ("ImageOrientationPatient", "DS"),
    0x00200100: ("TemporalPositionIdentifier", "IS"),
    0x00280002: ("SamplesPerPixel", "US"),
    0x00280004: ("PhotometricInterpretation", "CS"),
    0x00280008: ("NumberOfFrames", "IS"),
    0x00280010: ("Rows", "US"),
    0x00280011: ("Columns", "US"),
    0x00280030: ("PixelSpacing", "DS"),
    0x00280100: ("BitsAllocated", "US"),
    0x00280101: ("BitsStored", "US"),
    0x00280103: ("PixelRepresentation", "US"),
    0x00281052: ("RescaleIntercept", "DS"),
    0x00281053: ("RescaleSlope", "DS"),
    # Philips private scale intercept / slope (floating-point scaling, see breastseg.dicom.philips)
    0x2005100D: ("MRScaleIntercept", "FL"),
    0x2005100E: ("MRScaleSlope", "FL"),
}
# top-level elements whose presence means "not the simple case" (multi-frame, DICOMDIR)
_REFUSED = frozenset({0x00041220, 0x52009229, 0x52009230})

_HH = struct.Struct("<HH")
_EXPL = struct.Struct("<HH2sH")
_IMPL = struct.Struct("<HHI")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_F32 = struct.Struct("<f")

FIRST_READ = 16384
MAX_HEADER = 8 << 20


class _NeedMore(Exception):
    pass


class _Unsupported(Exception):
    pass


class FastHeader:
    """The kept values (``str``, ``list[str]`` or ``int``), where the pixels are, and the file size."""

    __slots__ = ("values", "implicit", "pixel_value_offset", "pixel_length", "size")

    def __init__(self, values: dict, implicit: bool, pixel_value_offset: int, pixel_length: int, size: int):
        self.values = values
        self.implicit = implicit
        self.pixel_value_offset = pixel_value_offset
        self.pixel_length = pixel_length
        self.size = size

    def get(self, keyword: str, default=None):
        return self.values.get(keyword, default)


def read_fast(path: str | Path) -> FastHeader | None:
    """The header of ``path`` when it is the simple case described in the module docstring, else None."""
    try:
        with open(path, "rb", buffering=0) as fh:
            buf = fh.read(FIRST_READ)
            if len(buf) < 144 or buf[128:132] != b"DICM":
                return None
            size = os.fstat(fh.fileno()).st_size
            while True:
                try:
                    return _parse(buf, size)
                except _NeedMore:
                    if len(buf) >= size or len(buf) >= MAX_HEADER:
                        return None
                    more = fh.read(min(len(buf), MAX_HEADER - len(buf)))
                    if not more:
                        return None
                    buf += more
    except (OSError, _Unsupported, struct.error, UnicodeDecodeError, ValueError):
        return None


def _parse(buf: bytes, size: int) -> FastHeader:
    n = len(buf)
    values: dict = {}
    # file meta group: always explicit VR little endian
    pos = 132
    while True:
        if pos + 8 > n:
            raise _NeedMore
        group, elem = _HH.unpack_from(buf, pos)
        if group != 0x0002:
            break
        _, _, vr, length = _EXPL.unpack_from(buf, pos)
        hdr = 8
        if vr in _LONG_VRS:
            if pos + 12 > n:
                raise _NeedMore
            length = _U32.unpack_from(buf, pos + 8)[0]
            hdr = 12
        elif vr not in _VRS:
            raise _Unsupported
        if length == UNDEFINED:
            raise _Unsupported
        tag = group << 16 | elem
        if tag in WANTED:
            if pos + hdr + length > n:
                raise _NeedMore
            _keep(values, tag, vr, buf[pos + hdr:pos + hdr + length])
        pos += hdr + length
    ts = values.get("TransferSyntaxUID")
    if pos + 8 > n:
        raise _NeedMore
    if ts == EXPLICIT_LE:
        implicit = False
        if buf[pos + 4:pos + 6] not in _VRS:
            raise _Unsupported
    elif ts == IMPLICIT_LE:
        implicit = True
        vr = buf[pos + 4:pos + 6]
        if len(vr) == 2 and 65 <= vr[0] <= 90 and 65 <= vr[1] <= 90:
            raise _Unsupported  # looks explicit: leave the guessing to pydicom
    else:
        raise _Unsupported
    while True:
        if pos + 8 > n:
            raise _NeedMore
        if implicit:
            group, elem, length = _IMPL.unpack_from(buf, pos)
            vr = b""
            hdr = 8
        else:
            group, elem, vr, length = _EXPL.unpack_from(buf, pos)
            hdr = 8
            if vr in _LONG_VRS:
                if pos + 12 > n:
                    raise _NeedMore
                length = _U32.unpack_from(buf, pos + 8)[0]
                hdr = 12
            elif vr not in _VRS:
                raise _Unsupported
        tag = group << 16 | elem
        if tag == PIXEL_DATA:
            if length == UNDEFINED or (not implicit and vr not in (b"OB", b"OW")):
                raise _Unsupported
            return FastHeader(values, implicit, pos + hdr, length, size)
        if tag > PIXEL_DATA or tag in _REFUSED or group == 0x0002:
            raise _Unsupported
        if length == UNDEFINED:
            if not implicit and vr != b"SQ":
                raise _Unsupported
            pos = _skip_sequence(buf, pos + hdr, implicit)
            continue
        if tag in WANTED:
            if pos + hdr + length > n:
                raise _NeedMore
            _keep(values, tag, vr, buf[pos + hdr:pos + hdr + length])
        pos += hdr + length


def _skip_sequence(buf: bytes, pos: int, implicit: bool) -> int:
    """Position after the sequence delimiter of an undefined-length sequence whose items start at ``pos``."""
    n = len(buf)
    while True:
        if pos + 8 > n:
            raise _NeedMore
        group, elem, length = _IMPL.unpack_from(buf, pos)
        tag = group << 16 | elem
        if tag == SEQ_END:
            return pos + 8
        if tag != ITEM:
            raise _Unsupported
        if length != UNDEFINED:
            pos += 8 + length
            continue
        pos = _skip_item(buf, pos + 8, implicit)


def _skip_item(buf: bytes, pos: int, implicit: bool) -> int:
    """Position after the item delimiter of an undefined-length item whose elements start at ``pos``."""
    n = len(buf)
    while True:
        if pos + 8 > n:
            raise _NeedMore
        group, elem, length = _IMPL.unpack_from(buf, pos)
        tag = group << 16 | elem
        if tag == ITEM_END:
            return pos + 8
        if group == 0xFFFE:
            raise _Unsupported
        hdr = 8
        vr = b""
        if not implicit:
            vr = buf[pos + 4:pos + 6]
            if vr in _LONG_VRS:
                if pos + 12 > n:
                    raise _NeedMore
                length = _U32.unpack_from(buf, pos + 8)[0]
                hdr = 12
            elif vr in _VRS:
                length = _U16.unpack_from(buf, pos + 6)[0]
            else:
                raise _Unsupported
        if length == UNDEFINED:
            if not implicit and vr != b"SQ":
                raise _Unsupported
            pos = _skip_sequence(buf, pos + hdr, implicit)
            continue
        pos += hdr + length


def _keep(values: dict, tag: int, vr: bytes, raw: bytes) -> None:
    keyword, want = WANTED[tag]
    if vr and vr.decode("ascii") != want:
        raise _Unsupported  # unusual encoding (UN, a different VR): pydicom decides what it means
    if want == "US":
        if len(raw) != 2:
            raise _Unsupported
        values[keyword] = raw[0] | raw[1] << 8
        return
    if want == "FL":
        if len(raw) != 4:
            raise _Unsupported
        values[keyword] = _F32.unpack(raw)[0]
        return
    text = raw.decode("iso8859").rstrip(" \x00")
    values[keyword] = text.split("\\") if "\\" in text else text


# ------------------------------------------------------------------------------ slice references
_INT_CHARS = frozenset("+-0123456789 ")


def _fast_int(value: Any) -> int | None:
    """An IS value read by :func:`read_fast`; raises ValueError for what pydicom might read otherwise."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _INT_CHARS.issuperset(value):
        raise ValueError(value)
    return int(value)


def _fast_float(value: Any) -> float | None:
    """A single DS value read by :func:`read_fast` (ValueError when it is not one plain number)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(value)
    v = float(value)
    if not np.isfinite(v) or "_" in value:
        raise ValueError(value)
    return v


def _fast_floats(value: Any, n: int) -> tuple[float, ...] | None:
    if not isinstance(value, list) or len(value) != n:
        raise ValueError(value)
    vals = tuple(float(v) for v in value)
    if not all(np.isfinite(vals)) or any("_" in v for v in value):
        raise ValueError(value)
    return vals


def _fast_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(value)


def fast_slice_ref(path: Path) -> SliceRef | None:
    """The SliceRef of a plain single-frame native little-endian image file, read without pydicom; None for
    every other file (and for any file that is not perfectly well formed), which the pydicom path handles."""
    h = read_fast(path)
    if h is None:
        return None
    try:
        g = h.values.get
        sop_class = _fast_text(g("SOPClassUID")) or _fast_text(g("MediaStorageSOPClassUID")) or ""
        if sop_class in (SEG_SOP_CLASS, MEDIA_STORAGE_DIRECTORY) or sop_class.startswith(NON_IMAGE_PREFIXES):
            return None
        rows, cols, bits = g("Rows"), g("Columns"), g("BitsAllocated")
        if not rows or not cols or bits not in (8, 16, 32) or g("SamplesPerPixel", 1) != 1:
            return None
        if _fast_int(g("NumberOfFrames")) not in (None, 1):
            return None
        frame_bytes = rows * cols * bits // 8
        if h.pixel_length < frame_bytes or h.pixel_value_offset + frame_bytes > h.size:
            return None  # truncated: reported by the pydicom path
        study_uid, series_uid = _fast_text(g("StudyInstanceUID")), _fast_text(g("SeriesInstanceUID"))
        if not study_uid or not series_uid:
            return None
        iop = _fast_floats(g("ImageOrientationPatient"), 6)
        ipp = _fast_floats(g("ImagePositionPatient"), 3)
        ps = _fast_floats(g("PixelSpacing"), 2)
        require_geometry(path, iop, ipp, ps, "")
        acq_date = _fast_text(g("AcquisitionDate")) or _fast_text(g("SeriesDate"))
        acq = dicom_datetime(acq_date, _fast_text(g("AcquisitionTime")))
        if acq is None and g("AcquisitionDateTime") is not None:
            acq = dicom_dt(_fast_text(g("AcquisitionDateTime")))
        slope = _fast_float(g("RescaleSlope"))
        echo = _fast_int(g("EchoNumbers"))
        philips = is_philips(_fast_text(g("Manufacturer")))
        ss = fl_value(g("MRScaleSlope")) if philips else None
        ss = None if ss == 0.0 else ss
        return SliceRef(
            path=path,
            frame=None,
            study_uid=study_uid,
            series_uid=series_uid,
            series_number=_fast_int(g("SeriesNumber")),
            sop_uid=_fast_text(g("SOPInstanceUID")) or "",
            rows=rows,
            cols=cols,
            iop=iop, ipp=ipp, pixel_spacing=ps,  # type: ignore[arg-type]
            slope=1.0 if slope is None or slope == 0.0 else slope,
            intercept=_fast_float(g("RescaleIntercept")) or 0.0,
            temporal_position=_fast_int(g("TemporalPositionIdentifier")),
            echo=None if echo is None else float(echo),
            acq_time=acq,
            content_time=dicom_datetime(_fast_text(g("ContentDate")), _fast_text(g("ContentTime"))),
            series_time=dicom_datetime(_fast_text(g("SeriesDate")), _fast_text(g("SeriesTime"))),
            study_time=dicom_datetime(_fast_text(g("StudyDate")), _fast_text(g("StudyTime"))),
            slice_thickness=_fast_float(g("SliceThickness")),
            spacing_between=_fast_float(g("SpacingBetweenSlices")),
            pixel_offset=h.pixel_value_offset,
            frame_bytes=frame_bytes,
            pixel_dtype=pixel_dtype(bits, g("PixelRepresentation", 0) == 1),
            patient_key=patient_text(g("PatientID")),
            philips=philips,
            scale_slope=ss,
            scale_intercept=fl_value(g("MRScaleIntercept")) if ss is not None else None,
        )
    except (ValueError, TypeError, InputError):
        return None
