"""Contrast enhancement maps from DCE phases: subtraction and relative enhancement (float32)."""
from __future__ import annotations

import numpy as np


def subtraction(post: np.ndarray, pre: np.ndarray) -> np.ndarray:
    """``post - pre`` as float32 (both on the same grid)."""
    if post.shape != pre.shape:
        raise ValueError(f"post {post.shape} and pre {pre.shape} are not on the same grid")
    out = np.asarray(post, dtype=np.float32).copy()
    out -= np.asarray(pre, dtype=np.float32)
    return out


def relative_enhancement(post: np.ndarray, pre: np.ndarray, *, floor: float | None = None) -> np.ndarray:
    """``(post - pre) / pre`` as float32; voxels with ``pre <= floor`` (default: 1% of the pre maximum) are 0."""
    pre32 = np.asarray(pre, dtype=np.float32)
    if floor is None:
        floor = 0.01 * float(pre32.max()) if pre32.size else 0.0
    diff = subtraction(post, pre)
    out = np.zeros_like(diff)
    ok = pre32 > floor
    np.divide(diff, pre32, out=out, where=ok)
    return out
