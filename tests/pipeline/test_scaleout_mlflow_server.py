"""MLflow server mode: the pipeline's tracking calls over HTTP against `mlflow server` (as `make server` starts it),
then the UI that server serves, in Debian's headless chromium."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from scaleout_services import mlflow_server
from tiny_setup import make_tiny
from breastseg.config import TrackingSettings
from breastseg.config import Settings

ROOT = Path(__file__).resolve().parents[2]
NAME = "mass_us_bmode"
MODEL = f"breastseg-{NAME}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as srv:
        yield srv
    with pytest.raises(ProcessLookupError):  # stopped by its PID: nothing left of the process group
        os.killpg(srv.pid, 0)


@pytest.fixture(scope="module")
def pipeline(server, tmp_path_factory):
    """Study (two nested trials), final training, evaluation and the champion gate, all logged over HTTP."""
    from breastseg.config import load_params
    from breastseg.evaluation.evaluate import evaluate_experiment
    from breastseg.registry import promote_if_better
    from breastseg.tracking import init_stores
    from breastseg.training.train import train_experiment
    from breastseg.training.tune import tune_experiment

    root = tmp_path_factory.mktemp("pipeline")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", server.url)  # the standard variable wins over tracking.mlflow_uri
        p, _ = make_tiny(root, load_params(ROOT / "params.yaml"))
        p["experiments"][NAME].pop("train", None)
        p["train"]["max_epochs"] = 1
        p["tune"].update(n_trials=2, max_epochs=1)
        split, processed = root / f"data/splits/{NAME}.json", root / f"data/processed/{NAME}"
        kw = dict(split_file=split, processed_dir=processed)
        init_stores(Settings.from_params(p))
        best = tune_experiment(Settings.from_params(p), NAME, out_json=root / "best.json", work_dir=root / "work", **kw)
        model = train_experiment(Settings.from_params(p), NAME, best_params=root / "best.json", out_dir=root / "models", **kw)
        evaluate_experiment(Settings.from_params(p), NAME, model_json=root / "models/model.json", metrics_json=root / "metrics.json",
                            out_dir=root / "res", **kw)
        decision = promote_if_better(Settings.from_params(p), NAME, model_json=root / "models/model.json", metrics_json=root / "metrics.json",
                                     decision_json=root / "decision.json", **kw)
        yield {"params": p, "best": best, "model": model, "decision": decision}


def _client(server):
    import mlflow

    mlflow.set_tracking_uri(server.url)
    mlflow.set_registry_uri(server.url)
    return mlflow.MlflowClient()


@pytest.mark.slow
def test_pipeline_tracking_over_http(server, pipeline):
    import mlflow

    client = _client(server)
    experiments = {e.name: e for e in client.search_experiments()}
    assert {"bpe_mri", "mass_us_entropy", "mass_us_bmode"} <= set(experiments)
    # artifacts go to the server's store (--artifacts-destination), not to a path on the client's disk
    assert all(experiments[n].artifact_location.startswith("mlflow-artifacts:") for n in pipeline["params"]["experiments"])
    runs = client.search_runs([experiments[NAME].experiment_id])
    stage = {}
    for r in runs:
        stage.setdefault(r.data.tags.get("breastseg.stage"), []).append(r)
    parent, trials = stage["tune"], stage["trial"]
    assert len(parent) == 1 and len(trials) == 2 and parent[0].info.status == "FINISHED"
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parent[0].info.run_id}
    assert sorted(t.data.tags["breastseg.trial"] for t in trials) == ["0", "1"]
    train = stage["train"][0]
    assert train.info.run_id == pipeline["model"]["run_id"] and "val_dice" in train.data.metrics

    version = pipeline["model"]["version"]
    assert pipeline["decision"]["promoted"]
    for alias in ("champion", "challenger"):
        assert str(client.get_model_version_by_alias(MODEL, alias).version) == version
    assert client.get_model_version(MODEL, version).tags["breastseg.experiment"] == NAME
    net = mlflow.pytorch.load_model(f"models:/{MODEL}@champion")  # downloaded through the server's artifact proxy
    assert sum(p.numel() for p in net.parameters()) > 0


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                    reason="needs Debian chromium and chromium-driver (make test installs them as root)")
def test_ui_shows_experiments_nested_trials_and_champion(server, pipeline, tmp_path):
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager never downloads a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    exp_id = _client(server).get_experiment_by_name(NAME).experiment_id
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1600,1200"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=shutil.which("chromedriver")))
    wait = WebDriverWait(driver, 90)

    def text():
        return driver.find_element(By.TAG_NAME, "body").text.replace("\xa0", " ")

    try:
        driver.get(f"{server.url}/#/experiments")
        wait.until(lambda d: all(n in text() for n in ("bpe_mri", "mass_us_entropy", "mass_us_bmode")))

        # MLflow's sidebar holds one switch per browser between the GenAI and the model-training views (it starts
        # on GenAI): the one click the README names. The experiments are tagged as model training, so with the
        # switch on "Model training" an experiment opens on its runs.
        switch = wait.until(lambda d: d.find_elements(By.XPATH, "//*[normalize-space(text())='Model training']"))
        switch[0].click()
        driver.get(f"{server.url}/#/experiments/{exp_id}")
        wait.until(lambda d: "train-mass_us_bmode" in text())
        assert "Token Usage" not in text()
        # The runs table: every run names the split it used in the Dataset column.
        dataset = f"{pipeline['params']['cohort']['name']}-us"
        wait.until(lambda d: text().count(dataset) >= 2)
        driver.save_screenshot(str(tmp_path / "runs.png"))
        assert (tmp_path / "runs.png").stat().st_size > 20_000

        # The evaluation run's page: its metrics, its test split, and the model version it scored.
        evaluation = _client(server).search_runs([exp_id], "tags.`breastseg.stage` = 'evaluate'")[0]
        driver.get(f"{server.url}/#/experiments/{exp_id}/runs/{evaluation.info.run_id}")
        wait.until(lambda d: "test_dice_mean" in text() and dataset in text())
        assert "breastseg.model_version" in text() or MODEL in text()
        driver.save_screenshot(str(tmp_path / "run.png"))
        assert (tmp_path / "run.png").stat().st_size > 20_000

        driver.get(f"{server.url}/#/experiments/{exp_id}/runs")
        study = f"study-{pipeline['best']['study']}"
        link = wait.until(lambda d: d.find_elements(By.XPATH, f"//a[contains(., '{study}')]"))[0]
        assert "train-mass_us_bmode" in text() and "trial-0" not in text()  # nested runs start collapsed
        link.find_element(By.XPATH, "./ancestor::div[contains(@class, 'ag-cell-wrapper')]//button").click()
        wait.until(lambda d: "trial-0" in text() and "trial-1" in text())

        driver.get(f"{server.url}/#/models")
        wait.until(lambda d: MODEL in text() and "@ champion" in text())

        driver.get(f"{server.url}/#/models/{MODEL}")
        wait.until(lambda d: "Version 1" in text() and "@ champion" in text() and "@ challenger" in text())
    finally:
        driver.quit()


def _mlflow_line(*make_args: str, env: dict | None = None) -> str:
    """The ``mlflow server`` command ``make server`` would run (its ``breastseg server`` line, with --dry-run)."""
    out = subprocess.run(["make", "-n", "server", *make_args], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("breastseg server"))
    return subprocess.run([*line.split(), "--dry-run"], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={**os.environ, "PATH": f"{ROOT / '.venv/bin'}:{os.environ['PATH']}", **(env or {})}
                          ).stdout.strip()


def test_make_server_binds_to_loopback():
    line = _mlflow_line()
    assert "mlflow server --host 127.0.0.1 " in line and "--backend-store-uri sqlite:///mlflow.db" in line
    assert "--artifacts-destination" in line and "--workers 1" in line and "basic-auth" not in line
    line = _mlflow_line("HOST=0.0.0.0", "PORT=5001", "BACKEND=postgresql://mlflow@db.example:5432/mlflow")
    assert "--host 0.0.0.0 --port 5001" in line and "postgresql://mlflow@db.example:5432/mlflow" in line


@pytest.mark.slow
def test_server_on_a_postgresql_backend(tmp_path, params):
    """`make server BACKEND=postgresql://...`: the same calls against a server whose store is PostgreSQL."""
    import mlflow
    import torch

    from breastseg.tracking import experiment_id, init_stores

    from scaleout_services import postgres_server

    with postgres_server("mlflow") as db, mlflow_server(tmp_path / "server", backend_store_uri=db) as srv, \
            pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", srv.url)
        init_stores(Settings.from_params({**params, "tracking": {**params["tracking"], "optuna_storage": f"sqlite:///{tmp_path}/o.db"}}))
        client = _client(srv)
        exp = experiment_id(TrackingSettings.from_params(params), NAME)
        parent = client.create_run(exp, run_name="study-x", tags={"breastseg.stage": "tune"}).info.run_id
        child = client.create_run(exp, run_name="trial-0", tags={"mlflow.parentRunId": parent}).info.run_id
        client.log_metric(child, "val_dice", 0.5)
        with mlflow.start_run(run_id=parent):
            info = mlflow.pytorch.log_model(torch.nn.Conv2d(1, 2, 1), name="model", serialization_format="pickle",
                                            pip_requirements=["torch"], registered_model_name=MODEL)
        client.set_registered_model_alias(MODEL, "champion", info.registered_model_version)
        assert {e.name for e in client.search_experiments()} >= set(params["experiments"])
        assert client.get_run(child).data.tags["mlflow.parentRunId"] == parent
        assert client.get_model_version_by_alias(MODEL, "champion").version == info.registered_model_version
        assert mlflow.pytorch.load_model(f"models:/{MODEL}@champion").out_channels == 2
