"""Prepare one patient for training: converted volumes / maps -> fixed-size 2-D slices in one ``.npz``.

Written per patient (like nnU-Net's preprocessing), so a new patient prepares only itself. Contents:
``image`` (N, C, S, S) float32, ``label`` (N, S, S) uint8 (255 = ignore), ``case`` (N,) study or scan key,
``index`` (N,) slice index in the source volume (0 for ultrasound scans), ``spacing_mm`` (N, 2) in-plane
pixel spacing after resizing, ``spacing_known`` (N,) bool (False where the source stores no pixel spacing, e.g.
BUSI PNGs: ``spacing_mm`` is then in source-image pixels), ``patient`` and ``stratum`` (scalars).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Experiment, MapSettings
from ..errors import InputError
from ..io import atomic_path
from ..labels import BPE, FGT, NOT_ANNOTATED, bpe_category
from ..models.ranges import INTENSITY, mri_intensity
from .split import subset_patients

#: The experiment settings preparation reads (the workflow reprepares a patient when one of them changes).
PREPARED_FROM = ("channels", "image_size")


def resize_slice(image: np.ndarray, size: int, order: int) -> np.ndarray:
    """Resize a 2-D array to size x size (order 0: nearest, for labels; 1: linear, for images)."""
    return resize_to(image, (size, size), order)


def resize_to(image: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    """Resize a 2-D array to ``shape`` (pixel areas aligned: ``grid_mode``); the inverse of :func:`resize_slice`
    when ``shape`` is the original one."""
    from scipy.ndimage import zoom

    rows, cols = int(shape[0]), int(shape[1])
    if image.shape == (rows, cols):  # zoom by 1 on this grid samples every pixel at its centre: a copy
        return np.array(image, copy=True)
    factors = (rows / image.shape[0], cols / image.shape[1])
    out = zoom(image, factors, order=order, mode="nearest", grid_mode=True)
    return out[:rows, :cols]


def top_percentile(values: Any, q: float) -> Any:
    """``np.percentile(values, q)``, exactly, for a high ``q`` (the top few per cent) of a large array, in a
    fifth of the time.

    numpy's linear percentile depends on the sorted values at two positions near the top, on how many values
    there are and on their dtype. The values above a threshold drawn from every 64th value hold both positions;
    numpy's own ``percentile`` then runs on an array of the same length and dtype that holds those values and,
    below them, copies of the threshold, so it has the same sorted values at both positions and gives the same
    result. A threshold that leaves too few values above it, NaNs, or a small array go to ``np.percentile``
    directly.
    """
    a = np.asarray(values)
    flat = a.ravel(order="K")  # the order of the values does not matter to a percentile
    n = flat.size
    if n < 1 << 16 or not 50.0 <= q <= 100.0 or a.dtype.kind not in "fiu":
        return np.percentile(a, q)
    need = n - int(np.floor((n - 1) * (q / 100.0))) + 2  # values at and above the lower of the two positions
    sample = flat[::64]
    pos = max(0, sample.size - 2 - 2 * (need // 64 + 1))  # twice the expected share of the sample
    threshold = np.partition(sample, pos)[pos]
    if a.dtype.kind == "f" and (np.isnan(threshold) or np.isnan(flat).any()):
        return np.percentile(a, q)
    keep = flat >= threshold
    m = int(np.count_nonzero(keep))
    if m < need:
        return np.percentile(a, q)
    surrogate = np.full(n, threshold, dtype=flat.dtype)
    surrogate[:m] = flat[keep]
    return np.percentile(surrogate, q, overwrite_input=True)


def study_scale(pre: np.ndarray) -> float:
    """The per-study normalisation: the 99.5th percentile of the pre-contrast volume (1 for an empty one)."""
    return float(top_percentile(pre, 99.5)) or 1.0


def mri_study_channels(exp: Experiment, pre: np.ndarray, others: dict[str, np.ndarray],
                       scale: float | None = None) -> dict[str, np.ndarray]:
    """The network channels of one study (``exp.channels``, e.g. pre and sub) as float32 volumes, each
    divided by the study's :func:`study_scale` (``scale``: already computed)."""
    scale = study_scale(pre) if scale is None else scale
    vols = {}
    for ch in exp.channels:
        vol = pre if ch == "pre" else others[ch]
        vols[ch] = vol.astype(np.float32) / scale
    return vols


def mri_slice_image(exp: Experiment, vols: dict[str, np.ndarray], k: int) -> np.ndarray:
    """Slice ``k`` of the study's channel volumes resized to the network's input: (C, S, S) float32."""
    size = exp.image_size
    return np.stack([resize_slice(vols[ch][:, :, k], size, 1) for ch in exp.channels])


def _load_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    if not path.exists():
        raise InputError(path, "missing (was the patient converted?)")
    img = nib.load(str(path))
    return np.asarray(img.dataobj), img.affine


def prepare_mri(exp: Experiment, interim: Path) -> dict[str, Any]:
    """Annotated slices of every study: channels (e.g. pre, sub) normalised per study by pre's 99.5th pct."""
    manifest = interim / "patient.json"
    if not manifest.exists():
        raise InputError(manifest, "missing (was the patient converted?)")
    studies = json.loads(manifest.read_text())["studies"]
    size = exp.image_size
    images, labels, cases, index, spacing = [], [], [], [], []
    intensity: dict[str, list[float]] = {q: [] for q in INTENSITY}
    n_fgt = n_bpe = 0
    for study in studies:
        sdir = interim / study["key"]
        pre, affine = _load_nifti(sdir / "pre.nii.gz")
        lab, _ = _load_nifti(sdir / "labels.nii.gz")
        lab = lab.astype(np.uint8)
        raw = {ch: _load_nifti(sdir / f"{ch}.nii.gz")[0] for ch in exp.channels if ch != "pre"}
        scale = study_scale(pre)
        vols = mri_study_channels(exp, pre, raw, scale)
        vox = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
        if not np.all(lab == NOT_ANNOTATED):  # what predict compares a new study with (models.ranges)
            for q, v in mri_intensity(scale, raw.get("sub")).items():
                intensity[q].extend(v)
        for k in range(lab.shape[2]):
            sl = lab[:, :, k]
            if np.all(sl == NOT_ANNOTATED):
                continue
            images.append(mri_slice_image(exp, vols, k))
            labels.append(resize_slice(sl, size, 0))
            cases.append(study["key"])
            index.append(k)
            spacing.append((vox[0] * sl.shape[0] / size, vox[1] * sl.shape[1] / size))
            n_fgt += int(np.count_nonzero((sl == FGT) | (sl == BPE)))
            n_bpe += int(np.count_nonzero(sl == BPE))
    fraction = n_bpe / n_fgt if n_fgt else 0.0
    return dict(images=images, labels=labels, cases=cases, index=index, spacing=spacing,
                spacing_known=[True] * len(images), stratum=f"bpe{bpe_category(fraction)}", intensity=intensity)


def prepare_us(exp: Experiment, interim: Path, maps_settings: MapSettings | dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """Every scan: the experiment's maps (entropy scaled to [0, 1] by log2(bins)) on a square grid.

    A scan decoded by the workflow (the RF envelope, or the B-mode image: :func:`breastseg.us.maps.load_decoded`)
    gets its maps made here with ``maps_settings`` (the ``us_maps`` settings, a :class:`~breastseg.config.MapSettings`
    or a dict of some of them; default: the experiment's ``maps``); a folder of ready maps (``breastseg us-maps``) is
    read as it is.
    """
    scans = sorted(p for p in interim.iterdir() if (p / "meta.json").exists()) if interim.is_dir() else []
    if not scans:
        raise InputError(interim, "no ultrasound scans (was the patient converted?)")
    settings = map_kwargs(exp.maps if maps_settings is None else maps_settings)
    images, labels, cases, index, spacing, classes, known = [], [], [], [], [], [], []
    for sdir in scans:
        if json.loads((sdir / "meta.json").read_text()).get("annotated", True) is False:
            continue  # not annotated yet: for `breastseg suggest`, never for training or evaluation
        maps, meta = scan_maps(exp, sdir, settings)
        image, m, new_spacing = us_scan_image(exp, maps, meta, np.load(sdir / "mask.npy"))
        images.append(image)
        labels.append(m.astype(np.uint8))
        cases.append(sdir.name)
        index.append(0)
        spacing.append(tuple(new_spacing))
        known.append(bool(meta.get("spacing_known", True)))
        classes.append(str(meta.get("class") or "mass"))
    return dict(images=images, labels=labels, cases=cases, index=index, spacing=spacing, spacing_known=known,
                stratum=sorted(classes)[0] if classes else "unannotated")


def map_kwargs(maps_settings: MapSettings | dict[str, Any] | None) -> dict[str, Any]:
    """The ``us_maps`` settings :func:`breastseg.us.maps.maps_from_decoded` takes (the entropy binning, which the
    settings imply, left out); {} for none (the schema's defaults)."""
    if isinstance(maps_settings, MapSettings):
        maps_settings = maps_settings.as_dict()
    return {k: v for k, v in (maps_settings or {}).items()
            if k in ("dynamic_range_db", "window_pulses", "bins", "entropy_on")}


def scan_maps(exp: Experiment, sdir: Path, settings: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The maps ``exp`` needs of one converted scan and its metadata: made from the decoded cache with
    ``settings`` (:func:`map_kwargs`), or read from a folder of ready maps (``breastseg us-maps``) as they are."""
    from ..us.maps import load_decoded, maps_from_decoded

    decoded = load_decoded(sdir)
    if decoded is not None:
        return maps_from_decoded(*decoded, maps=tuple(dict.fromkeys(["bmode", *exp.channels])), where=sdir,
                                 **settings)
    meta, maps = json.loads((sdir / "meta.json").read_text()), {}
    for ch in exp.channels:
        f = sdir / f"{ch}.npy"
        if not f.exists():
            raise InputError(f, f"missing: experiment '{exp.name}' needs the {ch} map")
        maps[ch] = np.load(f)
    return maps, meta


def us_scan_image(exp: Experiment, maps: dict[str, np.ndarray], meta: dict[str, Any], mask: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray | None, tuple[float, float]]:
    """One scan's maps (``exp.channels``; entropy scaled to [0, 1] by log2(bins)) resampled to the network's
    square grid: ((C, S, S) float32, mask on that grid or None, pixel spacing in mm)."""
    from ..us.maps import resample_to_square

    chans, m, new_spacing = [], None, (0.0, 0.0)
    for ch in exp.channels:
        arr = np.asarray(maps[ch]).astype(np.float32)
        if ch == "entropy":
            arr = arr / np.float32(np.log2(meta.get("bins", 256)))
        img, m, new_spacing = resample_to_square(arr, mask, tuple(meta["spacing_mm"]), exp.image_size)
        chans.append(img.astype(np.float32))
    return np.stack(chans), m, new_spacing


def prepare_patient(exp: Experiment, interim: Path, out: Path, *, patient_id: str,
                    maps_settings: MapSettings | dict[str, Any] | None = None, stamp: str | None = None) -> Path:
    """Write ``out`` (.npz) for one patient of ``exp``'s dataset (``maps_settings``: see :func:`prepare_us`;
    ``stamp``: what it was prepared from, kept in the file so that an unchanged patient is not prepared again)."""
    data = prepare_mri(exp, interim) if exp.dataset == "mri" else prepare_us(exp, interim, maps_settings)
    n, size, c = len(data["images"]), exp.image_size, len(exp.channels)
    with atomic_path(out, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                image=np.asarray(data["images"], dtype=np.float32).reshape(n, c, size, size),
                label=np.asarray(data["labels"], dtype=np.uint8).reshape(n, size, size),
                case=np.asarray(data["cases"], dtype=str),
                index=np.asarray(data["index"], dtype=np.int32),
                spacing_mm=np.asarray(data["spacing"], dtype=np.float32).reshape(n, 2),
                spacing_known=np.asarray(data["spacing_known"], dtype=bool).reshape(n),
                patient=np.asarray(patient_id),
                stratum=np.asarray(data["stratum"]),
                prepared_from=np.asarray(stamp or ""),
                **{f"intensity_{q}": np.asarray(v, dtype=np.float64) for q, v in data.get("intensity", {}).items()},
            )
    return out


def prepare_experiments(exps: list[Experiment], interim: Path, processed_dir: Path, *, patient_id: str,
                        maps_settings: MapSettings | dict[str, Any] | None = None) -> list[Path]:
    """One converted patient prepared for several experiments: ``<processed_dir>/<experiment>/<patient>.npz``."""
    return [prepare_patient(exp, interim, Path(processed_dir) / exp.name / f"{patient_id}.npz",
                            patient_id=patient_id, maps_settings=maps_settings) for exp in exps]


def load_subset(processed_dir: Path, split_file: Path, subset: str) -> dict[str, np.ndarray]:
    """Concatenate the prepared slices of every patient of ``subset`` (in patient order)."""
    keys = ("image", "label", "case", "index", "spacing_mm", "spacing_known", "patient")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for pid in subset_patients(split_file, subset):
        f = processed_dir / f"{pid}.npz"
        with np.load(f) as z:
            n = len(z["label"])
            for k in ("image", "label", "case", "index", "spacing_mm"):
                parts[k].append(z[k])
            parts["spacing_known"].append(z["spacing_known"] if "spacing_known" in z.files else np.ones(n, bool))
            parts["patient"].append(np.full(n, pid))
    if not parts["image"]:
        return {}
    return {k: np.concatenate(v) for k, v in parts.items()}
