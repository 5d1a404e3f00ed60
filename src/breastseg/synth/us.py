"""Linear-array ultrasound RF from a point-scatterer convolution model.

Model (2-D, one receive line per element position, pulse-echo):

* Scatterers at lateral position ``x`` and depth ``z`` with real amplitude ``a`` return
  ``a * b(x_l - x) * g(t - tau) * cos(2 pi f0 (t - tau))`` on line ``l``, ``tau = 2 z / c``, where ``g`` is the
  Gaussian pulse envelope (``bandwidth`` is the -6 dB fractional bandwidth of the pulse-echo spectrum) and
  ``b`` a Gaussian beam profile of full width at half maximum ``beam_fwhm``.
* Implemented on the sample grid: each scatterer adds ``a * b * exp(-j 2 pi f0 tau)`` (the exact sub-sample
  phase) to its nearest sample of every line its beam reaches (``np.bincount``); the complex baseband signal
  is the axial convolution of that grid with ``g`` and the RF is ``Re(IQ * exp(j 2 pi f0 t))``.
  The envelope is shifted by at most half a sample (12.5 ns at 40 MHz, against a 168 ns pulse FWHM).
* Tissue: dense background scatterers (fully developed, Rayleigh speckle) with a mild smooth echogenicity
  variation; the mass is an irregular blob of sparse scatterers (pre-Rayleigh) whose amplitude is scaled so
  that its mean intensity differs from the surrounding tissue at the same depth by the drawn contrast (a few
  dB). Distractors: the bright skin line, a bright, gently curved fascia band, optionally a deep fascia
  band, posterior acoustic shadowing (or enhancement) behind some masses, depth attenuation with a partial
  time-gain compensation, and electronic noise.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


@dataclass(frozen=True)
class Probe:
    """Acquisition settings of a linear array (SI units). Defaults: a 7 MHz breast probe, 510 lines, 4 cm."""

    fs: float = 40e6
    f0: float = 7e6
    bandwidth: float = 0.75
    c: float = 1540.0
    pitch: float = 0.3e-3
    lines: int = 510
    depth: float = 0.04
    beam_fwhm: float = 1.0e-3

    @property
    def samples(self) -> int:
        return int(round(2.0 * self.depth / self.c * self.fs))

    @property
    def sigma_t(self) -> float:
        """Standard deviation (s) of the Gaussian pulse envelope."""
        sigma_f = self.bandwidth * self.f0 / FWHM_PER_SIGMA
        return 1.0 / (2.0 * np.pi * sigma_f)

    @property
    def sigma_x(self) -> float:
        """Standard deviation (m) of the Gaussian lateral beam profile."""
        return self.beam_fwhm / FWHM_PER_SIGMA

    @property
    def resolution_cell(self) -> tuple[float, float]:
        """(axial, lateral) full widths at half maximum of the point-spread function, in metres."""
        return (self.c * self.sigma_t * FWHM_PER_SIGMA / 2.0, self.beam_fwhm)

    @property
    def cell_area(self) -> float:
        ax, lat = self.resolution_cell
        return ax * lat

    def line_x(self) -> np.ndarray:
        """Lateral positions (m) of the scan lines, centred on 0."""
        return (np.arange(self.lines) - (self.lines - 1) / 2.0) * self.pitch


# --------------------------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class MassShape:
    """Irregular blob: ellipse (centre, radii in m) with a radius modulated by harmonics of the polar angle."""

    xc: float
    zc: float
    rx: float
    rz: float
    harmonics: tuple[tuple[int, float, float], ...]  # (order k, relative amplitude, phase)

    def radius_factor(self, theta: np.ndarray) -> np.ndarray:
        r = np.ones_like(theta)
        for k, amp, phase in self.harmonics:
            r = r + amp * np.cos(k * theta + phase)
        return r

    def inside(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        u = (x - self.xc) / self.rx
        v = (z - self.zc) / self.rz
        return np.hypot(u, v) <= self.radius_factor(np.arctan2(v, u))

    @property
    def bottom(self) -> float:
        """Deepest point (m) of the blob (upper bound from the harmonic amplitudes)."""
        return self.zc + self.rz * (1.0 + sum(abs(a) for _, a, _ in self.harmonics))

    @property
    def top(self) -> float:
        return self.zc - self.rz * (1.0 + sum(abs(a) for _, a, _ in self.harmonics))


def _draw_shape(rng: np.random.Generator, probe: Probe, malignant: bool, top_limit: float,
                size: tuple[float, float] | None = None) -> MassShape:
    width = probe.lines * probe.pitch
    if size is None:
        rx = min(rng.uniform(0.12, 0.2) * width, 10e-3)
        aspect = rng.uniform(0.8, 1.25) if malignant else rng.uniform(0.5, 0.85)
        rz = min(rx * aspect, 0.2 * probe.depth)
    else:
        rx, rz = size
    if malignant:  # irregular, spiculated margins
        harmonics = [(k, rng.uniform(0.04, 0.10) / np.sqrt(k - 1), rng.uniform(0, 2 * np.pi)) for k in range(2, 6)]
        harmonics += [(int(k), rng.uniform(0.02, 0.05), rng.uniform(0, 2 * np.pi)) for k in rng.choice(np.arange(7, 14), 2, replace=False)]
    else:  # oval, gently lobulated
        harmonics = [(k, rng.uniform(0.02, 0.07) / (k - 1), rng.uniform(0, 2 * np.pi)) for k in range(2, 5)]
    bulge = 1.0 + sum(a for _, a, _ in harmonics)
    lo = top_limit + rz * bulge + 1e-3
    hi = probe.depth - rz * bulge - max(1.5e-3, 0.1 * probe.depth)
    zc = rng.uniform(lo, hi) if hi > lo else (lo + hi) / 2.0
    xc = rng.uniform(-0.15, 0.15) * width
    return MassShape(float(xc), float(zc), float(rx), float(rz), tuple((int(k), float(a), float(p)) for k, a, p in harmonics))


def _contrast_regions(roi: np.ndarray, probe: Probe, margin: float = 1.5e-3) -> tuple[np.ndarray, np.ndarray]:
    """Inside (the mask) and outside (same depth rows, away from the mask by ``margin``) regions."""
    inner = roi.astype(bool)
    rows = np.flatnonzero(inner.any(axis=1))
    if rows.size == 0:
        return inner, np.zeros_like(inner)
    dz = probe.c / (2.0 * probe.fs)
    ry = max(1, int(round(margin / dz)))
    rx = max(1, int(round(margin / probe.pitch)))
    dilated = ndimage.maximum_filter1d(inner.astype(np.uint8), 2 * ry + 1, axis=0, mode="constant")
    dilated = ndimage.maximum_filter1d(dilated, 2 * rx + 1, axis=1, mode="constant").astype(bool)
    outer = np.zeros_like(inner)
    outer[rows[0]: rows[-1] + 1] = True
    outer &= ~dilated
    return inner, outer


def contrast_db(envelope: np.ndarray, roi: np.ndarray, probe: Probe | None = None) -> float:
    """Mean intensity inside the mass over the surrounding tissue at the same depths, in dB."""
    inner, outer = _contrast_regions(roi, probe or Probe())
    e2 = np.asarray(envelope, dtype=float) ** 2
    return float(10.0 * np.log10(e2[inner].mean() / e2[outer].mean()))


def envelope(rf: np.ndarray) -> np.ndarray:
    """Envelope of RF lines (samples x lines) by the Hilbert transform along depth."""
    from scipy.signal import hilbert

    return np.abs(hilbert(np.asarray(rf, dtype=float), axis=0))


# --------------------------------------------------------------------------------------------- simulation
def _accumulate(probe: Probe, x: np.ndarray, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Complex baseband RF (samples x lines) of scatterers at (x, z) with amplitudes a."""
    n_s, n_l = probe.samples, probe.lines
    tau = 2.0 * z / probe.c
    n = np.rint(tau * probe.fs).astype(np.int64)
    pos = x / probe.pitch + (n_l - 1) / 2.0
    l0 = np.rint(pos).astype(np.int64)
    half = int(np.ceil(3.0 * probe.sigma_x / probe.pitch))
    phase = np.exp(-2j * np.pi * probe.f0 * tau) * a
    grid = np.zeros(n_s * n_l, dtype=np.complex128)
    keep_n = (n >= 0) & (n < n_s)
    for d in range(-half, half + 1):  # loop over beam taps (a handful), vectorised over scatterers
        line = l0 + d
        ok = keep_n & (line >= 0) & (line < n_l)
        w = np.exp(-0.5 * ((line[ok] - pos[ok]) * probe.pitch / probe.sigma_x) ** 2) * phase[ok]
        idx = n[ok] * n_l + line[ok]
        grid += np.bincount(idx, weights=w.real, minlength=n_s * n_l) + 1j * np.bincount(idx, weights=w.imag, minlength=n_s * n_l)
    grid = grid.reshape(n_s, n_l)
    m = int(np.ceil(4.0 * probe.sigma_t * probe.fs))
    t = np.arange(-m, m + 1) / probe.fs
    g = np.exp(-0.5 * (t / probe.sigma_t) ** 2)
    return ndimage.convolve1d(grid.real, g, axis=0, mode="constant") + 1j * ndimage.convolve1d(grid.imag, g, axis=0, mode="constant")


def _uniform_points(rng: np.random.Generator, density_per_cell: float, probe: Probe, x_lo: float, x_hi: float,
                    z_lo: float, z_hi: float) -> tuple[np.ndarray, np.ndarray]:
    area = max(x_hi - x_lo, 0.0) * max(z_hi - z_lo, 0.0)
    count = rng.poisson(density_per_cell * area / probe.cell_area)
    return rng.uniform(x_lo, x_hi, count), rng.uniform(z_lo, z_hi, count)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: tuple[float, float]) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-12)


@dataclass(frozen=True)
class ScanParams:
    """Per-patient tissue and system parameters shared by the two orthogonal scans."""

    malignant: bool
    contrast_db: float
    density_background: float  # scatterers per resolution cell
    density_mass: float
    mass_amplitude_spread: float  # log-normal sigma of the mass scatterer amplitudes
    posterior: str  # "none" | "shadow" | "enhancement"
    posterior_db: float
    attenuation: float  # dB / (cm MHz), one way
    tgc_compensation: float  # fraction of the round-trip attenuation the TGC undoes
    fascia_depth: float  # m
    fascia_gain_db: float
    deep_fascia: bool
    echogenicity_db: float  # std of the smooth background echogenicity variation
    noise_db: float  # electronic noise relative to the shallow speckle level


def draw_scan_params(rng: np.random.Generator, probe: Probe, malignant: bool | None = None) -> ScanParams:
    malignant = bool(rng.random() < 0.5) if malignant is None else malignant
    if rng.random() < 0.85:  # most masses: nearly isoechoic, 0-3 dB either way (mostly hypoechoic)
        mag = rng.uniform(0.0, 3.0)
    else:
        mag = rng.uniform(3.0, 6.0)
    sign = -1.0 if rng.random() < 0.7 else 1.0
    if malignant:
        posterior = "shadow" if rng.random() < 0.45 else "none"
    else:
        u = rng.random()
        posterior = "shadow" if u < 0.1 else ("enhancement" if u < 0.35 else "none")
    posterior_db = {"none": 0.0, "shadow": -rng.uniform(6.0, 14.0), "enhancement": rng.uniform(2.0, 4.0)}[posterior]
    return ScanParams(
        malignant=malignant,
        contrast_db=float(sign * mag),
        density_background=float(rng.uniform(12.0, 25.0)),
        density_mass=float(rng.uniform(1.0, 4.0)),
        mass_amplitude_spread=float(rng.uniform(0.7, 1.0)),
        posterior=posterior,
        posterior_db=float(posterior_db),
        attenuation=float(rng.uniform(0.4, 0.8)),
        tgc_compensation=float(rng.uniform(0.6, 0.9)),
        fascia_depth=float(max(1.2e-3, rng.uniform(0.08, 0.15) * probe.depth)),
        fascia_gain_db=float(rng.uniform(8.0, 14.0)),
        deep_fascia=bool(rng.random() < 0.5),
        echogenicity_db=float(rng.uniform(0.2, 0.5)),
        noise_db=float(rng.uniform(-50.0, -40.0)),
    )


def simulate_scan(rng: np.random.Generator, probe: Probe, params: ScanParams,
                  shape: MassShape | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One B-scan: ``(rf int16 [samples, lines], roi uint8 [samples, lines], info)``."""
    width = probe.lines * probe.pitch
    margin = 3.0 * probe.sigma_x
    x_lo, x_hi = -width / 2.0 - margin, width / 2.0 + margin
    fascia_wave = (rng.uniform(0.2e-3, 0.6e-3), rng.uniform(8e-3, 25e-3), rng.uniform(0, 2 * np.pi))
    fascia_max = params.fascia_depth + fascia_wave[0] + 0.2e-3
    if shape is None:
        shape = _draw_shape(rng, probe, params.malignant, fascia_max + 0.5e-3)

    # Depth gain: round-trip attenuation, partly undone by the TGC.
    def depth_gain(z: np.ndarray) -> np.ndarray:
        att_db = 2.0 * params.attenuation * (probe.f0 / 1e6) * (z * 100.0)
        return 10.0 ** (-(1.0 - params.tgc_compensation) * att_db / 20.0)

    # Posterior shadowing / enhancement behind the mass: a lateral window over the mass's central part.
    def posterior_gain(x: np.ndarray, z: np.ndarray) -> np.ndarray:
        if params.posterior == "none":
            return np.ones_like(x)
        lateral = np.clip(1.0 - np.abs(x - shape.xc) / (0.8 * shape.rx), 0.0, 1.0)
        lateral = np.sin(0.5 * np.pi * lateral) ** 2
        axial = np.clip((z - shape.bottom) / (1.0e-3), 0.0, 1.0)
        return 10.0 ** (params.posterior_db * lateral * axial / 20.0)

    # Smooth echogenicity variation of the background tissue (a few mm correlation).
    eg_shape = (64, 64)
    eg = _smooth_field(rng, eg_shape, (4.0, 4.0)) * params.echogenicity_db

    def echogenicity(x: np.ndarray, z: np.ndarray) -> np.ndarray:
        iz = np.clip((z / probe.depth * (eg_shape[0] - 1)).astype(int), 0, eg_shape[0] - 1)
        ix = np.clip(((x - x_lo) / (x_hi - x_lo) * (eg_shape[1] - 1)).astype(int), 0, eg_shape[1] - 1)
        return 10.0 ** (eg[iz, ix] / 20.0)

    # Background: dense scatterers outside the mass.
    bx, bz = _uniform_points(rng, params.density_background, probe, x_lo, x_hi, 0.0, probe.depth)
    keep = ~shape.inside(bx, bz)
    bx, bz = bx[keep], bz[keep]
    ba = echogenicity(bx, bz) * depth_gain(bz) * posterior_gain(bx, bz)

    # Echogenic bands: the skin line at the top, a gently curved fascia below it, optionally a deep fascia.
    def band(centre: Any, thickness: float, gain_db: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = rng.poisson(params.density_background * (x_hi - x_lo) * thickness / probe.cell_area)
        px = rng.uniform(x_lo, x_hi, n)
        pz = centre(px) + rng.uniform(-0.5, 0.5, n) * thickness
        pa = 10.0 ** (gain_db / 20.0) * depth_gain(pz) * posterior_gain(px, pz)
        return px, pz, pa

    fascia_thickness = rng.uniform(0.15e-3, 0.35e-3)
    parts = [
        (bx, bz, ba),
        band(lambda px: np.full(px.shape, rng.uniform(0.4e-3, 0.7e-3)), rng.uniform(0.5e-3, 0.9e-3), params.fascia_gain_db - 6.0),
        band(lambda px: params.fascia_depth + fascia_wave[0] * np.sin(2 * np.pi * px / fascia_wave[1] + fascia_wave[2]),
             fascia_thickness, params.fascia_gain_db),
    ]
    deep_z = None
    if params.deep_fascia and shape.bottom + 2e-3 < 0.92 * probe.depth:
        deep_z = rng.uniform(max(shape.bottom + 2e-3, 0.8 * probe.depth), 0.92 * probe.depth)
        wave = (rng.uniform(10e-3, 30e-3), rng.uniform(0, 2 * np.pi))
        parts.append(band(lambda px: deep_z + 0.4e-3 * np.sin(2 * np.pi * px / wave[0] + wave[1]),
                          rng.uniform(0.2e-3, 0.5e-3), params.fascia_gain_db - 4.0))
    sx, sz, sa = ([q[i] for q in parts] for i in range(3))
    speckle_rms = np.sqrt(params.density_background / probe.cell_area * np.pi * probe.sigma_x * (probe.c * probe.sigma_t / 2.0))
    iq_out = _accumulate(probe, np.concatenate(sx), np.concatenate(sz), np.concatenate(sa))

    # Mass: sparse scatterers with log-normal amplitudes (unit scale, calibrated below).
    bbox = (shape.xc - 1.5 * shape.rx, shape.xc + 1.5 * shape.rx, shape.top - 0.5 * shape.rz, shape.bottom + 0.5 * shape.rz)
    mx, mz = _uniform_points(rng, params.density_mass, probe, *bbox)
    keep = shape.inside(mx, mz)
    mx, mz = mx[keep], mz[keep]
    ma = np.exp(params.mass_amplitude_spread * rng.standard_normal(mx.size)) * depth_gain(mz)
    iq_mass = _accumulate(probe, mx, mz, ma)

    # Mask on the sample grid.
    z_grid = (np.arange(probe.samples) / probe.fs) * probe.c / 2.0
    xx, zz = np.meshgrid(probe.line_x(), z_grid)
    roi = shape.inside(xx, zz).astype(np.uint8)

    # Scale the mass so that its mean intensity is contrast_db relative to its surroundings.
    inner, outer = _contrast_regions(roi, probe)
    target = 10.0 ** (params.contrast_db / 10.0)
    scale = 1.0
    for _ in range(3):
        ref = np.mean(np.abs(iq_out[outer] + scale * iq_mass[outer]) ** 2)
        a_ = np.mean(np.abs(iq_mass[inner]) ** 2)
        b_ = np.mean(np.real(np.conj(iq_out[inner]) * iq_mass[inner]))
        c_ = np.mean(np.abs(iq_out[inner]) ** 2) - target * ref
        disc = b_ * b_ - a_ * c_
        scale = float((-b_ + np.sqrt(max(disc, 0.0))) / a_) if a_ > 0 else 0.0
    iq = iq_out + scale * iq_mass

    # Electronic noise (amplified by the TGC at depth), then RF and 16-bit quantisation.
    t = np.arange(probe.samples) / probe.fs
    tgc = 10.0 ** (params.tgc_compensation * 2.0 * params.attenuation * (probe.f0 / 1e6) * (z_grid * 100.0) / 20.0)
    noise_sigma = speckle_rms * 10.0 ** (params.noise_db / 20.0) * tgc[:, None]
    rf = np.real(iq * np.exp(2j * np.pi * probe.f0 * t)[:, None]) + noise_sigma * rng.standard_normal(iq.shape)
    peak = np.abs(rf).max()
    rf16 = np.clip(np.rint(rf * (30000.0 / peak)), -32768, 32767).astype(np.int16)

    measured = contrast_db(envelope(rf16), roi, probe)
    info = {
        "mass": {"xc_mm": shape.xc * 1e3, "zc_mm": shape.zc * 1e3, "rx_mm": shape.rx * 1e3, "rz_mm": shape.rz * 1e3,
                 "top_mm": shape.top * 1e3, "bottom_mm": shape.bottom * 1e3},
        "mass_amplitude_scale": scale,
        "mass_scatterers": int(mx.size),
        "background_scatterers": int(bx.size),
        "contrast_db_measured": measured,
        "fascia_depth_mm": params.fascia_depth * 1e3,
        "deep_fascia_depth_mm": None if deep_z is None else deep_z * 1e3,
    }
    return rf16, roi, info


def simulate_patient(rng: np.random.Generator, probe: Probe = Probe(), malignant: bool | None = None) -> dict[str, Any]:
    """Two orthogonal scans of one mass: ``{"rf1", "roi1", "rf2", "roi2", "params", "truth"}``."""
    params = draw_scan_params(rng, probe, malignant)
    rf1, roi1, info1 = simulate_scan(rng, probe, params)
    m1 = info1["mass"]
    # The orthogonal plane cuts the same mass: similar depth extent, its own width and margin.
    rx2 = min(m1["rx_mm"] * 1e-3 * rng.uniform(0.7, 1.3), 0.22 * probe.lines * probe.pitch)
    size2 = (rx2, m1["rz_mm"] * 1e-3 * rng.uniform(0.9, 1.1))
    shape2 = _draw_shape(rng, probe, params.malignant, params.fascia_depth + 1.1e-3, size=size2)
    rf2, roi2, info2 = simulate_scan(rng, probe, params, shape=shape2)
    birads = str(rng.choice(["4b", "4c", "5"], p=[0.3, 0.3, 0.4])) if params.malignant else str(
        rng.choice(["2", "3", "4a"], p=[0.3, 0.5, 0.2]))
    res_ax, res_lat = probe.resolution_cell
    truth = {
        "class": int(params.malignant),
        "class_name": "malignant" if params.malignant else "benign",
        "birads": birads,
        "contrast_db": params.contrast_db,
        "contrast_db_measured": [info1["contrast_db_measured"], info2["contrast_db_measured"]],
        "density_background_per_cell": params.density_background,
        "density_mass_per_cell": params.density_mass,
        "resolution_cell_mm": [res_ax * 1e3, res_lat * 1e3],
        "scan_params": asdict(params),
        "scans": [info1, info2],
        "probe": asdict(probe),
    }
    return {"rf1": rf1, "roi1": roi1, "rf2": rf2, "roi2": roi2, "params": params, "truth": truth}


def probe_for(lines: int, depth_mm: float, **overrides: Any) -> Probe:
    """The default probe with ``lines`` scan lines and ``depth_mm`` imaging depth."""
    return replace(Probe(), lines=int(lines), depth=float(depth_mm) * 1e-3, **overrides)
