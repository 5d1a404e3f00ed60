"""Lightning DDP from params alone: `breastseg train` with strategy ddp on two CPU processes (gloo)."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from tiny_setup import make_tiny

NAME = "mass_us_bmode"


@pytest.mark.slow
def test_two_process_cpu_ddp_logs_one_mlflow_run(tmp_path, monkeypatch, params):
    import mlflow

    monkeypatch.chdir(tmp_path)
    p, root = make_tiny(tmp_path, params)
    p["experiments"][NAME].pop("train", None)  # the global train block below is the one in force
    p["train"].update(strategy="ddp", devices=2, num_nodes=1, accelerator="cpu", max_epochs=1)
    (root / "p.yaml").write_text(yaml.safe_dump(p))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "LOCAL_RANK", "RANK", "NODE_RANK",
                                                            "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHONUNBUFFERED="1", MASTER_ADDR="127.0.0.1")
    base = [sys.executable, "-m", "breastseg.cli", "--params", str(root / "p.yaml")]
    subprocess.run([*base, "-q", "tracking-init"], cwd=root, check=True, env=env)
    r = subprocess.run([*base, "train", NAME, "--split", f"data/splits/{NAME}.json", "--processed-dir",
                        f"data/processed/{NAME}", "--out-dir", "models", "--curve", "curve.csv"],
                       cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in r.stderr  # really two processes
    assert "distributed_backend=gloo" in r.stderr

    mlflow.set_tracking_uri(p["tracking"]["mlflow_uri"])
    client = mlflow.MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name(NAME).experiment_id])
    assert len(runs) == 1                                   # rank 0 logs; rank 1 joins its run, logs nothing
    run = runs[0]
    assert run.data.tags["breastseg.stage"] == "train" and run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "val_dice")) == 1   # one epoch, one value
    versions = client.search_model_versions(f"name = 'breastseg-{NAME}'")
    assert [v.run_id for v in versions] == [run.info.run_id]
    model = json.loads((root / "models" / "model.json").read_text())
    assert model["run_id"] == run.info.run_id and model["hyperparameters"]["strategy"] == "ddp"
    assert len((root / "curve.csv").read_text().splitlines()) == 2


def test_ddp_inside_a_one_task_slurm_job_starts_its_own_processes(monkeypatch):
    """The slurm executor runs a rule as one srun task: Lightning must start the DDP processes itself."""
    from breastseg.training.train import make_trainer

    from breastseg.config import TrainSettings, schema_defaults

    hp = TrainSettings.from_dict({**schema_defaults("train"), "strategy": "ddp", "devices": 2, "num_nodes": 1,
                                  "accelerator": "cpu"})
    for var in ("SLURM_NTASKS_PER_NODE", "SLURM_JOB_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_PROCID", "0")
    trainer = make_trainer(hp, 1, False, [])
    assert type(trainer.strategy.cluster_environment).__name__ == "LightningEnvironment"
    assert trainer.num_devices == 2 and trainer.strategy.launcher.is_interactive_compatible is False
    # several nodes: srun started one task per device, SLURM's environment gives the ranks
    for var, value in {"SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NODEID": "0", "SLURM_LOCALID": "0",
                       "SLURM_NODELIST": "node1,node2"}.items():
        monkeypatch.setenv(var, value)
    trainer = make_trainer(hp.with_values({"num_nodes": 2}), 1, False, [])
    assert type(trainer.strategy.cluster_environment).__name__ == "SLURMEnvironment"
