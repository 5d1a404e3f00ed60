"""A split that cannot tell women apart says so everywhere; a split without validation patients stops training."""
import copy
import json
import logging

import numpy as np
import pytest

from breastseg.errors import InputError
from breastseg.evaluation.evaluate import split_check
from breastseg.evaluation.metrics import SPLIT_BY_IMAGE_WARNING
from breastseg.config import Settings


def _interim(root, layout):
    """Converted ultrasound patients as `us-maps` writes them: patient -> list of scan source formats."""
    for pid, formats in layout.items():
        for i, fmt in enumerate(formats, 1):
            d = root / pid / f"scan-{i}"
            d.mkdir(parents=True)
            (d / "meta.json").write_text(json.dumps({"patient": pid, "scan": f"scan-{i}", "source_format": fmt}))


def _split(path, patients):
    path.write_text(json.dumps({"patients": {p: {"subset": s, "stratum": "mass"} for p, s in patients.items()}}))
    return path


@pytest.mark.parametrize("layout, patient_map, expected", [
    ({"Pa": ["busi-png"], "Pb": ["busi-png"], "Pc": ["busi-png"]}, None, 3),       # BUSI: one image each
    ({"Pa": ["oasbud-mat"] * 2, "Pb": ["oasbud-mat"] * 2, "Pc": ["npz"]}, None, 2),  # OASBUD: one lesion each
    ({"Pa": ["oasbud-mat"] * 4, "Pb": ["busi-png"] * 3, "Pc": ["npz"]}, None, 0),    # grouped: women
    ({"Pa": ["busi-png"], "Pb": ["busi-png"], "Pc": ["busi-png"]}, "map.csv", 0),   # the map names the women
    ({"Pa": ["npz"], "Pb": ["dicom-us"], "Pc": ["npz", "npz"]}, None, 0),            # per-patient files, PatientID
])
def test_split_check_reads_the_converted_patients(tmp_path, params, layout, patient_map, expected):
    _interim(tmp_path / "interim", layout)
    split = _split(tmp_path / "split.json", dict(zip(layout, ("train", "val", "test"))))
    p = copy.deepcopy(params)
    if patient_map:
        p["cohort"]["patient_map"] = patient_map
    out = split_check(p["cohort"]["patient_map"], "us", split, tmp_path / "interim")
    assert out["by_image"] == bool(expected) and out["patients"] == expected
    assert out["warning"] == (SPLIT_BY_IMAGE_WARNING if expected else None)
    assert split_check(p["cohort"]["patient_map"], "mri", split, tmp_path / "interim")["by_image"] is False
    assert split_check(p["cohort"]["patient_map"], "us", split, tmp_path / "missing")["checked"] == 0  # not converted here: not judged


def test_no_val_patients_stops_training_with_one_line(tmp_path):
    from breastseg.data.datamodule import SliceDataModule

    processed = tmp_path / "processed"
    processed.mkdir()
    for pid in ("Pa", "Pb"):
        np.savez(processed / f"{pid}.npz", image=np.zeros((2, 1, 8, 8), np.float32), label=np.zeros((2, 8, 8), np.uint8),
                 case=np.array(["scan-1"] * 2), index=np.zeros(2, np.int32), spacing_mm=np.ones((2, 2), np.float32),
                 patient=np.asarray(pid), stratum=np.asarray("mass"))
    split = _split(tmp_path / "split.json", {"Pa": "train", "Pb": "test"})
    with pytest.raises(InputError) as err:
        SliceDataModule(processed, split).setup()
    assert err.value.path == str(split) and "no val patients" in str(err.value) and "\n" not in str(err.value)


def test_split_by_image_reaches_metrics_log_and_mlflow(tmp_path, monkeypatch, params, caplog):
    import mlflow
    from tiny_setup import make_tiny

    from breastseg.data.split import read_split
    from breastseg.evaluation.evaluate import evaluate_experiment
    from breastseg.tracking import init_stores
    from breastseg.training.train import train_experiment

    monkeypatch.chdir(tmp_path)
    name = "mass_us_bmode"
    p, root = make_tiny(tmp_path, params)
    p["train"]["max_epochs"] = 1
    split, processed = root / f"data/splits/{name}.json", root / f"data/processed/{name}"
    _interim(root / "data/interim/us", {pid: ["busi-png"] for pid in read_split(split)})  # a BUSI cohort, no map
    init_stores(Settings.from_params(p))
    with caplog.at_level(logging.WARNING):
        model = train_experiment(Settings.from_params(p), name, split_file=split, processed_dir=processed, best_params=None,
                                 out_dir=root / "models" / name)
        summary = evaluate_experiment(Settings.from_params(p), name, model_json=root / "models" / name / "model.json", split_file=split,
                                      processed_dir=processed, metrics_json=root / "metrics.json", out_dir=root / "res")
    assert sum(SPLIT_BY_IMAGE_WARNING in r.getMessage() for r in caplog.records) == 2  # train and evaluate logs
    assert json.loads((root / "metrics.json").read_text())["split_by_image"] == 1
    full = json.loads((root / "res" / "evaluation.json").read_text())
    assert full["split"]["by_image"] and full["split"]["warning"] == SPLIT_BY_IMAGE_WARNING == summary["split"]["warning"]
    client = mlflow.MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    for stage in ("train", "evaluate"):
        run = next(r for r in runs if r.data.tags.get("breastseg.stage") == stage)
        assert run.data.tags["breastseg.split_by_image"] == "true", stage
        assert run.data.tags["breastseg.split_warning"] == SPLIT_BY_IMAGE_WARNING
    assert client.get_model_version(model["model_name"], model["version"]).tags["breastseg.split_by_image"] == "true"
