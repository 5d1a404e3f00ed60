"""Ultrasound inputs -> B-mode and entropy maps + mask on disk, and resampling for the network.

Output layout of :func:`write_us_maps` (one folder per scan, written atomically)::

    OUT_DIR/<scan_key>/bmode.npy     float32 in [0, 1], native resolution (samples x lines for RF)
    OUT_DIR/<scan_key>/entropy.npy   float32, bits (RF inputs only)
    OUT_DIR/<scan_key>/mask.npy      uint8 0/1, same shape
    OUT_DIR/<scan_key>/meta.json     patient, scan, spacing_mm, acquisition, window, bins, ...
    OUT_DIR/<scan_key>/preview.png   B-mode | entropy | B-mode with the mask outline, physical aspect

With a pseudonym (``patient_id``) the keys are ``scan-1``, ``scan-2``... in input order. Otherwise
``scan_key`` is the scan id (``scan-1``, ``scan-2`` for the two OASBUD views) when the input holds one
patient (a per-patient ``.npz``, one OASBUD record, or a ``patients=`` selection of one), and
``<patient>/<scan>`` when it holds several (a whole OASBUD file, a BUSI folder).

Entropy map
-----------
By default (``entropy_on="envelope"``) the entropy is that of the envelope of the raw RF (magnitude of the
analytic signal), before any display compression, as in small-window entropy imaging (Tsui et al., Sci Rep
2017, 7:41004): the Shannon entropy of the envelope's probability distribution, estimated by a histogram of
the envelope samples inside a window whose side is a few pulse lengths (``window_pulses``; Tsui et al. found
one pulse length enough to follow scatterer concentration). The histogram has ``bins`` equal-width bins over
``[0, P99]``, ``P99`` the 99th percentile of the scan's envelope (values above it count in the last bin):
dividing by a robust per-scan scale makes the map independent of the receiver gain and of the display's
dynamic range, while windows of one scan share one amplitude axis (a window of weak echoes spans few bins,
one of strong or mixed echoes many). The scan's maximum would be a fragile scale: one specular echo (a
fascia, a calcification) would squeeze all tissue into the lowest bins. Normalising each window by its own
maximum or RMS (a pure shape measure) was also tried on the validation phantoms of
``benchmarks/choose_entropy_defaults.py`` and separated masses from tissue less well (mean per-pixel AUC 0.72
and 0.62 against 0.85 at the chosen window and bins).

``entropy_on="bmode"`` takes the histogram of the log-compressed B-mode over [0, 1] instead: a fixed local
filter of the B-mode image, kept for comparison. ``window_pulses`` and ``bins`` default to the pair chosen on
validation phantoms by ``benchmarks/choose_entropy_defaults.py`` (``benchmarks/entropy_defaults.json``).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from breastseg.errors import InputError
from breastseg.labels import NOT_ANNOTATED
from breastseg.io import atomic_dir, write_json
from breastseg.us.readers import Scan, _safe_id, read_scans
from breastseg.us.rf import bmode_from_envelope, envelope, pulse_length_m, window_from_pulses

__all__ = ["resample_to_square", "compute_maps", "decode_scan", "maps_from_decoded", "write_decoded_patient",
           "load_decoded", "settings_used", "envelope_range", "write_us_maps", "preview_image", "MAP_NAMES"]

MAP_NAMES = ("bmode", "entropy")
#: How the entropy histogram bins its signal (recorded in each scan's meta.json and in every model's bundle, and
#: part of the conversion's rerun trigger): ``envelope-p99`` bins the envelope over [0, its 99th percentile];
#: maps made before it (``envelope-minmax``: over [min, max]) are another map, which the champion gate refuses to
#: compare. B-mode entropy bins over [0, 1].
ENTROPY_BINNING = {"envelope": "envelope-p99", "bmode": "bmode-unit"}
#: The binning of maps and model bundles made before the binning was recorded (no ``entropy_binning`` key).
EARLIER_BINNING = {"envelope": "envelope-minmax", "bmode": "bmode-unit"}
#: The ``us_maps`` settings each map depends on (entropy of the B-mode also depends on its dynamic range).
MAP_SETTINGS = {"bmode": ("dynamic_range_db",), "entropy": ("window_pulses", "bins", "entropy_on", "entropy_binning")}
#: Percentile of the scan's envelope that sets the top of the entropy histogram (``entropy_on="envelope"``).
ENVELOPE_SCALE_PERCENTILE = 99.0


# ------------------------------------------------------------------------------------------ resampling


def resample_to_square(
    image: np.ndarray,
    mask: np.ndarray | None,
    spacing_mm: tuple[float, float],
    size: int,
) -> tuple[np.ndarray, np.ndarray | None, tuple[float, float]]:
    """Resample to isotropic pixels and fit into ``size x size`` keeping the physical aspect ratio.

    The new pixel side is ``s = max(rows * dy, cols * dx) / size`` mm, so the longer physical side fills
    ``size`` pixels and the shorter one ``round(extent / s)`` pixels. Pixel centres are aligned (a pixel's
    centre maps to the same physical point). The image is interpolated linearly after a Gaussian
    anti-aliasing filter (sigma = (factor - 1) / 2 along each shrunk axis); the mask is sampled nearest, so
    its labels are kept. The result is centred: ``top = (size - new_rows) // 2``,
    ``left = (size - new_cols) // 2``; the margins are filled with the image's minimum (mask: 0).

    Returns ``(image float32 (size, size), mask uint8 (size, size) or None, (s, s))``.
    """
    from scipy import ndimage

    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"image must be a non-empty 2-D array, got shape {image.shape}")
    if mask is not None and np.shape(mask) != image.shape:
        raise ValueError(f"mask shape {np.shape(mask)} does not match image shape {image.shape}")
    size = int(size)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    dy, dx = (float(v) for v in spacing_mm)
    if not (dy > 0 and dx > 0 and np.isfinite(dy) and np.isfinite(dx)):
        raise ValueError(f"spacing must be positive, got {spacing_mm!r}")
    rows, cols = image.shape
    s = max(rows * dy, cols * dx) / size
    new_r = int(min(size, max(1, round(rows * dy / s))))
    new_c = int(min(size, max(1, round(cols * dx / s))))
    zr, zc = rows / new_r, cols / new_c  # source pixels per output pixel

    sigma = (max(0.0, (zr - 1) / 2), max(0.0, (zc - 1) / 2))
    src = ndimage.gaussian_filter(image, sigma, mode="nearest") if max(sigma) > 0 else image
    yr = (np.arange(new_r) + 0.5) * zr - 0.5
    xc = (np.arange(new_c) + 0.5) * zc - 0.5
    yy, xx = np.meshgrid(yr, xc, indexing="ij")
    small = ndimage.map_coordinates(src, [yy, xx], order=1, mode="nearest")

    top, left = (size - new_r) // 2, (size - new_c) // 2
    out = np.full((size, size), image.min(), np.float32)
    out[top:top + new_r, left:left + new_c] = small
    out_mask = None
    if mask is not None:
        iy = np.minimum((np.floor((np.arange(new_r) + 0.5) * zr)).astype(np.intp), rows - 1)
        ix = np.minimum((np.floor((np.arange(new_c) + 0.5) * zc)).astype(np.intp), cols - 1)
        out_mask = np.zeros((size, size), np.uint8)
        out_mask[top:top + new_r, left:left + new_c] = np.asarray(mask)[np.ix_(iy, ix)]
    return out, out_mask, (s, s)


# ------------------------------------------------------------------------------------------ maps


def _settings(dynamic_range_db, window_pulses, bins, entropy_on) -> tuple[float, float, int, str]:
    return float(dynamic_range_db), float(window_pulses), int(bins), str(entropy_on)


def envelope_range(env: np.ndarray) -> tuple[float, float]:
    """Histogram range of the envelope entropy: ``(0, P)``, ``P`` the :data:`ENVELOPE_SCALE_PERCENTILE`-th
    percentile of the envelope (its maximum when that percentile is 0; ``(0, 0)`` for an all-zero envelope)."""
    env = np.asarray(env, dtype=np.float64)
    top = float(np.percentile(env, ENVELOPE_SCALE_PERCENTILE)) if env.size else 0.0
    if not top > 0:
        top = float(env.max()) if env.size else 0.0
    return 0.0, max(top, 0.0)


def settings_used(channels: Sequence[str], settings: dict[str, Any]) -> dict[str, Any]:
    """The ``us_maps`` settings that maps for ``channels`` depend on (B-mode: its dynamic range; entropy: window,
    bins, signal and binning, and the dynamic range too when the entropy is taken of the B-mode)."""
    keys: list[str] = []
    for ch in channels:
        keys += MAP_SETTINGS.get(ch, ())
    if "entropy" in channels and settings.get("entropy_on") == "bmode":
        keys.append("dynamic_range_db")
    return {k: settings.get(k) for k in dict.fromkeys(keys)}


def decode_scan(scan: Scan) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """What every map of one scan is made from, whatever the ``us_maps`` settings: the RF envelope (float64,
    samples x lines) for RF inputs, the B-mode image for B-mode inputs; and the scan's metadata (no settings).

    The workflow caches it per patient (``data/interim/us``), so new map settings, image sizes or channels are
    prepared from it without reading or transforming the raw files again (:func:`maps_from_decoded`).
    """
    meta: dict[str, Any] = {
        "patient": scan.patient,
        "scan": scan.scan,
        "class": scan.label_class,
        "source_format": scan.source,
        "source_file": Path(scan.path).name if scan.path else None,
        "shape": list(scan.mask.shape),
        "spacing_mm": [float(v) for v in scan.spacing_mm],
        "spacing_known": bool(scan.spacing_known),
        "fs": scan.fs, "f0": scan.f0, "pitch": scan.pitch, "c": scan.c, "bandwidth": scan.bandwidth,
        "has_rf": scan.rf is not None,
        "mask_pixels": int((scan.mask == 1).sum()),
        # False: nobody annotated the scan yet (its mask is all 255): suggested for annotation, never trained on
        "annotated": not bool(np.all(scan.mask == NOT_ANNOTATED)),
    }
    meta.update({k: v for k, v in scan.extra.items() if k not in meta})
    if scan.rf is None:
        return {"bmode": np.asarray(scan.bmode, np.float32)}, meta
    return {"envelope": envelope(scan.rf)}, meta  # float64: the maps are those made from the RF, to the last bit


def maps_from_decoded(
    arrays: dict[str, np.ndarray],
    meta: dict[str, Any],
    *,
    maps: Sequence[str] = MAP_NAMES,
    dynamic_range_db: float,
    window_pulses: float,
    bins: int,
    entropy_on: str,
    entropy_binning: str | None = None,
    where: str | Path | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Maps (always including ``bmode``) of one decoded scan (:func:`decode_scan`) and its metadata with the
    settings (the ``us_maps`` block, all four required).
    ``entropy_binning``: the binning a model's maps were made with (its bundle records it); refused when this
    version bins otherwise, since the maps would not be those the model learned from. ``where``: the input named
    in errors (default: the scan's patient).
    """
    from breastseg.us.entropy import entropy_map

    dynamic_range_db, window_pulses, bins, entropy_on = _settings(dynamic_range_db, window_pulses, bins, entropy_on)
    where = where or meta.get("patient")
    if entropy_binning is not None and "entropy" in maps and entropy_binning != ENTROPY_BINNING.get(entropy_on):
        raise InputError(where, f"entropy maps binned '{entropy_binning}' were asked for; this version bins "
                                f"'{ENTROPY_BINNING.get(entropy_on)}' (retrain the model on today's maps)")
    meta = {**meta, "maps": list(maps), "dynamic_range_db": float(dynamic_range_db),
            "window": None, "window_pulses": None, "pulse_length_mm": None,
            "bins": None, "entropy_on": None, "entropy_value_range": None}
    out: dict[str, np.ndarray] = {}
    if "envelope" not in arrays:
        if "entropy" in maps:
            raise InputError(where, "entropy maps need raw RF, and this input holds B-mode images only "
                                    "(ask for the bmode map alone)")
        out["bmode"] = np.asarray(arrays["bmode"], np.float32)
        return out, meta
    env = arrays["envelope"]
    bm = bmode_from_envelope(env, dynamic_range_db)
    out["bmode"] = bm.astype(np.float32)
    if "entropy" in maps:
        window = window_from_pulses(window_pulses, f0=meta["f0"], bandwidth=meta["bandwidth"], fs=meta["fs"],
                                    pitch=meta["pitch"], c=meta["c"])
        if entropy_on == "envelope":
            source, vrange = env, envelope_range(env)
        elif entropy_on == "bmode":
            source, vrange = bm, (0.0, 1.0)
        else:
            raise ValueError(f"entropy_on must be 'envelope' or 'bmode', got {entropy_on!r}")
        if vrange[1] <= vrange[0]:
            vrange = None
        out["entropy"] = entropy_map(source, window, bins, vrange).astype(np.float32)
        meta.update({
            "window": list(window), "window_pulses": float(window_pulses),
            "pulse_length_mm": pulse_length_m(meta["f0"], meta["bandwidth"], meta["c"]) * 1e3,
            "bins": int(bins), "entropy_on": entropy_on, "entropy_value_range": None if vrange is None else list(vrange),
            "entropy_binning": ENTROPY_BINNING[entropy_on],
        })
    return out, meta


def compute_maps(scan: Scan, *, maps: Sequence[str] = MAP_NAMES, **settings: Any
                 ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Maps of one scan (always including ``bmode``, used by the preview) and its metadata: :func:`decode_scan`
    then :func:`maps_from_decoded` with ``settings`` (its keyword arguments: ``dynamic_range_db``,
    ``window_pulses``, ``bins``, ``entropy_on``, ``entropy_binning``), the same two steps the workflow takes
    through its cache (same numbers)."""
    arrays, meta = decode_scan(scan)
    return maps_from_decoded(arrays, meta, maps=maps, where=scan.path or scan.patient, **settings)


def _outline(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(bool)
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    return m & ~inner


def preview_image(bmode: np.ndarray, entropy: np.ndarray | None, mask: np.ndarray,
                  spacing_mm: tuple[float, float], height: int = 256):
    """PIL image: B-mode | entropy (when given) | B-mode with the mask outline in red, physical aspect."""
    from PIL import Image

    rows, cols = mask.shape
    aspect = (cols * spacing_mm[1]) / (rows * spacing_mm[0])
    width = int(min(4 * height, max(16, round(height * aspect))))
    size = (width, height)

    def gray(a: np.ndarray, lo: float, hi: float) -> Image.Image:
        scaled = np.zeros(a.shape) if hi <= lo else (np.asarray(a, np.float64) - lo) / (hi - lo)
        return Image.fromarray((np.clip(scaled, 0, 1) * 255).astype(np.uint8)).resize(size, Image.BILINEAR)

    bm = gray(bmode, 0.0, 1.0)
    panels = [bm]
    if entropy is not None:
        panels.append(gray(entropy, float(np.min(entropy)), float(np.max(entropy))))
    small_mask = np.asarray(Image.fromarray((mask == 1).astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 0  # 255: none
    overlay = np.stack([np.asarray(bm)] * 3, axis=-1)
    overlay[_outline(small_mask)] = (255, 0, 0)
    panels.append(Image.fromarray(overlay))
    gap = 4
    canvas = Image.new("RGB", (len(panels) * width + (len(panels) - 1) * gap, height), (0, 0, 0))
    for i, p in enumerate(panels):
        canvas.paste(p.convert("RGB"), (i * (width + gap), 0))
    return canvas


def _read_inputs(input_path: str | Path | Sequence[str | Path], patients: Iterable[str] | None,
                 acquisition: dict[str, float | None]) -> tuple[Path, list[Scan]]:
    """Every scan of the inputs (checked: unique ids across inputs), kept to ``patients`` when given."""
    inputs = [Path(p) for p in ([input_path] if isinstance(input_path, (str, Path)) else input_path)]
    if not inputs:
        raise ValueError("no input given")
    scans = [s for p in inputs for s in read_scans(p, **acquisition)]
    if len(inputs) > 1:
        from breastseg.us.readers import _check_unique

        _check_unique(inputs[0].parent, scans)
    if patients is not None:
        wanted = {str(p) for p in patients}
        scans = [s for s in scans if s.patient in wanted or _safe_id(s.patient) in wanted]
        if not scans:
            raise InputError(inputs[0], f"no scans of patient(s) {', '.join(sorted(wanted))} in this input")
    return inputs[0], scans


def write_decoded_patient(inputs: Sequence[str | Path], out_dir: str | Path, *, patient_id: str,
                          patients: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """One patient's scans decoded (:func:`decode_scan`) into ``out_dir`` (written atomically, all or nothing)::

        OUT_DIR/scan-<n>/envelope.npy   float64 RF envelope (RF inputs), or bmode.npy (B-mode inputs)
        OUT_DIR/scan-<n>/mask.npy       uint8 0/1
        OUT_DIR/scan-<n>/meta.json      pseudonymised metadata: no input file name, no patient name

    ``inputs``: the files (or folder) of one patient, as the workflow discovered them; ``patients``: the unit ids
    inside them that make up this patient (OASBUD lesions of one woman), else all. Returns one record per scan.
    """
    from breastseg.io import atomic_dir

    if not str(patient_id).strip():
        raise ValueError("patient_id must not be empty")
    first, scans = _read_inputs(list(inputs), patients, {})
    records = []
    with atomic_dir(Path(out_dir)) as tmp:
        for i, scan in enumerate(scans, 1):
            key = f"scan-{i}"
            arrays, meta = decode_scan(scan)
            meta.update(patient=str(patient_id), scan=key, scan_key=key)
            for name in ("source_file", "image", "masks", "mask"):
                meta.pop(name, None)
            (tmp / key).mkdir()
            for name, arr in arrays.items():
                np.save(tmp / key / f"{name}.npy", arr)
            np.save(tmp / key / "mask.npy", scan.mask.astype(np.uint8))
            write_json(tmp / key / "meta.json", meta)
            records.append({"key": key, "class": scan.label_class, "shape": list(scan.mask.shape),
                            "has_rf": scan.rf is not None})
    return records


def load_decoded(scan_dir: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """A decoded scan written by :func:`write_decoded_patient` (``None`` for a folder of ready maps instead)."""
    import json

    d = Path(scan_dir)
    meta = json.loads((d / "meta.json").read_text())
    if (d / "envelope.npy").exists():
        return {"envelope": np.load(d / "envelope.npy")}, meta
    if "has_rf" in meta and "maps" not in meta:  # a decoded B-mode-only scan
        return {"bmode": np.load(d / "bmode.npy")}, meta
    return None


def write_us_maps(
    input_path: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    maps: Sequence[str] = MAP_NAMES,
    dynamic_range_db: float,
    window_pulses: float,
    bins: int,
    entropy_on: str,
    entropy_binning: str | None = None,
    patients: Iterable[str] | None = None,
    patient_id: str | None = None,
    one_patient: bool = False,
    fs: float | None = None,
    f0: float | None = None,
    pitch: float | None = None,
    c: float | None = None,
    bandwidth: float | None = None,
    progress: bool = False,
) -> dict:
    """Read ``input_path`` (any supported format, or a list of inputs), write maps per scan under ``out_dir``.

    See the module doc for the layout. ``maps``: any of ``"bmode"``, ``"entropy"`` (entropy needs raw RF).
    ``bins``: histogram bins of the entropy (equal width over 0..99th percentile of the scan's envelope with
    ``entropy_on="envelope"``; over [0, 1] with ``"bmode"``; see the module doc); the four ``us_maps`` settings
    are required (the params schema holds their defaults). ``patients``: convert only these patient ids (lesion ids for OASBUD). ``fs``, ``f0`` (Hz), ``pitch`` (m),
    ``c`` (m/s), ``bandwidth`` (fractional): override the acquisition parameters of RF inputs.
    ``patient_id``: a pseudonym recorded as the patient instead of the input's own name; the input must hold
    one patient, unless ``patients`` names the units that make up this patient or ``one_patient`` says that
    the inputs are one patient's (a patient folder of several files, as the workflow discovered it). Scans are
    then keyed ``scan-1``, ``scan-2``... in input order, and file names are left out of ``meta.json``.

    All inputs are read and checked before anything is written; each scan folder appears atomically.
    Returns ``{"input", "out_dir", "maps", "scans": [{"key", "patient", "scan", "class", "dir", "shape"}]}``.
    """
    maps = tuple(maps)
    dynamic_range_db, window_pulses, bins, entropy_on = _settings(dynamic_range_db, window_pulses, bins, entropy_on)
    bad = [m for m in maps if m not in MAP_NAMES]
    if not maps or bad:
        raise ValueError(f"maps must be a non-empty selection of {MAP_NAMES}, got {maps!r}")
    if not dynamic_range_db > 0:
        raise ValueError(f"dynamic_range_db must be > 0, got {dynamic_range_db}")
    if not window_pulses > 0:
        raise ValueError(f"window_pulses must be > 0, got {window_pulses}")
    if int(bins) < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if entropy_on not in ("envelope", "bmode"):
        raise ValueError(f"entropy_on must be 'envelope' or 'bmode', got {entropy_on!r}")

    input_path, scans = _read_inputs(input_path, patients, dict(fs=fs, f0=f0, pitch=pitch, c=c, bandwidth=bandwidth))
    out_dir = Path(out_dir)
    if "entropy" in maps:
        bmode_only = [s for s in scans if s.rf is None]
        if bmode_only:
            s = bmode_only[0]
            raise InputError(s.path or input_path,
                             "entropy maps need raw RF, and this input holds B-mode images only "
                             "(ask for the bmode map alone)")

    single_patient = len({s.patient for s in scans}) == 1
    if patient_id is not None:
        if not single_patient and patients is None and not one_patient:
            raise InputError(input_path, "holds several patients; --patient-id needs one (select it with patients=)")
        if not str(patient_id).strip():
            raise ValueError("patient_id must not be empty")
    written = []
    for i, scan in enumerate(scans, 1):
        if patient_id is not None:  # pseudonymised: keys say nothing of the input's names
            key = f"scan-{i}"
        else:
            key = scan.scan if single_patient else f"{_safe_id(scan.patient)}/{scan.scan}"
        if progress:
            print(f"us-maps: [{i}/{len(scans)}] {key}", file=sys.stderr, flush=True)
        arrays, meta = compute_maps(scan, maps=maps, dynamic_range_db=dynamic_range_db,
                                    window_pulses=window_pulses, bins=bins, entropy_on=entropy_on,
                                    entropy_binning=entropy_binning)
        meta["scan_key"] = key
        if patient_id is not None:  # pseudonymised: keep the input's own names out of the outputs
            meta["patient"], meta["scan"] = str(patient_id), key
            for name in ("source_file", "image", "masks", "mask"):
                meta.pop(name, None)
        target = out_dir / key
        with atomic_dir(target) as tmp:
            for name in maps:
                np.save(tmp / f"{name}.npy", arrays[name])
            np.save(tmp / "mask.npy", scan.mask.astype(np.uint8))
            write_json(tmp / "meta.json", meta)
            preview_image(arrays["bmode"], arrays.get("entropy"), scan.mask, scan.spacing_mm).save(tmp / "preview.png")
        written.append({"key": key, "patient": meta["patient"], "scan": meta["scan"], "class": scan.label_class,
                        "dir": str(target), "shape": list(scan.mask.shape)})
    return {"input": str(input_path), "out_dir": str(out_dir), "maps": list(maps), "scans": written}
