"""A registered model is found again in a moved or copied project; truly missing files are named in one line."""
import shutil
from pathlib import Path

import pytest
from inference_fixtures import us_bundle

from breastseg.errors import InputError


def _registered_project(root: Path) -> None:
    """``root`` holding an MLflow store (SQLite, artifacts in ``root/mlartifacts`` by absolute path, as MLflow
    keeps them) with one bundle registered as ``breastseg-mass_us_bmode`` version 1."""
    import mlflow

    root.mkdir(parents=True)
    bundle = us_bundle(root / "bundle", channels=("bmode",), image_size=32)
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    exp = client.create_experiment("mass_us_bmode", artifact_location=(root / "mlartifacts" / "e").as_uri())
    run = client.create_run(exp)
    client.log_artifacts(run.info.run_id, str(bundle), "model")
    client.create_registered_model("breastseg-mass_us_bmode")
    client.create_model_version("breastseg-mass_us_bmode", source=f"{run.info.artifact_uri}/model",
                                run_id=run.info.run_id)
    shutil.rmtree(bundle)


def test_a_moved_project_keeps_its_models_and_missing_files_are_named(tmp_path, monkeypatch):
    import mlflow

    from breastseg.models.bundle import load_model

    _registered_project(tmp_path / "old")
    shutil.move(tmp_path / "old", tmp_path / "moved")  # the original folder is gone
    monkeypatch.chdir(tmp_path / "moved")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    model = load_model("models:/breastseg-mass_us_bmode/1")
    assert model.experiment.name == "mass_us_bmode" and model.source["version"] == "1"

    shutil.rmtree(tmp_path / "moved" / "mlartifacts")  # now truly missing
    with pytest.raises(InputError) as exc:
        load_model("models:/breastseg-mass_us_bmode/1")
    message = str(exc.value)
    assert str(tmp_path / "old" / "mlartifacts") in message and "dvc pull" in message
    assert "retrain" not in message and "\n" not in message
