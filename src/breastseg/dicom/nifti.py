"""Write NIfTI-1 volumes the way dcm2niix does (sform = qform = scanner), atomically, with nothing identifying
in the header (``descrip``, ``db_name``, ``aux_file`` and ``intent_name`` hold only fixed text)."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from ..io import atomic_path

DESCRIP = b"breastseg"


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


def write_nifti(path: str | Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """Write ``data`` with ``affine`` to ``path`` (``.nii`` or ``.nii.gz``, gzip level 1), atomically."""
    path = Path(path)
    img = make_image(data, affine)
    with atomic_path(path) as tmp:
        img.to_filename(str(tmp))
    return path
