"""Readers for breast ultrasound inputs, each returning a list of :class:`Scan`.

Raw RF (both experiments apply):

* OASBUD ``.mat``: ``scipy.io.loadmat(path)["data"][0]`` is a struct array, one record per lesion, with
  fields ``id``, ``rf1``, ``rf2`` (RF, int16, samples x lines), ``roi1``, ``roi2`` (masks, same shapes),
  ``birads`` and ``class`` (0 = benign, 1 = malignant). Each record gives two scans, ``scan-1`` and
  ``scan-2`` (the two orthogonal views), of patient ``id``. The file stores no acquisition parameters;
  the defaults below describe the OASBUD acquisition (SonixTouch, L14-5/38 probe) and can be overridden.
* Per-patient ``.npz``: keys ``rf`` (samples x lines), ``roi`` (mask, same shape), ``fs`` (Hz), ``f0`` (Hz),
  ``pitch`` (m, scan-line spacing), optionally ``c`` (m/s), ``bandwidth`` (fractional) and ``class``.
  Patient = file stem, one scan ``scan-1``.

B-mode only (only the B-mode experiment applies):

* BUSI layout: ``<root>/<class>/<class> (N).png`` with ``<class> (N)_mask.png`` and optional
  ``_mask_1.png``, ``_mask_2.png``... (further regions, merged by union) beside it, as the dataset's archive
  ships; or the layout of its public git snapshot, ``<root>/<class>/images/<class> (N).png`` with the same mask
  files in ``<root>/<class>/mask/``. Both give the same scans (ids, class, masks). RGB images are converted to
  gray. No pixel spacing is stored, so square 1 mm "pixels" are assumed (``spacing_known=False``). A BUSI folder
  in which no image has a mask is refused (its masks are elsewhere, or it is not the BUSI layout).
* DICOM US: ``<name>.dcm`` with ``<name>_mask.png`` or ``<name>_mask.npy`` beside it; spacing from
  ``SequenceOfUltrasoundRegions[0].PhysicalDeltaY/X`` (cm) when present, else ``PixelSpacing``.

Every bad input raises :class:`breastseg.errors.InputError` naming the file and the reason.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from breastseg.errors import InputError
from breastseg.labels import NOT_ANNOTATED
from breastseg.us.rf import SPEED_OF_SOUND, axial_spacing_m

__all__ = [
    "Scan",
    "OASBUD_DEFAULTS",
    "read_oasbud_mat",
    "read_npz",
    "read_busi",
    "read_busi_image",
    "read_dicom_us",
    "read_scans",
]

#: Acquisition defaults for OASBUD files (which store none): 40 MHz sampling, 10 MHz centre frequency of the
#: L14-5/38 probe, an assumed 60 % fractional bandwidth, and 510 scan lines across the probe's 38 mm aperture
#: (line spacing 38 mm / 510 = 74.5 um). Override any of them through the readers' keyword arguments.
OASBUD_DEFAULTS: dict[str, float] = {
    "fs": 40e6,
    "f0": 10e6,
    "bandwidth": 0.6,
    "pitch": 38e-3 / 510,
    "c": SPEED_OF_SOUND,
}

_MASK_RE = re.compile(r"^(?P<stem>.+)_mask(?:_(?P<k>\d+))?$")
#: BUSI class folders: the class of an image in ``<class>/`` or ``<class>/images/``.
BUSI_CLASSES = ("benign", "malignant", "normal")
#: The snapshot layout: images in an ``images`` folder, their masks in the ``mask`` (or ``masks``) folder beside it.
_IMAGE_FOLDERS = ("images",)
_MASK_FOLDERS = ("mask", "masks")
BUSI_LAYOUT = ("<class>/<image>.png with <image>_mask.png [_mask_1.png ...] beside it, "
               "or <class>/images/<image>.png with <class>/mask/<image>_mask.png [_mask_1.png ...]")
_OASBUD_FIELDS = ("id", "rf1", "rf2", "roi1", "roi2")


@dataclass
class Scan:
    """One ultrasound scan with its lesion mask; ``rf`` is ``None`` for B-mode-only inputs."""

    patient: str
    scan: str
    rf: np.ndarray | None
    bmode: np.ndarray | None
    mask: np.ndarray
    fs: float | None
    f0: float | None
    pitch: float | None
    c: float | None
    bandwidth: float | None
    label_class: str | None
    spacing_mm: tuple[float, float]
    source: str
    path: str = ""
    spacing_known: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_rf(self) -> bool:
        return self.rf is not None


# ----------------------------------------------------------------------------------------------- checks


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(path, "empty file")


def _positive(path: Path, name: str, value: Any) -> float:
    try:
        v = float(np.asarray(value, dtype=np.float64).reshape(-1)[0]) if np.size(value) == 1 else None
    except (TypeError, ValueError):
        v = None
    if v is None or not np.isfinite(v) or v <= 0:
        raise InputError(path, f"'{name}' must be one positive finite number, got {value!r}")
    return v


def _check_rf(path: Path, rf: Any, name: str) -> np.ndarray:
    rf = np.asarray(rf)
    if rf.dtype == object or not (np.issubdtype(rf.dtype, np.number)) or np.iscomplexobj(rf):
        raise InputError(path, f"'{name}' must be a real numeric array, got dtype {rf.dtype}")
    if rf.ndim != 2:
        raise InputError(path, f"'{name}' must be 2-D (samples x lines), got shape {rf.shape}")
    if rf.shape[0] < 3 or rf.shape[1] < 1:
        raise InputError(path, f"'{name}' is too small (shape {rf.shape}; need >= 3 samples and >= 1 line)")
    rf = rf.astype(np.float64)
    if not np.isfinite(rf).all():
        raise InputError(path, f"'{name}' contains NaN or infinite values")
    if not np.any(rf):
        raise InputError(path, f"'{name}' is all zeros")
    return rf


def _check_mask(path: Path, mask: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype == object or not (np.issubdtype(mask.dtype, np.number) or mask.dtype == np.bool_):
        raise InputError(path, f"mask '{name}' must be a numeric array, got dtype {mask.dtype}")
    if mask.shape != tuple(shape):
        raise InputError(path, f"mask '{name}' has shape {mask.shape}, its image has shape {tuple(shape)}")
    if mask.dtype != np.bool_:
        if not np.isfinite(mask).all():
            raise InputError(path, f"mask '{name}' contains NaN or infinite values")
        values = np.unique(mask)
        if not (set(values.tolist()) <= {0, 1} or set(values.tolist()) <= {0, 255}):
            raise InputError(path, f"mask '{name}' must be binary (0/1), found values {values[:6].tolist()}")
    return (mask != 0).astype(np.uint8)


def _rf_scan(path: Path, source: str, patient: str, scan: str, rf: Any, roi: Any, params: dict[str, float],
             label_class: str | None, rf_name: str, roi_name: str, extra: dict | None = None) -> Scan:
    rf = _check_rf(path, rf, rf_name)
    mask = _check_mask(path, roi, rf.shape, roi_name)
    dz = axial_spacing_m(params["fs"], params["c"])
    return Scan(
        patient=patient, scan=scan, rf=rf, bmode=None, mask=mask,
        fs=params["fs"], f0=params["f0"], pitch=params["pitch"], c=params["c"], bandwidth=params["bandwidth"],
        label_class=label_class, spacing_mm=(dz * 1e3, params["pitch"] * 1e3), source=source,
        path=str(path), extra=extra or {},
    )


def _params(path: Path, given: dict[str, Any], overrides: dict[str, float | None]) -> dict[str, float]:
    out = {}
    for key, default in OASBUD_DEFAULTS.items():
        value = overrides.get(key)
        if value is None:
            value = given.get(key, default)
        out[key] = _positive(path, key, value)
    if out["bandwidth"] > 2:
        raise InputError(path, f"'bandwidth' is the fractional bandwidth (e.g. 0.75), got {out['bandwidth']}")
    return out


def _unwrap(value: Any) -> Any:
    """Peel the 1x1 object/char arrays that ``loadmat`` wraps scalars and strings in."""
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, np.ndarray) and value.dtype.kind == "U":
        return "".join(value.reshape(-1).tolist()).strip()
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iufb":
        return value.reshape(-1)[0].item()
    if isinstance(value, np.ndarray) and value.size == 0:
        return None
    return value


def _class_name(value: Any) -> str | None:
    value = _unwrap(value)
    if value is None:
        return None
    if isinstance(value, (bool, int, float, np.integer, np.floating)):
        return {0: "benign", 1: "malignant"}.get(int(value), str(value))
    text = str(value).strip().lower()
    return {"0": "benign", "1": "malignant"}.get(text, text) or None


def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text).strip()).strip("-.") or "unnamed"


# ----------------------------------------------------------------------------------------------- RF


def read_oasbud_mat(path: str | Path, *, fs: float | None = None, f0: float | None = None,
                    pitch: float | None = None, c: float | None = None,
                    bandwidth: float | None = None) -> list[Scan]:
    """All scans of an OASBUD-layout ``.mat`` (two per record); see :data:`OASBUD_DEFAULTS`."""
    import scipy.io

    path = Path(path)
    _check_file(path)
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several unrelated types for corrupt files
        raise InputError(path, f"cannot read as a MATLAB file: {exc}") from None
    if "data" not in mat:
        raise InputError(path, "no 'data' variable (expected the OASBUD struct array)")
    data = mat["data"]
    if not isinstance(data, np.ndarray) or data.dtype.names is None or data.size == 0:
        raise InputError(path, "'data' is not a non-empty struct array")
    missing = [f for f in _OASBUD_FIELDS if f not in data.dtype.names]
    if missing:
        raise InputError(path, f"'data' lacks field(s) {', '.join(missing)}")
    params = _params(path, {}, {"fs": fs, "f0": f0, "pitch": pitch, "c": c, "bandwidth": bandwidth})
    scans: list[Scan] = []
    seen: set[str] = set()
    for i, rec in enumerate(data.reshape(-1)):
        pid = _unwrap(rec["id"])
        if pid is None or str(pid).strip() == "":
            raise InputError(path, f"record {i + 1} has an empty 'id'")
        pid = str(pid)
        if pid in seen:
            raise InputError(path, f"duplicate id {pid!r}")
        seen.add(pid)
        label = _class_name(rec["class"]) if "class" in data.dtype.names else None
        birads = _unwrap(rec["birads"]) if "birads" in data.dtype.names else None
        extra = {"birads": None if birads is None else str(birads)}
        for view in (1, 2):
            scans.append(_rf_scan(
                path, "oasbud-mat", pid, f"scan-{view}", _unwrap(rec[f"rf{view}"]), _unwrap(rec[f"roi{view}"]),
                params, label, f"data[{i}].rf{view} (id {pid})", f"data[{i}].roi{view} (id {pid})", extra,
            ))
    return scans


def read_oasbud_ids(path: str | Path) -> list[str]:
    """The record (lesion) ids of an OASBUD-layout ``.mat``, in file order, checked like the reader does."""
    import scipy.io

    path = Path(path)
    _check_file(path)
    try:
        mat = scipy.io.loadmat(str(path), variable_names=["data"])
    except Exception as exc:  # scipy raises several unrelated types for corrupt files
        raise InputError(path, f"cannot read as a MATLAB file: {exc}") from None
    data = mat.get("data")
    if not isinstance(data, np.ndarray) or data.dtype.names is None or data.size == 0:
        raise InputError(path, "no non-empty struct array 'data' (expected the OASBUD layout)")
    if "id" not in data.dtype.names:
        raise InputError(path, "'data' lacks field(s) id")
    ids = []
    for i, rec in enumerate(data.reshape(-1)):
        pid = _unwrap(rec["id"])
        if pid is None or str(pid).strip() == "":
            raise InputError(path, f"record {i + 1} has an empty 'id'")
        if str(pid) in ids:
            raise InputError(path, f"duplicate id {str(pid)!r}")
        ids.append(str(pid))
    return ids


def read_npz(path: str | Path, *, fs: float | None = None, f0: float | None = None,
             pitch: float | None = None, c: float | None = None, bandwidth: float | None = None) -> list[Scan]:
    """One scan from a per-patient ``.npz`` (keys rf, roi, fs, f0, pitch; optional c, bandwidth, class). A file
    without ``roi`` is a scan nobody has annotated yet: its mask is all "not annotated" (255); it is converted and
    can be suggested for annotation (``breastseg suggest``), but neither trained nor evaluated on.

    Keyword arguments override the file's values; ``c`` defaults to 1540 m/s and ``bandwidth`` to the
    OASBUD default when the file has none.
    """
    path = Path(path)
    _check_file(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            content = {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise InputError(path, f"cannot read as .npz: {exc}") from None
    missing = [k for k in ("rf", "fs", "f0", "pitch") if k not in content]
    if missing:
        raise InputError(path, f"missing key(s) {', '.join(missing)}")
    given = {k: content[k] for k in ("fs", "f0", "pitch", "c", "bandwidth") if k in content}
    params = _params(path, given, {"fs": fs, "f0": f0, "pitch": pitch, "c": c, "bandwidth": bandwidth})
    label = _class_name(content["class"]) if "class" in content else None
    roi = content["roi"] if "roi" in content else None
    scan = _rf_scan(path, "npz", path.stem, "scan-1", content["rf"],
                    np.zeros(np.shape(content["rf"]), np.uint8) if roi is None else roi, params, label, "rf", "roi")
    if roi is None:
        scan.mask = np.full(scan.mask.shape, NOT_ANNOTATED, np.uint8)
    return [scan]


# ----------------------------------------------------------------------------------------------- B-mode


def _gray(img: np.ndarray) -> np.ndarray:
    """Gray float in [0, 1] from an integer/float image, RGB(A) converted with Rec. 601 weights."""
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = img[..., :3]
        if img.shape[2] == 1:
            img = img[..., 0]
    if np.issubdtype(img.dtype, np.integer):
        if img.dtype in (np.uint8, np.uint16):
            top = float(np.iinfo(img.dtype).max)
        else:  # e.g. PIL mode "I" (int32): no nominal range, scale by the image maximum
            top = float(max(int(img.max()), 1))
        img = img.astype(np.float64) / top
    else:
        img = img.astype(np.float64)
    if img.ndim == 3:
        img = img @ np.array([0.299, 0.587, 0.114])
    return np.clip(img, 0.0, 1.0)


def _load_png(path: Path, what: str) -> np.ndarray:
    from PIL import Image

    _check_file(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "LA", "PA", "CMYK", "YCbCr", "1"):
                im = im.convert("RGB" if im.mode not in ("LA", "1") else "L")
            arr = np.asarray(im)
    except Exception as exc:
        raise InputError(path, f"cannot read {what}: {exc}") from None
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise InputError(path, f"{what} must be a 2-D image, got shape {arr.shape}")
    return arr


def _png_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    arr = _load_png(path, "mask")
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=2) if arr.shape[2] >= 3 else arr[..., 0]
    if arr.shape != tuple(shape):
        raise InputError(path, f"mask has shape {arr.shape}, its image has shape {tuple(shape)}")
    top = 1 if arr.max() <= 1 else (255 if arr.dtype.itemsize == 1 else int(arr.max()))
    return (arr.astype(np.float64) >= top / 2.0).astype(np.uint8) if top > 1 else (arr > 0).astype(np.uint8)


def _mask_folders(image_path: Path) -> list[Path]:
    """Where an image's masks may be: its own folder and, for an image in ``images/``, the ``mask/`` (or
    ``masks/``) folder beside that one (the layout of BUSI's public snapshot)."""
    folders = [image_path.parent]
    if image_path.parent.name.lower() in _IMAGE_FOLDERS:
        grand = image_path.parent.parent
        try:
            folders += sorted(d for d in grand.iterdir() if d.name.lower() in _MASK_FOLDERS and d.is_dir())
        except OSError:
            pass
    return folders


def masks_beside(image_path: Path) -> list[Path]:
    """The ``<stem>_mask.png``, ``<stem>_mask_1.png``... files of an image, in region order: beside it, or in
    ``<class>/mask/`` for an image in ``<class>/images/``."""
    stem = image_path.stem
    found = []
    for folder in _mask_folders(image_path):
        for p in folder.glob(f"{glob_escape(stem)}_mask*.png"):
            m = _MASK_RE.match(p.stem)
            if m and m.group("stem") == stem:
                found.append((int(m.group("k") or 0), p.name, str(p), p))
    return [p for *_, p in sorted(found)]


def busi_class(image_path: Path) -> str | None:
    """The class a BUSI image's folder names: ``<class>/x.png`` or ``<class>/images/x.png``, else None."""
    parent = image_path.parent
    if parent.name.lower() in _IMAGE_FOLDERS:
        parent = parent.parent
    name = parent.name.lower()
    return name if name in BUSI_CLASSES else None


def unannotated_busi_error(where: str | Path, n_images: int) -> InputError:
    """The refusal of a BUSI folder whose ``n_images`` images have no mask at all (see
    :func:`refuse_unannotated_busi`)."""
    return InputError(where, f"none of its {n_images} BUSI images has a mask, so none is annotated "
                             f"(expected {BUSI_LAYOUT})")


def refuse_unannotated_busi(where: Path, images: list[Path]) -> None:
    """Refuse a BUSI folder of ``images`` none of which has a mask: its masks sit where the reader does not look
    (or it is no BUSI folder), and every image would silently be "not annotated". One annotated image is enough
    (the others are images nobody annotated yet)."""
    if images and not any(masks_beside(p) for p in images):
        raise unannotated_busi_error(where, len(images))


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def read_busi_image(path: str | Path, label_class: str | None = None) -> list[Scan]:
    """One BUSI image and the union of its ``_mask*.png`` files; class defaults to the folder name. An image
    without a mask is one nobody annotated yet: its mask is all "not annotated" (255)."""
    path = Path(path)
    img = _load_png(path, "image")
    gray = _gray(img)
    masks = masks_beside(path)
    mask = np.zeros(gray.shape, np.uint8) if masks else np.full(gray.shape, NOT_ANNOTATED, np.uint8)
    for m in masks:
        mask |= _png_mask(m, gray.shape)
    if label_class is None:
        label_class = busi_class(path)
    return [Scan(
        patient=_safe_id(path.stem), scan="scan-1", rf=None, bmode=gray, mask=mask, fs=None, f0=None,
        pitch=None, c=None, bandwidth=None, label_class=label_class, spacing_mm=(1.0, 1.0), source="busi-png",
        path=str(path), spacing_known=False, extra={"image": path.name, "masks": [m.name for m in masks]},
    )]


def busi_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.png") if not _MASK_RE.match(p.stem) and not p.name.startswith("."))


def read_busi(root: str | Path) -> list[Scan]:
    """Every image of a BUSI-layout folder (``<root>/<class>/<class> (N).png`` + masks, or the snapshot's
    ``<root>/<class>/images/`` + ``<root>/<class>/mask/``); refused when no image has a mask."""
    root = Path(root)
    images = busi_images(root)
    if not images:
        raise InputError(root, f"no images found (expected {BUSI_LAYOUT})")
    refuse_unannotated_busi(root, images)
    scans = [s for p in images for s in read_busi_image(p)]
    _check_unique(root, scans)
    return scans


def dicom_mask_paths(path: Path) -> list[Path]:
    """The mask files beside a DICOM US image that exist (``<name>_mask.png``, ``<name>_mask.npy``)."""
    return [c for c in (path.with_name(path.stem + s) for s in ("_mask.png", "_mask.npy")) if c.exists()]


def _dicom_mask_path(path: Path) -> Path | None:
    """The mask beside a DICOM US image (``<name>_mask.png`` / ``.npy``), None when nobody annotated it yet."""
    found = dicom_mask_paths(path)
    return found[0] if found else None


def _dicom_spacing(ds: Any) -> tuple[tuple[float, float], bool]:
    regions = ds.get("SequenceOfUltrasoundRegions")
    if regions:
        r = regions[0]
        dx, dy = r.get("PhysicalDeltaX"), r.get("PhysicalDeltaY")
        ux, uy = r.get("PhysicalUnitsXDirection"), r.get("PhysicalUnitsYDirection")
        if dx and dy and ux == 3 and uy == 3:  # 3 = cm
            return (abs(float(dy)) * 10.0, abs(float(dx)) * 10.0), True
    ps = ds.get("PixelSpacing")
    if ps and len(ps) == 2 and float(ps[0]) > 0 and float(ps[1]) > 0:
        return (float(ps[0]), float(ps[1])), True
    return (1.0, 1.0), False


def read_dicom_us(path: str | Path) -> list[Scan]:
    """One B-mode DICOM US image with its ``<name>_mask.png`` / ``<name>_mask.npy`` (none: not annotated, 255)."""
    import pydicom

    path = Path(path)
    _check_file(path)
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:
        raise InputError(path, f"cannot read as DICOM: {exc}") from None
    if "PixelData" not in ds:
        raise InputError(path, "DICOM file has no pixel data")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise InputError(path, f"multi-frame DICOM ({frames} frames) is not supported; export single frames")
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        raise InputError(path, f"cannot decode pixel data: {exc}") from None
    if pixels.ndim == 3 and pixels.shape[-1] not in (3, 4):
        raise InputError(path, f"unsupported pixel array shape {pixels.shape}")
    if pixels.ndim not in (2, 3):
        raise InputError(path, f"unsupported pixel array shape {pixels.shape}")
    if np.issubdtype(pixels.dtype, np.integer) and pixels.ndim == 2:
        bits = int(ds.get("BitsStored", 8 * pixels.dtype.itemsize))
        lo = pixels.min() if np.issubdtype(pixels.dtype, np.signedinteger) else 0
        gray = np.clip((pixels.astype(np.float64) - lo) / float(2 ** bits - 1), 0.0, 1.0)
    else:
        gray = _gray(pixels)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        gray = 1.0 - gray
    mask_path = _dicom_mask_path(path)
    if mask_path is None:  # not annotated yet
        mask = np.full(gray.shape, NOT_ANNOTATED, np.uint8)
    elif mask_path.suffix == ".npy":
        try:
            raw = np.load(mask_path, allow_pickle=False)
        except Exception as exc:
            raise InputError(mask_path, f"cannot read mask: {exc}") from None
        mask = _check_mask(mask_path, raw, gray.shape, mask_path.name)
    else:
        mask = _png_mask(mask_path, gray.shape)
    spacing, known = _dicom_spacing(ds)
    patient = str(ds.get("PatientID", "") or "").strip() or path.stem
    return [Scan(
        patient=patient, scan=_safe_id(path.stem), rf=None, bmode=gray, mask=mask, fs=None, f0=None,
        pitch=None, c=None, bandwidth=None, label_class=None, spacing_mm=spacing, source="dicom-us",
        path=str(path), spacing_known=known, extra={"mask": mask_path.name if mask_path else None},
    )]


# ----------------------------------------------------------------------------------------------- dispatch


def is_dicom(path: Path) -> bool:
    from breastseg.dicom.scan import has_dicm_magic

    return path.suffix.lower() in (".dcm", ".dicom") or has_dicm_magic(path)


def _check_unique(where: Path, scans: list[Scan]) -> None:
    seen: set[tuple[str, str]] = set()
    for s in scans:
        key = (_safe_id(s.patient), s.scan)
        if key in seen:
            raise InputError(where, f"two inputs give the same patient/scan {key[0]}/{key[1]} (from {s.path})")
        seen.add(key)


def read_scans(input_path: str | Path, **acquisition: float | None) -> list[Scan]:
    """Read any supported input: a ``.mat``, ``.npz``, ``.dcm`` or BUSI ``.png`` file, or a folder of them.

    ``acquisition`` (fs, f0, pitch, c, bandwidth) overrides RF acquisition parameters (see the readers).
    """
    path = Path(input_path)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    unknown = set(acquisition) - set(OASBUD_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown acquisition parameter(s): {', '.join(sorted(unknown))}")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        scans: list[Scan] = []
        rf_files = [p for p in files if p.suffix.lower() in (".mat", ".npz")]
        dcm_files = [p for p in files if p.suffix.lower() in (".dcm", ".dicom")]
        for p in rf_files:
            scans += _read_file(p, acquisition)
        for p in dcm_files:
            scans += read_dicom_us(p)
        if any(p.suffix.lower() == ".png" for p in files):
            images = [p for p in busi_images(path) if not _has_dicom_twin(p)]
            # BUSI class folders without a single mask are refused (the masks are elsewhere); other images
            # without a mask are ones nobody annotated yet
            refuse_unannotated_busi(path, [p for p in images if busi_class(p)])
            for p in images:
                scans += read_busi_image(p)
        if not scans:
            raise InputError(path, "no ultrasound inputs found (.mat, .npz, .dcm, or BUSI .png images)")
        _check_unique(path, scans)
        return scans
    return _read_file(path, acquisition)


def _has_dicom_twin(png: Path) -> bool:
    return any(png.with_suffix(s).exists() for s in (".dcm", ".dicom"))


def _read_file(path: Path, acquisition: dict[str, float | None]) -> list[Scan]:
    suffix = path.suffix.lower()
    if suffix == ".mat":
        return read_oasbud_mat(path, **acquisition)
    if suffix == ".npz":
        return read_npz(path, **acquisition)
    if suffix == ".png":
        return read_busi_image(path)
    _check_file(path)
    if is_dicom(path):
        return read_dicom_us(path)
    raise InputError(path, f"unsupported input type '{suffix or path.name}' (expected .mat, .npz, .dcm or .png)")
