"""Prepare one patient for training: converted volumes / maps -> fixed-size 2-D slices in one ``.npz``.

Written per patient (like nnU-Net's preprocessing), so a new patient prepares only itself. Contents:
``image`` (N, C, S, S) float32, ``label`` (N, S, S) uint8 (255 = ignore), ``case`` (N,) study or scan key,
``index`` (N,) slice index in the source volume (0 for ultrasound scans), ``spacing_mm`` (N, 2) in-plane
pixel spacing after resizing, ``spacing_known`` (N,) bool (False where the source stores no pixel spacing, e.g.
BUSI PNGs: ``spacing_mm`` is then in source-image pixels), ``patient`` and ``stratum`` (scalars), and each
image's reference labels on its native grid: ``native_label`` (all images' labels, flattened one after another),
``native_shape`` (N, 2) and ``native_spacing_mm`` (N, 2). Evaluation scores there, on the grid predict writes.

How an image becomes the network's input is the experiment's ``preprocess`` block (:func:`network_image`):
the aspect kept (square pixels, padded to S x S) or squeezed, and the intensities as they are (``fixed``: MRI
divided by the study's scale, B-mode in [0, 1], entropy by log2(bins)) or z-scored per image (ultrasound).
:func:`to_native` is the way back, for predict and evaluation alike.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Experiment, MapSettings, schema_defaults
from ..errors import InputError
from ..io import atomic_path
from ..labels import BPE, FGT, NOT_ANNOTATED, bpe_category
from .ranges import INTENSITY, mri_intensity
from .split import subset_patients

#: The experiment settings preparation reads (the workflow reprepares a patient when one of them changes).
PREPARED_FROM = ("channels", "image_size", "preprocess")


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


def study_scale(pre: np.ndarray) -> float:
    """The per-study normalisation: the 99.5th percentile of the pre-contrast volume (1 for an empty one)."""
    return float(np.percentile(pre, 99.5)) or 1.0


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


def network_image(exp: Experiment, channels: list[np.ndarray], label: np.ndarray | None,
                  spacing_mm: tuple[float, float]) -> tuple[np.ndarray, np.ndarray | None, tuple[float, float]]:
    """2-D channels (each on the native grid, intensities as :func:`mri_study_channels` or the maps give them) and
    their label map as the network sees them, following ``exp.preprocess``: ((C, S, S) float32, (S, S) uint8 or
    None, pixel spacing on the network grid in mm). ``aspect: keep``: square pixels fitted into S x S and centred
    (:func:`breastseg.us.maps.resample_to_square`); ``squeeze``: each axis stretched to S. ``normalization:
    zscore``: each channel to zero mean and unit variance over the image before resampling."""
    from ..us.maps import resample_to_square

    size, pre = exp.image_size, exp.preprocess
    out, m, new_spacing = [], None, (0.0, 0.0)
    for arr in channels:
        arr = np.asarray(arr, dtype=np.float32)
        if pre.normalization == "zscore":
            arr = (arr - arr.mean(dtype=np.float64)) / max(float(arr.std(dtype=np.float64)), 1e-6)
        if pre.aspect == "keep":
            img, m, new_spacing = resample_to_square(arr, label, spacing_mm, size)
        else:
            img = resize_slice(arr, size, 1)
            m = None if label is None else resize_slice(label, size, 0)
            new_spacing = (spacing_mm[0] * arr.shape[0] / size, spacing_mm[1] * arr.shape[1] / size)
        out.append(img.astype(np.float32))
    return np.stack(out), m, (float(new_spacing[0]), float(new_spacing[1]))


def to_native(label: np.ndarray, shape: tuple[int, int], spacing_mm: tuple[float, float], exp: Experiment
              ) -> np.ndarray:
    """A label map on the network's S x S grid back to the image's native grid ``shape`` (nearest neighbour): the
    inverse of :func:`network_image` under ``exp.preprocess``; what predict writes and evaluation scores."""
    if exp.preprocess.aspect == "keep":
        return square_to_native(label, shape, spacing_mm)
    sl = np.asarray(label, dtype=np.uint8)
    return sl.copy() if sl.shape == tuple(shape) else resize_to(sl, tuple(shape), 0)


def square_geometry(shape: tuple[int, int], spacing_mm: tuple[float, float], size: int) -> tuple[int, int, int, int]:
    """Where :func:`breastseg.us.maps.resample_to_square` puts an image of ``shape``: (new_rows, new_cols, top,
    left) of the resampled image inside the ``size x size`` square."""
    rows, cols = shape
    dy, dx = (float(v) for v in spacing_mm)
    s = max(rows * dy, cols * dx) / size
    new_r = int(min(size, max(1, round(rows * dy / s))))
    new_c = int(min(size, max(1, round(cols * dx / s))))
    return new_r, new_c, (size - new_r) // 2, (size - new_c) // 2


def square_to_native(label: np.ndarray, shape: tuple[int, int], spacing_mm: tuple[float, float]) -> np.ndarray:
    """A label map on the network's square grid back to the native grid ``shape`` (nearest neighbour, the inverse
    of the mask sampling in :func:`breastseg.us.maps.resample_to_square`)."""
    size = label.shape[0]
    new_r, new_c, top, left = square_geometry(shape, spacing_mm, size)
    rows, cols = shape
    zr, zc = rows / new_r, cols / new_c
    iy = np.minimum(np.floor((np.arange(rows) + 0.5) / zr).astype(np.intp), new_r - 1) + top
    ix = np.minimum(np.floor((np.arange(cols) + 0.5) / zc).astype(np.intp), new_c - 1) + left
    return np.ascontiguousarray(label[np.ix_(iy, ix)], dtype=np.uint8)


def mri_slice_image(exp: Experiment, vols: dict[str, np.ndarray], k: int,
                    spacing_mm: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Slice ``k`` of the study's channel volumes as the network's input: (C, S, S) float32 (``spacing_mm``: the
    in-plane voxel size along the volume's first two axes, which ``aspect: keep`` needs)."""
    return network_image(exp, [vols[ch][:, :, k] for ch in exp.channels], None, spacing_mm)[0]


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
    images, labels, cases, index, spacing, native = [], [], [], [], [], []
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
        in_plane = (float(vox[0]), float(vox[1]))
        if not np.all(lab == NOT_ANNOTATED):  # what predict compares a new study with (data.ranges)
            for q, v in mri_intensity(scale, raw.get("sub")).items():
                intensity[q].extend(v)
        for k in range(lab.shape[2]):
            sl = lab[:, :, k]
            if np.all(sl == NOT_ANNOTATED):
                continue
            image, m, grid_spacing = network_image(exp, [vols[ch][:, :, k] for ch in exp.channels], sl, in_plane)
            images.append(image)
            labels.append(m)
            cases.append(study["key"])
            index.append(k)
            spacing.append(grid_spacing)
            native.append((np.ascontiguousarray(sl), in_plane))
            n_fgt += int(np.count_nonzero((sl == FGT) | (sl == BPE)))
            n_bpe += int(np.count_nonzero(sl == BPE))
    fraction = n_bpe / n_fgt if n_fgt else 0.0
    return dict(images=images, labels=labels, cases=cases, index=index, spacing=spacing,
                spacing_known=[True] * len(images), stratum=f"bpe{bpe_category(fraction)}", intensity=intensity,
                native=native)


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
    images, labels, cases, index, spacing, classes, known, native = [], [], [], [], [], [], [], []
    for sdir in scans:
        if json.loads((sdir / "meta.json").read_text()).get("annotated", True) is False:
            continue  # not annotated yet: for `breastseg suggest`, never for training or evaluation
        maps, meta = scan_maps(exp, sdir, settings)
        mask = np.load(sdir / "mask.npy")
        image, m, new_spacing = us_scan_image(exp, maps, meta, mask)
        native.append((np.ascontiguousarray(mask, dtype=np.uint8), tuple(float(v) for v in meta["spacing_mm"])))
        images.append(image)
        labels.append(m.astype(np.uint8))
        cases.append(sdir.name)
        index.append(0)
        spacing.append(tuple(new_spacing))
        known.append(bool(meta.get("spacing_known", True)))
        classes.append(str(meta.get("class") or "mass"))
    return dict(images=images, labels=labels, cases=cases, index=index, spacing=spacing, spacing_known=known,
                stratum=sorted(classes)[0] if classes else "unannotated", native=native)


def map_kwargs(maps_settings: MapSettings | dict[str, Any] | None) -> dict[str, Any]:
    """The ``us_maps`` settings :func:`breastseg.us.maps.maps_from_decoded` takes (the entropy binning, which the
    settings imply, left out); a model bundle from before they were recorded (None, or a key missing) made its
    maps with the schema's defaults."""
    if isinstance(maps_settings, MapSettings):
        maps_settings = maps_settings.as_dict()
    given = {**schema_defaults("us_maps"), **(maps_settings or {})}
    return {k: given[k] for k in ("dynamic_range_db", "window_pulses", "bins", "entropy_on")}


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
    """One scan's maps (``exp.channels``; entropy scaled to [0, 1] by log2(bins)) as the network sees them
    (:func:`network_image`): ((C, S, S) float32, mask on that grid or None, pixel spacing in mm)."""
    chans = []
    for ch in exp.channels:
        arr = np.asarray(maps[ch]).astype(np.float32)
        if ch == "entropy":
            arr = arr / np.float32(np.log2(meta.get("bins", 256)))
        chans.append(arr)
    return network_image(exp, chans, mask, tuple(meta["spacing_mm"]))


def prepare_patient(exp: Experiment, interim: Path, out: Path, *, patient_id: str,
                    maps_settings: MapSettings | dict[str, Any] | None = None, stamp: str | None = None) -> Path:
    """Write ``out`` (.npz) for one patient of ``exp``'s dataset (``maps_settings``: see :func:`prepare_us`;
    ``stamp``: what it was prepared from, kept in the file so that an unchanged patient is not prepared again)."""
    data = prepare_mri(exp, interim) if exp.dataset == "mri" else prepare_us(exp, interim, maps_settings)
    arrays = slice_arrays(exp, data)
    with atomic_path(out, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                **{k: v for k, v in arrays.items() if k != "native_label"},
                native_label=np.concatenate([a.ravel() for a in arrays["native_label"]]) if len(arrays["label"])
                else np.zeros(0, np.uint8),
                patient=np.asarray(patient_id),
                stratum=np.asarray(data["stratum"]),
                prepared_from=np.asarray(stamp or ""),
                **{f"intensity_{q}": np.asarray(v, dtype=np.float64) for q, v in data.get("intensity", {}).items()},
            )
    return out


def slice_arrays(exp: Experiment, data: dict[str, Any]) -> dict[str, Any]:
    """What :func:`prepare_mri` / :func:`prepare_us` give as the arrays of a prepared file (``native_label``: a
    list of 2-D arrays)."""
    n, size, c = len(data["images"]), exp.image_size, len(exp.channels)
    return {
        "image": np.asarray(data["images"], dtype=np.float32).reshape(n, c, size, size),
        "label": np.asarray(data["labels"], dtype=np.uint8).reshape(n, size, size),
        "case": np.asarray(data["cases"], dtype=str).reshape(n),
        "index": np.asarray(data["index"], dtype=np.int32).reshape(n),
        "spacing_mm": np.asarray(data["spacing"], dtype=np.float32).reshape(n, 2),
        "spacing_known": np.asarray(data["spacing_known"], dtype=bool).reshape(n),
        "native_label": [lab for lab, _ in data["native"]],
        "native_shape": np.asarray([lab.shape for lab, _ in data["native"]], dtype=np.int32).reshape(n, 2),
        "native_spacing_mm": np.asarray([sp for _, sp in data["native"]], dtype=np.float64).reshape(n, 2),
    }


def native_labels(flat: np.ndarray, shapes: np.ndarray) -> list[np.ndarray]:
    """The native label maps of a prepared file: ``native_label`` cut by ``native_shape``."""
    sizes = np.prod(np.asarray(shapes, dtype=np.int64).reshape(-1, 2), axis=1)
    ends = np.cumsum(sizes)
    return [flat[e - n:e].reshape(int(r), int(c)) for e, n, (r, c) in zip(ends, sizes, shapes)]


def object_array(items: list[np.ndarray]) -> np.ndarray:
    """A 1-D object array holding 2-D arrays of different shapes (indexable by masks and index arrays)."""
    out = np.empty(len(items), dtype=object)
    for i, a in enumerate(items):
        out[i] = a
    return out


def prepare_experiments(exps: list[Experiment], interim: Path, processed_dir: Path, *, patient_id: str,
                        maps_settings: MapSettings | dict[str, Any] | None = None) -> list[Path]:
    """One converted patient prepared for several experiments: ``<processed_dir>/<experiment>/<patient>.npz``."""
    return [prepare_patient(exp, interim, Path(processed_dir) / exp.name / f"{patient_id}.npz",
                            patient_id=patient_id, maps_settings=maps_settings) for exp in exps]


def load_subset(processed_dir: Path, split_file: Path, subset: str) -> dict[str, np.ndarray]:
    """Concatenate the prepared slices of every patient of ``subset`` (in patient order)."""
    return load_patients(processed_dir, subset_patients(split_file, subset))


def load_patients(processed_dir: Path, patients: list[str]) -> dict[str, np.ndarray]:
    """Concatenate the prepared slices of ``patients`` (in that order)."""
    keys = ("image", "label", "case", "index", "spacing_mm", "spacing_known", "patient", "native_shape",
            "native_spacing_mm")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    natives: list[np.ndarray] = []
    for pid in patients:
        f = Path(processed_dir) / f"{pid}.npz"
        with np.load(f) as z:
            n = len(z["label"])
            for k in ("image", "label", "case", "index", "spacing_mm"):
                parts[k].append(z[k])
            parts["spacing_known"].append(z["spacing_known"] if "spacing_known" in z.files else np.ones(n, bool))
            parts["patient"].append(np.full(n, pid))
            if "native_shape" in z.files:
                parts["native_shape"].append(z["native_shape"])
                parts["native_spacing_mm"].append(z["native_spacing_mm"])
                natives += native_labels(z["native_label"], z["native_shape"])
            else:  # a file without native labels (not written by prepare_patient): its own grid is the native one
                parts["native_shape"].append(np.tile(np.asarray(z["label"].shape[1:], np.int32), (n, 1)))
                parts["native_spacing_mm"].append(np.asarray(z["spacing_mm"], np.float64).reshape(n, 2))
                natives += list(z["label"])
    if not parts["image"]:
        return {}
    return {**{k: np.concatenate(v) for k, v in parts.items()}, "native_label": object_array(natives)}
