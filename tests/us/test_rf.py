"""RF -> envelope -> B-mode, pulse length and window conversion."""
import numpy as np
import pytest

from breastseg.us.rf import (
    axial_spacing_m,
    bmode,
    bmode_from_envelope,
    envelope,
    nearest_odd,
    pulse_length_m,
    window_from_pulses,
)


def test_hilbert_envelope_of_modulated_gaussian_recovers_the_gaussian():
    fs, f0 = 40e6, 5e6
    t = np.arange(1024) / fs
    lines = []
    for amp, centre in [(1.0, 8e-6), (300.0, 14e-6)]:
        g = amp * np.exp(-0.5 * ((t - centre) / 0.6e-6) ** 2)
        lines.append((g, g * np.cos(2 * np.pi * f0 * (t - centre) + 0.3)))
    rf = np.stack([rf for _, rf in lines], axis=1)
    env = envelope(rf)
    assert env.shape == rf.shape and env.dtype == np.float64
    for j, (g, _) in enumerate(lines):
        assert np.max(np.abs(env[:, j] - g)) < 1e-6 * g.max()


def test_bmode_maps_dynamic_range_to_unit_interval():
    env = np.array([[1.0, 0.1, 0.01, 1e-4, 0.0]]).T * 7.0
    np.testing.assert_allclose(bmode_from_envelope(env, 50.0)[:, 0], [1.0, 0.6, 0.2, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(bmode_from_envelope(env, 30.0)[:, 0], [1.0, 1 / 3, 0.0, 0.0, 0.0], atol=1e-12)
    rng = np.random.default_rng(0)
    b = bmode(rng.normal(size=(200, 8)))
    assert b.min() >= 0.0 and b.max() == pytest.approx(1.0)
    assert np.all(bmode_from_envelope(np.zeros((4, 3))) == 0.0)
    with pytest.raises(ValueError):
        bmode_from_envelope(env, 0.0)


def test_pulse_length_formula():
    # c / (f0 * B): 7 MHz, 75 % bandwidth -> about 0.3 mm
    assert pulse_length_m(7e6, 0.75, 1540.0) == pytest.approx(1540.0 / (7e6 * 0.75))
    assert pulse_length_m(7e6, 0.75) * 1e3 == pytest.approx(0.293, abs=1e-3)
    assert axial_spacing_m(40e6, 1540.0) == pytest.approx(19.25e-6)


def test_window_from_pulses_is_odd_with_minimums():
    # 0.2933 mm / 19.25 um = 15.2 samples -> 15; 0.2933 mm / 0.3 mm = 0.98 lines -> 1
    assert window_from_pulses(1.0, f0=7e6, bandwidth=0.75, fs=40e6, pitch=0.3e-3, c=1540.0) == (15, 1)
    assert window_from_pulses(2.0, f0=7e6, bandwidth=0.75, fs=40e6, pitch=0.1e-3, c=1540.0) == (31, 5)
    assert window_from_pulses(0.01, f0=7e6, bandwidth=0.75, fs=40e6, pitch=0.3e-3) == (3, 1)
    for x in np.linspace(0, 40, 81):
        n = nearest_odd(x)
        assert n % 2 == 1 and abs(n - max(x, 1)) <= 1
    with pytest.raises(ValueError):
        window_from_pulses(1.0, f0=7e6, bandwidth=0.75, fs=40e6, pitch=0.0)


@pytest.mark.parametrize("n", [255, 256])
def test_envelope_equals_scipy_hilbert(n):
    from scipy.signal import hilbert

    from breastseg.us.rf import envelope

    rf = np.random.default_rng(n).standard_normal((n, 7))
    np.testing.assert_allclose(envelope(rf), np.abs(hilbert(rf, axis=0)), atol=1e-12)
