"""Physical properties of the synthetic phantoms: resolution, contrast kinetics, speckle, attenuation, shadowing."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from scipy import ndimage

from breastseg.synth import mri, us
from breastseg.synth.cohort import write_cohort

RAYLEIGH_SNR = np.sqrt(np.pi / (4.0 - np.pi))  # envelope mean / std of fully developed speckle: 1.913
SMALL = dict(mri_matrix=48, mri_slices=6, mri_spacing_mm=6.5, mri_slice_mm=4.0, us_lines=48, us_depth_mm=10.0,
             annotated_fraction=0.5, progress=False)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("physics") / "cohort"
    write_cohort(out, 4, 3, **SMALL)
    return out


# ----------------------------------------------------------------------------------------------------- MRI
def test_mri_grid_is_the_configured_resolution(cohort):
    for study in (cohort / "mri").glob("*/*"):
        ds = pydicom.dcmread(next(study.rglob("*.dcm")), stop_before_pixels=True)
        assert [float(v) for v in ds.PixelSpacing] == [SMALL["mri_spacing_mm"]] * 2
        assert float(ds.SliceThickness) == float(ds.SpacingBetweenSlices) == SMALL["mri_slice_mm"]
        assert (ds.Rows, ds.Columns) == (SMALL["mri_matrix"],) * 2
        img = nib.load(study / "labels.nii.gz")
        np.testing.assert_allclose(img.header.get_zooms(), (6.5, 6.5, 4.0), atol=1e-4)
        assert img.shape == (48, 48, 6)


def test_all_four_bpe_degrees_and_density_categories_in_a_small_cohort(cohort):
    truths = [json.loads(p.read_text()) for p in sorted((cohort / "truth" / "mri").glob("*.json"))]
    assert sorted(t["bpe_category"] for t in truths) == [0, 1, 2, 3]
    assert sorted(t["density_category"] for t in truths) == [0, 1, 2, 3]
    for t in truths:
        lo, hi = mri._DENSITY_RANGES[t["density_category"]]
        assert lo - 0.06 <= t["breast_density"] <= hi + 0.02, t["breast_density"]


def _phantom(category: int, seed: int = 0, **kw) -> mri.MriPhantom:
    kw = {"matrix": 96, "slices": 6, "spacing_mm": 3.4, "slice_mm": 4.0, "post_phases": 3, **kw}
    return mri.simulate_mri(np.random.default_rng([seed, category]), bpe_category_target=category, **kw)


def _measured_re(ph: mri.MriPhantom, tissue: str, erode: int = 1) -> np.ndarray:
    """Mean relative enhancement (post / pre - 1) of the eroded tissue region at each post-contrast phase."""
    mask = ph.tissue == mri.TISSUES.index(tissue)
    if erode:
        mask = ndimage.binary_erosion(mask, np.ones((3, 3, 1), bool), iterations=erode)
    pre = ph.phases[0][mask].mean()
    return np.array([post[mask].mean() / pre - 1.0 for post in ph.phases[1:]])


@pytest.fixture(scope="module")
def phantoms() -> list[mri.MriPhantom]:
    return [_phantom(c) for c in range(4)]


def test_enhancement_curves(phantoms):
    for ph in phantoms:
        t = ph.truth
        assert t["phase_times_s"][0] == 0.0 and np.all(np.diff(t["phase_times_s"]) >= 60.0)
        bpe, fgt, heart = (_measured_re(ph, k) for k in ("bpe", "fgt", "heart"))
        # pre < post in the enhancing tissue; non-enhancing FGT stays below 10 % at every phase
        assert (bpe > 0.15).all() and (fgt < 0.12).all(), (bpe, fgt)
        assert (bpe > fgt + 0.1).all()
        # the drawn curve, diluted a little by partial volume and motion at the patches' edges
        np.testing.assert_allclose(bpe, t["re_bpe"], rtol=0.25, atol=0.05)
        # kinetic shapes: BPE persistent or plateau (as drawn), blood pool washout, muscle persistent
        assert mri.curve_type(bpe) == t["bpe_curve_type"] in ("persistent", "plateau"), (bpe, t["bpe_curve_type"])
        assert mri.curve_type(heart) == "washout" and heart[0] > 1.0, heart
        assert mri.curve_type(_measured_re(ph, "muscle", 0)) == "persistent"
        assert t["curve_types"]["heart"] == "washout"


def test_bpe_enhancement_is_ordered_by_degree(phantoms):
    re1 = [_measured_re(ph, "bpe")[0] for ph in phantoms]
    assert [ph.truth["bpe_category"] for ph in phantoms] == [0, 1, 2, 3]
    assert np.all(np.diff(re1) > 0), re1
    fractions = [ph.truth["bpe_fraction"] for ph in phantoms]
    assert np.all(np.diff(fractions) > 0) and fractions[0] < 0.25 < 0.75 < fractions[3]


def test_bias_noise_partial_volume_and_motion(phantoms):
    for ph in phantoms:
        t = ph.truth
        pre = ph.phases[0]
        air = ph.tissue == 0
        # Rician background: air voxels carry noise of the recorded sigma (Rayleigh mean = sigma sqrt(pi/2))
        assert pre[air].mean() == pytest.approx(t["noise_sigma"] * np.sqrt(np.pi / 2), rel=0.15)
        snr = pre[ndimage.binary_erosion(ph.tissue == mri.TISSUES.index("fgt"), iterations=1)].mean() / t["noise_sigma"]
        assert 10.0 < snr < 60.0
        # partial volume: voxels at the breast's skin edge take intermediate values between air and skin
        assert 0.3 <= min(t["psf_sigma_vox"][:2]) and max(t["psf_sigma_vox"]) <= 0.7
        # motion: later phases are shifted by up to a few mm relative to the pre-contrast phase
        shifts = np.linalg.norm(np.asarray(t["motion_mm"]), axis=1)
        assert shifts[0] == 0.0 and 0.0 < shifts[1:].max() < 6.0
    # the coil bias makes the same tissue brighter in some places than others
    ph = phantoms[3]
    fgt = ph.tissue == mri.TISSUES.index("fgt")
    left, right = fgt.copy(), fgt.copy()
    left[ph.tissue.shape[0] // 2:] = False
    right[: ph.tissue.shape[0] // 2] = False
    assert abs(ph.phases[0][left].mean() / ph.phases[0][right].mean() - 1.0) > 0.01


def test_clinical_grid_anatomy():
    """A clinical-resolution grid (256 x 256 at 1.3 mm; a thin slab): both breasts, skin, chest wall, heart."""
    ph = mri.simulate_mri(np.random.default_rng(5), 256, 4, 2, 2, spacing_mm=1.3, slice_mm=2.0)
    assert ph.geometry.shape == (256, 256, 4) and ph.geometry.pixel_spacing == (1.3, 1.3)
    k = 2
    present = set(np.unique(ph.tissue[:, :, k]))
    for name in ("fat", "skin", "fgt", "bpe", "muscle", "heart", "lungs"):
        assert mri.TISSUES.index(name) in present, name
    breast_cols = np.flatnonzero(np.isin(ph.tissue[:, :, k], [mri.TISSUES.index(n) for n in ("fgt", "bpe")]).any(axis=1))
    mid = ph.geometry.shape[0] / 2
    assert (breast_cols < mid).any() and (breast_cols > mid).any()  # FGT in both breasts
    skin = ph.tissue[:, :, k] == mri.TISSUES.index("skin")
    # the skin is a thin layer: 1.5-2.5 mm, one or two pixels thick
    assert skin.sum() > 0 and ndimage.binary_erosion(skin, iterations=2).sum() < 0.05 * skin.sum()


# ---------------------------------------------------------------------------------------------- ultrasound
PROBE = us.probe_for(64, 12.0)


def _params(seed: int = 0, **kw) -> us.ScanParams:
    return replace(us.draw_scan_params(np.random.default_rng(seed), PROBE, False, "hypoechoic"), **kw)


def _env(rf: np.ndarray) -> np.ndarray:
    return us.envelope(rf.astype(float))


def test_us_grid_is_the_configured_resolution(cohort):
    n_samples = int(round(2 * SMALL["us_depth_mm"] * 1e-3 / 1540.0 * 40e6))
    for f in (cohort / "us").glob("*.npz"):
        with np.load(f) as d:
            assert d["rf"].shape == (n_samples, SMALL["us_lines"])
            assert float(d["pitch"]) == pytest.approx(0.3e-3) and float(d["fs"]) == 40e6


def test_speckle_is_rayleigh_in_homogeneous_tissue():
    snrs = []
    for seed in range(3):
        params = us.homogeneous(_params(seed))
        rf, roi, _ = us.simulate_scan(np.random.default_rng(seed), PROBE, params, mass=False, apply_tgc=False)
        env = _env(rf)
        z = np.arange(env.shape[0]) * PROBE.c / (2 * PROBE.fs)
        rows = (z > 1.5e-3) & (z < PROBE.depth - 1.5e-3)
        # divide out the depth trend (attenuation) before pooling
        e = env[rows, 4:-4]
        e = e / e.mean(axis=1, keepdims=True)
        snrs.append(e.mean() / e.std())
    assert np.mean(snrs) == pytest.approx(RAYLEIGH_SNR, abs=0.08), snrs
    assert all(abs(s - RAYLEIGH_SNR) < 0.15 for s in snrs), snrs


def test_speckle_size_follows_the_resolution_cell():
    params = us.homogeneous(_params(1))
    rf, _, _ = us.simulate_scan(np.random.default_rng(1), PROBE, params, mass=False, apply_tgc=False)
    env = _env(rf)
    i = env - env.mean()
    # lateral autocorrelation of the envelope near the focus: half width of the order of the beam width
    zf = int(PROBE.focus * PROBE.depth * 2 / PROBE.c * PROBE.fs)
    band = i[zf - 40: zf + 40]
    ac = np.array([np.mean(band[:, : band.shape[1] - d] * band[:, d:]) for d in range(6)])
    ac /= ac[0]
    lag_half = np.interp(0.5, ac[::-1], np.arange(6)[::-1]) * PROBE.pitch  # lag where the correlation is 0.5
    assert 0.3 * PROBE.beam_fwhm < lag_half < 1.2 * PROBE.beam_fwhm, lag_half
    # axial: of the order of the pulse length (samples)
    acz = np.array([np.mean(i[: -d or None] * i[d:]) if d else np.mean(i * i) for d in range(40)])
    acz /= acz[0]
    half_z = np.argmax(acz < 0.5) * PROBE.c / (2 * PROBE.fs)
    assert 0.3 * PROBE.resolution_cell[0] < half_z < 1.5 * PROBE.resolution_cell[0], half_z


def test_attenuation_before_tgc_and_compensation_after():
    params = us.homogeneous(_params(2, attenuation=0.7, tgc_compensation=1.0))
    params = replace(params, tgc_ripple_db=(0.0,) * len(params.tgc_ripple_db))
    slopes = {}
    for tgc in (False, True):
        rf, _, _ = us.simulate_scan(np.random.default_rng(2), PROBE, params, mass=False, apply_tgc=tgc)
        env = _env(rf)
        z_cm = np.arange(env.shape[0]) * PROBE.c / (2 * PROBE.fs) * 100
        rows = (z_cm > 0.1) & (z_cm < PROBE.depth * 100 - 0.1)
        db = 20 * np.log10(env[rows].mean(axis=1))
        slopes[tgc] = np.polyfit(z_cm[rows], db, 1)[0]  # dB per cm
    expected = -2 * 0.7 * PROBE.f0 / 1e6  # round trip
    assert slopes[False] == pytest.approx(expected, rel=0.25), slopes
    assert abs(slopes[True]) < 0.25 * abs(expected), slopes
    # the mean envelope falls with depth before the TGC: every deeper third is darker
    rf, _, _ = us.simulate_scan(np.random.default_rng(2), PROBE, params, mass=False, apply_tgc=False)
    thirds = [b.mean() for b in np.array_split(_env(rf)[20:-20], 3)]
    assert thirds[0] > thirds[1] > thirds[2]


def test_mass_echogenicity_margins_and_shadowing():
    rng = np.random.default_rng(4)
    for echo in us.ECHOGENICITIES:
        params = _params(4, **{k: v for k, v in vars(us.draw_scan_params(rng, PROBE, False, echo)).items()
                               if k in ("echogenicity", "contrast_db", "density_mass", "mass_amplitude_spread",
                                        "mass_clustered")})
        params = replace(params, posterior="none", posterior_db=0.0, lobules=0)
        rf, roi, info = us.simulate_scan(np.random.default_rng(5), PROBE, params)
        lo, hi = us._ECHO[echo]["contrast_db"]
        # the calibrated mean intensity contrast is met (anechoic: as dark as noise and side lobes allow)
        if echo == "anechoic":
            assert info["contrast_db_measured"] < -10.0
        else:
            assert lo - 1.5 <= info["contrast_db_measured"] <= hi + 1.5, (echo, info["contrast_db_measured"])
        if echo == "isoechoic":  # few scatterers per cell: a pre-Rayleigh envelope (more heterogeneous)
            inner = ndimage.binary_erosion(roi.astype(bool), np.ones((9, 3), bool))
            e = _env(rf)[inner]
            assert e.mean() / e.std() < RAYLEIGH_SNR - 0.2
    # margins: spiculated outlines are longer for their area than circumscribed ones
    def roughness(margin: str) -> float:
        shape = us._draw_shape(np.random.default_rng(6), PROBE, margin, 1.5e-3)
        th = np.linspace(0, 2 * np.pi, 2000, endpoint=False)
        r = shape.radius_factor(th)
        return float(np.abs(np.diff(r, append=r[:1])).sum() / (2 * np.pi))
    assert roughness("circumscribed") < roughness("lobulated") < roughness("spiculated")
    # shadowing: behind a shadowing mass, the tissue is darker than beside it at the same depth
    params = replace(us.homogeneous(_params(7)), posterior="shadow", posterior_db=-12.0)
    rf, roi, info = us.simulate_scan(np.random.default_rng(7), PROBE, params)
    env = _env(rf)
    m = info["mass"]
    z = np.arange(env.shape[0]) * PROBE.c / (2 * PROBE.fs) * 1e3
    x = PROBE.line_x() * 1e3
    below = (z > m["bottom_mm"] + 0.8)[:, None] & (np.abs(x - m["xc_mm"]) < 0.3 * m["rx_mm"])[None, :]
    beside = (z > m["bottom_mm"] + 0.8)[:, None] & (np.abs(x - m["xc_mm"]) > 1.5 * m["rx_mm"])[None, :]
    if below.any() and beside.any():
        assert 20 * np.log10(env[below].mean() / env[beside].mean()) < -5.0


def test_all_echogenicities_in_a_small_cohort(tmp_path):
    write_cohort(tmp_path / "c", 10, 1, **{**SMALL, "mri_matrix": 16, "mri_slices": 2})
    truths = [json.loads(p.read_text()) for p in (tmp_path / "c" / "truth" / "us").glob("*.json")]
    assert {t["echogenicity"] for t in truths} == set(us.ECHOGENICITIES)
    assert all(t["class"] == 0 for t in truths if t["echogenicity"] == "anechoic")  # cysts are benign
    assert {t["margin"] for t in truths} >= {"circumscribed", "spiculated"}


def _lobule_levels(info: dict, probe: us.Probe) -> list[tuple[np.ndarray, float]]:
    z = np.arange(probe.samples) * probe.c / (2 * probe.fs)
    xx, zz = np.meshgrid(probe.line_x(), z)
    out = []
    for lob in info["lobules"]:
        d = lob["shape"]
        shape = us.MassShape(d["xc"], d["zc"], d["rx"], d["rz"], tuple(tuple(h) for h in d["harmonics"]))
        out.append((shape.level(xx, zz), lob["db"]))
    return out


def test_fat_lobules_are_mass_look_alikes_with_fully_developed_speckle():
    """Lobules are as dark as a hypoechoic mass on B-mode but keep Rayleigh speckle (entropy does not see them)."""
    probe = us.probe_for(128, 20.0)  # room for lobules well wider than the beam
    snrs = []
    for seed in range(3):
        params = us.draw_scan_params(np.random.default_rng(seed), probe, False, "hypoechoic")
        params = replace(us.homogeneous(params), lobules=4, lobule_db=-8.0, tgc_compensation=1.0)
        params = replace(params, tgc_ripple_db=(0.0,) * len(params.tgc_ripple_db))  # flat with depth
        rf, _, info = us.simulate_scan(np.random.default_rng(seed), probe, params, mass=False)
        env = _env(rf)
        for level, db in _lobule_levels(info, probe):
            core = level < 0.75  # inside the lobule's soft edge
            if core.sum() < 400:
                continue
            measured = us.contrast_db(env, level <= 1.0, probe)
            assert measured == pytest.approx(db, abs=2.5), (measured, db)  # the beam blurs in a little tissue
            assert -12.5 <= measured <= -3.5  # within the hypoechoic masses' contrast range
            e = env[core]
            snrs.append(e.mean() / e.std())
    assert len(snrs) >= 6
    assert np.mean(snrs) == pytest.approx(RAYLEIGH_SNR, abs=0.15), snrs
    assert all(abs(v - RAYLEIGH_SNR) < 0.35 for v in snrs), snrs


def test_indistinct_margins_fade_into_the_tissue():
    shape = us._draw_shape(np.random.default_rng(8), PROBE, "circumscribed", 1.5e-3)
    z = np.arange(PROBE.samples) * PROBE.c / (2 * PROBE.fs)
    xx, zz = np.meshgrid(PROBE.line_x(), z)
    level = shape.level(xx, zz)
    outside = (level > 1.02) & (level < 1.2)  # just outside the outline
    inside = (level > 0.8) & (level < 0.98)  # just inside
    step = {}
    for blur in (0.0, 0.25):
        params = replace(us.homogeneous(_params(8)), echogenicity="hypoechoic", contrast_db=-14.0, margin_blur=blur,
                         density_mass=4.0, mass_clustered=False)
        rf, roi, info = us.simulate_scan(np.random.default_rng(9), PROBE, params, shape=shape)
        e2 = _env(rf).astype(float) ** 2
        step[blur] = 10 * np.log10(e2[outside].mean() / e2[inside].mean())
    # a sharp edge steps from the mass's level to the tissue's; a blurred one mixes both on either side
    assert step[0.0] > 8.0 and step[0.25] < step[0.0] - 3.0, step
    assert shape.membership(np.array([shape.xc]), np.array([shape.zc]), 0.25)[0] == 1.0


def test_refraction_shadows_below_ligaments():
    params = replace(us.homogeneous(_params(10)), ligaments=4, ligament_shadow_db=-9.0, fascia_gain_db=10.0)
    seen = []  # (measured dB below the stripe vs beside it, nominal dB)
    for seed in range(4):
        rf, _, info = us.simulate_scan(np.random.default_rng(seed), PROBE, params, mass=False, apply_tgc=False)
        env = _env(rf)
        z = np.arange(env.shape[0]) * PROBE.c / (2 * PROBE.fs) * 1e3
        x = PROBE.line_x() * 1e3
        for s in info["refraction_shadows"]:
            if not (x[3] < s["x_mm"] < x[-4]):
                continue
            rows = z > s["from_mm"] + 1.5
            dx, half = np.abs(x - s["x_mm"]), s["half_width_mm"]
            near = dx < 0.5 * half + 0.15
            ring = (dx > 4 * half) & (dx < 4 * half + 2)
            if near.sum() and ring.sum() and rows.sum():
                ratio = 20 * np.log10(env[rows][:, near].mean() / env[rows][:, ring].mean())
                seen.append((ratio, s["db"]))
    assert len(seen) >= 4
    measured, nominal = np.array(seen).T
    # stripes narrower than the beam show only part of their depth in the image; neighbouring stripes and
    # speckle add scatter, so the typical stripe is checked, and that every one darkens
    assert np.median(measured / nominal) > 0.35 and np.all(measured < 0), seen
