"""DICOM SEG objects (highdicom) for predictions on DICOM inputs.

The SEG is a BINARY segmentation of the source images: MRI predictions reference the pre-contrast series (one
frame per source slice and segment holding any pixel of it, at the position and orientation of its source
slice; empty frames are left out, and every source instance is referenced, so a reader tells "nothing found"
from "not segmented"); ultrasound predictions reference the single B-mode image. As the standard requires, highdicom copies the patient and study modules of the source images into
the SEG, so a SEG carries the same identifying values as the study it belongs to.

Segments (label text, category / type codes): MRI 1 = "FGT", non-enhancing fibroglandular tissue: category
SCT 85756007 "Tissue", type SCT 1342375003 "Breast fibroglandular tissue" (DICOM PS3.16 CID 7163 "Breast Tissue
Segmentation Type"; pydicom's code dictionary predates it, so it is spelled out here); 2 = "BPE", background
parenchymal enhancement: category SCT "Tissue", type ``BPE`` in the private scheme ``99BRSEG`` (neither SNOMED CT
nor DICOM has a concept for it), which the SEG declares in its Coding Scheme Identification Sequence. Ultrasound
1 = "mass": category SCT 49755003 "Morphologically Abnormal Structure", type SCT 4147007 "Mass" (both from
pydicom's code dictionary, CID 7150 / CID 7151). :func:`breastseg.dicom.seg.seg_to_labels` reads these SEGs back
into label volumes by their label text.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import __version__
from ..errors import InputError
from ..labels import BPE, FGT, MASS

LOCAL_SCHEME = "99BRSEG"
LOCAL_SCHEME_NAME = "breastseg segmentation codes"
LOCAL_SCHEME_ORGANIZATION = "breastseg"
# SNOMED CT "Breast fibroglandular tissue", DICOM CID 7163 (not yet in pydicom's code dictionary)
FGT_CODE = ("1342375003", "SCT", "Breast fibroglandular tissue")


def segment_descriptions(dataset: str, experiment: str, version: str | None) -> list[Any]:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"breastseg {experiment}"[:64], version=str(version or "local")[:64],
        family=codes.cid7162.ArtificialIntelligence,
    )
    if dataset == "mri":
        specs = [(FGT, "FGT", hd.sr.CodedConcept(*FGT_CODE)),
                 (BPE, "BPE", hd.sr.CodedConcept("BPE", LOCAL_SCHEME, "Background parenchymal enhancement"))]
        category = codes.SCT.Tissue
    else:
        specs = [(MASS, "mass", codes.SCT.Mass)]
        category = codes.SCT.MorphologicallyAbnormalStructure
    return [hd.seg.SegmentDescription(
        segment_number=n, segment_label=label, segmented_property_category=category,
        segmented_property_type=prop, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm, tracking_uid=hd.UID(), tracking_id=f"{experiment} {label}",
    ) for n, label, prop in specs]


def build_seg(source_images: Sequence[Any], frames: np.ndarray, dataset: str, experiment: str,
              version: str | None) -> Any:
    """A highdicom Segmentation of ``frames`` ((F, rows, cols) label map, frame i on source image i)."""
    import highdicom as hd
    from pydicom import config

    modes = config.settings.reading_validation_mode, config.settings.writing_validation_mode
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the values come from validated source headers and highdicom's own checks: skip pydicom's per-value
        # re-validation while the many frame items are built (it is most of the time for long series)
        config.settings.reading_validation_mode = config.settings.writing_validation_mode = config.IGNORE
        try:
            seg = _segmentation(hd, source_images, frames, dataset, experiment, version)
        finally:
            config.settings.reading_validation_mode, config.settings.writing_validation_mode = modes
    if "FrameOfReferenceUID" not in seg and "PatientOrientation" not in seg:
        # General Image module: Patient Orientation (type 2C) is required when the frames carry no plane
        # orientation, as for a SEG of an ultrasound image; the source's value, or empty (unknown)
        seg.PatientOrientation = source_images[0].get("PatientOrientation", "")
    return seg


def _segmentation(hd: Any, source_images: Sequence[Any], frames: np.ndarray, dataset: str, experiment: str,
                  version: str | None) -> Any:
    return hd.seg.Segmentation(
        source_images=list(source_images),
        pixel_array=np.ascontiguousarray(frames, dtype=np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(dataset, experiment, version),
        series_instance_uid=hd.UID(),
        series_number=9901,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="breastseg",
        manufacturer_model_name=experiment[:64],
        software_versions=__version__,
        device_serial_number="0",
        series_description=f"breastseg {experiment} v{version or 'local'}"[:64],
        content_label="BREASTSEG",
        content_description=f"{experiment} model {version or 'local'}"[:64],
        omit_empty_frames=True,
        coding_schemes=local_coding_schemes(dataset),
    )


def local_coding_schemes(dataset: str) -> list[Any] | None:
    """Coding Scheme Identification items for the private scheme the segments of ``dataset`` use (MRI: BPE)."""
    from highdicom.coding_schemes import CodingSchemeIdentificationItem

    if dataset != "mri":
        return None
    return [CodingSchemeIdentificationItem(
        designator=LOCAL_SCHEME, name=LOCAL_SCHEME_NAME, responsible_organization=LOCAL_SCHEME_ORGANIZATION)]


def mri_seg(pre: Any, labels: np.ndarray, experiment: str, version: str | None) -> Any:
    """SEG of a label volume on the pre-contrast grid (``labels[col, row, slice]``) of stack ``pre``."""
    import pydicom

    frames_in_files = {s.frame for s in pre.slices}
    if frames_in_files == {None}:  # classic single-frame images, one per slice, in stack order
        sources = [s.header for s in pre.slices]  # headers without pixel data, read once by discovery
        frames = np.stack([labels[:, :, k].T for k in range(labels.shape[2])])
        return build_seg(sources, frames, "mri", experiment, version)
    paths = {s.path for s in pre.slices}
    if len(paths) != 1:
        raise InputError(pre.slices[0].path, "DICOM SEG: the pre-contrast slices come from several multi-frame files")
    src = pydicom.dcmread(pre.slices[0].path, stop_before_pixels=True)
    n = int(src.get("NumberOfFrames", 1) or 1)
    if n != len(pre.slices):
        raise InputError(pre.slices[0].path, f"DICOM SEG: the multi-frame file holds {n} frames, the pre-contrast "
                                             f"phase {len(pre.slices)}; a SEG of one phase of it is not supported")
    frames = np.zeros((n, labels.shape[1], labels.shape[0]), np.uint8)
    for k, s in enumerate(pre.slices):
        frames[s.frame] = labels[:, :, k].T
    return build_seg([src], frames, "mri", experiment, version)


def us_seg(path: Path, mask: np.ndarray, experiment: str, version: str | None) -> Any:
    """SEG of a binary mask (rows x cols) of a single-frame DICOM US image."""
    import pydicom

    src = pydicom.dcmread(path, stop_before_pixels=True)
    return build_seg([src], (np.asarray(mask) > 0).astype(np.uint8)[None], "us", experiment, version)


def save_seg(seg: Any, path: Path) -> None:
    from ..io import atomic_path

    with atomic_path(path) as tmp:
        seg.save_as(tmp)
