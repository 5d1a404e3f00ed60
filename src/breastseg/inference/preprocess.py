"""The training preprocessing applied to one new input, and the way back to the source grid.

Nothing here re-declares a setting: the channels, image size and ultrasound map settings come from the model's
``config.json``; the operations are those of training (:mod:`breastseg.dicom.dce` for the DCE phases and the
subtraction, :func:`breastseg.data.slices.mri_study_channels` / :func:`~breastseg.data.slices.mri_slice_image`
for MRI slices, :func:`breastseg.us.maps.compute_maps` and :func:`breastseg.data.slices.us_scan_image` for
ultrasound).
"""
from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Experiment
from ..data.slices import square_geometry, square_to_native  # noqa: F401 - the way back, where it always was
from ..dicom.scan import has_dicm_magic
from ..errors import InputError

US_SUFFIXES = (".npz", ".mat", ".dcm", ".dicom", ".png")
MASK_STEM = re.compile(r"_mask(?:_\d+)?$")  # <image>_mask.png, <image>_mask_1.png, <image>_mask.npy: masks, not inputs


# ------------------------------------------------------------------------------------------ MRI


@dataclass
class MriStudy:
    """One DCE study read from DICOM: the pre-contrast stack (geometry, source instances) and the volumes the
    network channels are made of, all on the pre-contrast grid (``data[col, row, slice]``)."""

    key: str
    root: Path
    pre: Any  # breastseg.dicom.series.Stack
    volumes: dict[str, np.ndarray]
    phases: list[str]
    timing: str


def discover_mri_studies(input_dir: Path) -> list[tuple[str, list[Any], Path]]:
    """The DCE studies below ``input_dir``: ``[(study key, stacks, study folder)]``, ordered like ``convert``."""
    from ..dicom.convert import order_studies
    from ..dicom.scan import scan
    from ..dicom.slices import Quarantine
    from ..dicom.series import build_stacks, series_location

    if not input_dir.is_dir():
        raise InputError(input_dir, "expected a DICOM study folder (MRI models segment DCE studies)")
    quarantine = Quarantine("fail", root=input_dir)
    result = scan(input_dir, quarantine)
    stacks = build_stacks(result.slices, quarantine)
    studies = order_studies(stacks)
    if not studies:
        raise InputError(input_dir, f"no DICOM image series found ({result.files_seen} file(s) examined)")
    return [(key, members, series_location([s for st in members for s in st.slices])) for key, members in studies]


def check_modality(header: Any, expected: str, where: Path | str, model_name: str) -> None:
    """Refuse an image whose DICOM Modality is not ``expected`` (a missing Modality is accepted)."""
    modality = str(header.get("Modality", "") or "").strip().upper()
    if modality and modality != expected:
        raise InputError(where, f"is a {modality} image; model '{model_name}' segments {expected} images")


def load_mri_study(key: str, members: list[Any], root: Path, exp: Experiment) -> MriStudy:
    """Read the phases the model needs (pre-contrast, first post-contrast) and make its channel volumes."""
    from ..dicom.dce import select_dce_phases, subtraction_on_pre_grid
    from ..dicom.pixels import read_stack

    check_modality(members[0].header, "MR", root, exp.name)
    phases, timing = select_dce_phases(members, root)
    pre, post1 = phases[0], phases[1]
    pre_data, _ = read_stack(pre)
    volumes = {"pre": pre_data}
    needed = set(exp.channels) - {"pre"}
    unknown = needed - {"sub", "post1"}
    if unknown:
        raise InputError(root, f"model '{exp.name}' needs channel(s) {', '.join(sorted(unknown))}, "
                               "which predict cannot make from a DCE study")
    if needed:
        post1_data, _ = read_stack(post1)
        if "sub" in needed:
            volumes["sub"] = subtraction_on_pre_grid(pre, pre_data, post1, post1_data)
        if "post1" in needed:
            from ..dicom.gridmatch import same_grid
            from ..dicom.resample import resample_to_grid

            volumes["post1"] = (post1_data if same_grid(post1.shape, post1.affine, pre.shape, pre.affine)
                                else resample_to_grid(post1_data, post1.affine, pre.shape, pre.affine, order=1))
    names = ["pre"] + [f"post{i}" for i in range(1, len(phases))]
    return MriStudy(key, root, pre, volumes, names, timing)


def mri_network_input(exp: Experiment, study: MriStudy, scale: float | None = None) -> np.ndarray:
    """Every slice of the study as the network sees it in training: (K, C, S, S) float32."""
    from ..data.slices import mri_slice_image, mri_study_channels

    vols = mri_study_channels(exp, study.volumes["pre"], {k: v for k, v in study.volumes.items() if k != "pre"},
                              scale)
    n, size = study.pre.shape[2], exp.image_size
    out = np.empty((n, len(exp.channels), size, size), np.float32)
    spacing = mri_in_plane(study)
    for k in range(n):
        out[k] = mri_slice_image(exp, vols, k, spacing)
    return out


def mri_in_plane(study: MriStudy) -> tuple[float, float]:
    """The pre-contrast grid's voxel size along its first two axes (mm)."""
    vox = np.sqrt((np.asarray(study.pre.affine)[:3, :3] ** 2).sum(axis=0))
    return float(vox[0]), float(vox[1])


def mri_labels_to_grid(labels: list[np.ndarray] | np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Native label slices (K of ``shape[:2]``, from :func:`breastseg.models.segment.segment`) stacked into the
    pre-contrast volume ``shape``: uint8, Fortran order."""
    out = np.empty(shape, np.uint8, order="F")
    for k in range(shape[2]):
        out[:, :, k] = labels[k]
    return out


# ------------------------------------------------------------------------------------------ ultrasound


def discover_us_inputs(path: Path) -> list[Path]:
    """The ultrasound input files of a folder (RF .npz/.mat, DICOM US, B-mode .png; masks are not inputs)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(path, "no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in US_SUFFIXES and not MASK_STEM.search(p.stem))
    if not files:
        raise InputError(path, "no ultrasound inputs found (.npz, .mat, .dcm or .png)")
    return files


def _has_masks(path: Path) -> bool:
    from ..us.readers import glob_escape, masks_beside

    beside = any(path.parent.glob(f"{glob_escape(path.stem)}_mask*")) if path.parent.is_dir() else False
    return beside or (path.suffix.lower() == ".png" and bool(masks_beside(path)))  # BUSI snapshot: <class>/mask/


def read_us_input(path: Path) -> tuple[list[Any], bool]:
    """The scans of one ultrasound input and whether it came with reference masks.

    Inputs with masks are read by :func:`breastseg.us.readers.read_scans` as in training. An input without a
    mask (the usual case for new scans) is read by the same reader with an empty mask beside a link to it in a
    temporary folder, so decoding, gray conversion and pixel spacing are exactly those of training.
    """
    from ..us.readers import read_scans

    suffix = path.suffix.lower()
    if suffix in (".dcm", ".dicom") or (suffix not in US_SUFFIXES and has_dicm_magic(path)):
        _check_us_dicom(path)
    if suffix == ".mat" or (suffix in (".dcm", ".dicom", ".png") and _has_masks(path)):
        return read_scans(path), True
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                if "roi" in z.files or "rf" not in z.files:
                    return read_scans(path), "roi" in z.files
                content = {k: z[k] for k in z.files}
        except InputError:
            raise
        except Exception:  # noqa: BLE001 - not a readable .npz: the reader says why, in one line
            return read_scans(path), False
        content["roi"] = np.zeros(np.shape(content["rf"]), np.uint8)

        def copy_npz(tmp: Path) -> Path:
            np.savez(tmp / path.name, **content)
            return tmp / path.name

        return _read_with_empty_mask(path, copy_npz), False
    if suffix == ".png":
        from PIL import Image

        try:
            with Image.open(path) as im:
                size = im.size
        except Exception as exc:  # noqa: BLE001
            raise InputError(path, f"cannot read as an image: {exc}") from None

        def link_png(tmp: Path) -> Path:
            (tmp / path.name).symlink_to(path.resolve())
            Image.fromarray(np.zeros((size[1], size[0]), np.uint8)).save(tmp / f"{path.stem}_mask.png")
            return tmp / path.name

        return _read_with_empty_mask(path, link_png), False
    if suffix in (".dcm", ".dicom") or has_dicm_magic(path):
        import pydicom

        header = pydicom.dcmread(path, stop_before_pixels=True)

        def link_dcm(tmp: Path) -> Path:
            name = path.name if path.suffix else f"{path.name}.dcm"
            (tmp / name).symlink_to(path.resolve())
            np.save(tmp / f"{Path(name).stem}_mask.npy", np.zeros((int(header.Rows), int(header.Columns)), np.uint8))
            return tmp / name

        return _read_with_empty_mask(path, link_dcm), False
    raise InputError(path, f"unsupported input type '{suffix or path.name}' (expected .npz, .mat, .dcm or .png)")


def _check_us_dicom(path: Path) -> None:
    import pydicom

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001
        raise InputError(path, f"cannot read as DICOM: {exc}") from None
    modality = str(header.get("Modality", "") or "").strip().upper()
    if modality and modality != "US":
        raise InputError(path, f"is a {modality} image; ultrasound models segment US images")
    if "Rows" not in header or "Columns" not in header:
        raise InputError(path, "DICOM file has no image (Rows/Columns missing)")


def _read_with_empty_mask(path: Path, prepare) -> list[Any]:
    from ..us.readers import read_scans

    with tempfile.TemporaryDirectory(prefix="breastseg-us-") as tmp:
        linked = prepare(Path(tmp))
        try:
            scans = read_scans(linked)
        except InputError as err:
            raise InputError(path, err.reason) from None
        for s in scans:
            s.path = str(path)
        return scans


def us_network_input(config: dict[str, Any], scan: Any) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """The maps of one scan made with the model's ``us_maps`` settings, as the network sees them:
    ((1, C, S, S) float32, the maps at native resolution, their metadata)."""
    from ..data.slices import map_kwargs, us_scan_image
    from ..us.maps import compute_maps

    exp = Experiment.from_dict(config["experiment"], maps=config.get("us_maps"))
    settings = map_kwargs(config.get("us_maps"))
    if "entropy" in exp.channels and settings.get("entropy_on") == "envelope":
        from ..us.maps import EARLIER_BINNING  # bundles from before the binning was recorded

        settings["entropy_binning"] = (config.get("us_maps") or {}).get("entropy_binning") or EARLIER_BINNING["envelope"]
    maps = tuple(dict.fromkeys(["bmode", *exp.channels]))
    if "entropy" in exp.channels and scan.rf is None:
        raise InputError(scan.path, f"holds a B-mode image only; model '{exp.name}' needs raw RF for its "
                                    "entropy maps (use a B-mode model)")
    arrays, meta = compute_maps(scan, maps=maps, **settings)
    image, _, _ = us_scan_image(exp, arrays, meta, None)
    return image[None], arrays, meta
