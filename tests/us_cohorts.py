"""Tiny ultrasound cohorts in the public layouts (BUSI folders, an OASBUD .mat, DICOM US), for tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image


def _ellipse(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    rows, cols = shape
    cy, cx = rng.uniform(0.35, 0.65) * rows, rng.uniform(0.35, 0.65) * cols
    ry, rx = rng.uniform(0.12, 0.22) * rows, rng.uniform(0.12, 0.22) * cols
    y, x = np.ogrid[:rows, :cols]
    return (((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1).astype(np.uint8)


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def write_busi_cohort(root: Path, n: int = 8, seed: int = 0, shape: tuple[int, int] = (48, 64),
                      layout: str = "archive", normal: int = 0) -> Path:
    """``root/us/{benign,malignant}/<class> (N).png`` with a dark mass, its ``_mask.png`` and, for some, a
    second region in ``_mask_1.png`` (merged by the reader); ``normal``: as many ``normal/normal (N).png`` images
    without a mass (an all-black mask, as BUSI ships them).

    ``layout="snapshot"`` writes the same files as BUSI's public git snapshot has them: the images in
    ``<class>/images/``, their masks in ``<class>/mask/``.
    """
    if layout not in ("archive", "snapshot"):
        raise ValueError(f"unknown BUSI layout {layout!r}")
    rng = np.random.default_rng(seed)
    for i in range(1, n + 1):
        cls = "benign" if i % 2 else "malignant"
        mask = _ellipse(shape, rng)
        speckle = rng.rayleigh(0.25, shape)
        image = np.clip(0.55 * speckle * np.where(mask > 0, 0.35, 1.0) * 255, 0, 255).astype(np.uint8)
        folder = root / "us" / cls
        images, masks = (folder, folder) if layout == "archive" else (folder / "images", folder / "mask")
        name = f"{cls} ({i})"
        _png(images / f"{name}.png", np.stack([image] * 3, axis=-1))  # RGB, as BUSI ships
        _png(masks / f"{name}_mask.png", mask * 255)
        if i % 3 == 0:
            extra = np.zeros(shape, np.uint8)
            extra[2:5, 2:6] = 255
            _png(masks / f"{name}_mask_1.png", extra)
    for i in range(1, normal + 1):
        image = np.clip(0.55 * rng.rayleigh(0.25, shape) * 255, 0, 255).astype(np.uint8)
        folder = root / "us" / "normal"
        images, masks = (folder, folder) if layout == "archive" else (folder / "images", folder / "mask")
        _png(images / f"normal ({i}).png", np.stack([image] * 3, axis=-1))
        _png(masks / f"normal ({i})_mask.png", np.zeros(shape, np.uint8))
    return root


def oasbud_records(n: int, seed: int = 0, shape: tuple[int, int] = (256, 24)) -> list[dict]:
    """RF records (int16 samples x lines) with a weaker-scattering mass and its ROI, OASBUD field layout."""
    rng = np.random.default_rng(seed)
    t = np.arange(-8, 9)
    pulse = np.cos(2 * np.pi * 0.25 * t) * np.exp(-(t / 4.0) ** 2)
    records = []
    for i in range(n):
        rois, rfs = [], []
        for _ in range(2):
            roi = _ellipse(shape, rng)
            scat = rng.normal(size=shape) * np.where(roi > 0, 0.3, 1.0)
            rf = np.apply_along_axis(lambda c: np.convolve(c, pulse, mode="same"), 0, scat)
            rfs.append(np.round(rf / np.abs(rf).max() * 3000).astype(np.int16))
            rois.append(roi)
        records.append({"id": f"L{100 + i}", "rf1": rfs[0], "rf2": rfs[1], "roi1": rois[0], "roi2": rois[1],
                        "birads": "4a", "class": np.array([[i % 2]], dtype=np.float64)})
    return records


def write_oasbud_mat(path: Path, records: list[dict]) -> Path:
    fields = ("id", "rf1", "rf2", "roi1", "roi2", "birads", "class")
    data = np.zeros((1, len(records)), dtype=[(f, object) for f in fields])
    for i, rec in enumerate(records):
        for f in fields:
            data[f][0, i] = rec[f]
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"data": data})
    return path


def write_oasbud_cohort(root: Path, n: int = 8, seed: int = 0) -> Path:
    """``root/us/oasbud.mat`` with ``n`` lesions."""
    write_oasbud_mat(root / "us" / "oasbud.mat", oasbud_records(n, seed))
    return root


def write_us_dicom(path, pixels, regions=True, patient_id="PAT-7"):
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"  # US Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.PatientID = patient_id
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    if regions:
        region = Dataset()
        region.PhysicalUnitsXDirection = 3
        region.PhysicalUnitsYDirection = 3
        region.PhysicalDeltaX = 0.02  # cm
        region.PhysicalDeltaY = 0.01
        ds.SequenceOfUltrasoundRegions = [region]
    pydicom.dcmwrite(str(path), ds, enforce_file_format=True)
    return path


# ------------------------------------------------------------------------------------------ round trips
