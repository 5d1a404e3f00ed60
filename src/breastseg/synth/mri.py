"""DCE breast-MRI phantoms: 3-D anatomy, fat-suppressed T1 signal with contrast uptake, written as DICOM.

Anatomy (patient LPS millimetres, prone, axial slices): two half-ellipsoid breasts in front of the chest
wall; inside them fat and fibroglandular tissue (FGT, thresholded smooth noise, denser towards the centre of
the breast); a background-parenchymal-enhancement (BPE) sub-region of the FGT whose share of the FGT is drawn
per patient from one of the four conventional categories (minimal < 25 %, mild 25-50 %, moderate 50-75 %,
marked > 75 %). Behind the chest wall: pectoral muscle, lungs and an enhancing heart.

Signal: pre-contrast ``S0`` (fat suppressed: FGT bright, fat dark) times a smooth coil bias field;
post-contrast phase ``p``: ``S0 * (1 + RE_p)`` with the relative enhancement ``RE_p`` drawn per patient
(0.3-1.0 in BPE at the first post-contrast phase, < 0.1 in non-enhancing FGT); Rician noise drawn
independently for every phase. Labels come from the generating tissue maps, never from the noisy images.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ..dicom.geometry import affine_ras, slice_normal

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
BPE_EDGES = (0.25, 0.5, 0.75)
BPE_CATEGORY_NAMES = ("minimal", "mild", "moderate", "marked")
# Target fractions are drawn away from the category edges so the realised fraction stays in its category.
_BPE_RANGES = ((0.06, 0.21), (0.29, 0.46), (0.54, 0.71), (0.79, 0.94))

LAYOUTS = ("flat", "nested", "series_dirs")
LABEL_BACKGROUND, LABEL_FGT, LABEL_BPE, LABEL_UNANNOTATED = 0, 1, 2, 255

_SURNAMES = ("Smith", "Garcia", "Muller", "Rossi", "Novak", "Kowalska", "Jensen", "Dubois", "Silva", "Okafor",
             "Tanaka", "Nguyen", "Haddad", "Petrova", "Larsen", "Moreau", "Costa", "Fischer", "Ivanova", "Brown")
_GIVEN = ("Anna", "Maria", "Laura", "Sofia", "Elena", "Julia", "Hannah", "Chloe", "Ingrid", "Amara",
          "Yuki", "Linh", "Leila", "Olga", "Freya", "Claire", "Beatriz", "Greta", "Irina", "Emily")


def bpe_category(fraction: float) -> int:
    """0 minimal, 1 mild, 2 moderate, 3 marked."""
    return int(np.searchsorted(np.asarray(BPE_EDGES), fraction, side="right"))


@dataclass
class Geometry:
    """Acquisition grid of every series of a study (all phases share it)."""

    shape: tuple[int, int, int]  # (columns, rows, slices): array index [i, j, k]
    pixel_spacing: tuple[float, float]  # DICOM (row spacing, column spacing), mm
    slice_step: float  # mm between slices along the normal
    iop: tuple[float, ...]
    ipp_first: tuple[float, float, float]  # IPP of slice k = 0

    def ipp(self, k: int) -> tuple[float, float, float]:
        n = slice_normal(self.iop)
        return tuple(round(float(v), 4) for v in np.asarray(self.ipp_first) + k * self.slice_step * n)

    @property
    def affine(self) -> np.ndarray:
        """NIfTI (RAS) affine of the grid, from the values exactly as written to DICOM."""
        return affine_ras(self.iop, self.ipp_first, self.pixel_spacing, self.slice_step)

    def lps_coordinates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """LPS coordinates (mm) of every voxel centre, each of shape ``shape``."""
        row = np.asarray(self.iop[:3])
        col = np.asarray(self.iop[3:6])
        n = slice_normal(self.iop)
        i, j, k = (np.arange(s, dtype=float) for s in self.shape)
        dr, dc = self.pixel_spacing
        pos = (np.asarray(self.ipp_first)[:, None, None, None]
               + row[:, None, None, None] * (i[:, None, None] * dc)
               + col[:, None, None, None] * (j[None, :, None] * dr)
               + n[:, None, None, None] * (k[None, None, :] * self.slice_step))
        return pos[0], pos[1], pos[2]


@dataclass
class MriPhantom:
    geometry: Geometry
    labels: np.ndarray  # uint8 [i, j, k], full ground truth (0/1/2), every slice
    phases: list[np.ndarray]  # physical signal (float, arbitrary units) per phase; phase 0 = pre-contrast
    phase_times_s: list[float]  # acquisition time of each phase after the pre-contrast start
    truth: dict[str, Any] = field(default_factory=dict)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: tuple[float, ...]) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma_vox, mode="reflect")
    return (f - f.mean()) / (f.std() + 1e-12)


def _normalise_mean(values: np.ndarray, target: float) -> np.ndarray:
    values = np.clip(values, 0.0, None)
    m = values.mean() if values.size else 0.0
    return values * (target / m) if m > 0 else np.full_like(values, target)


def draw_geometry(rng: np.random.Generator, matrix: int, slices: int) -> Geometry:
    fov = rng.uniform(300.0, 360.0)
    spacing = round(fov / matrix, 4)
    slab = rng.uniform(130.0, 160.0)
    step = round(slab / slices, 4)
    centre = np.array([rng.uniform(-8, 8), rng.uniform(-15, 15), rng.uniform(-40, 40)])
    iop = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # axial: rows run to the patient's left, columns to posterior
    first = centre - (matrix - 1) / 2.0 * spacing * np.array([1.0, 1.0, 0.0]) - (slices - 1) / 2.0 * step * np.array([0, 0, 1.0])
    return Geometry((matrix, matrix, slices), (spacing, spacing), step, iop, tuple(round(float(v), 4) for v in first))


def simulate_mri(rng: np.random.Generator, matrix: int = 64, slices: int = 24, post_phases: int = 2,
                 bpe_category_target: int | None = None) -> MriPhantom:
    """Anatomy, labels and noise-free-plus-Rician signal of one DCE study."""
    geo = draw_geometry(rng, matrix, slices)
    x, y, z = geo.lps_coordinates()
    vx = (geo.pixel_spacing[1], geo.pixel_spacing[0], geo.slice_step)
    centre = np.asarray(geo.ipp_first) + np.array([(matrix - 1) / 2.0 * vx[0], (matrix - 1) / 2.0 * vx[1], (slices - 1) / 2.0 * vx[2]])

    # Chest wall (coronal plane, y = y_cw); breasts in front of it (smaller y = anterior).
    y_cw = centre[1] + rng.uniform(0.0, 25.0)
    z_mid = centre[2] + rng.uniform(-8.0, 8.0)
    breast = np.zeros(geo.shape, bool)
    depth_in = np.zeros(geo.shape)  # 0 at the skin, 1 at the centre of the ellipsoid base
    for side in (-1.0, 1.0):
        xc = side * rng.uniform(65.0, 90.0) + centre[0]
        ax, az = rng.uniform(50.0, 70.0), rng.uniform(45.0, 62.0)
        ay = rng.uniform(60.0, 100.0)
        r = np.sqrt(((x - xc) / ax) ** 2 + ((y - y_cw) / ay) ** 2 + ((z - z_mid) / az) ** 2)
        inside = (r <= 1.0) & (y <= y_cw)
        breast |= inside
        depth_in = np.where(inside, np.maximum(depth_in, 1.0 - r), depth_in)

    # Torso behind the chest wall: muscle layer, lungs, heart.
    torso = (((x - centre[0]) / rng.uniform(150.0, 175.0)) ** 2 + ((y - (y_cw + 100.0)) / 100.0) ** 2 <= 1.0) & (y > y_cw)
    muscle = torso & (y <= y_cw + rng.uniform(10.0, 16.0))
    heart_c = np.array([centre[0] + rng.uniform(5.0, 25.0), y_cw + rng.uniform(45.0, 60.0), z_mid - rng.uniform(10.0, 30.0)])
    heart = (((x - heart_c[0]) / 55.0) ** 2 + ((y - heart_c[1]) / 40.0) ** 2 + ((z - heart_c[2]) / 45.0) ** 2 <= 1.0) & torso & ~muscle
    lungs = np.zeros(geo.shape, bool)
    for side in (-1.0, 1.0):
        lc = (centre[0] + side * rng.uniform(70.0, 85.0), y_cw + rng.uniform(70.0, 85.0))
        lungs |= ((x - lc[0]) / 55.0) ** 2 + ((y - lc[1]) / 60.0) ** 2 + ((z - z_mid) / 120.0) ** 2 <= 1.0
    lungs &= torso & ~muscle & ~heart

    # FGT: smooth noise biased towards the breast centre, thresholded to the drawn breast density.
    sig = tuple(s / v for s, v in zip((9.0, 9.0, 9.0), vx))
    noise = _smooth_noise(rng, geo.shape, sig)
    density = rng.uniform(0.15, 0.55)  # FGT share of the breast volume
    score = noise + 2.0 * depth_in / max(depth_in.max(), 1e-6)
    fgt = np.zeros(geo.shape, bool)
    if breast.any():
        thr = np.quantile(score[breast], 1.0 - density)
        fgt = breast & (score > thr)

    # BPE: a smooth sub-region of the FGT covering the drawn fraction of it.
    category = int(rng.integers(4)) if bpe_category_target is None else int(bpe_category_target)
    frac_target = rng.uniform(*_BPE_RANGES[category])
    bpe_score = _smooth_noise(rng, geo.shape, tuple(s / v for s, v in zip((12.0, 12.0, 12.0), vx)))
    bpe = np.zeros(geo.shape, bool)
    if fgt.any():
        thr = np.quantile(bpe_score[fgt], 1.0 - frac_target)
        bpe = fgt & (bpe_score > thr)
    nonenh = fgt & ~bpe

    labels = np.zeros(geo.shape, np.uint8)
    labels[nonenh] = LABEL_FGT
    labels[bpe] = LABEL_BPE

    # Pre-contrast tissue signal (fat-suppressed T1), with a little texture.
    tex = 1.0 + 0.04 * _smooth_noise(rng, geo.shape, tuple(s / v for s, v in zip((4.0, 4.0, 4.0), vx)))
    s0 = np.zeros(geo.shape)
    s0[torso] = 0.12  # suppressed fat of the body wall / mediastinum
    s0[breast] = rng.uniform(0.10, 0.18)  # suppressed breast fat
    s0[fgt] = rng.uniform(0.55, 0.75)
    s0[muscle] = rng.uniform(0.35, 0.45)
    s0[heart] = rng.uniform(0.45, 0.6)
    s0[lungs] = 0.02
    s0 *= tex

    # Relative enhancement per phase (phase 1 is the first post-contrast phase).
    n_post = int(post_phases)
    times = [0.0] + [float(60.0 + 90.0 * p + rng.uniform(-10.0, 10.0)) for p in range(n_post)]
    re_bpe1 = rng.uniform(0.3, 1.0)
    re_fgt1 = rng.uniform(0.0, 0.08)
    slope = rng.uniform(0.0, 0.08)  # persistent, slowly rising uptake in later phases
    re_bpe = [float(re_bpe1 * (1.0 + slope * p)) for p in range(n_post)]
    re_fgt = [float(min(re_fgt1 * (1.0 + slope * p), 0.095)) for p in range(n_post)]
    re_heart = [float(1.6 * (0.75 ** p)) for p in range(n_post)]  # blood pool: early peak, washout
    bpe_var = _smooth_noise(rng, geo.shape, tuple(s / v for s, v in zip((6.0, 6.0, 6.0), vx)))
    fgt_var = _smooth_noise(rng, geo.shape, tuple(s / v for s, v in zip((6.0, 6.0, 6.0), vx)))

    # Coil bias: smooth, multiplicative, shared by all phases; stronger towards the breast coil (anterior).
    u = (x - centre[0]) / 200.0
    v = (y - centre[1]) / 200.0
    w = (z - centre[2]) / 200.0
    c = rng.uniform(-0.25, 0.25, 6)
    bias = np.exp(c[0] * u + c[1] * v - abs(c[2]) * v + c[3] * u * u + c[4] * w + c[5] * u * v)
    bias /= bias[breast].mean() if breast.any() else bias.mean()

    scale = 1000.0
    snr = rng.uniform(25.0, 45.0)  # FGT pre-contrast signal over the noise sigma
    sigma = float(s0[fgt].mean() if fgt.any() else 0.6) / snr

    phases = []
    re_maps = []
    for p in range(n_post + 1):
        re = np.zeros(geo.shape)
        if p > 0:
            re[bpe] = _normalise_mean(re_bpe[p - 1] * (1.0 + 0.15 * bpe_var[bpe]), re_bpe[p - 1])
            re[nonenh] = _normalise_mean(re_fgt[p - 1] * (1.0 + 0.4 * fgt_var[nonenh]).clip(0.0, None), re_fgt[p - 1])
            re[breast & ~fgt] = 0.02 * (1.0 + 0.1 * p)
            re[muscle] = 0.15 + 0.05 * p
            re[heart] = re_heart[p - 1]
        re_maps.append(re)
        clean = s0 * (1.0 + re) * bias
        noisy = np.hypot(clean + sigma * rng.standard_normal(geo.shape), sigma * rng.standard_normal(geo.shape))
        phases.append(noisy * scale)

    n_fgt = int(fgt.sum())
    fraction = float(bpe.sum() / n_fgt) if n_fgt else 0.0
    truth = {
        "bpe_fraction": fraction,
        "bpe_category": bpe_category(fraction),
        "bpe_category_name": BPE_CATEGORY_NAMES[bpe_category(fraction)],
        "bpe_fraction_target": float(frac_target),
        "fgt_voxels": n_fgt,
        "bpe_voxels": int(bpe.sum()),
        "breast_voxels": int(breast.sum()),
        "breast_density": float(n_fgt / max(int(breast.sum()), 1)),
        "re_bpe": re_bpe,
        "re_fgt": re_fgt,
        "noise_sigma": sigma * scale,
        "snr_fgt": float(snr),
        "phase_times_s": times,
        "_re_maps": re_maps,  # consumed by the writer (per-slice means), not serialised
    }
    return MriPhantom(geo, labels, phases, times, truth)


# --------------------------------------------------------------------------------------------- DICOM
def _uid(*parts: Any) -> str:
    """A UID in the ``2.25`` (UUID-derived) root, computed from ``parts``: same seed, same UID."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()[:16]
    return f"2.25.{int.from_bytes(digest, 'big')}"


def _ds(v: float) -> str:
    """Decimal String value (at most 16 characters) of a number already rounded to 4 decimals."""
    s = f"{float(v):.10g}"
    if len(s) > 16:
        raise ValueError(f"{v!r} does not fit a DICOM DS value")
    return s


@dataclass
class StoredSeries:
    description: str
    uid: str
    number: int
    temporal_position: int
    acquisition_time: str
    slope: float
    intercept: float
    signed: bool


def _time_str(seconds: float) -> str:
    seconds = int(round(seconds)) % 86400
    return f"{seconds // 3600:02d}{(seconds % 3600) // 60:02d}{seconds % 60:02d}.000000"


def _stored_values(image: np.ndarray, slope: float, intercept: float, signed: bool) -> np.ndarray:
    lo, hi = (-32768, 32767) if signed else (0, 65535)
    stored = np.clip(np.rint((image - intercept) / slope), lo, hi)
    return stored.astype(np.int16 if signed else np.uint16)


def write_study(study_dir: Path, phantom: MriPhantom, identity: dict[str, str], rng: np.random.Generator,
                uid_seed: tuple[Any, ...], annotated_fraction: float = 0.5, *, rescaled: bool | None = None,
                layout: str | None = None) -> dict[str, Any]:
    """Write every phase as a DICOM series plus ``labels.nii.gz``; return the study's ground truth.

    ``rescaled``: store signed values with a RescaleSlope/Intercept that differs per series (as some vendors
    do) instead of unsigned values with slope 1, intercept 0. ``layout``: ``flat`` (hashed names in the study
    folder), ``nested`` (two levels of hashed sub-folders) or ``series_dirs`` (one opaque folder per series).
    Both are drawn from ``rng`` when not given.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    from .writers import write_nifti_gz

    geo = phantom.geometry
    n_i, n_j, n_k = geo.shape
    study_uid = _uid(*uid_seed, "study")
    frame_uid = _uid(*uid_seed, "frame")
    study_start = float(rng.integers(8 * 3600, 17 * 3600))
    philips_like = bool(rng.random() < 0.4) if rescaled is None else bool(rescaled)
    layout = str(rng.choice(LAYOUTS)) if layout is None else layout
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}")
    reverse_instances = bool(rng.random() < 0.5)
    n_phases = len(phantom.phases)

    series: list[StoredSeries] = []
    for p in range(n_phases):
        if philips_like:
            slope, intercept, signed = float(round(rng.uniform(0.4, 2.5), 5)), float(rng.choice([0.0, -100.0, -1024.0])), True
        else:
            slope, intercept, signed = 1.0, 0.0, False
        desc = "Ax T1 FS DYN pre" if p == 0 else f"Ax T1 FS DYN post{p}"
        series.append(StoredSeries(desc, _uid(*uid_seed, "series", p), 600 + 100 * p if philips_like else 5 + p, p + 1,
                                   _time_str(study_start + 300.0 + phantom.phase_times_s[p]), slope, intercept, signed))

    series_dir_names = [hashlib.sha1(f"{s.uid}/dir".encode()).hexdigest()[:8].upper() for s in series]
    p99 = float(np.percentile(phantom.phases[0], 99))
    window = (_ds(round(p99 / 2.0, 1)), _ds(round(p99, 1)))
    files = []
    for p, s in enumerate(series):
        image = phantom.phases[p]
        stored = _stored_values(image, s.slope, s.intercept, s.signed)
        for k in range(n_k):
            inst = (n_k - k) if reverse_instances else (k + 1)
            sop_uid = _uid(*uid_seed, "sop", p, k)
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
            meta.MediaStorageSOPInstanceUID = sop_uid
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = pydicom.Dataset()
            ds.file_meta = meta
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
            ds.SOPClassUID = MR_IMAGE_STORAGE
            ds.SOPInstanceUID = sop_uid
            ds.StudyDate = identity["study_date"]
            ds.SeriesDate = identity["study_date"]
            ds.AcquisitionDate = identity["study_date"]
            ds.ContentDate = identity["study_date"]
            ds.StudyTime = _time_str(study_start)
            ds.SeriesTime = s.acquisition_time
            ds.AcquisitionTime = s.acquisition_time
            ds.ContentTime = s.acquisition_time
            ds.AccessionNumber = identity["accession"]
            ds.Modality = "MR"
            ds.Manufacturer = "Philips" if philips_like else "SIEMENS"
            ds.InstitutionName = identity["institution"]
            ds.ReferringPhysicianName = identity["referring"]
            ds.StudyDescription = "MRI BREAST BILATERAL W WO CONTRAST"
            ds.SeriesDescription = s.description
            ds.PatientName = identity["name"]
            ds.PatientID = identity["patient_id"]
            ds.PatientBirthDate = identity["birth_date"]
            ds.PatientSex = "F"
            ds.PatientAge = identity["age"]
            ds.BodyPartExamined = "BREAST"
            ds.ScanningSequence = "GR"
            ds.SequenceVariant = ["SP", "SS"]
            ds.ScanOptions = "FS"
            ds.MRAcquisitionType = "3D"
            ds.SliceThickness = _ds(geo.slice_step)
            ds.SpacingBetweenSlices = _ds(geo.slice_step)
            ds.RepetitionTime = "4.5"
            ds.EchoTime = "1.8"
            ds.FlipAngle = "10"
            ds.MagneticFieldStrength = "3" if philips_like else "1.5"
            ds.PatientPosition = "FFP"
            if p > 0:
                ds.ContrastBolusAgent = "Gadobutrol"
                ds.ContrastBolusStartTime = _time_str(study_start + 300.0)
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = s.uid
            ds.StudyID = identity["study_id"]
            ds.SeriesNumber = s.number
            ds.AcquisitionNumber = 1
            ds.InstanceNumber = inst
            ds.ImagePositionPatient = [_ds(v) for v in geo.ipp(k)]
            ds.ImageOrientationPatient = [_ds(v) for v in geo.iop]
            ds.FrameOfReferenceUID = frame_uid
            ds.TemporalPositionIdentifier = s.temporal_position
            ds.NumberOfTemporalPositions = n_phases
            ds.PositionReferenceIndicator = ""
            ds.SliceLocation = _ds(round(float(np.dot(geo.ipp(k), slice_normal(geo.iop))), 4))
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows = n_j
            ds.Columns = n_i
            ds.PixelSpacing = [_ds(v) for v in geo.pixel_spacing]
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1 if s.signed else 0
            ds.WindowCenter, ds.WindowWidth = window
            ds.RescaleIntercept = _ds(s.intercept)
            ds.RescaleSlope = _ds(s.slope)
            ds.RescaleType = "US"
            ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
            name = hashlib.sha1(sop_uid.encode()).hexdigest()
            if layout == "flat":
                rel = Path(f"{name[:16]}.dcm")
            elif layout == "nested":
                rel = Path(name[:2]) / name[2:4] / f"{name[4:20]}.dcm"
            else:
                rel = Path(series_dir_names[p]) / f"IM{name[:10].upper()}.dcm"
            target = study_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(target, enforce_file_format=True)
            files.append(str(rel))

    # Labels on the pre-contrast grid; only a subset of the slices is annotated.
    labels = phantom.labels
    with_tissue = np.flatnonzero((labels > 0).any(axis=(0, 1)))
    pool = with_tissue if with_tissue.size else np.arange(n_k)
    n_ann = int(np.clip(round(annotated_fraction * n_k), 1, pool.size))
    annotated = np.sort(rng.choice(pool, n_ann, replace=False))
    stored_labels = np.full(labels.shape, LABEL_UNANNOTATED, np.uint8)
    stored_labels[:, :, annotated] = labels[:, :, annotated]
    write_nifti_gz(study_dir / "labels.nii.gz", stored_labels, geo.affine)

    re_maps = phantom.truth["_re_maps"]
    ann_lab = labels[:, :, annotated]
    ann_bpe, ann_fgt = ann_lab == LABEL_BPE, ann_lab == LABEL_FGT
    n_ann_fgt = int((ann_lab > 0).sum())
    truth = {k: v for k, v in phantom.truth.items() if not k.startswith("_")}
    truth.update({
        "study_instance_uid": study_uid,
        "frame_of_reference_uid": frame_uid,
        "series": [{"series_instance_uid": s.uid, "description": s.description, "series_number": s.number,
                    "temporal_position": s.temporal_position, "acquisition_time": s.acquisition_time,
                    "rescale_slope": s.slope, "rescale_intercept": s.intercept,
                    "stored_dtype": "int16" if s.signed else "uint16", "phase": p} for p, s in enumerate(series)],
        "shape": list(geo.shape),
        "affine": geo.affine.tolist(),
        "annotated_slices": annotated.tolist(),
        "bpe_fraction_annotated": float(ann_bpe.sum() / n_ann_fgt) if n_ann_fgt else None,
        "re_bpe_annotated": [float(m[:, :, annotated][ann_bpe].mean()) if ann_bpe.any() else None for m in re_maps[1:]],
        "re_fgt_annotated": [float(m[:, :, annotated][ann_fgt].mean()) if ann_fgt.any() else None for m in re_maps[1:]],
        "file_layout": layout,
        "rescaled": philips_like,
        "instance_order": "descending" if reverse_instances else "ascending",
        "dicom_files": len(files),
    })
    return truth
