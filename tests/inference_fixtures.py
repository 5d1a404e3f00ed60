"""Small inference bundles and inputs for the predict tests (no training, no MLflow)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from breastseg.config import EvaluationSettings


def us_bundle(folder: Path, channels=("bmode",), image_size: int = 32, seed: int = 0,
              training_ranges: dict | None = None) -> Path:
    """A randomly initialised ultrasound model bundle (config.json + weights.pt) in ``folder``."""
    import torch

    from breastseg.models.bundle import bundle_config, write_bundle
    from breastseg.models.factory import build_model

    from breastseg.config import Experiment, load_params

    name = "mass_us_entropy" if "entropy" in channels else "mass_us_bmode"
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    params["us_maps"] = {"dynamic_range_db": 50.0, "window_pulses": 3.0, "bins": 32, "entropy_on": "bmode"}
    exp = Experiment.from_dict({"name": name, "dataset": "us", "channels": list(channels), "classes": 2,
                                "class_names": ["background", "mass"], "image_size": image_size,
                                "model": {"name": "attention_unet", "features": [4, 8]},
                                "preprocess": params["experiments"][name]["preprocess"]}, maps=params["us_maps"])
    torch.manual_seed(seed)
    write_bundle(build_model(exp), bundle_config(EvaluationSettings.from_params(params), exp, {"breastseg.git_commit": "test"}, "run-test",
                                                 training_ranges=training_ranges), folder)
    return folder


def mri_bundle(folder: Path, image_size: int = 24, seed: int = 0, training_ranges: dict | None = None) -> Path:
    """A randomly initialised bpe_mri model bundle (pre + sub channels, a tiny U-Net) in ``folder``."""
    import torch

    from breastseg.config import experiment, load_params
    from breastseg.models.bundle import bundle_config, write_bundle
    from breastseg.models.factory import build_model

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    params["experiments"]["bpe_mri"].update(image_size=image_size, model={"name": "unet", "features": [4, 8]})
    exp = experiment(params, "bpe_mri")
    torch.manual_seed(seed)
    write_bundle(build_model(exp), bundle_config(EvaluationSettings.from_params(params), exp, {"breastseg.git_commit": "test"}, "run-test",
                                                 training_ranges=training_ranges), folder)
    return folder


def us_dicom(path: Path, rows: int = 40, cols: int = 56, spacing_cm: float = 0.02) -> Path:
    """A single-frame DICOM US image (MONOCHROME2, 8 bit) with a SequenceOfUltrasoundRegions spacing."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    us_storage = "1.2.840.10008.5.1.4.1.1.6.1"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = us_storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = us_storage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Doe^Jane", "BRS-77777", "19700101", "F"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20200101", "120000", "A77", "77"
    ds.ReferringPhysicianName = "Keller^Thomas"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "US", 1, 1
    ds.Manufacturer = "Test"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    region = Dataset()
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = cols - 1, rows - 1
    region.PhysicalUnitsXDirection, region.PhysicalUnitsYDirection = 3, 3
    region.PhysicalDeltaX, region.PhysicalDeltaY = spacing_cm, spacing_cm
    ds.SequenceOfUltrasoundRegions = [region]
    rng = np.random.default_rng(3)
    ds.PixelData = (rng.random((rows, cols)) * 255).astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def rf_npz(path, seed=0, samples=200, lines=24, roi=True):
    """An RF .npz of Gaussian noise (with a rectangular ROI as its mask unless ``roi`` is False)."""
    rng = np.random.default_rng(seed)
    content = {"rf": rng.normal(size=(samples, lines)), "fs": 40e6, "f0": 7e6, "pitch": 2e-4}
    if roi:
        m = np.zeros((samples, lines), np.uint8)
        m[60:120, 8:16] = 1
        content["roi"] = m
    np.savez(path, **content)
    return path


MATRIX = 24  # = image_size: the network sees the source grid, so predict and evaluation see the same pixels


def _identity(i: int) -> dict:
    return {"patient_id": f"BRS-{i:05d}", "name": f"Doe^Jane{i}", "birth_date": "19700101", "age": "050Y",
            "study_date": "20200101", "accession": f"A{i}", "study_id": str(i), "institution": "Test Hospital",
            "referring": "Keller^Thomas"}


def write_studies(root: Path, n: int, matrix: int = MATRIX, slices: int = 6) -> list[Path]:
    """``n`` synthetic DCE studies (real DICOM + labels.nii.gz): ``root/<patient>/study``."""
    from breastseg.synth import mri as mri_mod

    out = []
    for i in range(n):
        rng = np.random.default_rng([11, i])
        phantom = mri_mod.simulate_mri(rng, matrix, slices, 1)
        study = root / f"BRS-{i:05d}" / "study"
        mri_mod.write_study(study, phantom, _identity(i), rng, (11, i, "p"), annotated_fraction=0.7, layout="flat")
        out.append(study)
    return out
