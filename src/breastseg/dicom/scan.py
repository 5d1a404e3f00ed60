"""Find DICOM files under a folder, whatever their names and nesting, and read their headers.

A file is DICOM when it has the 128-byte preamble followed by ``DICM``; a file without it is accepted only
when it parses with the elements an image needs. Files named like DICOM (``.dcm``, ``.dicom``, ``.ima``) that
are not DICOM, DICOMDIR indexes whose referenced files are missing, empty datasets that parse "successfully",
truncated pixel data and images without geometry are *bad input*: each is reported as one
:class:`~breastseg.errors.InputError` naming the file, or, with ``on_error="skip"``, recorded in a
:class:`Quarantine` while the rest converts. Other non-DICOM files (notes, NIfTI labels, PNGs) are ignored.

Plain single-frame native little-endian images (the bulk of MR series) are read by
:func:`.fastheader.fast_slice_ref` without pydicom, which parses them only when their full header is needed
(one file per volume, for the sidecar); every other file, and any file the fast reader does not fully
understand, is parsed by pydicom (:mod:`.headers`), which also words the errors. Each image frame becomes one
:class:`~.slices.SliceRef`.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from ..errors import InputError
from .fastheader import fast_slice_ref
from .headers import MEDIA_STORAGE_DIRECTORY, NON_IMAGE_PREFIXES, SEG_SOP_CLASS, read_header, slice_refs
from .slices import Quarantine, SliceRef, short_reason

DICOM_SUFFIXES = {".dcm", ".dicom", ".dic", ".ima"}


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
        sniffed = _sniff(path)
        if sniffed.startswith(("gzip", "a ZIP")):  # never handed to pydicom, which would guess at it aloud
            if named_dicom or path == root:
                quarantine.report(path, sniffed)
            else:
                ignored.append({"path": quarantine.rel(path), "reason": "not DICOM"})
            continue
        try:
            ds, hinfo = read_header(path)
        except Exception as exc:  # noqa: BLE001 - any parser failure is a reason to refuse the file
            magic = has_dicm_magic(path)
            if magic or named_dicom or path == root:
                quarantine.report(path, f"cannot be parsed as DICOM ({short_reason(exc)})" if magic else _sniff(path))
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
        if sop_class.startswith(NON_IMAGE_PREFIXES):
            ignored.append({"path": quarantine.rel(path), "reason": "not an image object"})
            continue
        try:
            slices.extend(slice_refs(path, ds, hinfo))
        except InputError as err:
            quarantine.report(path, err.reason)
        except Exception as exc:  # noqa: BLE001 - e.g. an invalid VR met when an element is first read
            quarantine.report(path, f"invalid DICOM element ({short_reason(exc)})")
    return ScanResult(slices, segs, ignored, len(files))


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
