"""Resample a volume onto another voxel grid (scipy, imported lazily)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def resample_to_grid(
    data: np.ndarray, src_affine: np.ndarray, dst_shape: Sequence[int], dst_affine: np.ndarray,
    *, order: int = 1, cval: float = 0.0,
) -> np.ndarray:
    """``data`` (on ``src_affine``) sampled at the voxel centres of ``(dst_shape, dst_affine)``.

    Linear interpolation by default (``order=0`` for labels); points outside the source get ``cval``.
    Returns float32 for ``order > 0``, the input dtype for ``order == 0``.
    """
    from scipy.ndimage import affine_transform

    m = np.linalg.inv(np.asarray(src_affine, float)) @ np.asarray(dst_affine, float)  # dst voxel -> src voxel
    src = data.astype(np.float32, copy=False) if order > 0 else data
    out = affine_transform(
        src, m[:3, :3], offset=m[:3, 3], output_shape=tuple(int(n) for n in dst_shape[:3]),
        order=order, mode="constant", cval=cval,
    )
    return out
