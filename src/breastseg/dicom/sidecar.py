"""JSON sidecars: geometry, values and acquisition parameters of a volume, with nothing that identifies a patient.

Only an allow-list of acquisition tags is copied. Free text (SeriesDescription, ProtocolName) is sanitised:
every identifying value found in the header (names, IDs, dates, institution, accession number) is removed,
digit runs of six or more are masked and only plain characters are kept. Times are relative (seconds); no
UID, date or identifying tag is ever written.
"""
from __future__ import annotations

import re
from typing import Any

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset

from .series import Stack

# Acquisition parameters copied when present: keyword -> sidecar name.
ALLOWED = {
    "Modality": "modality",
    "Manufacturer": "manufacturer",
    "ManufacturerModelName": "model",
    "MagneticFieldStrength": "field_strength_t",
    "SequenceName": "sequence_name",
    "ScanningSequence": "scanning_sequence",
    "SequenceVariant": "sequence_variant",
    "ScanOptions": "scan_options",
    "MRAcquisitionType": "acquisition_type",
    "PulseSequenceName": "pulse_sequence_name",
    "RepetitionTime": "repetition_time_ms",
    "EchoTime": "echo_time_ms",
    "InversionTime": "inversion_time_ms",
    "FlipAngle": "flip_angle_deg",
    "EchoTrainLength": "echo_train_length",
    "ImagingFrequency": "imaging_frequency_mhz",
    "SliceThickness": "slice_thickness_mm",
    "SpacingBetweenSlices": "spacing_between_slices_mm",
    "PixelBandwidth": "pixel_bandwidth_hz",
    "ImageType": "image_type",
    "BodyPartExamined": "body_part",
    "PatientPosition": "patient_position",
    "ContrastBolusAgent": "contrast_agent",
}

# Header values that must never appear in any output, even inside free text.
IDENTIFYING = (
    "PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthDate", "PatientBirthName",
    "PatientMotherBirthName", "PatientAddress", "PatientTelephoneNumbers", "InstitutionName", "InstitutionAddress",
    "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName", "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy", "RequestingPhysician", "AccessionNumber", "StudyID", "StudyDate", "SeriesDate",
    "AcquisitionDate", "ContentDate", "StationName", "DeviceSerialNumber", "InstitutionalDepartmentName",
    "MedicalRecordLocator", "IssuerOfPatientID",
)

_SAFE_CHARS = re.compile(r"[^A-Za-z0-9 _+\-.()/,:]")
_LONG_DIGITS = re.compile(r"\d{6,}")


def identifying_values(ds: Dataset) -> list[str]:
    """Identifying strings present in ``ds`` (and their name components), longest first."""
    out: set[str] = set()
    for kw in IDENTIFYING:
        v = ds.get(kw)
        if v is None or v == "":
            continue
        items = v if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue" else [v]
        for item in items:
            s = str(item).strip()
            if len(s) >= 2:
                out.add(s)
            for part in re.split(r"[\^=\s,]+", s):
                if len(part) >= 3:
                    out.add(part)
    return sorted(out, key=len, reverse=True)


def sanitize_text(text: Any, ds: Dataset) -> str:
    s = str(text or "")
    for value in identifying_values(ds):
        s = re.sub(re.escape(value), "", s, flags=re.IGNORECASE)
    s = _LONG_DIGITS.sub("#", s)
    s = _SAFE_CHARS.sub("", s)
    return re.sub(r"\s+", " ", s).strip()[:64]


def _jsonable(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        return [_jsonable(x) for x in v]
    if isinstance(v, (int, float, str)):
        return v
    try:
        f = float(v)
        return int(f) if f.is_integer() and "." not in str(v) else f
    except (TypeError, ValueError):
        return str(v)


def acquisition_parameters(ds: Dataset) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kw, name in ALLOWED.items():
        try:
            value = ds.get(kw)
        except Exception:  # noqa: BLE001 - an unreadable optional element is left out
            continue
        if value not in (None, ""):
            out[name] = _jsonable(value)
    # Enhanced MR keeps some parameters in functional groups
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        timing = shared[0].get("MRTimingAndRelatedParametersSequence")
        if timing:
            t = timing[0]
            for kw, name in (("RepetitionTime", "repetition_time_ms"), ("FlipAngle", "flip_angle_deg")):
                if kw in t and name not in out:
                    out[name] = _jsonable(t.get(kw))
    return out


def plane(iop) -> str:
    n = np.abs(np.cross(np.asarray(iop[:3]), np.asarray(iop[3:])))
    axis = int(np.argmax(n))
    if n[axis] < 0.999:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def stack_sidecar(stack: Stack, info: dict[str, Any], data: np.ndarray, *, relative_time_s: float | None,
                  study_key: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    ds = stack.header
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    temporal = sorted({s.temporal_position for s in stack.slices if s.temporal_position is not None})
    out: dict[str, Any] = {
        "source": "dicom",
        "study": study_key,
        "series_number": stack.series_number,
        "split": stack.split or None,
        "description": sanitize_text(ds.get("SeriesDescription"), ds),
        "protocol": sanitize_text(ds.get("ProtocolName"), ds),
        "shape": [int(n) for n in data.shape],
        "dtype": str(data.dtype),
        "spacing_mm": [round(float(v), 6) for v in stack.spacing],
        "affine": np.round(stack.affine, 6).tolist(),
        "orientation": {
            "image_orientation_patient": [round(float(v), 6) for v in stack.iop],
            "axis_codes": "".join(nib.aff2axcodes(stack.affine)),
            "plane": plane(stack.iop),
        },
        "slice_positions_mm": [round(float(v), 4) for v in stack.positions],
        "slice_step_mm": round(float(stack.slice_step), 6),
        "rescale_slope": info.get("rescale_slope"),
        "rescale_intercept": info.get("rescale_intercept"),
        "modality_lut_applied": True,
        **{k: info[k] for k in ("philips_scaling", "philips_scale_slope", "philips_scale_intercept",
                                "philips_formula") if k in info},
        "photometric": info.get("photometric"),
        "inverted_monochrome1": bool(info.get("inverted", False)),
        "acquisition_time_s": None if relative_time_s is None else round(float(relative_time_s), 3),
        "temporal_position": temporal[0] if len(temporal) == 1 else (temporal or None),
        "n_frames": len(stack.slices),
        "multiframe": any(s.frame is not None for s in stack.slices),
        "transfer_syntax": getattr(ts, "name", None),
        "notes": list(stack.notes),
    }
    out.update(acquisition_parameters(ds))
    if extra:
        out.update(extra)
    return out


def stack_start_time(stack: Stack, key: str = "acquisition") -> float | None:
    """The stack's earliest time for ``key`` (acquisition, content, series), None when absent on any slice."""
    attr = {"acquisition": "acq_time", "content": "content_time", "series": "series_time"}[key]
    values = [getattr(s, attr) for s in stack.slices]
    if any(v is None for v in values):
        return None
    return float(min(values))
