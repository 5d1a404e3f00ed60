"""A registered model is found again in a moved or copied project; truly missing files are named in one line.

Each step runs in a process of its own, as a user's commands do (MLflow keeps stores and engines per process)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from inference_fixtures import us_bundle

REGISTER = """
import mlflow, sys
from pathlib import Path
root, bundle = Path(sys.argv[1]), sys.argv[2]
mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
client = mlflow.MlflowClient()
exp = client.create_experiment("mass_us_bmode", artifact_location=(root / "mlartifacts" / "e").as_uri())
run = client.create_run(exp)
client.log_artifacts(run.info.run_id, bundle, "model")
client.create_registered_model("breastseg-mass_us_bmode")
client.create_model_version("breastseg-mass_us_bmode", source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
"""
LOAD = """
from breastseg.errors import InputError
from breastseg.models.bundle import load_model
try:
    model = load_model("models:/breastseg-mass_us_bmode/1")
except InputError as exc:
    print(f"error: {exc}")
else:
    print("loaded", model.experiment.name, model.source["version"])
"""


def _python(code: str, *args: str, cwd: Path) -> str:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"}
    r = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""


def test_a_moved_project_keeps_its_models_and_missing_files_are_named(tmp_path):
    old, moved = tmp_path / "old", tmp_path / "moved"
    old.mkdir()
    bundle = us_bundle(tmp_path / "bundle", channels=("bmode",), image_size=32)
    _python(REGISTER, str(old), str(bundle), cwd=old)  # artifacts stored by absolute path, as MLflow does
    assert _python(LOAD, cwd=old) == "loaded mass_us_bmode 1"
    shutil.move(old, moved)  # the original folder is gone
    assert _python(LOAD, cwd=moved) == "loaded mass_us_bmode 1"

    shutil.rmtree(moved / "mlartifacts")  # now truly missing
    message = _python(LOAD, cwd=moved)
    assert message.startswith("error: models:/breastseg-mass_us_bmode/1: the model's files are not at ")
    assert str(old / "mlartifacts") in message and "dvc pull" in message and "retrain" not in message
