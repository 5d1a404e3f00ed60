"""Speed of breastseg's entropy kernel against skimage.filters.rank.entropy, side by side in one run.

A 2048 x 510 envelope frame (simulated speckle RF -> Hilbert envelope) is quantised to 256 levels
(uint8); both implementations compute the local entropy with a 31 x 9 rectangular window and 256 bins.
The numba kernel is warmed up first so compile time is excluded. Target: time ratio <= 0.05 and a max
abs difference <= 1e-9 bits.

    python benchmarks/bench_entropy.py [--repeats N]
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def simulated_envelope(rows: int = 2048, cols: int = 510, seed: int = 0) -> np.ndarray:
    from scipy.signal import fftconvolve

    from breastseg.us.rf import envelope

    rng = np.random.default_rng(seed)
    fs, f0 = 40e6, 7e6
    t = np.arange(-24, 25) / fs
    pulse = np.exp(-0.5 * (t / 0.15e-6) ** 2) * np.cos(2 * np.pi * f0 * t)
    scatterers = rng.normal(size=(rows, cols))
    scatterers[rows // 3: rows // 2, cols // 4: cols // 2] *= 0.3  # a darker, mass-like region
    rf = fftconvolve(scatterers, pulse[:, None], mode="same", axes=0)
    return envelope(rf)


def best_of(fn, repeats: int) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(repeats: int = 3) -> dict:
    from skimage.filters.rank import entropy as sk_entropy

    from breastseg.us.entropy import bin_indices, entropy_map

    env = simulated_envelope()
    frame = bin_indices(env, 256).astype(np.uint8)  # 256 equal-width levels over the envelope's range
    window, footprint = (31, 9), np.ones((31, 9))

    t0 = time.perf_counter()
    entropy_map(frame[:64, :32], window, 256, (0, 256))  # warm-up: compile or load the cached kernel
    warm = time.perf_counter() - t0

    t_ours, ours = best_of(lambda: entropy_map(frame, window, 256, (0, 256)), repeats)
    t_sk, ref = best_of(lambda: sk_entropy(frame, footprint), repeats)
    ratio = t_ours / t_sk
    diff = float(np.max(np.abs(ours - ref)))
    print(f"frame {frame.shape[0]}x{frame.shape[1]} uint8, window {window[0]}x{window[1]}, 256 bins, best of {repeats}")
    print(f"warm-up (compile/cache load): {warm:8.3f} s")
    print(f"breastseg entropy_map:        {t_ours * 1e3:8.1f} ms")
    print(f"skimage rank.entropy:         {t_sk * 1e3:8.1f} ms")
    print(f"ratio (target <= 0.05):       {ratio:8.4f}  ({1 / ratio:.1f}x faster)  {'OK' if ratio <= 0.05 else 'MISSED'}")
    print(f"max abs difference (<= 1e-9): {diff:.3e}  {'OK' if diff <= 1e-9 else 'MISSED'}")
    return {"ours_s": t_ours, "skimage_s": t_sk, "ratio": ratio, "max_abs_diff": diff}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    main(parser.parse_args().repeats)
