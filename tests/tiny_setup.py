"""A tiny prepared ultrasound data set, split: what the training, tuning and seed tests train on."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np

from breastseg.config import experiment
from breastseg.data.slices import prepare_patient
from breastseg.data.split import split_dataset, subset_patients
from breastseg.config import Settings

#: The converted cohort's experiment and the map settings its scans record.
NAME = "mass_us_bmode"
MAPS = {"dynamic_range_db": 50.0, "window_pulses": 3.0, "bins": 32, "entropy_on": "bmode"}


def _blob_case(rng, size=32, n=3):
    yy, xx = np.mgrid[:size, :size]
    images, labels = [], []
    for _ in range(n):
        cy, cx, r = rng.uniform(10, 22), rng.uniform(10, 22), rng.uniform(4, 8)
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.uint8)
        img = rng.normal(0.3, 0.05, (size, size)) + 0.4 * mask
        images.append(img[None].astype(np.float32))
        labels.append(mask)
    return np.stack(images), np.stack(labels)


def make_tiny(tmp_path, params, n_patients=6, slices=3):
    """Six blob 'patients' prepared for both ultrasound experiments, split, in ``tmp_path``."""
    p = copy.deepcopy(params)
    for e in p["experiments"].values():
        e["image_size"] = 32
        e["model"]["features"] = [4, 8]
        e.pop("train", None)  # the tests set the training settings they need in p["train"]
    p["train"].update(max_epochs=2, batch_size=4, threads=1)
    p["tune"].update(n_trials=2, max_epochs=1)
    # Absolute store URLs: MLflow caches one database engine per URI string within a process.
    p["tracking"].update(mlflow_uri=f"sqlite:///{tmp_path}/mlflow.db", optuna_storage=f"sqlite:///{tmp_path}/optuna.db",
                         artifact_root=str(tmp_path / "mlartifacts"))
    rng = np.random.default_rng(0)
    files = []
    for i in range(n_patients):
        img, lab = _blob_case(rng, n=slices)
        for exp in ("mass_us_entropy", "mass_us_bmode"):
            d = tmp_path / "data/processed" / exp
            d.mkdir(parents=True, exist_ok=True)
            f = d / f"P{i:012x}.npz"
            np.savez(f, image=img, label=lab, case=np.array(["scan-1"] * slices),
                     index=np.arange(slices, dtype=np.int32),
                     spacing_mm=np.ones((slices, 2), np.float32), patient=np.asarray(f"P{i:012x}"),
                     stratum=np.asarray("mass"))
            files.append(f)
    split_dataset(Settings.from_params(p), "us", files, splits_dir=tmp_path / "data/splits", processed_dir=tmp_path / "data/processed")
    return p, tmp_path


def _scan(folder: Path, rng: np.random.Generator, rows: int = 40, cols: int = 48) -> None:
    yy, xx = np.mgrid[:rows, :cols]
    cy, cx, r = rng.uniform(12, 28), rng.uniform(14, 34), rng.uniform(5, 9)
    mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.uint8)
    folder.mkdir(parents=True)
    np.save(folder / "mask.npy", mask)
    np.save(folder / "bmode.npy", np.clip(rng.normal(0.3, 0.05, mask.shape) + 0.4 * mask, 0, 1).astype(np.float32))
    np.save(folder / "entropy.npy", (3.0 + rng.normal(0, 0.2, mask.shape) + mask).astype(np.float32))
    (folder / "meta.json").write_text(json.dumps({"spacing_mm": [0.3, 0.3], "spacing_known": True, "class": "mass",
                                                  "maps": ["bmode", "entropy"], **MAPS}))


def make_converted(tmp_path, params):
    """10 converted patients (2 scans each), prepared at 32 px for both ultrasound experiments, and split."""
    p = copy.deepcopy(params)
    for e in p["experiments"].values():
        e["image_size"] = 32
        e["model"]["features"] = [4, 8]
    p["us_maps"] = dict(MAPS)
    p["register"] = {"metric": "dice_mean", "margin": 0.0}
    p["tracking"].update(mlflow_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=str(tmp_path / "mlartifacts"))
    rng = np.random.default_rng(1)
    interim, processed = tmp_path / "data/interim/us", tmp_path / "data/processed"
    files = []
    for i in range(10):
        pid = f"P{i:012x}"
        for k in range(2):
            _scan(interim / pid / f"scan-{k}", rng)
        for exp in ("mass_us_bmode", "mass_us_entropy"):
            e = experiment(p, exp)
            files.append(prepare_patient(e, interim / pid, processed / exp / f"{pid}.npz", patient_id=pid))
    split_dataset(Settings.from_params(p), "us", files, splits_dir=tmp_path / "data/splits", processed_dir=processed)
    split = tmp_path / f"data/splits/{NAME}.json"
    assert subset_patients(split, "val") and subset_patients(split, "test")
    return p, tmp_path
