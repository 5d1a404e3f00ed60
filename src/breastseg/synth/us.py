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
* The beam is narrowest at the focus and widens with the distance from it; round-trip attenuation
  (``attenuation`` dB/(cm MHz)) dims echoes with depth; electronic noise is added at the receiver; the
  time-gain compensation (TGC) then undoes part of the nominal attenuation, with the operator's depth-gain
  sliders on top. ``simulate_scan(..., apply_tgc=False)`` returns the RF before the TGC.
* Tissue: dense background scatterers (fully developed, Rayleigh speckle: envelope mean/std = 1.91) whose
  mean echo follows the breast's layers: the bright skin line, hypoechoic subcutaneous fat crossed by
  Cooper's ligaments, a bright fascia, glandular tissue with a smooth echogenicity variation of a few dB and
  hypoechoic fat lobules, optionally a deep fascia and striated pectoral muscle. The lobules are smooth or
  lobulated ovals of the size and brightness of a hypoechoic mass but filled with fully developed speckle:
  look-alikes on B-mode that an entropy map does not show.
* The mass: an oval, lobulated or spiculated blob, anechoic (cyst), hypoechoic, isoechoic or hyperechoic.
  Its scatterers have their own density, organisation (uniform or clumped) and amplitude spread; their
  amplitude is scaled so that the mean intensity of the mass's core (inside its indistinct margin) differs
  from the surrounding tissue at the same depth by the drawn contrast. Isoechoic masses differ only in
  scatterer density and organisation (a pre-Rayleigh envelope), which an entropy map sees and B-mode barely
  shows. Indistinct margins: over a band of ``margin_blur`` (a fraction of the radius, widest for spiculated
  and malignant masses) around the outline, mass and tissue scatterers mix with a linearly changing share, so
  the edge fades instead of stepping.
* Shadows: posterior acoustic shadowing behind most spiculated and many malignant masses, posterior
  enhancement behind cysts and some hypoechoic benign masses; narrow refraction shadows below the ends of
  Cooper's ligaments and below the lateral edges of some smooth (anechoic, hypoechoic) masses.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage

from ..us.rf import envelope  # the same envelope the pipeline computes from the RF

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
    beam_fwhm: float = 1.0e-3  # lateral resolution at the focus
    focus: float = 0.55  # focal depth, as a fraction of the imaging depth
    focal_zone: float = 10e-3  # distance from the focus (m) at which the beam is sqrt(2) wider

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

    def beam_sigma(self, z: np.ndarray) -> np.ndarray:
        """Standard deviation (m) of the lateral beam profile at depth ``z``: narrowest at the focus."""
        return self.sigma_x * np.sqrt(1.0 + ((np.asarray(z, dtype=float) - self.focus * self.depth) / self.focal_zone) ** 2)

    def line_x(self) -> np.ndarray:
        """Lateral positions (m) of the scan lines, centred on 0."""
        return (np.arange(self.lines) - (self.lines - 1) / 2.0) * self.pitch


# --------------------------------------------------------------------------------------------- geometry
MARGINS = ("circumscribed", "lobulated", "spiculated")
ECHOGENICITIES = ("anechoic", "hypoechoic", "isoechoic", "hyperechoic")


@dataclass(frozen=True)
class MassShape:
    """Irregular blob: ellipse (centre, radii in m) whose radius is modulated along the polar angle by
    harmonics (lobulation) and by narrow spikes (spiculation)."""

    xc: float
    zc: float
    rx: float
    rz: float
    harmonics: tuple[tuple[int, float, float], ...]  # (order k, relative amplitude, phase)
    spikes: tuple[tuple[float, float, float], ...] = ()  # (angle, relative length, angular half-width)

    def radius_factor(self, theta: np.ndarray) -> np.ndarray:
        r = np.ones_like(theta)
        for k, amp, phase in self.harmonics:
            r = r + amp * np.cos(k * theta + phase)
        for angle, length, width in self.spikes:
            d = np.angle(np.exp(1j * (theta - angle)))  # wrapped angular distance
            r = r + length * np.clip(1.0 - np.abs(d) / width, 0.0, None) ** 2
        return r

    def level(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Normalised radius: < 1 inside the outline, 1 on it, > 1 outside."""
        u = (x - self.xc) / self.rx
        v = (z - self.zc) / self.rz
        return np.hypot(u, v) / self.radius_factor(np.arctan2(v, u))

    def inside(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        return self.level(x, z) <= 1.0

    def membership(self, x: np.ndarray, z: np.ndarray, blur: float) -> np.ndarray:
        """Probability that a scatterer at (x, z) belongs to the mass: 1 inside, 0 outside, a linear ramp
        over ``1 +- blur`` of the normalised radius (an indistinct margin)."""
        q = self.level(x, z)
        if blur <= 0:
            return (q <= 1.0).astype(float)
        return np.clip(0.5 - (q - 1.0) / (2.0 * blur), 0.0, 1.0)

    @property
    def extent(self) -> float:
        """Largest radius factor (upper bound)."""
        return 1.0 + sum(abs(a) for _, a, _ in self.harmonics) + max((s[1] for s in self.spikes), default=0.0)

    @property
    def bottom(self) -> float:
        """Deepest point (m) of the blob (upper bound)."""
        return self.zc + self.rz * self.extent

    @property
    def top(self) -> float:
        return self.zc - self.rz * self.extent


def _draw_shape(rng: np.random.Generator, probe: Probe, margin: str, top_limit: float,
                size: tuple[float, float] | None = None, malignant: bool = False) -> MassShape:
    width = probe.lines * probe.pitch
    if size is None:
        rx = min(rng.uniform(0.11, 0.2) * width, 10e-3)
        aspect = rng.uniform(0.8, 1.3) if malignant else rng.uniform(0.5, 0.85)  # taller-than-wide: suspicious
        rz = min(rx * aspect, 0.2 * probe.depth)
    else:
        rx, rz = size
    spikes: list[tuple[float, float, float]] = []
    if margin == "circumscribed":  # oval, smooth
        harmonics = [(k, rng.uniform(0.0, 0.04) / (k - 1), rng.uniform(0, 2 * np.pi)) for k in range(2, 4)]
    elif margin == "lobulated":  # two to four gentle lobes
        harmonics = [(k, rng.uniform(0.06, 0.14) / np.sqrt(k - 1), rng.uniform(0, 2 * np.pi)) for k in range(2, 5)]
    else:  # spiculated: irregular body with narrow spikes radiating from it
        harmonics = [(k, rng.uniform(0.04, 0.09) / np.sqrt(k - 1), rng.uniform(0, 2 * np.pi)) for k in range(2, 6)]
        n = int(rng.integers(6, 12))
        spikes = [(float(a), float(rng.uniform(0.15, 0.4)), float(rng.uniform(0.06, 0.14)))
                  for a in np.sort(rng.uniform(0, 2 * np.pi, n))]
    extent = 1.0 + sum(a for _, a, _ in harmonics) + max((s[1] for s in spikes), default=0.0)
    lo = top_limit + rz * extent + 0.5e-3
    hi = probe.depth - rz * extent - max(1.5e-3, 0.1 * probe.depth)
    zc = rng.uniform(lo, hi) if hi > lo else (lo + hi) / 2.0
    xc = rng.uniform(-0.15, 0.15) * width
    return MassShape(float(xc), float(zc), float(rx), float(rz),
                     tuple((int(k), float(a), float(p)) for k, a, p in harmonics), tuple(spikes))


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




# --------------------------------------------------------------------------------------------- simulation
def _accumulate(probe: Probe, x: np.ndarray, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Complex baseband RF (samples x lines) of scatterers at (x, z) with amplitudes a.

    The lateral beam profile is Gaussian, narrowest at the focus and widening with the distance from it.
    """
    n_s, n_l = probe.samples, probe.lines
    tau = 2.0 * z / probe.c
    n = np.rint(tau * probe.fs).astype(np.int64)
    pos = x / probe.pitch + (n_l - 1) / 2.0
    l0 = np.rint(pos).astype(np.int64)
    sig = probe.beam_sigma(z) / probe.pitch  # in lines
    half = int(np.ceil(3.0 * probe.beam_sigma(np.array([0.0, probe.depth])).max() / probe.pitch))
    # A wider beam spreads the same energy: amplitude ~ 1/sqrt(width), so the mean echo intensity of uniform
    # tissue does not depend on the distance from the focus (only attenuation changes it with depth).
    phase = np.exp(-2j * np.pi * probe.f0 * tau) * a * np.sqrt(probe.sigma_x / probe.pitch / sig)
    grid_re = np.zeros(n_s * n_l)
    grid_im = np.zeros(n_s * n_l)
    keep_n = (n >= 0) & (n < n_s)
    for d in range(-half, half + 1):  # loop over beam taps (a handful), vectorised over scatterers
        line = l0 + d
        ok = keep_n & (line >= 0) & (line < n_l)
        w = np.exp(-0.5 * ((line[ok] - pos[ok]) / sig[ok]) ** 2) * phase[ok]
        idx = n[ok] * n_l + line[ok]
        grid_re += np.bincount(idx, weights=w.real, minlength=n_s * n_l)
        grid_im += np.bincount(idx, weights=w.imag, minlength=n_s * n_l)
    m = int(np.ceil(4.0 * probe.sigma_t * probe.fs))
    t = np.arange(-m, m + 1) / probe.fs
    g = np.exp(-0.5 * (t / probe.sigma_t) ** 2)
    return (ndimage.convolve1d(grid_re.reshape(n_s, n_l), g, axis=0, mode="constant")
            + 1j * ndimage.convolve1d(grid_im.reshape(n_s, n_l), g, axis=0, mode="constant"))


def _uniform_points(rng: np.random.Generator, density_per_cell: float, probe: Probe, x_lo: float, x_hi: float,
                    z_lo: float, z_hi: float) -> tuple[np.ndarray, np.ndarray]:
    area = max(x_hi - x_lo, 0.0) * max(z_hi - z_lo, 0.0)
    count = rng.poisson(density_per_cell * area / probe.cell_area)
    return rng.uniform(x_lo, x_hi, count), rng.uniform(z_lo, z_hi, count)


def _clustered_points(rng: np.random.Generator, density_per_cell: float, probe: Probe, x_lo: float, x_hi: float,
                      z_lo: float, z_hi: float, per_cluster: float = 4.0, radius: float = 0.12e-3
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Scatterers in small clumps (a Neyman-Scott process): same mean density, organised texture."""
    px, pz = _uniform_points(rng, density_per_cell / per_cluster, probe, x_lo, x_hi, z_lo, z_hi)
    k = rng.poisson(per_cluster, px.size)
    cx, cz = np.repeat(px, k), np.repeat(pz, k)
    return cx + radius * rng.standard_normal(cx.size), cz + radius * rng.standard_normal(cz.size)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: tuple[float, float]) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-12)


# Mean intensity of the mass relative to the tissue around it (dB), scatterers per resolution cell and the
# log-normal spread of their amplitudes, per echogenicity. Isoechoic masses differ from the tissue only in the
# density and organisation of their scatterers (fewer, clumped: a pre-Rayleigh envelope), which is what an
# entropy map sees and a B-mode image barely shows.
_ECHO = {
    "anechoic": {"contrast_db": (-24.0, -16.0), "density": (0.5, 1.5), "spread": (0.3, 0.6), "clustered": 0.0},
    "hypoechoic": {"contrast_db": (-12.0, -3.0), "density": (2.0, 8.0), "spread": (0.3, 0.7), "clustered": 0.2},
    "isoechoic": {"contrast_db": (-2.5, 2.5), "density": (0.6, 2.5), "spread": (0.5, 0.9), "clustered": 0.5},
    "hyperechoic": {"contrast_db": (5.0, 10.0), "density": (3.0, 8.0), "spread": (0.4, 0.7), "clustered": 0.0},
}


@dataclass(frozen=True)
class ScanParams:
    """Per-patient tissue and system parameters shared by the two orthogonal scans."""

    malignant: bool
    echogenicity: str  # anechoic | hypoechoic | isoechoic | hyperechoic
    margin: str  # circumscribed | lobulated | spiculated
    margin_blur: float  # width of the mass-tissue transition, as a fraction of the radius (indistinct margins)
    contrast_db: float
    density_background: float  # scatterers per resolution cell
    density_mass: float
    mass_amplitude_spread: float  # log-normal sigma of the mass scatterer amplitudes
    mass_clustered: bool  # mass scatterers in clumps (organised texture)
    posterior: str  # "none" | "shadow" | "enhancement"
    posterior_db: float
    attenuation: float  # dB / (cm MHz), one way
    tgc_compensation: float  # fraction of the round-trip attenuation the TGC undoes
    tgc_ripple_db: tuple[float, ...]  # the operator's depth-gain sliders: dB at equally spaced depths
    fascia_depth: float  # m
    fascia_gain_db: float
    subcutaneous_db: float  # subcutaneous fat relative to the glandular tissue
    ligaments: int  # Cooper's ligaments crossing the fat layer
    ligament_shadow_db: float  # refraction shadows cast below the ligaments (0: none)
    edge_shadows_db: float  # refraction shadows from the lateral edges of a smooth mass (0: none)
    lobules: int  # hypoechoic fat lobules inside the glandular layer: mass look-alikes on B-mode
    lobule_db: float  # their mean intensity relative to the glandular tissue (each one varies around it)
    deep_fascia: bool
    echogenicity_db: float  # std of the smooth background echogenicity variation
    noise_db: float  # electronic noise relative to the shallow speckle level


def draw_scan_params(rng: np.random.Generator, probe: Probe, malignant: bool | None = None,
                     echogenicity: str | None = None) -> ScanParams:
    malignant = bool(rng.random() < 0.5) if malignant is None else malignant
    if echogenicity is None:
        if malignant:
            echogenicity = str(rng.choice(["hypoechoic", "isoechoic", "hyperechoic"], p=[0.6, 0.32, 0.08]))
        else:
            echogenicity = str(rng.choice(ECHOGENICITIES, p=[0.15, 0.4, 0.3, 0.15]))
    if echogenicity not in _ECHO:
        raise ValueError(f"unknown echogenicity {echogenicity!r}")
    if malignant:
        margin = str(rng.choice(MARGINS, p=[0.1, 0.3, 0.6]))
    else:
        margin = str(rng.choice(MARGINS, p=[0.6, 0.35, 0.05]))
    e = _ECHO[echogenicity]
    if echogenicity == "anechoic":  # cysts: posterior acoustic enhancement
        posterior = "enhancement"
    elif margin == "spiculated" or (malignant and rng.random() < 0.4):
        posterior = "shadow" if rng.random() < 0.75 else "none"
    else:
        posterior = "enhancement" if (echogenicity == "hypoechoic" and rng.random() < 0.3) else "none"
    posterior_db = {"none": 0.0, "shadow": -rng.uniform(8.0, 18.0), "enhancement": rng.uniform(2.0, 5.0)}[posterior]
    # Malignant and lobulated masses blend into the tissue over a wider band (indistinct, angular margins);
    # cysts keep a sharp wall.
    blur = {"circumscribed": (0.0, 0.06), "lobulated": (0.04, 0.12), "spiculated": (0.08, 0.2)}[margin]
    smooth_edge = margin != "spiculated" and echogenicity in ("anechoic", "hypoechoic") and rng.random() < 0.5
    depth_cm = probe.depth * 100.0
    return ScanParams(
        malignant=malignant,
        echogenicity=echogenicity,
        margin=margin,
        margin_blur=0.0 if echogenicity == "anechoic" else float(rng.uniform(*blur) * (1.3 if malignant else 1.0)),
        contrast_db=float(rng.uniform(*e["contrast_db"])),
        density_background=float(rng.uniform(10.0, 25.0)),
        density_mass=float(rng.uniform(*e["density"])),
        mass_amplitude_spread=float(rng.uniform(*e["spread"])),
        mass_clustered=bool(rng.random() < e["clustered"]),
        posterior=posterior,
        posterior_db=float(posterior_db),
        attenuation=float(rng.uniform(0.4, 0.8)),
        tgc_compensation=float(rng.uniform(0.7, 1.0)),
        tgc_ripple_db=tuple(float(v) for v in rng.uniform(-1.5, 1.5, max(3, int(round(depth_cm * 2)) + 1))),
        fascia_depth=float(max(1.2e-3, rng.uniform(0.08, 0.15) * probe.depth)),
        fascia_gain_db=float(rng.uniform(8.0, 14.0)),
        subcutaneous_db=float(rng.uniform(-9.0, -4.0)),
        ligaments=int(rng.integers(1, 5)),
        ligament_shadow_db=float(-rng.uniform(3.0, 9.0) if rng.random() < 0.6 else 0.0),
        edge_shadows_db=float(-rng.uniform(4.0, 10.0) if smooth_edge else 0.0),
        lobules=int(rng.poisson(0.3 * probe.lines * probe.pitch * 1e3 * probe.depth * 1e3 / 100.0)),
        lobule_db=float(rng.uniform(-10.0, -4.0)),
        deep_fascia=bool(rng.random() < 0.5),
        echogenicity_db=float(rng.uniform(1.5, 3.0)),
        noise_db=float(rng.uniform(-45.0, -35.0)),
    )


def homogeneous(params: ScanParams) -> ScanParams:
    """The same system and background with every structure removed: fully developed speckle only."""
    return replace(params, posterior="none", posterior_db=0.0, fascia_gain_db=0.0, subcutaneous_db=0.0,
                   ligaments=0, ligament_shadow_db=0.0, edge_shadows_db=0.0, lobules=0, deep_fascia=False,
                   echogenicity_db=0.0, noise_db=-120.0)


def tgc_gain(probe: Probe, params: ScanParams, z: np.ndarray) -> np.ndarray:
    """Amplitude gain of the time-gain compensation at depth ``z`` (m): part of the nominal round-trip
    attenuation plus the operator's depth-gain sliders."""
    att_db = 2.0 * params.attenuation * (probe.f0 / 1e6) * (np.asarray(z) * 100.0)
    knots = np.linspace(0.0, probe.depth, len(params.tgc_ripple_db))
    ripple = np.interp(z, knots, params.tgc_ripple_db)
    return 10.0 ** ((params.tgc_compensation * att_db + ripple) / 20.0)


def simulate_scan(rng: np.random.Generator, probe: Probe, params: ScanParams, shape: MassShape | None = None,
                  *, mass: bool = True, apply_tgc: bool = True) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One B-scan: ``(rf int16 [samples, lines], roi uint8 [samples, lines], info)``.

    ``mass=False`` leaves the mass out (its region keeps the background scatterers; the roi is still that of
    the drawn shape); ``apply_tgc=False`` returns the RF before time-gain compensation (attenuation only).
    """
    width = probe.lines * probe.pitch
    margin = 3.0 * probe.sigma_x
    x_lo, x_hi = -width / 2.0 - margin, width / 2.0 + margin
    fascia_wave = (rng.uniform(0.2e-3, 0.6e-3), rng.uniform(8e-3, 25e-3), rng.uniform(0, 2 * np.pi))
    fascia_max = params.fascia_depth + fascia_wave[0] + 0.2e-3
    if shape is None:
        shape = _draw_shape(rng, probe, params.margin, fascia_max + 0.5e-3, malignant=params.malignant)

    def fascia(px: np.ndarray) -> np.ndarray:
        return params.fascia_depth + fascia_wave[0] * np.sin(2 * np.pi * px / fascia_wave[1] + fascia_wave[2])

    def attenuation(z: np.ndarray) -> np.ndarray:  # round trip, amplitude
        return 10.0 ** (-2.0 * params.attenuation * (probe.f0 / 1e6) * (z * 100.0) / 20.0)

    # Posterior shadowing / enhancement behind the mass, from its lower boundary down, in proportion to the
    # square root of the path length through the mass along each line.
    gx = np.linspace(shape.xc - shape.rx * shape.extent, shape.xc + shape.rx * shape.extent, 161)
    gz = np.linspace(shape.top, shape.bottom, 241)
    g_in = shape.inside(gx[None, :], gz[:, None])
    chord = g_in.mean(axis=0)
    lower = np.where(g_in.any(axis=0), gz[::-1][np.argmax(g_in[::-1], axis=0)], np.inf)
    chord_w = np.sqrt(chord / max(chord.max(), 1e-12))

    # Cooper's ligaments: oblique lines from the skin to the fascia (x0 at the skin, slope dx/dz).
    ligaments = [(rng.uniform(x_lo, x_hi), rng.uniform(-2.0, 2.0)) for _ in range(params.ligaments)]
    # Refraction shadows: narrow vertical stripes (x, from depth, half width, dB) below the end of a ligament
    # and below the lateral edges of a smooth mass.
    stripes = []
    if params.ligament_shadow_db < 0:
        for x0, slope in ligaments:
            if rng.random() < 0.7:
                x_end = x0 + (params.fascia_depth - 0.8e-3) * slope
                stripes.append((x_end, params.fascia_depth, rng.uniform(0.2e-3, 0.6e-3),
                                params.ligament_shadow_db * rng.uniform(0.6, 1.0)))
    if params.edge_shadows_db < 0:
        for side in (0.0, np.pi):
            edge = shape.xc + np.cos(side) * shape.rx * float(shape.radius_factor(np.array([side]))[0])
            stripes.append((edge, shape.zc, rng.uniform(0.2e-3, 0.5e-3),
                            params.edge_shadows_db * rng.uniform(0.7, 1.0)))

    def shadow_gain(x: np.ndarray, z: np.ndarray, posterior: bool = True) -> np.ndarray:
        db = np.zeros(np.broadcast(x, z).shape)
        for sx_, sz_, half, sdb in stripes:
            db = db + sdb * np.exp(-0.5 * ((x - sx_) / half) ** 2) * np.clip((z - sz_) / 1.0e-3, 0.0, 1.0)
        if posterior and params.posterior != "none":
            idx = np.clip(np.rint((x - gx[0]) / (gx[1] - gx[0])).astype(int), 0, gx.size - 1)
            inside_x = (x >= gx[0]) & (x <= gx[-1])
            w = np.where(inside_x, chord_w[idx], 0.0)
            axial = np.clip((z - np.where(inside_x, lower[idx], np.inf)) / 0.5e-3, 0.0, 1.0)
            db = db + params.posterior_db * w * axial
        return 10.0 ** (db / 20.0)

    # Hypoechoic fat lobules in the glandular layer, away from the mass: smooth or lobulated ovals of the
    # size and brightness of a benign hypoechoic mass, but filled with fully developed speckle.
    lobules = []
    for _ in range(params.lobules):
        for _try in range(30):
            rx = rng.uniform(1.5e-3, max(2.0e-3, min(6.0e-3, 0.12 * width)))
            rz = min(rx * rng.uniform(0.35, 0.75), 0.15 * probe.depth)
            xc = rng.uniform(-width / 2, width / 2)
            zc = rng.uniform(fascia_max + rz, probe.depth - rz)
            harmonics = tuple((k, float(rng.uniform(0.0, 0.12) / (k - 1)), float(rng.uniform(0, 2 * np.pi)))
                              for k in range(2, 5))
            lob = MassShape(float(xc), float(zc), float(rx), float(rz), harmonics)
            gap_x = abs(xc - shape.xc) - (rx + shape.rx) * shape.extent
            gap_z = abs(zc - shape.zc) - (rz + shape.rz) * shape.extent
            if max(gap_x, gap_z) > 1.0e-3:
                lobules.append((lob, params.lobule_db + rng.uniform(-2.0, 2.0)))
                break

    # Smooth echogenicity variation of the glandular tissue (a few mm correlation).
    eg_shape = (64, 64)
    eg = _smooth_field(rng, eg_shape, (4.0, 4.0)) * params.echogenicity_db
    deep_z = None
    if params.deep_fascia and shape.bottom + 2e-3 < 0.9 * probe.depth:
        deep_z = rng.uniform(max(shape.bottom + 2e-3, 0.75 * probe.depth), 0.9 * probe.depth)
    striation = rng.uniform(0.6e-3, 1.0e-3)

    def background_db(x: np.ndarray, z: np.ndarray) -> np.ndarray:
        iz = np.clip((z / probe.depth * (eg_shape[0] - 1)).astype(int), 0, eg_shape[0] - 1)
        ix = np.clip(((x - x_lo) / (x_hi - x_lo) * (eg_shape[1] - 1)).astype(int), 0, eg_shape[1] - 1)
        db = eg[iz, ix]
        fat = z < fascia(x)
        db = np.where(fat, params.subcutaneous_db + 0.5 * db, db)
        for lob, lob_db in lobules:
            db = db + lob_db * np.clip((1.1 - lob.level(x, z)) / 0.2, 0.0, 1.0)
        if deep_z is not None:  # pectoral muscle: hypoechoic with oblique striations
            muscle = z > deep_z
            db = np.where(muscle, -5.0 + 2.5 * np.sin(2 * np.pi * (z + 0.08 * x) / striation), db)
        return db

    # Background: dense scatterers outside the mass (inside too when the mass is left out).
    bx, bz = _uniform_points(rng, params.density_background, probe, x_lo, x_hi, 0.0, probe.depth)
    if mass:  # an indistinct margin mixes tissue and mass scatterers over a band around the outline
        keep = rng.random(bx.size) >= shape.membership(bx, bz, params.margin_blur)
        bx, bz = bx[keep], bz[keep]
    ba = 10.0 ** (background_db(bx, bz) / 20.0) * attenuation(bz) * shadow_gain(bx, bz)

    # Echogenic bands: the skin line at the top, a gently curved fascia, Cooper's ligaments, a deep fascia.
    def band(centre: Any, thickness: float, gain_db: float, x_range: tuple[float, float] = (x_lo, x_hi)
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = rng.poisson(params.density_background * (x_range[1] - x_range[0]) * thickness / probe.cell_area)
        px = rng.uniform(x_range[0], x_range[1], n)
        pz = centre(px) + rng.uniform(-0.5, 0.5, n) * thickness
        pa = 10.0 ** (gain_db / 20.0) * attenuation(pz) * shadow_gain(px, pz)
        return px, pz, pa

    parts = [(bx, bz, ba)]
    if params.fascia_gain_db > 0:
        parts.append(band(lambda px: np.full(px.shape, rng.uniform(0.4e-3, 0.7e-3)), rng.uniform(0.5e-3, 0.9e-3),
                          params.fascia_gain_db - 6.0))
        parts.append(band(fascia, rng.uniform(0.15e-3, 0.35e-3), params.fascia_gain_db))
    for x0, slope in ligaments:  # oblique bright lines from the skin to the fascia
        z_top, z_bot = 0.8e-3, params.fascia_depth
        dx = (z_bot - z_top) * slope
        lo, hi = sorted((x0, x0 + dx))
        if hi - lo < 0.3e-3:
            lo, hi = x0 - 0.15e-3, x0 + 0.15e-3
        parts.append(band(lambda px, x0=x0, slope=slope: np.clip(z_top + (px - x0) / (slope if abs(slope) > 1e-3 else 1e-3),
                                                              z_top, z_bot),
                          0.12e-3, params.fascia_gain_db - 3.0, (lo, hi)))
    if deep_z is not None:
        wave = (rng.uniform(10e-3, 30e-3), rng.uniform(0, 2 * np.pi))
        parts.append(band(lambda px: deep_z + 0.4e-3 * np.sin(2 * np.pi * px / wave[0] + wave[1]),
                          rng.uniform(0.2e-3, 0.5e-3), params.fascia_gain_db - 4.0))
    sx, sz, sa = ([q[i] for q in parts] for i in range(3))
    speckle_rms = np.sqrt(params.density_background / probe.cell_area * np.pi * probe.sigma_x * (probe.c * probe.sigma_t / 2.0))
    iq_out = _accumulate(probe, np.concatenate(sx), np.concatenate(sz), np.concatenate(sa))

    # Mask on the sample grid.
    z_grid = (np.arange(probe.samples) / probe.fs) * probe.c / 2.0
    xx, zz = np.meshgrid(probe.line_x(), z_grid)
    level = shape.level(xx, zz)
    roi = (level <= 1.0).astype(np.uint8)

    # Mass: scatterers of its own density, organisation and amplitude spread (unit scale, calibrated below).
    scale, n_mass = 0.0, 0
    iq = iq_out
    if mass:
        grow = (1.0 + params.margin_blur) * shape.extent  # the outermost reach of a mass scatterer
        bbox = (shape.xc - grow * shape.rx, shape.xc + grow * shape.rx,
                shape.zc - grow * shape.rz, shape.zc + grow * shape.rz)
        points = _clustered_points if params.mass_clustered else _uniform_points
        mx, mz = points(rng, params.density_mass, probe, *bbox)
        keep = rng.random(mx.size) < shape.membership(mx, mz, params.margin_blur)
        mx, mz = mx[keep], mz[keep]
        n_mass = int(mx.size)
        ma = (np.exp(params.mass_amplitude_spread * rng.standard_normal(mx.size)) * attenuation(mz)
              * shadow_gain(mx, mz, posterior=False))
        iq_mass = _accumulate(probe, mx, mz, ma)
        # Scale the mass so that the mean intensity of its core (inside the indistinct margin, where every
        # scatterer is the mass's) is contrast_db relative to its surroundings.
        inner, outer = _contrast_regions(roi, probe)
        core = inner & (level <= 1.0 - params.margin_blur)
        if core.sum() < 20:
            core = inner
        target = 10.0 ** (params.contrast_db / 10.0)
        scale = 1.0
        for _ in range(3):
            ref = np.mean(np.abs(iq_out[outer] + scale * iq_mass[outer]) ** 2)
            a_ = np.mean(np.abs(iq_mass[core]) ** 2)
            b_ = np.mean(np.real(np.conj(iq_out[core]) * iq_mass[core]))
            c_ = np.mean(np.abs(iq_out[core]) ** 2) - target * ref
            disc = b_ * b_ - a_ * c_
            scale = float((-b_ + np.sqrt(max(disc, 0.0))) / a_) if a_ > 0 else 0.0
        iq = iq_out + scale * iq_mass

    # Electronic noise at the receiver (before the TGC), then the TGC, RF and 16-bit quantisation.
    t = np.arange(probe.samples) / probe.fs
    noise_sigma = speckle_rms * 10.0 ** (params.noise_db / 20.0)
    rf = np.real(iq * np.exp(2j * np.pi * probe.f0 * t)[:, None]) + noise_sigma * rng.standard_normal(iq.shape)
    if apply_tgc:
        rf = rf * tgc_gain(probe, params, z_grid)[:, None]
    peak = np.abs(rf).max()
    rf16 = np.clip(np.rint(rf * (30000.0 / peak)), -32768, 32767).astype(np.int16)

    env16 = envelope(rf16)
    measured = contrast_db(env16, roi, probe) if mass else 0.0
    info = {
        "mass": {"xc_mm": shape.xc * 1e3, "zc_mm": shape.zc * 1e3, "rx_mm": shape.rx * 1e3, "rz_mm": shape.rz * 1e3,
                 "top_mm": shape.top * 1e3, "bottom_mm": shape.bottom * 1e3, "spikes": len(shape.spikes)},
        "mass_amplitude_scale": scale,
        "mass_scatterers": n_mass,
        "background_scatterers": int(bx.size),
        "contrast_db_measured": measured,  # over the whole outline (an indistinct margin pulls it towards 0)
        "contrast_db_core_measured": contrast_db(env16, core, probe) if mass else 0.0,
        "fascia_depth_mm": params.fascia_depth * 1e3,
        "deep_fascia_depth_mm": None if deep_z is None else deep_z * 1e3,
        "lobules": [{"shape": asdict(lob), "db": float(lob_db)} for lob, lob_db in lobules],  # metres, dB
        "refraction_shadows": [{"x_mm": x * 1e3, "from_mm": z * 1e3, "half_width_mm": h * 1e3, "db": float(d)}
                               for x, z, h, d in stripes],
        "tgc": apply_tgc,
    }
    return rf16, roi, info


def simulate_patient(rng: np.random.Generator, probe: Probe = Probe(), malignant: bool | None = None,
                     echogenicity: str | None = None) -> dict[str, Any]:
    """Two orthogonal scans of one mass: ``{"rf1", "roi1", "rf2", "roi2", "params", "truth"}``."""
    params = draw_scan_params(rng, probe, malignant, echogenicity)
    rf1, roi1, info1 = simulate_scan(rng, probe, params)
    m1 = info1["mass"]
    # The orthogonal plane cuts the same mass: similar depth extent, its own width and margin details.
    rx2 = min(m1["rx_mm"] * 1e-3 * rng.uniform(0.7, 1.3), 0.22 * probe.lines * probe.pitch)
    size2 = (rx2, m1["rz_mm"] * 1e-3 * rng.uniform(0.9, 1.1))
    shape2 = _draw_shape(rng, probe, params.margin, params.fascia_depth + 1.1e-3, size=size2, malignant=params.malignant)
    rf2, roi2, info2 = simulate_scan(rng, probe, params, shape=shape2)
    birads = str(rng.choice(["4b", "4c", "5"], p=[0.3, 0.3, 0.4])) if params.malignant else str(
        rng.choice(["2", "3", "4a"], p=[0.3, 0.5, 0.2]))
    res_ax, res_lat = probe.resolution_cell
    truth = {
        "class": int(params.malignant),
        "class_name": "malignant" if params.malignant else "benign",
        "birads": birads,
        "echogenicity": params.echogenicity,
        "margin": params.margin,
        "posterior": params.posterior,
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
