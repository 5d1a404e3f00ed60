"""DICOM patient geometry (LPS) to NIfTI affines (RAS), the convention dcm2niix and nibabel use.

Array convention for every volume breastseg writes: ``data[i, j, k]`` with i = column (along the first
ImageOrientationPatient vector), j = row (along the second), k = slice (ordered by ImagePositionPatient
projected on the slice normal, increasing). A 2-D DICOM frame ``pixel_array[row, col]`` is therefore stored
transposed: ``data[:, :, k] = frame.T``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def slice_normal(iop: Sequence[float]) -> np.ndarray:
    """Unit normal of the image plane: cross product of the row and column direction cosines."""
    row = np.asarray(iop[:3], dtype=float)
    col = np.asarray(iop[3:6], dtype=float)
    n = np.cross(row, col)
    return n / np.linalg.norm(n)


def affine_lps(
    iop: Sequence[float], ipp_first: Sequence[float], pixel_spacing: Sequence[float], slice_step: float
) -> np.ndarray:
    """Voxel (i=col, j=row, k=slice) to LPS millimetres.

    ``pixel_spacing`` is DICOM's (row spacing, column spacing); ``slice_step`` the signed distance between
    consecutive slices along the normal.
    """
    row = np.asarray(iop[:3], dtype=float)
    col = np.asarray(iop[3:6], dtype=float)
    dr, dc = float(pixel_spacing[0]), float(pixel_spacing[1])
    a = np.eye(4)
    a[:3, 0] = row * dc
    a[:3, 1] = col * dr
    a[:3, 2] = slice_normal(iop) * float(slice_step)
    a[:3, 3] = np.asarray(ipp_first, dtype=float)
    return a


def affine_ras(
    iop: Sequence[float], ipp_first: Sequence[float], pixel_spacing: Sequence[float], slice_step: float
) -> np.ndarray:
    """The NIfTI (RAS) affine for the same voxel grid as :func:`affine_lps`."""
    return LPS_TO_RAS @ affine_lps(iop, ipp_first, pixel_spacing, slice_step)
