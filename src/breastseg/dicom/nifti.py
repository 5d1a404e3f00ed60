"""Write NIfTI-1 volumes the way dcm2niix does (sform = qform = scanner), atomically, with nothing identifying
in the header (``descrip``, ``db_name``, ``aux_file`` and ``intent_name`` hold only fixed text).

Volumes of the usual voxel types are written as the nibabel header followed by the voxel bytes, without
intermediate copies: a Fortran-ordered array is written straight from its memory, a stream of slices (see
:func:`write_nifti_stream`) one slice at a time, and raw little-endian DICOM pixel data can be copied from
the DICOM files into a ``.nii`` by the kernel (:func:`write_nifti_copy`). Other arrays go through nibabel.
"""
from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import InputError
from ..io import atomic_path

DESCRIP = b"breastseg"
# voxel types written directly (their header is exactly the one nibabel writes; see tests)
DIRECT_DTYPES = frozenset(np.dtype(t) for t in ("u1", "i1", "<i2", "<u2", "<i4", "<u4", "<f4", "<f8"))
GZ_CHUNK = 1 << 20  # bytes handed to the compressor at once (bounds the compressed output buffered)


def nifti_name(key: str, compress: bool = True) -> str:
    return f"{key}.nii.gz" if compress else f"{key}.nii"


def make_image(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    hdr = img.header
    hdr.set_data_dtype(data.dtype)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    hdr.set_xyzt_units("mm", "sec")
    hdr["descrip"] = DESCRIP
    hdr["db_name"] = b""
    hdr["aux_file"] = b""
    hdr["intent_name"] = b""
    # values are stored already scaled (modality LUT applied): no scl_slope/scl_inter
    hdr["scl_slope"] = np.nan
    hdr["scl_inter"] = np.nan
    return img


def nifti_header(shape: Sequence[int], dtype: np.dtype, affine: np.ndarray) -> bytes:
    """The bytes before the voxel data of a single-file NIfTI-1 volume, as nibabel writes them for an
    array of ``shape`` and ``dtype`` stored unscaled."""
    dtype = np.dtype(dtype)
    img = make_image(np.broadcast_to(np.zeros((), dtype), tuple(shape)), affine)
    img.update_header()
    hdr = img.header
    hdr.set_slope_inter(1.0, 0.0)  # what nibabel stores when no scaling is needed
    buf = io.BytesIO()
    hdr.write_to(buf)
    head = buf.getvalue()
    offset = int(hdr.get_data_offset())
    return head + b"\0" * (offset - len(head))


def _is_gz(path: Path) -> bool:
    return path.name.endswith(".gz")


def write_nifti(path: str | Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """Write ``data`` with ``affine`` to ``path`` (``.nii`` or ``.nii.gz``, gzip level 1), atomically."""
    path = Path(path)
    if data.dtype in DIRECT_DTYPES and data.ndim >= 1 and data.flags.f_contiguous and data.size:
        flat = data.reshape(-1, order="F")  # a view: no copy
        return write_nifti_stream(path, data.shape, data.dtype, affine, [memoryview(flat).cast("B")])
    img = make_image(data, affine)
    with atomic_path(path) as tmp:
        img.to_filename(str(tmp))
    return path


@contextmanager
def gz_writer(path: str | Path) -> Iterator[Any]:
    """A gzip stream for ``.nii.gz`` output: ISA-L's DEFLATE (python-isal's ``igzip``, level 1: ~3.5x zlib's level-1
    speed at the same size here), with no file name and a zero mtime in the gzip header, so the same volume gives
    the same bytes; any gzip reader (nibabel, dcm2niix's users' tools, DVC, ``gzip -d``) reads it. Without
    python-isal: the standard library's zlib at level 1."""
    try:
        from isal.igzip import IGzipFile as GzipFile
    except ImportError:  # pragma: no cover - isal is pinned; kept for installs without it
        from gzip import GzipFile
    with open(path, "wb") as raw, GzipFile(filename="", mode="wb", compresslevel=1, fileobj=raw, mtime=0) as fh:
        yield fh


def write_nifti_stream(path: str | Path, shape: Sequence[int], dtype: np.dtype, affine: np.ndarray,
                       chunks: Iterable) -> Path:
    """Write a volume given as consecutive chunks of its Fortran-ordered voxel bytes, atomically.

    ``chunks`` is consumed while writing, so a generator that reuses one slice buffer keeps memory at a
    slice. An :class:`~breastseg.errors.InputError` raised by it leaves no file behind.
    """
    path = Path(path)
    dtype = np.dtype(dtype)
    expected = int(np.prod(shape)) * dtype.itemsize
    header = nifti_header(shape, dtype, affine)
    written = 0
    with atomic_path(path) as tmp:
        if _is_gz(path):
            with gz_writer(tmp) as fh:
                fh.write(header)
                for chunk in chunks:
                    mv = memoryview(chunk).cast("B")
                    for start in range(0, len(mv), GZ_CHUNK):
                        fh.write(mv[start:start + GZ_CHUNK])
                    written += len(mv)
        else:
            with open(tmp, "wb") as fh:
                fh.write(header)
                for chunk in chunks:
                    mv = memoryview(chunk).cast("B")
                    fh.write(mv)
                    written += len(mv)
        if written != expected:
            raise ValueError(f"{path.name}: {written} voxel bytes written, {expected} expected")
    return path


def write_nifti_copy(path: str | Path, shape: Sequence[int], dtype: np.dtype, affine: np.ndarray,
                     segments: Iterable[tuple[Path, int, int]]) -> Path:
    """Write an uncompressed ``.nii`` whose voxel bytes are ``(file, offset, length)`` pieces of other files,
    copied in order by the kernel (``copy_file_range``, else ``sendfile``, else read/write), atomically.
    A piece shorter than announced raises :class:`~breastseg.errors.InputError` naming its file."""
    path = Path(path)
    if _is_gz(path):
        raise ValueError("write_nifti_copy writes uncompressed .nii files only")
    header = nifti_header(shape, dtype, affine)
    with atomic_path(path) as tmp:
        with open(tmp, "wb", buffering=0) as out:
            out.write(header)
            dst = out.fileno()
            mode = "copy_file_range" if hasattr(os, "copy_file_range") else "sendfile"
            for src_path, offset, length in segments:
                with open(src_path, "rb", buffering=0) as src:
                    mode = _copy(src.fileno(), dst, offset, length, mode, src_path)
    return path


def _copy(src: int, dst: int, offset: int, length: int, mode: str, src_path: Path) -> str:
    done = 0
    while done < length:
        n = length - done
        try:
            if mode == "copy_file_range":
                got = os.copy_file_range(src, dst, n, offset + done)
            elif mode == "sendfile":
                got = os.sendfile(dst, src, offset + done, n)
            else:
                data = os.pread(src, min(n, 1 << 22), offset + done)
                got = os.write(dst, data) if data else 0
        except OSError:
            if mode == "read":
                raise
            mode = "sendfile" if mode == "copy_file_range" else "read"
            continue
        if got == 0:
            raise InputError(src_path, f"truncated pixel data: read {done} of {length} bytes")
        done += got
    return mode
