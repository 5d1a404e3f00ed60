"""surface_distances (MONAI's HD95 and symmetric ASD) against a brute-force reference written from the definitions."""
import math

import numpy as np
import pytest
from scipy import ndimage

from breastseg.evaluation.metrics import surface_distances

SPACINGS_2D = [(1.0, 1.0), (0.7, 0.7), (1.0, 3.0), (0.37, 1.13), (2.5, 0.8)]
SPACINGS_3D = [(1.0, 1.0, 1.0), (2.5, 0.8, 0.8), (3.0, 0.7, 0.7), (1.1, 0.45, 0.9)]


def reference(pred, true, spacing):
    """Edges = mask XOR its erosion (cross element, outside is background); all pairwise distances in mm."""
    scale = np.asarray(spacing, dtype=np.float64)

    def edge(mask):
        m = np.pad(np.asarray(mask, bool), 1)
        return np.argwhere(ndimage.binary_erosion(m) ^ m) * scale

    p, t = edge(pred), edge(true)
    d = np.sqrt(((p[:, None, :] - t[None, :, :]) ** 2).sum(-1))
    d_pt, d_tp = d.min(axis=1), d.min(axis=0)
    hd95 = max(np.percentile(d_pt, 95), np.percentile(d_tp, 95))
    return float(hd95), float(np.concatenate([d_pt, d_tp]).mean())


def _blob(rng, shape, sigma, fraction):
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field > np.quantile(field, 1.0 - fraction)


def _cases():
    rng = np.random.default_rng(20240611)
    cases = []

    def add(name, pred, true, spacing):
        cases.append(pytest.param(pred, true, spacing, id=f"{len(cases):03d}-{name}"))

    for i in range(24):  # independent blobs, 2-D (large ones touch the border)
        shape = tuple(int(n) for n in rng.integers(16, 96, size=2))
        sigma, fraction = float(rng.uniform(1.5, 8)), float(rng.uniform(0.05, 0.6))
        add("blobs2d", _blob(rng, shape, sigma, fraction), _blob(rng, shape, sigma, fraction),
            SPACINGS_2D[i % len(SPACINGS_2D)])
    for i in range(12):  # independent blobs, 3-D
        shape = (int(rng.integers(3, 14)), int(rng.integers(12, 40)), int(rng.integers(12, 40)))
        sigma, fraction = float(rng.uniform(1.0, 4)), float(rng.uniform(0.05, 0.5))
        add("blobs3d", _blob(rng, shape, sigma, fraction), _blob(rng, shape, sigma, fraction),
            SPACINGS_3D[i % len(SPACINGS_3D)])
    for i in range(8):  # prediction = truth perturbed (near-identical surfaces, many exact ties)
        true = _blob(rng, (64, 64), 4.0, 0.3)
        pred = true ^ (rng.random(true.shape) < 0.02)
        add("perturbed2d", pred, true, SPACINGS_2D[i % len(SPACINGS_2D)])
    for i in range(6):  # one mask inside the other
        outer = _blob(rng, (48, 56), 5.0, 0.4)
        inner = ndimage.binary_erosion(outer, iterations=int(rng.integers(1, 4)))
        if not inner.any():
            inner = outer
        pair = (inner, outer) if i % 2 else (outer, inner)
        add("nested2d", *pair, SPACINGS_2D[i % len(SPACINGS_2D)])
    for i in range(4):  # one volume inside the other, 3-D
        outer = _blob(rng, (10, 30, 30), 2.5, 0.4)
        inner = ndimage.binary_erosion(outer)
        if not inner.any():
            inner = outer
        pair = (inner, outer) if i % 2 else (outer, inner)
        add("nested3d", *pair, SPACINGS_3D[i % len(SPACINGS_3D)])
    for i in range(6):  # disjoint masks
        a, b = np.zeros((40, 60), bool), np.zeros((40, 60), bool)
        r, c = int(rng.integers(0, 30)), int(rng.integers(0, 20))
        a[r:r + int(rng.integers(1, 10)), c:c + int(rng.integers(1, 10))] = True
        b[:, 35 + i:] = _blob(rng, (40, 25 - i), 3.0, 0.3)
        add("disjoint2d", a, b, SPACINGS_2D[i % len(SPACINGS_2D)])
    for i, spacing in enumerate(SPACINGS_3D):
        a, b = np.zeros((6, 20, 20), bool), np.zeros((6, 20, 20), bool)
        a[0:2, 1:5, 2:9] = True
        b[3 + i % 3:, 12:, 10 + i:] = True
        add("disjoint3d", a, b, spacing)
    for spacing in SPACINGS_2D:  # single pixels, at a corner, an edge and inside
        a, b = np.zeros((20, 30), bool), np.zeros((20, 30), bool)
        a[0, 0] = True
        b[int(rng.integers(0, 20)), int(rng.integers(0, 30))] = True
        add("pixel-pixel", a, b, spacing)
        c = _blob(rng, (20, 30), 3.0, 0.3)
        add("pixel-blob", a, c, spacing)
        add("blob-pixel", c, b, spacing)
    a, b = np.zeros((5, 7, 9), bool), np.zeros((5, 7, 9), bool)
    a[4, 6, 8] = b[0, 0, 0] = True
    add("voxel-voxel", a, b, (2.5, 0.8, 0.8))
    add("voxel-self", a, a.copy(), (2.5, 0.8, 0.8))
    for spacing in SPACINGS_2D[:3]:  # masks filling the image or touching every border
        full = np.ones((17, 23), bool)
        add("full-blob", full, _blob(rng, (17, 23), 2.0, 0.5), spacing)
        add("full-full", full, full.copy(), spacing)
        frame = np.zeros((17, 23), bool)
        frame[:, :3] = frame[:, -2:] = frame[:1] = frame[-4:] = True
        add("frame-full", frame, full, spacing)
    for spacing in SPACINGS_3D[:2]:
        full = np.ones((4, 15, 15), bool)
        add("full3d-blob", full, _blob(rng, (4, 15, 15), 1.5, 0.5), spacing)
        add("slab-blob", np.ones((1, 15, 15), bool), _blob(rng, (1, 15, 15), 2.0, 0.4), spacing)
    for spacing in SPACINGS_2D[:3]:  # thin structures: lines, a diagonal, a checkerboard
        a, b = np.zeros((30, 30), bool), np.zeros((30, 30), bool)
        a[10, 2:25] = True
        np.fill_diagonal(b, True)
        add("line-diagonal", a, b, spacing)
        add("checker-blob", (np.indices((30, 30)).sum(0) % 2).astype(bool), _blob(rng, (30, 30), 3.0, 0.3), spacing)
    add("uint8-labels", _blob(rng, (40, 40), 4.0, 0.3).astype(np.uint8) * 2,
        _blob(rng, (40, 40), 4.0, 0.3).astype(np.uint8), (0.7, 0.7))
    add("big2d", _blob(rng, (256, 256), 12.0, 0.4), _blob(rng, (256, 256), 12.0, 0.4), (0.7, 0.7))
    return cases


CASES = _cases()


def test_enough_cases():
    assert len(CASES) >= 60


@pytest.mark.parametrize(("pred", "true", "spacing"), CASES)
def test_matches_the_definition(pred, true, spacing):
    ours = surface_distances(pred, true, spacing)
    ref = reference(pred, true, spacing)
    assert all(math.isfinite(v) for v in ours)
    assert ours == pytest.approx(ref, rel=1e-5, abs=1e-5)


def test_shifted_square_is_the_shift_in_mm():
    a, b = np.zeros((40, 40), bool), np.zeros((40, 40), bool)
    a[10:20, 10:20] = True
    b[10:20, 13:23] = True  # three columns to the right
    hd95, asd = surface_distances(a, b, (0.5, 2.0))
    assert hd95 == pytest.approx(6.0)
    assert 0 < asd < 6.0


@pytest.mark.parametrize("which", ["pred", "true", "both"])
def test_empty_mask_is_nan(which):
    mask, empty = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    mask[2:5, 2:5] = True
    pred = empty if which in ("pred", "both") else mask
    true = empty if which in ("true", "both") else mask
    assert all(math.isnan(v) for v in surface_distances(pred, true, (1.0, 1.0)))


def test_rejects_mismatched_inputs():
    m = np.ones((4, 4), bool)
    with pytest.raises(ValueError):
        surface_distances(m, np.ones((4, 5), bool), (1.0, 1.0))
    with pytest.raises(ValueError):
        surface_distances(m, m, (1.0, 1.0, 1.0))
