"""DCE breast-MRI phantoms: bilateral anatomy, fat-suppressed T1 signal with contrast kinetics, written as DICOM.

Anatomy (patient LPS millimetres, prone, axial slices; it scales with the field of view): two half-ellipsoid
breasts with a skin layer, subcutaneous and retromammary fat and fibroglandular tissue (FGT: a cone of tissue
towards the nipple with strands and scalloped edges, its share of the breast drawn from one of the four ACR
density categories); in front of the chest wall the body's skin and fat; behind it the pectoral muscle, ribs,
sternum, the heart, the aorta, the mediastinum and the lungs. Background parenchymal enhancement (BPE) is a
patchy sub-region of the FGT, favouring its posterior part, whose share of the FGT is drawn uniformly over
one of the four conventional categories (minimal < 25 %, mild 25-50 %, moderate 50-75 %, marked > 75 %; the
whole of 2-98 % is covered, next to the cut-offs too, so category boundaries are as ambiguous as on real studies).

Signal: pre-contrast ``S0`` (fat suppressed, less so towards the sides: FGT bright, fat dark) with a little
texture; post-contrast phase ``p`` at ``t_p`` s after injection: ``S0 * (1 + RE(t_p))`` with the empirical
kinetic model ``RE(t) = A (1 - exp(-k_in t)) exp(-k_out t)`` per tissue: BPE persistent or plateau, its
amplitude rising with the BPE category (0.2-1.2 at the first phase), non-enhancing FGT below 0.1, blood pool
(heart, aorta) an early peak with washout, muscle and skin slowly persistent. BPE rises from the FGT level
over a few millimetres (labels: BPE where it is at least half way). Then, per phase: a smooth coil
sensitivity (bias) field, partial volume (the acquisition's point-spread function and slice profile), a
drifting rigid shift of the post-contrast phases (mild motion) and Rician noise. Labels come from the
generating tissue maps on the pre-contrast grid, never from the noisy images.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ..dicom.geometry import affine_ras, slice_normal
from ..labels import BPE, BPE_CATEGORY_NAMES, BPE_CUTOFFS, FGT, NOT_ANNOTATED, bpe_category

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
#: Range of the BPE fractions drawn: the whole of it, category cut-offs included (no margin around them).
BPE_FRACTION_RANGE = (0.02, 0.98)

LAYOUTS = ("flat", "nested", "series_dirs")

_SURNAMES = ("Smith", "Garcia", "Muller", "Rossi", "Novak", "Kowalska", "Jensen", "Dubois", "Silva", "Okafor",
             "Tanaka", "Nguyen", "Haddad", "Petrova", "Larsen", "Moreau", "Costa", "Fischer", "Ivanova", "Brown")
_GIVEN = ("Anna", "Maria", "Laura", "Sofia", "Elena", "Julia", "Hannah", "Chloe", "Ingrid", "Amara",
          "Yuki", "Linh", "Leila", "Olga", "Freya", "Claire", "Beatriz", "Greta", "Irina", "Emily")


def bpe_fraction_bounds(category: int) -> tuple[float, float]:
    """``[lo, hi)`` of the BPE fractions of ``category``: its cut-offs, within :data:`BPE_FRACTION_RANGE`."""
    edges = (BPE_FRACTION_RANGE[0], *BPE_CUTOFFS, BPE_FRACTION_RANGE[1])
    return float(edges[category]), float(edges[category + 1])


def draw_bpe_fraction(rng: np.random.Generator, category: int) -> float:
    """A BPE fraction (BPE share of the FGT) uniform over the whole of ``category``, up to its cut-offs.

    One ``rng.uniform`` draw whatever the category, so the rest of the patient's stream does not depend on it.
    Fractions near a cut-off are as likely as any other: the category a reader (or a model) assigns to such a
    patient can differ from the drawn one, as it does on real studies.
    """
    if category not in range(len(BPE_CATEGORY_NAMES)):
        raise ValueError(f"BPE category must be 0..{len(BPE_CATEGORY_NAMES) - 1}, got {category!r}")
    lo, hi = bpe_fraction_bounds(category)
    return float(rng.uniform(lo, hi))


def _top_share(score: np.ndarray, fraction: float, category: int) -> tuple[np.ndarray, float]:
    """The ``k = round(fraction * n)`` highest of the ``n`` scores and a threshold between them and the rest.

    ``k`` is kept within ``category``'s cut-offs, so the realised fraction ``k / n`` is the drawn one to within
    one voxel and lies in the drawn category even when the draw is next to a cut-off.
    """
    n = score.size
    lo, hi = bpe_fraction_bounds(category)
    k = int(round(fraction * n))
    k_min, k_max = int(np.ceil(lo * n)), int(np.ceil(hi * n)) - 1
    if k_min <= k_max:
        k = min(max(k, k_min), k_max)
    k = min(max(k, 0), n)
    order = np.argsort(score, kind="stable")
    top = np.zeros(n, bool)
    top[order[n - k:]] = True
    if k == 0:
        return top, float(score[order[-1]])
    if k == n:
        return top, float(score[order[0]])
    return top, float(0.5 * (score[order[n - k - 1]] + score[order[n - k]]))


@dataclass
class Geometry:
    """Acquisition grid of every series of a study (all phases share it)."""

    shape: tuple[int, int, int]  # (columns, rows, slices): array index [i, j, k]
    pixel_spacing: tuple[float, float]  # DICOM (row spacing, column spacing), mm
    slice_step: float  # mm between slices along the normal
    iop: tuple[float, ...]
    ipp_first: tuple[float, float, float]  # IPP of slice k = 0

    def ipp(self, k: int) -> tuple[float, float, float]:
        n = slice_normal(self.iop)
        return tuple(round(float(v), 4) for v in np.asarray(self.ipp_first) + k * self.slice_step * n)

    @property
    def affine(self) -> np.ndarray:
        """NIfTI (RAS) affine of the grid, from the values exactly as written to DICOM."""
        return affine_ras(self.iop, self.ipp_first, self.pixel_spacing, self.slice_step)

    def lps_coordinates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """LPS coordinates (mm) of every voxel centre, each of shape ``shape``."""
        row = np.asarray(self.iop[:3])
        col = np.asarray(self.iop[3:6])
        n = slice_normal(self.iop)
        i, j, k = (np.arange(s, dtype=float) for s in self.shape)
        dr, dc = self.pixel_spacing
        pos = (np.asarray(self.ipp_first)[:, None, None, None]
               + row[:, None, None, None] * (i[:, None, None] * dc)
               + col[:, None, None, None] * (j[None, :, None] * dr)
               + n[:, None, None, None] * (k[None, None, :] * self.slice_step))
        return pos[0], pos[1], pos[2]


@dataclass
class MriPhantom:
    geometry: Geometry
    labels: np.ndarray  # uint8 [i, j, k], full ground truth (0/1/2), every slice
    phases: list[np.ndarray]  # physical signal (float, arbitrary units) per phase; phase 0 = pre-contrast
    phase_times_s: list[float]  # acquisition time of each phase after the pre-contrast start
    truth: dict[str, Any] = field(default_factory=dict)
    tissue: np.ndarray | None = None  # uint8 [i, j, k]: index into TISSUES (not written to disk)


TISSUES = ("air", "fat", "skin", "fgt", "bpe", "muscle", "sternum", "ribs", "heart", "aorta", "mediastinum", "lungs")


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: tuple[float, ...]) -> np.ndarray:
    """Unit-variance Gaussian noise smoothed with ``sigma_vox`` (float32).

    Wide kernels are applied on a coarser grid (at least ~2.5 samples per sigma) and interpolated back, so a
    field of a 10 mm correlation length on a 0.7 mm grid costs about as much as one on a 2 mm grid.
    """
    factors = tuple(max(1, int(s // 2.5)) for s in sigma_vox)
    coarse = tuple(int(np.ceil(n / f)) + 2 if f > 1 else n for n, f in zip(shape, factors))
    f = ndimage.gaussian_filter(rng.standard_normal(coarse).astype(np.float32),
                                tuple(s / fa for s, fa in zip(sigma_vox, factors)), mode="reflect")
    if any(fa > 1 for fa in factors):
        # voxel n of the fine grid sits at coarse coordinate (n + 0.5) / factor - 0.5 + 1 (one pad sample)
        axes = [((np.arange(n) + 0.5) / fa - 0.5 + (1.0 if fa > 1 else 0.0)) for n, fa in zip(shape, factors)]
        f = _interp_separable(f, axes)
    f = f[tuple(slice(0, n) for n in shape)]
    return (f - f.mean()) / (f.std() + 1e-12)


def _interp_separable(a: np.ndarray, coords: list[np.ndarray]) -> np.ndarray:
    """Linear interpolation of ``a`` at the outer product of per-axis coordinates (clamped at the borders)."""
    for axis, c in enumerate(coords):
        n = a.shape[axis]
        if n == c.size and np.allclose(c, np.arange(n)):
            continue
        c = np.clip(c, 0.0, n - 1.0)
        lo = np.floor(c).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        w = (c - lo).astype(np.float32)
        shape = [1] * a.ndim
        shape[axis] = -1
        w = w.reshape(shape)
        a = np.take(a, lo, axis=axis) * (1.0 - w) + np.take(a, hi, axis=axis) * w
    return a


# Breast density (ACR BI-RADS a-d) as the FGT share of the breast volume.
DENSITY_CATEGORY_NAMES = ("fatty", "scattered", "heterogeneous", "extremely dense")
_DENSITY_RANGES = ((0.05, 0.10), (0.10, 0.25), (0.25, 0.50), (0.50, 0.70))
# Relative enhancement of BPE at the first post-contrast phase, by BPE category: marked BPE is both wider and
# stronger. Non-enhancing FGT stays below 10 % at every phase.
_RE1_BPE = ((0.20, 0.35), (0.35, 0.55), (0.55, 0.80), (0.80, 1.20))
CURVE_TYPES = ("persistent", "plateau", "washout")  # kinetic curve types (late vs first post-contrast phase)


def enhancement_curve(t: np.ndarray | float, amplitude: float, k_in: float, k_out: float) -> np.ndarray:
    """Relative enhancement at ``t`` s after injection (empirical model: A (1 - e^-k_in t) e^-k_out t)."""
    t = np.asarray(t, dtype=float)
    return amplitude * (1.0 - np.exp(-k_in * t)) * np.exp(-k_out * t)


def curve_type(re_values: list[float] | np.ndarray, tolerance: float = 0.1) -> str:
    """Kinetic type from the relative enhancement at each post-contrast phase (first vs last, +-10 %);
    ``undetermined`` from a single post-contrast phase."""
    if len(re_values) < 2:
        return "undetermined"
    first, last = float(re_values[0]), float(re_values[-1])
    if first <= 0:
        return "persistent" if last > first else "plateau"
    change = last / first - 1.0
    return "persistent" if change > tolerance else ("washout" if change < -tolerance else "plateau")


def _draw_kinetics(rng: np.random.Generator, kind: str) -> tuple[float, float]:
    """(k_in, k_out) in 1/s for a curve of ``kind`` sampled at 60-100 s intervals from 60-100 s on."""
    if kind == "persistent":
        return float(rng.uniform(0.004, 0.010)), float(rng.uniform(-0.0006, 0.0))
    if kind == "plateau":
        return float(rng.uniform(0.035, 0.06)), float(rng.uniform(0.0, 0.0004))
    return float(rng.uniform(0.05, 0.09)), float(rng.uniform(0.0025, 0.004))


def draw_geometry(rng: np.random.Generator, matrix: int, slices: int, spacing_mm: float | None = None,
                  slice_mm: float | None = None) -> Geometry:
    """Axial grid: ``matrix`` x ``matrix`` pixels of ``spacing_mm`` (else a 300-360 mm field of view) and
    ``slices`` slices of ``slice_mm`` (else a 130-160 mm slab)."""
    fov = rng.uniform(300.0, 360.0)
    spacing = round(float(spacing_mm), 4) if spacing_mm else round(fov / matrix, 4)
    slab = rng.uniform(130.0, 160.0)
    step = round(float(slice_mm), 4) if slice_mm else round(slab / slices, 4)
    centre = np.array([rng.uniform(-8, 8), rng.uniform(-15, 15), rng.uniform(-40, 40)])
    iop = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # axial: rows run to the patient's left, columns to posterior
    first = centre - (matrix - 1) / 2.0 * spacing * np.array([1.0, 1.0, 0.0]) - (slices - 1) / 2.0 * step * np.array([0, 0, 1.0])
    return Geometry((matrix, matrix, slices), (spacing, spacing), step, iop, tuple(round(float(v), 4) for v in first))


def _axes_mm(geo: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open-grid LPS coordinates (mm) of the voxel centres of an axial grid: x [i,1,1], y [1,j,1], z [1,1,k]."""
    if tuple(geo.iop) != (1.0, 0.0, 0.0, 0.0, 1.0, 0.0):
        raise ValueError("the phantom is built on an axial grid")
    n_i, n_j, n_k = geo.shape
    x0, y0, z0 = geo.ipp_first
    x = (x0 + np.arange(n_i) * geo.pixel_spacing[1]).astype(np.float32)[:, None, None]
    y = (y0 + np.arange(n_j) * geo.pixel_spacing[0]).astype(np.float32)[None, :, None]
    z = (z0 + np.arange(n_k) * geo.slice_step).astype(np.float32)[None, None, :]
    return x, y, z


def simulate_mri(rng: np.random.Generator, matrix: int = 64, slices: int = 24, post_phases: int = 2,
                 bpe_category_target: int | None = None, *, spacing_mm: float | None = None,
                 slice_mm: float | None = None, density_target: int | None = None) -> MriPhantom:
    """Anatomy, labels and signal (bias, partial volume, motion, Rician noise) of one bilateral DCE study.

    Patient LPS millimetres, prone, axial slices; anterior is small y. Anatomy scales with the field of view
    (``W`` = half of it): two half-ellipsoid breasts with a skin layer, subcutaneous and retromammary fat and
    fibroglandular tissue (FGT, a cone of tissue towards the nipple, its share of the breast drawn from one
    of the four ACR density categories); behind them the chest wall (pectoral muscle, ribs), the heart, the
    aorta and the lungs. BPE is a patchy sub-region of the FGT (its share from one of the four BPE
    categories) whose relative enhancement rises smoothly from the non-enhancing FGT level over a few mm.
    """
    geo = draw_geometry(rng, matrix, slices, spacing_mm, slice_mm)
    shape = geo.shape
    x, y, z = _axes_mm(geo)
    vx = (geo.pixel_spacing[1], geo.pixel_spacing[0], geo.slice_step)
    n_i, n_j, n_k = shape
    cx = float(x[0, 0, 0] + (n_i - 1) / 2.0 * vx[0])
    cy = float(y[0, 0, 0] + (n_j - 1) / 2.0 * vx[1])
    cz = float(z[0, 0, 0] + (n_k - 1) / 2.0 * vx[2])
    half_fov = 0.5 * n_i * vx[0]
    W = float(np.clip(half_fov, 60.0, 200.0))  # anatomy scale (mm); a tiny grid still sees the whole body
    slab_half = 0.5 * n_k * vx[2]

    def noise(sigma_mm: float) -> np.ndarray:
        return _smooth_noise(rng, shape, tuple(sigma_mm / v for v in vx))

    def full(a: np.ndarray) -> np.ndarray:
        return np.broadcast_to(a, shape)

    # Chest wall: curved (convex anteriorly); the breasts hang in front of it.
    y0 = cy + rng.uniform(0.08, 0.2) * W
    ycw = (y0 + 0.22 * (x - cx) ** 2 / W).astype(np.float32)  # [i,1,1]
    z_mid = cz + rng.uniform(-0.15, 0.15) * min(slab_half, 0.35 * W)

    # Breasts (half-ellipsoids), their skin and the depth below the skin (mm).
    breast = np.zeros(shape, bool)
    skin = np.zeros(shape, bool)
    depth_mm = np.zeros(shape, np.float32)
    axis_dist = np.full(shape, np.inf, np.float32)  # distance from the nipple axis, relative to the breast radius
    t_skin = rng.uniform(1.5, 2.5)
    size = rng.uniform(0.9, 1.1)
    sides = []
    for side in (-1.0, 1.0):
        asym = rng.uniform(0.93, 1.07)
        xc = cx + side * rng.uniform(0.45, 0.52) * W
        ax = rng.uniform(0.33, 0.42) * W * size * asym
        ay = rng.uniform(0.35, 0.65) * W * size * asym  # anterior projection (chest wall to nipple)
        az = rng.uniform(0.30, 0.38) * W * size * asym
        lump = 1.0 + 0.03 * noise(25.0)
        r = np.sqrt(((x - xc) / ax) ** 2 + ((y - ycw) / ay) ** 2 + ((z - z_mid) / az) ** 2) / lump
        inside = (r <= 1.0) & (y <= ycw)
        d = (1.0 - r) * (ax + ay + az) / 3.0
        breast |= inside
        skin |= inside & (d < t_skin)
        depth_mm = np.where(inside, np.maximum(depth_mm, d), depth_mm)
        rho = np.sqrt(((x - xc) / ax) ** 2 + ((z - z_mid) / az) ** 2)
        axis_dist = np.where(inside, np.minimum(axis_dist, rho), axis_dist)
        sides.append({"centre_x_mm": float(xc), "radii_mm": [float(ax), float(ay), float(az)]})

    # Torso: subcutaneous fat and skin in front of the chest wall, pectoral muscle, ribs, thorax.
    fat_t = rng.uniform(6.0, 16.0)
    body_ax = rng.uniform(0.88, 0.98) * W
    yb = y0 + 0.55 * W
    ell = ((x - cx) / body_ax) ** 2 + ((y - yb) / (0.75 * W)) ** 2
    torso = (y >= ycw - fat_t) & (ell <= 1.0) & ~breast
    torso = full(torso) if torso.shape != shape else torso
    torso_skin = torso & ((y < ycw - fat_t + t_skin) | (ell > (1.0 - t_skin / body_ax) ** 2)) & ~breast
    t_muscle = rng.uniform(8.0, 18.0)
    lateral = np.abs(x - cx)
    muscle = torso & (y >= ycw) & (y < ycw + t_muscle) & (lateral < 0.72 * W) & (lateral > 12.0)
    sternum = torso & (y >= ycw) & (y < ycw + 14.0) & (lateral <= 12.0)
    rib_band = torso & (y >= ycw + t_muscle) & (y < ycw + t_muscle + 11.0)
    period, phase0 = rng.uniform(24.0, 32.0), rng.uniform(0.0, 2 * np.pi)
    rib_pattern = np.cos(2 * np.pi * (z + 0.45 * lateral) / period + phase0) > 0.15
    ribs = rib_band & rib_pattern & (lateral > 20.0)
    intercostal = rib_band & ~ribs & ~sternum
    thorax = torso & (y >= ycw + t_muscle + 11.0) & (ell <= (1.0 - 12.0 / body_ax) ** 2)
    heart_c = (cx + rng.uniform(0.08, 0.2) * W, float(y0) + t_muscle + 11.0 + rng.uniform(0.22, 0.3) * W,
               z_mid - rng.uniform(0.0, 0.25) * W)
    heart_r = (rng.uniform(0.3, 0.38) * W, rng.uniform(0.22, 0.28) * W, rng.uniform(0.3, 0.4) * W)
    heart = thorax & ((((x - heart_c[0]) / heart_r[0]) ** 2 + ((y - heart_c[1]) / heart_r[1]) ** 2
                       + ((z - heart_c[2]) / heart_r[2]) ** 2) <= 1.0)
    aorta_c = (cx + rng.uniform(0.05, 0.12) * W, heart_c[1] + heart_r[1] + rng.uniform(8.0, 14.0))
    aorta = thorax & ~heart & (((x - aorta_c[0]) ** 2 + (y - aorta_c[1]) ** 2) <= rng.uniform(10.0, 13.0) ** 2)
    mediastinum = thorax & ~heart & ~aorta & (np.abs(x - cx) < 0.18 * W)
    lungs = thorax & ~heart & ~aorta & ~mediastinum
    body_fat = torso & ~torso_skin & ~muscle & ~sternum & ~ribs & ~intercostal & ~thorax

    # FGT: a cone of tissue towards the nipple, away from the skin and the chest wall, thresholded to the density.
    density_cat = int(rng.integers(4)) if density_target is None else int(density_target)
    density = rng.uniform(*_DENSITY_RANGES[density_cat])
    sub_fat = rng.uniform(3.0, 10.0)
    retro = rng.uniform(3.0, 8.0)
    eligible = breast & (depth_mm > t_skin + sub_fat) & (y < ycw - retro)
    fine = rng.uniform(2.0, 3.5)  # strands and scalloped edges
    score = (noise(rng.uniform(6.0, 9.0)) + rng.uniform(0.6, 1.0) * noise(fine)
             + rng.uniform(1.6, 2.4) * (1.0 - np.clip(axis_dist, 0.0, 1.0)))
    fgt = np.zeros(shape, bool)
    if eligible.any():
        share = min(0.95, density * breast.sum() / eligible.sum())
        fgt = eligible & (score > np.quantile(score[eligible], 1.0 - share))

    # BPE: patchy, favouring the posterior and lateral parts of the gland; a soft transition into non-enhancing FGT.
    category = int(rng.integers(4)) if bpe_category_target is None else int(bpe_category_target)
    frac_target = draw_bpe_fraction(rng, category)
    posterior = np.clip((y - (ycw - 0.5 * W)) / (0.5 * W), 0.0, 1.0)
    bpe_score = noise(rng.uniform(6.0, 10.0)) + 0.5 * noise(3.0) + rng.uniform(0.3, 0.8) * posterior
    bpe = np.zeros(shape, bool)
    thr = 0.0
    if fgt.any():
        inside, thr = _top_share(bpe_score[fgt], frac_target, category)
        bpe[fgt] = inside
    weight = np.where(fgt, 1.0 / (1.0 + np.exp(-(bpe_score - thr) / 0.12)), 0.0).astype(np.float32)
    nonenh = fgt & ~bpe

    labels = np.zeros(shape, np.uint8)
    labels[nonenh] = FGT
    labels[bpe] = BPE

    # Pre-contrast signal (fat-suppressed T1 gradient echo; fat suppression weaker towards the sides).
    fat_residual = rng.uniform(0.06, 0.16) * (1.0 + 1.5 * np.clip(np.abs(x - cx) / W - 0.5, 0.0, None))
    s0 = np.zeros(shape, np.float32)
    s0[...] = np.where(breast | body_fat, full(fat_residual), 0.0)
    s_fgt = rng.uniform(0.5, 0.7)
    tissues = {  # name: (mask, pre-contrast signal)
        "skin": (skin | torso_skin, rng.uniform(0.4, 0.5)),
        "fgt": (fgt, s_fgt),
        "muscle": (muscle | intercostal, rng.uniform(0.3, 0.4)),
        "sternum": (sternum, rng.uniform(0.2, 0.3)),
        "ribs": (ribs, rng.uniform(0.08, 0.15)),
        "heart": (heart, rng.uniform(0.3, 0.45)),
        "aorta": (aorta, rng.uniform(0.3, 0.45)),
        "mediastinum": (mediastinum, float(np.mean(fat_residual))),
        "lungs": (lungs, 0.02),
    }
    for mask, value in tissues.values():
        s0[mask] = value
    s0 *= (1.0 + rng.uniform(0.04, 0.08) * noise(3.0)).astype(np.float32)

    # Contrast kinetics: phases at 60-100 s intervals, from 60-100 s after injection.
    n_post = int(post_phases)
    first, step = rng.uniform(60.0, 100.0), rng.uniform(60.0, 100.0)
    times = [0.0] + [float(round(first + step * p, 1)) for p in range(n_post)]
    t_post = np.asarray(times[1:])
    bpe_type = "persistent" if rng.random() < 0.75 else "plateau"
    k_in, k_out = _draw_kinetics(rng, bpe_type)
    re1 = rng.uniform(*_RE1_BPE[category])
    kinetics = {"bpe": (re1 / float(enhancement_curve(t_post[0], 1.0, k_in, k_out)), k_in, k_out)}
    k_in_f, k_out_f = _draw_kinetics(rng, "persistent")
    peak_f = float(enhancement_curve(t_post, 1.0, k_in_f, k_out_f).max())
    kinetics["fgt"] = (rng.uniform(0.02, 0.08) / peak_f, k_in_f, k_out_f)
    k_in_h, k_out_h = _draw_kinetics(rng, "washout")
    kinetics["heart"] = (rng.uniform(1.8, 3.0), k_in_h, k_out_h)
    kinetics["aorta"] = (kinetics["heart"][0] * rng.uniform(0.9, 1.1), k_in_h, k_out_h)
    kinetics["muscle"] = (rng.uniform(0.25, 0.45), *_draw_kinetics(rng, "persistent"))
    kinetics["skin"] = (rng.uniform(0.2, 0.4), *_draw_kinetics(rng, "persistent"))
    kinetics["fat"] = (rng.uniform(0.02, 0.05), *_draw_kinetics(rng, "persistent"))
    curves = {name: [float(v) for v in enhancement_curve(t_post, *abc)] for name, abc in kinetics.items()}
    bpe_var = np.clip(1.0 + 0.2 * noise(5.0), 0.5, 1.5)

    # Coil sensitivity: smooth, stronger towards the breast coil (anterior), one side brighter than the other.
    u = (x - cx) / W
    v = (y - cy) / W
    w = (z - cz) / W
    c = rng.uniform(-0.3, 0.3, 5)
    bias = np.exp(c[0] * u + c[1] * u * u + c[2] * w + c[3] * u * v - rng.uniform(0.2, 0.5) * v
                  + c[4] * v * v).astype(np.float32)
    bias = bias * (1.0 + rng.uniform(-0.15, 0.15) * np.tanh(3.0 * u))
    bias = np.broadcast_to(bias, shape)
    bias = bias / (bias[breast].mean() if breast.any() else bias.mean())

    # Partial volume: the point-spread function of the acquisition (in-plane and slice profile).
    psf = (rng.uniform(0.45, 0.65), rng.uniform(0.45, 0.65), rng.uniform(0.3, 0.45))
    # Mild motion between phases: a drifting rigid shift (mm), none for the pre-contrast phase.
    motion_mm = [np.zeros(3)]
    drift = rng.uniform(0.2, 0.8)
    for _ in range(n_post):
        motion_mm.append(motion_mm[-1] + rng.normal(0.0, drift, 3) * np.array([1.0, 1.0, 0.5]))

    scale = 1000.0
    snr = rng.uniform(18.0, 40.0)  # FGT pre-contrast signal over the noise sigma
    sigma = float(s_fgt) / snr

    masks = {"skin": tissues["skin"][0], "muscle": tissues["muscle"][0], "heart": heart, "aorta": aorta,
             "fat": breast & ~fgt & ~skin | body_fat}
    phases: list[np.ndarray] = []
    re_maps: list[np.ndarray] = []
    for p in range(n_post + 1):
        re = np.zeros(shape, np.float32)
        if p > 0:
            for name, mask in masks.items():
                re[mask] = curves[name][p - 1]
            re_f, re_b = curves["fgt"][p - 1], curves["bpe"][p - 1]
            re[fgt] = re_f + weight[fgt] * (re_b * bpe_var[fgt] - re_f)
        re_maps.append(re)
        clean = s0 * (1.0 + re) * bias
        clean = ndimage.gaussian_filter(clean, psf, mode="nearest")
        if p > 0:
            clean = ndimage.shift(clean, motion_mm[p] / np.asarray(vx), order=1, mode="nearest")
        noisy = np.hypot(clean + sigma * rng.standard_normal(shape, dtype=np.float32),
                         sigma * rng.standard_normal(shape, dtype=np.float32))
        phases.append(noisy.astype(np.float64) * scale)

    tissue = np.zeros(shape, np.uint8)
    tissue[breast | body_fat] = TISSUES.index("fat")
    for name, (mask, _) in tissues.items():
        tissue[mask] = TISSUES.index(name)
    tissue[bpe] = TISSUES.index("bpe")

    n_fgt = int(fgt.sum())
    fraction = float(bpe.sum() / n_fgt) if n_fgt else 0.0
    n_breast = int(breast.sum())
    truth = {
        "bpe_fraction": fraction,
        "bpe_category": bpe_category(fraction),
        "bpe_category_name": BPE_CATEGORY_NAMES[bpe_category(fraction)],
        "bpe_fraction_target": float(frac_target),
        "fgt_voxels": n_fgt,
        "bpe_voxels": int(bpe.sum()),
        "breast_voxels": n_breast,
        "breast_density": float(n_fgt / max(n_breast, 1)),
        "density_category": density_cat,
        "density_category_name": DENSITY_CATEGORY_NAMES[density_cat],
        "pixel_spacing_mm": list(geo.pixel_spacing),
        "slice_thickness_mm": geo.slice_step,
        "re_bpe": curves["bpe"],
        "re_fgt": curves["fgt"],
        "enhancement_curves": curves,
        "curve_types": {name: curve_type(v) for name, v in curves.items()},
        "bpe_curve_type": bpe_type,
        "kinetics": {name: {"amplitude": float(a), "k_in": float(ki), "k_out": float(ko)}
                     for name, (a, ki, ko) in kinetics.items()},
        "noise_sigma": sigma * scale,
        "snr_fgt": float(snr),
        "psf_sigma_vox": [float(s) for s in psf],
        "motion_mm": [[float(v) for v in m] for m in motion_mm],
        "breasts": sides,
        "phase_times_s": times,
        "_re_maps": re_maps,  # consumed by the writer (per-slice means), not serialised
    }
    return MriPhantom(geo, labels, phases, times, truth, tissue)


# --------------------------------------------------------------------------------------------- DICOM
def _uid(*parts: Any) -> str:
    """A UID in the ``2.25`` (UUID-derived) root, computed from ``parts``: same seed, same UID."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()[:16]
    return f"2.25.{int.from_bytes(digest, 'big')}"


def _ds(v: float) -> str:
    """Decimal String value (at most 16 characters) of a number already rounded to 4 decimals."""
    s = f"{float(v):.10g}"
    if len(s) > 16:
        raise ValueError(f"{v!r} does not fit a DICOM DS value")
    return s


@dataclass
class StoredSeries:
    description: str
    uid: str
    number: int
    temporal_position: int
    acquisition_time: str
    slope: float
    intercept: float
    signed: bool


def _time_str(seconds: float) -> str:
    seconds = int(round(seconds)) % 86400
    return f"{seconds // 3600:02d}{(seconds % 3600) // 60:02d}{seconds % 60:02d}.000000"


def _stored_values(image: np.ndarray, slope: float, intercept: float, signed: bool) -> np.ndarray:
    lo, hi = (-32768, 32767) if signed else (0, 65535)
    stored = np.clip(np.rint((image - intercept) / slope), lo, hi)
    return stored.astype(np.int16 if signed else np.uint16)


def write_study(study_dir: Path, phantom: MriPhantom, identity: dict[str, str], rng: np.random.Generator,
                uid_seed: tuple[Any, ...], annotated_fraction: float = 0.5, *, rescaled: bool | None = None,
                layout: str | None = None, slice_rng: np.random.Generator | None = None,
                withheld_dir: Path | None = None) -> dict[str, Any]:
    """Write every phase as a DICOM series plus ``labels.nii.gz``; return the study's ground truth.

    ``withheld_dir``: also write the labels of every slice, the unannotated ones included, to
    ``withheld_dir/labels.nii.gz`` (a folder outside the cohort: what an annotator would draw, for benchmarks of
    which slices to annotate next; nothing of it reaches the cohort's files).

    ``rescaled``: store signed values with a RescaleSlope/Intercept that differs per series (as some vendors
    do) instead of unsigned values with slope 1, intercept 0. ``layout``: ``flat`` (hashed names in the study
    folder), ``nested`` (two levels of hashed sub-folders) or ``series_dirs`` (one opaque folder per series).
    Both are drawn from ``rng`` when not given.

    Annotated slices: ``round(annotated_fraction * slices)`` of the slices holding fibroglandular tissue. With
    ``slice_rng`` they are the first ones of a ranking of those slices drawn from it, so a larger fraction
    annotates a superset of the slices; without it they are drawn from ``rng`` after every other draw. Either
    way no draw that shapes the images depends on the fraction.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    from .writers import write_nifti_gz

    geo = phantom.geometry
    n_i, n_j, n_k = geo.shape
    study_uid = _uid(*uid_seed, "study")
    frame_uid = _uid(*uid_seed, "frame")
    study_start = float(rng.integers(8 * 3600, 17 * 3600))
    philips_like = bool(rng.random() < 0.4) if rescaled is None else bool(rescaled)
    layout = str(rng.choice(LAYOUTS)) if layout is None else layout
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}")
    reverse_instances = bool(rng.random() < 0.5)
    n_phases = len(phantom.phases)

    series: list[StoredSeries] = []
    for p in range(n_phases):
        if philips_like:
            slope, intercept, signed = float(round(rng.uniform(0.4, 2.5), 5)), float(rng.choice([0.0, -100.0, -1024.0])), True
        else:
            slope, intercept, signed = 1.0, 0.0, False
        desc = "Ax T1 FS DYN pre" if p == 0 else f"Ax T1 FS DYN post{p}"
        series.append(StoredSeries(desc, _uid(*uid_seed, "series", p), 600 + 100 * p if philips_like else 5 + p, p + 1,
                                   _time_str(study_start + 300.0 + phantom.phase_times_s[p]), slope, intercept, signed))

    series_dir_names = [hashlib.sha1(f"{s.uid}/dir".encode()).hexdigest()[:8].upper() for s in series]
    p99 = float(np.percentile(phantom.phases[0], 99))
    window = (_ds(round(p99 / 2.0, 1)), _ds(round(p99, 1)))
    files = []
    for p, s in enumerate(series):
        image = phantom.phases[p]
        stored = _stored_values(image, s.slope, s.intercept, s.signed)
        for k in range(n_k):
            inst = (n_k - k) if reverse_instances else (k + 1)
            sop_uid = _uid(*uid_seed, "sop", p, k)
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
            meta.MediaStorageSOPInstanceUID = sop_uid
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = pydicom.Dataset()
            ds.file_meta = meta
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
            ds.SOPClassUID = MR_IMAGE_STORAGE
            ds.SOPInstanceUID = sop_uid
            ds.StudyDate = identity["study_date"]
            ds.SeriesDate = identity["study_date"]
            ds.AcquisitionDate = identity["study_date"]
            ds.ContentDate = identity["study_date"]
            ds.StudyTime = _time_str(study_start)
            ds.SeriesTime = s.acquisition_time
            ds.AcquisitionTime = s.acquisition_time
            ds.ContentTime = s.acquisition_time
            ds.AccessionNumber = identity["accession"]
            ds.Modality = "MR"
            ds.Manufacturer = "Philips" if philips_like else "SIEMENS"
            ds.InstitutionName = identity["institution"]
            ds.ReferringPhysicianName = identity["referring"]
            ds.StudyDescription = "MRI BREAST BILATERAL W WO CONTRAST"
            ds.SeriesDescription = s.description
            ds.PatientName = identity["name"]
            ds.PatientID = identity["patient_id"]
            ds.PatientBirthDate = identity["birth_date"]
            ds.PatientSex = "F"
            ds.PatientAge = identity["age"]
            ds.BodyPartExamined = "BREAST"
            ds.ScanningSequence = "GR"
            ds.SequenceVariant = ["SP", "SS"]
            ds.ScanOptions = "FS"
            ds.MRAcquisitionType = "3D"
            ds.SliceThickness = _ds(geo.slice_step)
            ds.SpacingBetweenSlices = _ds(geo.slice_step)
            ds.RepetitionTime = "4.5"
            ds.EchoTime = "1.8"
            ds.FlipAngle = "10"
            ds.MagneticFieldStrength = "3" if philips_like else "1.5"
            ds.PatientPosition = "FFP"
            if p > 0:
                ds.ContrastBolusAgent = "Gadobutrol"
                ds.ContrastBolusStartTime = _time_str(study_start + 300.0)
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = s.uid
            ds.StudyID = identity["study_id"]
            ds.SeriesNumber = s.number
            ds.AcquisitionNumber = 1
            ds.InstanceNumber = inst
            ds.ImagePositionPatient = [_ds(v) for v in geo.ipp(k)]
            ds.ImageOrientationPatient = [_ds(v) for v in geo.iop]
            ds.FrameOfReferenceUID = frame_uid
            ds.TemporalPositionIdentifier = s.temporal_position
            ds.NumberOfTemporalPositions = n_phases
            ds.PositionReferenceIndicator = ""
            ds.SliceLocation = _ds(round(float(np.dot(geo.ipp(k), slice_normal(geo.iop))), 4))
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows = n_j
            ds.Columns = n_i
            ds.PixelSpacing = [_ds(v) for v in geo.pixel_spacing]
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1 if s.signed else 0
            ds.WindowCenter, ds.WindowWidth = window
            ds.RescaleIntercept = _ds(s.intercept)
            ds.RescaleSlope = _ds(s.slope)
            ds.RescaleType = "US"
            ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
            name = hashlib.sha1(sop_uid.encode()).hexdigest()
            if layout == "flat":
                rel = Path(f"{name[:16]}.dcm")
            elif layout == "nested":
                rel = Path(name[:2]) / name[2:4] / f"{name[4:20]}.dcm"
            else:
                rel = Path(series_dir_names[p]) / f"IM{name[:10].upper()}.dcm"
            target = study_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(target, enforce_file_format=True)
            files.append(str(rel))

    # Labels on the pre-contrast grid; only a subset of the slices is annotated.
    labels = phantom.labels
    with_tissue = np.flatnonzero((labels > 0).any(axis=(0, 1)))
    pool = with_tissue if with_tissue.size else np.arange(n_k)
    n_ann = int(np.clip(round(annotated_fraction * n_k), 1, pool.size))
    if slice_rng is None:
        annotated = np.sort(rng.choice(pool, n_ann, replace=False))
    else:  # a ranking of the slices that does not depend on the fraction: a larger one annotates a superset
        annotated = np.sort(slice_rng.permutation(pool)[:n_ann])
    stored_labels = np.full(labels.shape, NOT_ANNOTATED, np.uint8)
    stored_labels[:, :, annotated] = labels[:, :, annotated]
    write_nifti_gz(study_dir / "labels.nii.gz", stored_labels, geo.affine)
    if withheld_dir is not None:
        Path(withheld_dir).mkdir(parents=True, exist_ok=True)
        write_nifti_gz(Path(withheld_dir) / "labels.nii.gz", labels.astype(np.uint8), geo.affine)

    re_maps = phantom.truth["_re_maps"]
    ann_lab = labels[:, :, annotated]
    ann_bpe, ann_fgt = ann_lab == BPE, ann_lab == FGT
    n_ann_fgt = int((ann_lab > 0).sum())
    truth = {k: v for k, v in phantom.truth.items() if not k.startswith("_")}
    truth.update({
        "study_instance_uid": study_uid,
        "frame_of_reference_uid": frame_uid,
        "series": [{"series_instance_uid": s.uid, "description": s.description, "series_number": s.number,
                    "temporal_position": s.temporal_position, "acquisition_time": s.acquisition_time,
                    "rescale_slope": s.slope, "rescale_intercept": s.intercept,
                    "stored_dtype": "int16" if s.signed else "uint16", "phase": p} for p, s in enumerate(series)],
        "shape": list(geo.shape),
        "affine": geo.affine.tolist(),
        "annotated_slices": annotated.tolist(),
        "bpe_fraction_annotated": float(ann_bpe.sum() / n_ann_fgt) if n_ann_fgt else None,
        "re_bpe_annotated": [float(m[:, :, annotated][ann_bpe].mean()) if ann_bpe.any() else None for m in re_maps[1:]],
        "re_fgt_annotated": [float(m[:, :, annotated][ann_fgt].mean()) if ann_fgt.any() else None for m in re_maps[1:]],
        "file_layout": layout,
        "rescaled": philips_like,
        "instance_order": "descending" if reverse_instances else "ascending",
        "dicom_files": len(files),
    })
    return truth
