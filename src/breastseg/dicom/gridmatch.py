"""Compare voxel grids: the same grid within a tolerance, or the same grid stored with axes permuted/flipped."""
from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np


def _corners(shape: Sequence[int]) -> np.ndarray:
    ext = [(0, max(int(n) - 1, 0)) for n in shape[:3]]
    return np.array([[*c, 1.0] for c in itertools.product(*ext)]).T


def grid_distance(shape_a: Sequence[int], aff_a: np.ndarray, aff_b: np.ndarray) -> float:
    """Largest distance (mm) between the corner voxel centres of grid ``a`` under affines ``a`` and ``b``."""
    c = _corners(shape_a)
    return float(np.max(np.linalg.norm((np.asarray(aff_a) @ c - np.asarray(aff_b) @ c)[:3], axis=0)))


def same_grid(shape_a, aff_a, shape_b, aff_b, tol_mm: float = 0.01) -> bool:
    """True when both grids have the same shape and their corner voxels lie within ``tol_mm``."""
    if tuple(int(n) for n in shape_a[:3]) != tuple(int(n) for n in shape_b[:3]):
        return False
    return grid_distance(shape_a, aff_a, aff_b) <= tol_mm


def reorient_to_grid(data: np.ndarray, aff_src, shape_dst, aff_dst, tol_mm: float = 0.01) -> np.ndarray | None:
    """``data`` (on grid ``aff_src``) rearranged onto grid ``(shape_dst, aff_dst)`` when the two grids hold the
    same voxel centres in another axis order/direction (e.g. a dcm2niix output with flipped rows); None when
    they do not."""
    m = np.linalg.inv(np.asarray(aff_src, float)) @ np.asarray(aff_dst, float)  # dst voxel -> src voxel
    lin = m[:3, :3]
    perm = np.rint(lin)
    if np.max(np.abs(lin - perm)) > 1e-3 or not np.all(np.abs(perm).sum(axis=0) == 1) or not np.all(np.abs(perm).sum(axis=1) == 1):
        return None
    src_axis = [int(np.argmax(np.abs(perm[:, d]))) for d in range(3)]
    signs = [int(perm[src_axis[d], d]) for d in range(3)]
    shape_dst = tuple(int(n) for n in shape_dst[:3])
    if tuple(data.shape[src_axis[d]] for d in range(3)) != shape_dst:
        return None
    out = np.transpose(data, src_axis + list(range(3, data.ndim)))
    idx = []
    for d in range(3):
        start = m[src_axis[d], 3]
        if signs[d] < 0:
            out = np.flip(out, axis=d)
            start = data.shape[src_axis[d]] - 1 - start
        idx.append(start)
    if np.max(np.abs(np.asarray(idx))) * spacing_max(aff_src) > tol_mm:
        return None
    spacing = np.linalg.norm(np.asarray(aff_src, float)[:3, :3], axis=0)
    if np.max(np.abs(lin - perm) * spacing.max()) > tol_mm:
        return None
    return np.ascontiguousarray(out)


def spacing_max(aff) -> float:
    return float(np.max(np.linalg.norm(np.asarray(aff, float)[:3, :3], axis=0)))
