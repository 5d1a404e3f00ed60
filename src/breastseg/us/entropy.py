"""Local Shannon entropy maps (Tsui et al. 2017) with a running-histogram kernel.

For every pixel, the values inside a ``rows x cols`` rectangular window centred on it are binned
into ``bins`` equal-width bins and the Shannon entropy (in bits) of that histogram is returned.
Windows at the image border are clipped to the image: only in-image pixels are counted, exactly as
:func:`skimage.filters.rank.entropy` does. The bins are shared by all windows of an image, so what is
binned and over which range is the caller's choice: :mod:`breastseg.us.maps` bins the envelope of the raw
RF over ``[0, 99th percentile]`` of each scan (the reasons, and the alternatives measured, are in its
module doc).

The kernel slides the window down one column at a time: moving one row down adds one row of the
window's columns to the histogram and removes another, so each step costs ``2 * cols`` updates
whatever the window height; the entering and leaving rows are walked in one pass, and a column whose
value is the same in both is skipped. The entropy is kept incrementally through

    H = log2(n) - S / n,    S = sum_b c_b * log2(c_b),

where ``n`` is the number of counted pixels and ``c_b`` the bin counts; when a count goes from ``c``
to ``c + 1``, ``S`` grows by the tabulated ``d[c] = (c+1) log2(c+1) - c log2(c)``. ``S`` is kept in
fixed point (int64, 2**-40 resolution), so updates are exact integer additions: no rounding drift
along a column, and the result is within ~1e-12 bits of the exact entropy. Bands of adjacent columns
are processed in parallel.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["entropy_map", "bin_indices"]


_BAND = 32  # columns per parallel task; their histograms (32 x bins int32, 32 KiB at 256 bins) stay in cache


@njit(cache=True, parallel=True, error_model="numpy")  # n >= 1: the division never sees 0
def _entropy_bands(idx, half_r, half_c, nbins, band, dtab, ftab, scale, out):  # pragma: no cover - compiled
    """Entropy of every pixel of ``idx`` (bin indices); each task slides ``band`` column windows down.

    ``ftab[c]`` is ``c log2 c`` in fixed point (times ``scale``), ``dtab[c] = ftab[c+1] - ftab[c]``: the
    running sum ``S`` is an exact integer, so it never drifts and a constant window gives exactly 0.
    """
    nrows, ncols = idx.shape
    nbands = (ncols + band - 1) // band
    first = min(half_r + 1, nrows)
    for bnd in prange(nbands):
        j0 = bnd * band
        nb = min(j0 + band, ncols) - j0
        hist = np.zeros((nb, nbins), np.int32)
        s = np.zeros(nb, np.int64)
        lo = np.empty(nb, np.int64)
        hi = np.empty(nb, np.int64)
        for jj in range(nb):
            lo[jj] = max(j0 + jj - half_c, 0)
            hi[jj] = min(j0 + jj + half_c + 1, ncols)
        for jj in range(nb):
            acc = 0
            for i in range(first):
                for k in range(lo[jj], hi[jj]):
                    b = idx[i, k]
                    c = hist[jj, b]
                    acc += dtab[c]
                    hist[jj, b] = c + 1
            s[jj] = acc
        nr = first
        for i in range(nrows):
            for jj in range(nb):
                n = nr * (hi[jj] - lo[jj])
                out[i, j0 + jj] = (ftab[n] - s[jj]) / (scale * n)
            ra = i + half_r + 1
            rr = i - half_r
            if ra < nrows and rr >= 0:
                # interior rows: one pass adds the entering row and removes the leaving one; a column whose
                # value is the same in both leaves the histogram unchanged and is skipped
                row_add = idx[ra]
                row_rem = idx[rr]
                for jj in range(nb):
                    acc = s[jj]
                    h = hist[jj]
                    for k in range(lo[jj], hi[jj]):
                        ba = row_add[k]
                        br = row_rem[k]
                        if ba != br:
                            c = h[ba]
                            acc += dtab[c]
                            h[ba] = c + 1
                            c = h[br] - 1
                            acc -= dtab[c]
                            h[br] = c
                    s[jj] = acc
            else:
                for jj in range(nb):
                    acc = s[jj]
                    if ra < nrows:
                        for k in range(lo[jj], hi[jj]):
                            b = idx[ra, k]
                            c = hist[jj, b]
                            acc += dtab[c]
                            hist[jj, b] = c + 1
                    if rr >= 0:
                        for k in range(lo[jj], hi[jj]):
                            b = idx[rr, k]
                            c = hist[jj, b] - 1
                            acc -= dtab[c]
                            hist[jj, b] = c
                    s[jj] = acc
            if ra < nrows:
                nr += 1
            if rr >= 0:
                nr -= 1
    return out


def _tables(nmax: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Fixed-point ``c log2 c`` for ``c = 0..nmax+1``, its increments, and the scale (a power of two)."""
    c = np.arange(nmax + 2, dtype=np.float64)
    f = np.zeros_like(c)
    f[1:] = c[1:] * np.log2(c[1:])
    # as fine as int64 allows for this window (2**-40 for windows up to ~400k pixels)
    shift = int(min(40, np.floor(61 - np.log2(f[-1] + 2))))
    scale = float(2.0 ** shift)
    ftab = np.rint(f * scale).astype(np.int64)
    return np.diff(ftab), ftab, scale


def bin_indices(image: np.ndarray, bins: int, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Bin index (int32, ``0..bins-1``) of every pixel for ``bins`` equal-width bins over ``value_range``.

    ``value_range`` defaults to the image's own ``(min, max)``. Bin ``b`` holds ``lo + b*w <= v < lo + (b+1)*w``
    with ``w = (hi - lo) / bins``; the top edge ``hi`` belongs to the last bin, and values outside the range
    are counted in the first/last bin. A constant image (``hi == lo``) puts everything into bin 0.
    """
    image = np.asarray(image)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if value_range is None:
        lo, hi = float(image.min()), float(image.max())
    else:
        lo, hi = (float(v) for v in value_range)
        if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
            raise ValueError(f"value_range must be finite with max > min, got {value_range!r}")
    if hi == lo:
        return np.zeros(image.shape, np.int32)
    scale = bins / (hi - lo)
    if np.issubdtype(image.dtype, np.integer) and scale == 1.0 and lo == int(lo):
        # exact fast path for integer images binned one value per bin (e.g. 8-bit images, 256 bins)
        idx = image.astype(np.int32, copy=True)
        if lo != 0:
            idx -= int(lo)
    else:
        idx = np.floor((image.astype(np.float64) - lo) * scale).astype(np.int32)
    np.clip(idx, 0, bins - 1, out=idx)
    return idx


def entropy_map(
    image: np.ndarray,
    window: tuple[int, int],
    bins: int,
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Shannon entropy (bits) of the local histogram in a sliding ``window = (rows, cols)`` (odd sizes).

    Values are binned with :func:`bin_indices` (``bins`` equal-width bins over ``value_range``, default the
    image's min..max). Border windows are clipped to the image. Returns float64, same shape as ``image``.
    For an integer image with ``bins=256, value_range=(0, 256)`` the result equals
    ``skimage.filters.rank.entropy(image, np.ones(window))``.
    """
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"entropy_map needs a non-empty 2-D image, got shape {image.shape}")
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)
            or image.dtype == np.bool_):
        raise ValueError(f"entropy_map needs a numeric image, got dtype {image.dtype}")
    if image.dtype == np.bool_:
        image = image.astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise ValueError("entropy_map: image contains NaN or infinite values")
    rows, cols = (int(w) for w in window)
    if rows < 1 or cols < 1 or rows % 2 == 0 or cols % 2 == 0:
        raise ValueError(f"window sizes must be odd and positive, got {tuple(window)!r}")
    bins = int(bins)
    idx = bin_indices(image, bins, value_range)
    if bins <= 65536:  # one compiled signature for all practical bin counts, half the memory traffic
        idx = idx.astype(np.uint16)
    nmax = min(rows, image.shape[0]) * min(cols, image.shape[1])
    dtab, ftab, scale = _tables(nmax)
    out = np.empty(idx.shape, np.float64)
    _entropy_bands(idx, rows // 2, cols // 2, bins, _BAND, dtab, ftab, scale, out)
    return out
