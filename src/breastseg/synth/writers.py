"""Byte-reproducible writers: the same arrays always give the same file bytes.

The standard writers stamp the wall clock into their output (gzip header mtime in ``.nii.gz``, zip entry
dates in ``.npz``, the "Created on" text of a MAT-file header). These helpers pin those fields so a seeded
synthetic cohort hashes identically run after run.
"""
from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_MAT_DESCRIPTION = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created by: breastseg synth"


def gzip_bytes(payload: bytes, level: int = 6) -> bytes:
    """gzip ``payload`` with mtime 0 and no file name in the header."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=level) as gz:
        gz.write(payload)
    return buf.getvalue()


def write_nifti_gz(path: str | Path, data: np.ndarray, affine: np.ndarray) -> None:
    """Write ``data`` (array convention ``[i, j, k]``) with ``affine`` as sform and qform (code 1, scanner)."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=float))
    img.header.set_data_dtype(np.asarray(data).dtype)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    Path(path).write_bytes(gzip_bytes(img.to_bytes()))


def write_npz(path: str | Path, arrays: Mapping[str, Any], compress: bool = True) -> None:
    """``np.savez_compressed`` equivalent with fixed zip entry dates (readable by ``np.load``)."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name in arrays:
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def write_mat(path: str | Path, variables: Mapping[str, Any], do_compression: bool = True) -> None:
    """``scipy.io.savemat`` (MAT 5) with a fixed header text instead of the creation time."""
    import scipy.io

    buf = io.BytesIO()
    scipy.io.savemat(buf, dict(variables), do_compression=do_compression, oned_as="column")
    raw = bytearray(buf.getvalue())
    raw[:116] = _MAT_DESCRIPTION.ljust(116, b" ")
    Path(path).write_bytes(bytes(raw))
