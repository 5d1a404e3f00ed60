"""Small, fully specified DICOM series for tests and benchmarks (the demo cohort's studies are :mod:`.mri`'s).

Every series is written from an explicit geometry (ImageOrientationPatient, the position of the first slice,
PixelSpacing, slice step) and explicit stored values, so the expected NIfTI affine and voxel values are known
independently of the reader under test. Identifying tags carry recognisable marker strings so tests can scan
every output byte for them.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def oblique_iop(angle_deg: float = 20.0, tilt_deg: float = 10.0) -> tuple[float, ...]:
    """An orthonormal, doubly oblique orientation (axial rotated about z, then tilted about x)."""
    a, t = np.deg2rad(angle_deg), np.deg2rad(tilt_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    r = rx @ rz
    row, col = r[:, 0], r[:, 1]
    return tuple(float(round(v, 8)) for v in (*row, *col))


@dataclass
class Identity:
    """Identifying values written into every file (recognisable markers for PHI scans)."""

    patient_name: str = "DOE^JANE^MARKERNAME"
    patient_id: str = "MARKERPID123"
    birth_date: str = "19610203"
    other_ids: str = "MARKEROTHERID"
    institution: str = "MARKER GENERAL HOSPITAL"
    referring: str = "MARKERDOC^REFERRING"
    accession: str = "MARKERACC77"
    study_date: str = "20240917"

    def markers(self) -> list[str]:
        return [
            self.patient_name, "MARKERNAME", self.patient_id, self.birth_date, self.other_ids,
            self.institution, self.referring, self.accession, self.study_date,
        ]


@dataclass
class SeriesSpec:
    rows: int = 10
    cols: int = 8
    slices: int = 5
    iop: Sequence[float] = AXIAL
    origin: Sequence[float] = (-12.5, -30.0, 40.0)  # LPS position of the first slice along the normal
    pixel_spacing: Sequence[float] = (0.8, 0.7)  # (row spacing, column spacing)
    slice_step: float = 2.5
    series_number: int = 3
    description: str = "t1_fl3d_tra_dyn MARKERDESC"
    study_uid: str = field(default_factory=generate_uid)
    series_uid: str = field(default_factory=generate_uid)
    frame_of_reference_uid: str = field(default_factory=generate_uid)
    acquisition_time: str | None = "101500.000000"
    content_time: str | None = None
    series_time: str | None = None
    study_time: str = "100000"
    temporal_position: int | None = None
    slope: float | None = None
    intercept: float | None = None
    signed: bool = True
    bits_allocated: int = 16
    bits_stored: int | None = None
    photometric: str = "MONOCHROME2"
    seed: int = 0
    values: np.ndarray | None = None  # stored values, shape (slices, rows, cols), in slice order
    identity: Identity = field(default_factory=Identity)
    manufacturer: str = "SIEMENS"
    field_strength: float = 3.0


def stored_values(spec: SeriesSpec) -> np.ndarray:
    """Stored values of shape (slices, rows, cols): unique-ish ramps plus noise, within the dtype's range."""
    if spec.values is not None:
        return np.asarray(spec.values)
    rng = np.random.default_rng(spec.seed)
    s, r, c = np.meshgrid(np.arange(spec.slices), np.arange(spec.rows), np.arange(spec.cols), indexing="ij")
    base = 1000 * s + 37 * r + 3 * c
    vals = base + rng.integers(0, 3, base.shape)
    if spec.signed:
        vals = vals - 300
    if spec.bits_allocated == 8:
        vals = vals % (127 if spec.signed else 255)
    return vals.astype(_stored_dtype(spec))


def _stored_dtype(spec: SeriesSpec) -> np.dtype:
    return np.dtype(f"{'i' if spec.signed else 'u'}{spec.bits_allocated // 8}")


def slice_positions(spec: SeriesSpec) -> list[np.ndarray]:
    row = np.asarray(spec.iop[:3], float)
    col = np.asarray(spec.iop[3:], float)
    n = np.cross(row, col)
    return [np.asarray(spec.origin, float) + k * spec.slice_step * n for k in range(spec.slices)]


def _base_dataset(spec: SeriesSpec, sop_class: str, sop_uid: str, transfer_syntax: str) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.10.1394.1"
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ident = spec.identity
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ident.study_date
    ds.SeriesDate = ident.study_date
    ds.AcquisitionDate = ident.study_date
    ds.ContentDate = ident.study_date
    ds.StudyTime = spec.study_time
    if spec.series_time:
        ds.SeriesTime = spec.series_time
    if spec.acquisition_time:
        ds.AcquisitionTime = spec.acquisition_time
    if spec.content_time:
        ds.ContentTime = spec.content_time
    ds.AccessionNumber = ident.accession
    ds.Modality = "MR"
    ds.Manufacturer = spec.manufacturer
    ds.InstitutionName = ident.institution
    ds.ReferringPhysicianName = ident.referring
    ds.SeriesDescription = spec.description
    ds.PatientName = ident.patient_name
    ds.PatientID = ident.patient_id
    ds.PatientBirthDate = ident.birth_date
    ds.OtherPatientIDs = ident.other_ids
    ds.PatientSex = "F"
    ds.MagneticFieldStrength = spec.field_strength
    ds.SequenceName = "*fl3d1"
    ds.SliceThickness = abs(spec.slice_step)
    ds.StudyInstanceUID = spec.study_uid
    ds.SeriesInstanceUID = spec.series_uid
    ds.StudyID = "MARKERSTUDYID"
    ds.SeriesNumber = spec.series_number
    ds.FrameOfReferenceUID = spec.frame_of_reference_uid
    if spec.temporal_position is not None:
        ds.TemporalPositionIdentifier = spec.temporal_position
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = spec.photometric
    ds.Rows = spec.rows
    ds.Columns = spec.cols
    ds.BitsAllocated = spec.bits_allocated
    ds.BitsStored = spec.bits_stored or spec.bits_allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if spec.signed else 0
    return ds


def write_series(
    out_dir: str | Path,
    spec: SeriesSpec,
    *,
    transfer_syntax: str = ExplicitVRLittleEndian,
    name_pattern: str = "IM{index:05d}.dcm",
    shuffle_names: bool = True,
    skip_slices: Sequence[int] = (),
) -> list[Path]:
    """Write one classic (single-frame) MR series, one file per slice; returns the paths written.

    File names are shuffled against slice order (``shuffle_names``) and InstanceNumber runs backwards, so a
    reader that sorts by name or by InstanceNumber gets the wrong order.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    values = stored_values(spec)
    positions = slice_positions(spec)
    order = np.random.default_rng(spec.seed + 1).permutation(spec.slices) if shuffle_names else np.arange(spec.slices)
    paths = []
    for k in range(spec.slices):
        if k in skip_slices:
            continue
        ds = _base_dataset(spec, MR_IMAGE_STORAGE, generate_uid(), transfer_syntax)
        ds.InstanceNumber = spec.slices - k
        ds.ImageOrientationPatient = [float(v) for v in spec.iop]
        ds.ImagePositionPatient = [float(round(v, 6)) for v in positions[k]]
        ds.PixelSpacing = [float(v) for v in spec.pixel_spacing]
        ds.SpacingBetweenSlices = abs(spec.slice_step)
        ds.SliceLocation = float(np.dot(positions[k], np.cross(spec.iop[:3], spec.iop[3:])))
        if spec.slope is not None:
            ds.RescaleSlope = spec.slope
            ds.RescaleIntercept = spec.intercept or 0
            ds.RescaleType = "US"
        elif spec.intercept is not None:
            ds.RescaleSlope = 1
            ds.RescaleIntercept = spec.intercept
        frame = np.ascontiguousarray(values[k])
        ds.PixelData = frame.tobytes()
        path = out_dir / name_pattern.format(index=int(order[k]), k=k)
        _save(ds, path, transfer_syntax)
        paths.append(path)
    return paths


def _save(ds: FileDataset, path: Path, transfer_syntax: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if transfer_syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = transfer_syntax
        ds.save_as(path, enforce_file_format=True)
    else:  # an encapsulated syntax pydicom can encode (RLE Lossless, JPEG 2000 Lossless with pylibjpeg-openjpeg)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.compress(transfer_syntax)
        ds.save_as(path, enforce_file_format=True)


def write_enhanced(
    path: str | Path,
    spec: SeriesSpec,
    *,
    shared_geometry: bool = True,
    drop: Sequence[str] = (),
    frame_order: Sequence[int] | None = None,
) -> Path:
    """Write one Enhanced MR (multi-frame) file holding ``spec``'s slices as frames.

    ``shared_geometry`` puts orientation and pixel measures in SharedFunctionalGroupsSequence (positions are
    always per frame); ``drop`` removes functional group macros by keyword (e.g. "PlanePositionSequence")
    to produce files without the geometry they need.
    """
    path = Path(path)
    values = stored_values(spec)
    positions = slice_positions(spec)
    order = list(frame_order) if frame_order is not None else list(range(spec.slices))
    ds = _base_dataset(spec, ENHANCED_MR_IMAGE_STORAGE, generate_uid(), ExplicitVRLittleEndian)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.InstanceNumber = 1
    ds.NumberOfFrames = len(order)
    if spec.acquisition_time:
        ds.AcquisitionDateTime = spec.identity.study_date + spec.acquisition_time

    def orientation() -> Dataset:
        item = Dataset()
        item.ImageOrientationPatient = [float(v) for v in spec.iop]
        return item

    def measures() -> Dataset:
        item = Dataset()
        item.PixelSpacing = [float(v) for v in spec.pixel_spacing]
        item.SliceThickness = abs(spec.slice_step)
        item.SpacingBetweenSlices = abs(spec.slice_step)
        return item

    def transform() -> Dataset:
        item = Dataset()
        item.RescaleSlope = spec.slope if spec.slope is not None else 1
        item.RescaleIntercept = spec.intercept or 0
        item.RescaleType = "US"
        return item

    shared = Dataset()
    if shared_geometry:
        if "PlaneOrientationSequence" not in drop:
            shared.PlaneOrientationSequence = DicomSequence([orientation()])
        if "PixelMeasuresSequence" not in drop:
            shared.PixelMeasuresSequence = DicomSequence([measures()])
        shared.PixelValueTransformationSequence = DicomSequence([transform()])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    for k in order:
        item = Dataset()
        content = Dataset()
        content.InStackPositionNumber = k + 1
        if spec.temporal_position is not None:
            content.TemporalPositionIndex = spec.temporal_position
        item.FrameContentSequence = DicomSequence([content])
        if "PlanePositionSequence" not in drop:
            pos = Dataset()
            pos.ImagePositionPatient = [float(round(v, 6)) for v in positions[k]]
            item.PlanePositionSequence = DicomSequence([pos])
        if not shared_geometry:
            if "PlaneOrientationSequence" not in drop:
                item.PlaneOrientationSequence = DicomSequence([orientation()])
            if "PixelMeasuresSequence" not in drop:
                item.PixelMeasuresSequence = DicomSequence([measures()])
            item.PixelValueTransformationSequence = DicomSequence([transform()])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    ds.PixelData = np.ascontiguousarray(values[order]).tobytes()
    _save(ds, path, ExplicitVRLittleEndian)
    return path


def expected_volume(spec: SeriesSpec) -> np.ndarray:
    """Stored values in breastseg's array convention: data[i=col, j=row, k=slice] (before the modality LUT)."""
    return np.transpose(stored_values(spec), (2, 1, 0))


def read_back(path: str | Path) -> pydicom.Dataset:
    return pydicom.dcmread(path)


def output_texts(out_dir: str | Path) -> dict[str, bytes]:
    """Every file below ``out_dir`` as bytes, gzip members decompressed (NIfTI headers included)."""
    import gzip

    out = {}
    for p in sorted(Path(out_dir).rglob("*")):
        if p.is_file():
            b = p.read_bytes()
            if b[:2] == b"\x1f\x8b":
                b = gzip.decompress(b)
            out[str(p.relative_to(out_dir))] = b
    return out


def find_markers(out_dir: str | Path, markers: Sequence[str]) -> list[tuple[str, str]]:
    """(file, marker) for every identifying marker found in any output file or file name (case-insensitive)."""
    hits = []
    for name, blob in output_texts(out_dir).items():
        low = blob.lower()
        for m in markers:
            if m.lower().encode() in low or m.lower() in name.lower():
                hits.append((name, m))
    return hits


def with_geometry(src: str | Path, dst: str | Path, *, iop=AXIAL, ipp=(0.0, 0.0, 0.0), spacing=(0.5, 0.5),
                  series_uid: str | None = None) -> Path:
    """Copy a DICOM file (pixel data untouched, any transfer syntax) adding patient geometry, so test files
    without it (secondary captures) can go through the converter."""
    ds = pydicom.dcmread(src)
    ds.ImageOrientationPatient = [float(v) for v in iop]
    ds.ImagePositionPatient = [float(v) for v in ipp]
    ds.PixelSpacing = [float(v) for v in spacing]
    ds.SliceThickness = 1.0
    if series_uid:
        ds.SeriesInstanceUID = series_uid
    if "StudyInstanceUID" not in ds:
        ds.StudyInstanceUID = generate_uid()
    if "SeriesInstanceUID" not in ds:
        ds.SeriesInstanceUID = generate_uid()
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst)
    return dst
