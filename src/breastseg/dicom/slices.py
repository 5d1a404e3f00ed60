"""Slice references: one image frame each, where its pixels are and the geometry and timing that stack it.

A :class:`SliceRef` is made by :func:`.headers.slice_refs` (pydicom, every kind of image file; an Enhanced
multi-frame file gives one per frame) or by :func:`.fastheader.fast_slice_ref` (plain single-frame native
little-endian files, without pydicom). The file's full header is parsed by pydicom only when first needed
(:attr:`SliceRef.header`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from ..errors import InputError


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
        raise InputError(path, f"cannot be parsed as DICOM ({short_reason(exc)})") from None


def short_reason(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), to word why a file was refused."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


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
