"""Find DICOM files under a folder, whatever their names and nesting, and read their headers.

A file is DICOM when it has the 128-byte preamble followed by ``DICM``; a file without it is accepted only
when it parses with the elements an image needs. Files named like DICOM (``.dcm``, ``.dicom``, ``.ima``) that
are not DICOM, DICOMDIR indexes whose referenced files are missing, empty datasets that parse "successfully",
truncated pixel data and images without geometry are *bad input*: each is reported as one
:class:`~breastseg.errors.InputError` naming the file, or, with ``on_error="skip"``, recorded in a
:class:`Quarantine` while the rest converts. Other non-DICOM files (notes, NIfTI labels, PNGs) are ignored.

Plain single-frame native little-endian images (the bulk of MR series) are read by
:mod:`.fastheader` without pydicom, which parses them only when their full header is needed (one file per
volume, for the sidecar); every other file, and any file the fast reader does not fully understand, is parsed
by pydicom, which also words the errors.

Each image frame becomes one :class:`SliceRef`: a classic file gives one, an Enhanced (multi-frame) file one
per frame, with geometry taken from its per-frame or shared functional groups.
"""
from __future__ import annotations

import datetime as _dt
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from ..errors import InputError
from .fastheader import read_fast
from .philips import fl_value, is_philips, scale_factors

DICOM_SUFFIXES = {".dcm", ".dicom", ".dic", ".ima"}
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
_NON_IMAGE_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.88",  # structured reports
    "1.2.840.10008.5.1.4.1.1.11",  # presentation states
    "1.2.840.10008.5.1.4.1.1.481",  # RT objects
    "1.2.840.10008.5.1.4.1.1.104",  # encapsulated PDF/CDA
    "1.2.840.10008.5.1.4.1.1.66",  # raw data, spatial registration, SEG (SEG handled separately)
)


class Quarantine:
    """What was skipped and why (``on_error="skip"``), or the switch that raises at once (``"fail"``)."""

    def __init__(self, on_error: str = "fail", root: str | Path | None = None):
        if on_error not in ("fail", "skip"):
            raise ValueError(f"on_error must be 'fail' or 'skip', not {on_error!r}")
        self.on_error = on_error
        self.root = Path(root) if root is not None else None
        self.entries: list[dict[str, str]] = []

    def report(self, path: str | Path | None, reason: str, *, kind: str = "file") -> None:
        if self.on_error == "fail":
            raise InputError(path, reason)
        self.entries.append({"kind": kind, "path": self.rel(path), "reason": reason})

    def rel(self, path: str | Path | None) -> str:
        """A path relative to the input root: file names below it are the user's own, never DICOM values."""
        if path is None:
            return ""
        p = Path(path)
        if self.root is not None:
            try:
                return p.relative_to(self.root).as_posix()
            except ValueError:
                pass
        return p.as_posix()


@dataclass
class SliceRef:
    """One image frame: where its pixels are and the geometry/timing needed to stack it."""

    path: Path
    frame: int | None  # frame index in a multi-frame file, None for a classic single-frame file
    study_uid: str
    series_uid: str
    series_number: int | None
    sop_uid: str
    rows: int
    cols: int
    iop: tuple[float, ...]
    ipp: tuple[float, ...]
    pixel_spacing: tuple[float, float]
    slope: float
    intercept: float
    temporal_position: int | None
    echo: float | None
    acq_time: float | None  # seconds since 1970 when a date is known, else seconds since midnight
    content_time: float | None
    series_time: float | None
    study_time: float | None
    slice_thickness: float | None
    spacing_between: float | None
    # the file's header without pixel data (shared by its frames); None until first needed when the file was
    # read by the fast header reader (see :attr:`header`)
    header_ds: Dataset | None = field(default=None, repr=False)
    pixel_offset: int | None = None  # byte offset of native little-endian pixel data in the file
    frame_bytes: int = 0
    pixel_dtype: str = ""  # numpy dtype of the stored values ("<i2", "<u2", ...)
    # the raw PatientID, only to refuse folders that mix patients; never written anywhere
    patient_key: str = field(default="", repr=False)
    # Philips (Manufacturer says so) and its private scale slope (2005,100E) / intercept (2005,100D), for the
    # floating-point scaling (see :mod:`.philips`); None when absent (and always for other manufacturers)
    philips: bool = False
    scale_slope: float | None = None
    scale_intercept: float | None = None

    @property
    def header(self) -> Dataset:
        """The file's header without pixel data, parsed by pydicom on first use."""
        if self.header_ds is None:
            self.header_ds = load_header(self.path)
        return self.header_ds


@dataclass
class ScanResult:
    slices: list[SliceRef]
    segs: list[tuple[Path, Dataset]]
    ignored: list[dict[str, str]]
    files_seen: int


def iter_files(root: Path) -> Iterator[Path]:
    """Every regular file below ``root`` (hidden files and folders included; symlinked folders not followed)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def has_dicm_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _sniff(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return "unreadable"
    if head[:2] == b"\x1f\x8b":
        return "gzip-compressed data, not DICOM (decompress it first)"
    if head[:4] == b"PK\x03\x04":
        return "a ZIP archive, not DICOM (extract it first)"
    if not head:
        return "empty file"
    return "not a DICOM file (no 'DICM' marker and it does not parse as DICOM)"


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


def pixel_dtype(bits: int, signed: bool) -> str:
    """The numpy dtype string of stored pixel values (``"<i2"``, ``"<u1"``, ...)."""
    return np.dtype(f"<{'i' if signed else 'u'}{bits // 8}").str


def load_header(path: Path) -> Dataset:
    """The header of ``path`` (no pixel data), parsed by pydicom; an InputError when it no longer parses."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception as exc:  # noqa: BLE001 - any parser failure is a reason to refuse the file
        raise InputError(path, f"cannot be parsed as DICOM ({_short(exc)})") from None


_INT_CHARS = frozenset("+-0123456789 ")


def _fast_int(value: Any) -> int | None:
    """An IS value read by :mod:`.fastheader`; raises ValueError for what pydicom might read otherwise."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _INT_CHARS.issuperset(value):
        raise ValueError(value)
    return int(value)


def _fast_float(value: Any) -> float | None:
    """A single DS value read by :mod:`.fastheader` (ValueError when it is not one plain number)."""
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


def _patient_text(value: Any) -> str:
    return str(value or "").strip(" \x00")


def fast_slice_ref(path: Path) -> SliceRef | None:
    """The SliceRef of a plain single-frame native little-endian image file, read without pydicom; None for
    every other file (and for any file that is not perfectly well formed), which the pydicom path handles."""
    h = read_fast(path)
    if h is None:
        return None
    try:
        g = h.values.get
        sop_class = _fast_text(g("SOPClassUID")) or _fast_text(g("MediaStorageSOPClassUID")) or ""
        if sop_class in (SEG_SOP_CLASS, MEDIA_STORAGE_DIRECTORY) or sop_class.startswith(_NON_IMAGE_PREFIXES):
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
        _require_geometry(path, iop, ipp, ps, "")
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
            patient_key=_patient_text(g("PatientID")),
            philips=philips,
            scale_slope=ss,
            scale_intercept=fl_value(g("MRScaleIntercept")) if ss is not None else None,
        )
    except (ValueError, TypeError, InputError):
        return None


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


def scan(root: str | Path, quarantine: Quarantine) -> ScanResult:
    """Read the headers of every DICOM image file below ``root`` (a folder, or a single file)."""
    root = Path(root)
    if not root.exists():
        raise InputError(root, "does not exist")
    files = [root] if root.is_file() else list(iter_files(root))
    slices: list[SliceRef] = []
    segs: list[tuple[Path, Dataset]] = []
    ignored: list[dict[str, str]] = []
    for path in files:
        ref = fast_slice_ref(path)
        if ref is not None:
            slices.append(ref)
            continue
        named_dicom = path.suffix.lower() in DICOM_SUFFIXES or path.name.upper() == "DICOMDIR"
        try:
            ds, hinfo = read_header(path)
        except Exception as exc:  # noqa: BLE001 - any parser failure is a reason to refuse the file
            magic = has_dicm_magic(path)
            if magic or named_dicom or path == root:
                quarantine.report(path, f"cannot be parsed as DICOM ({_short(exc)})" if magic else _sniff(path))
            else:
                ignored.append({"path": quarantine.rel(path), "reason": "not DICOM"})
            continue
        magic = hinfo.magic
        sop_class = str(ds.get("SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
        if sop_class == MEDIA_STORAGE_DIRECTORY or "DirectoryRecordSequence" in ds:
            _check_dicomdir(path, ds, quarantine, ignored)
            continue
        if not magic and not _looks_like_image(ds):
            if named_dicom or path == root:
                sniffed = _sniff(path)
                if not len(ds) or sniffed.startswith(("gzip", "a ZIP", "empty")):
                    quarantine.report(path, sniffed)
                else:
                    quarantine.report(path, "no DICOM image elements (Rows, Columns, PixelData) found")
            else:
                ignored.append({"path": quarantine.rel(path), "reason": "not DICOM"})
            continue
        if sop_class == SEG_SOP_CLASS:
            segs.append((path, ds))
            continue
        if sop_class.startswith(_NON_IMAGE_PREFIXES):
            ignored.append({"path": quarantine.rel(path), "reason": "not an image object"})
            continue
        try:
            slices.extend(slice_refs(path, ds, hinfo))
        except InputError as err:
            quarantine.report(path, err.reason)
        except Exception as exc:  # noqa: BLE001 - e.g. an invalid VR met when an element is first read
            quarantine.report(path, f"invalid DICOM element ({_short(exc)})")
    return ScanResult(slices, segs, ignored, len(files))


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _looks_like_image(ds: Dataset) -> bool:
    return all(k in ds for k in ("Rows", "Columns")) and bool(getattr(ds, "_breastseg_has_pixels", False))


def _check_dicomdir(path: Path, ds: Dataset, quarantine: Quarantine, ignored: list[dict[str, str]]) -> None:
    """A DICOMDIR is an index, not an image: its images are found by the folder scan. Refuse it only when
    files it references are missing (an incomplete copy of the media)."""
    missing = []
    for rec in ds.get("DirectoryRecordSequence", []) or []:
        ref = rec.get("ReferencedFileID")
        if ref is None:
            continue
        parts = [ref] if isinstance(ref, str) else list(ref)
        target = path.parent.joinpath(*[str(p) for p in parts])
        if not target.exists() and not _exists_casefold(path.parent, parts):
            missing.append("/".join(str(p) for p in parts))
    if missing:
        quarantine.report(
            path,
            f"DICOMDIR references {len(missing)} file(s) that are not present (e.g. {missing[0]}); "
            "the media copy is incomplete",
        )
    else:
        ignored.append({"path": quarantine.rel(path), "reason": "DICOMDIR index (images read directly)"})


def _exists_casefold(base: Path, parts: Iterable[Any]) -> bool:
    cur = base
    for part in parts:
        part = str(part)
        if (cur / part).exists():
            cur = cur / part
            continue
        try:
            match = [p for p in cur.iterdir() if p.name.lower() == part.lower()]
        except OSError:
            return False
        if not match:
            return False
        cur = match[0]
    return cur.exists()


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
        patient_key=_patient_text(ds.get("PatientID")),
        philips=is_philips(ds.get("Manufacturer")),
    )
    if not common["study_uid"] or not common["series_uid"]:
        raise InputError(path, "missing StudyInstanceUID or SeriesInstanceUID")
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds or nframes > 1:
        return _enhanced_refs(path, ds, nframes, common)
    iop = _floats(ds.get("ImageOrientationPatient"), 6)
    ipp = _floats(ds.get("ImagePositionPatient"), 3)
    ps = _floats(ds.get("PixelSpacing"), 2)
    _require_geometry(path, iop, ipp, ps, "")
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


def _require_geometry(path: Path, iop, ipp, ps, where: str) -> None:
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
        _require_geometry(path, iop, ipp, ps, where)
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
