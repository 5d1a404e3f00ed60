"""Raw RF -> envelope -> B-mode, and the physical size of the entropy window.

Conventions: RF frames are ``samples x lines`` (axis 0 = fast time / depth, axis 1 = scan lines).

Pulse length
------------
The spatial pulse length is the number of cycles in the pulse times the wavelength. A pulse with
fractional -6 dB bandwidth ``B`` (bandwidth / centre frequency) lasts about ``1 / B`` cycles, so

    SPL = N_cycles * lambda = (1 / B) * (c / f0) = c / (f0 * B)

(7 MHz, 75 % bandwidth, c = 1540 m/s: SPL = 0.293 mm; the axial resolution is SPL / 2).

Window conversion
-----------------
One RF sample spans ``dz = c / (2 fs)`` of depth (round trip), one scan line spans ``pitch``. A window of
``p`` pulse lengths is ``p * SPL / dz`` samples by ``p * SPL / pitch`` lines, each rounded to the nearest
odd integer and at least 3 samples and 1 line.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "SPEED_OF_SOUND",
    "envelope",
    "bmode_from_envelope",
    "bmode",
    "pulse_length_m",
    "axial_spacing_m",
    "window_from_pulses",
    "nearest_odd",
]

SPEED_OF_SOUND = 1540.0  # m/s, soft-tissue average


def envelope(rf: np.ndarray) -> np.ndarray:
    """Envelope ``|x + i H{x}|`` of each scan line (analytic signal along axis 0), float64.

    The analytic signal is computed as ``scipy.signal.hilbert`` does (FFT, zero the negative frequencies,
    double the positive ones), with numpy only: importing scipy.signal costs about a second per process.
    """
    rf = np.asarray(rf, dtype=np.float64)
    if rf.ndim != 2:
        raise ValueError(f"RF must be 2-D (samples x lines), got shape {rf.shape}")
    n = rf.shape[0]
    h = np.zeros(n)
    h[0] = 1.0
    if n % 2 == 0:
        h[n // 2] = 1.0
        h[1: n // 2] = 2.0
    else:
        h[1: (n + 1) // 2] = 2.0
    return np.abs(np.fft.ifft(np.fft.fft(rf, axis=0) * h[:, None], axis=0))


def bmode_from_envelope(env: np.ndarray, dynamic_range_db: float = 50.0) -> np.ndarray:
    """Log compression: ``20 log10(env / max)`` clipped to ``[-DR, 0]`` dB and mapped linearly to ``[0, 1]``."""
    if not dynamic_range_db > 0:
        raise ValueError(f"dynamic range must be > 0 dB, got {dynamic_range_db}")
    env = np.asarray(env, dtype=np.float64)
    peak = float(env.max()) if env.size else 0.0
    if peak <= 0:
        return np.zeros(env.shape, np.float64)
    with np.errstate(divide="ignore"):
        db = 20.0 * np.log10(env / peak)
    np.clip(db, -dynamic_range_db, 0.0, out=db)
    return (db + dynamic_range_db) / dynamic_range_db


def bmode(rf: np.ndarray, dynamic_range_db: float = 50.0) -> np.ndarray:
    """B-mode image in ``[0, 1]`` from RF (envelope, then log compression)."""
    return bmode_from_envelope(envelope(rf), dynamic_range_db)


def pulse_length_m(f0: float, bandwidth: float, c: float = SPEED_OF_SOUND) -> float:
    """Spatial pulse length ``c / (f0 * B)`` in metres (``B``: fractional bandwidth, e.g. 0.75)."""
    if not (f0 > 0 and bandwidth > 0 and c > 0):
        raise ValueError(f"f0, bandwidth and c must be > 0, got {f0}, {bandwidth}, {c}")
    return c / (f0 * bandwidth)


def axial_spacing_m(fs: float, c: float = SPEED_OF_SOUND) -> float:
    """Depth spanned by one RF sample, ``c / (2 fs)`` in metres."""
    if not (fs > 0 and c > 0):
        raise ValueError(f"fs and c must be > 0, got {fs}, {c}")
    return c / (2.0 * fs)


def nearest_odd(x: float, minimum: int = 1) -> int:
    """Nearest odd integer to ``x`` (ties go up), at least ``minimum`` (itself odd)."""
    n = 2 * int(np.floor((x - 1.0) / 2.0 + 0.5)) + 1
    return max(n, minimum)


def window_from_pulses(
    window_pulses: float,
    *,
    f0: float,
    bandwidth: float,
    fs: float,
    pitch: float,
    c: float = SPEED_OF_SOUND,
) -> tuple[int, int]:
    """Entropy window ``(samples, lines)`` of side ``window_pulses`` spatial pulse lengths (odd, >= 3 x 1)."""
    if not window_pulses > 0:
        raise ValueError(f"window_pulses must be > 0, got {window_pulses}")
    if not pitch > 0:
        raise ValueError(f"pitch must be > 0, got {pitch}")
    side = window_pulses * pulse_length_m(f0, bandwidth, c)
    return nearest_odd(side / axial_spacing_m(fs, c), 3), nearest_odd(side / pitch, 1)
