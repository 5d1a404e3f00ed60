"""Training behaviour: pruning, resume, workers sharing a study, determinism."""
import json
import os
import subprocess
import sys

import lightning.pytorch as pl
import optuna
import pytest
import yaml

from breastseg.tracking import init_stores

from tiny_setup import make_tiny
from breastseg.config import Settings

NAME = "mass_us_bmode"


def _paths(root):
    return root / f"data/splits/{NAME}.json", root / f"data/processed/{NAME}"


def test_bad_trial_is_pruned(tmp_path, monkeypatch, params):
    from breastseg.training.tune import close_study, open_study, run_worker

    monkeypatch.chdir(tmp_path)
    p, root = make_tiny(tmp_path, params, n_patients=6, slices=6)
    p["tune"].update(n_trials=3, max_epochs=4, pruner="median",
                     space={"lr": {"type": "categorical", "choices": [0.01, 1e-9]}})
    split, processed = _paths(root)
    init_stores(Settings.from_params(p))
    info = open_study(Settings.from_params(p), NAME, split_file=split, processed_dir=processed, out_json=root / "study.json")
    study = optuna.load_study(study_name=info["study"], storage=p["tracking"]["optuna_storage"])
    for lr in (0.01, 0.01, 1e-9):  # two sensible trials, then one that cannot learn
        study.enqueue_trial({"lr": lr})
    run_worker(Settings.from_params(p), NAME, study_json=root / "study.json", split_file=split, processed_dir=processed,
               out_json=root / "w.json", work_dir=root / "work")
    states = [t.state for t in optuna.load_study(study_name=info["study"], storage=p["tracking"]["optuna_storage"]).trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 2 + [optuna.trial.TrialState.PRUNED]
    best = close_study(Settings.from_params(p), NAME, study_json=root / "study.json", out_json=root / "best.json")
    assert best["params"]["lr"] == 0.01 and best["n_finished"] == 3

    import mlflow

    runs = mlflow.MlflowClient().search_runs([info["experiment_id"]], "tags.`breastseg.stage` = 'trial'")
    assert sorted(r.data.tags["optuna.state"] for r in runs) == ["COMPLETE", "COMPLETE", "PRUNED"]


class Crash(pl.Callback):
    def __init__(self, at_epoch):
        self.at_epoch = at_epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.at_epoch:
            raise RuntimeError("simulated kill")


class FirstEpoch(pl.Callback):
    def __init__(self):
        self.first = None

    def on_train_epoch_start(self, trainer, pl_module):
        if self.first is None:
            self.first = trainer.current_epoch


def test_training_resumes_from_last_checkpoint(tmp_path, monkeypatch, params):
    import mlflow

    from breastseg.training.train import train_experiment

    monkeypatch.chdir(tmp_path)
    p, root = make_tiny(tmp_path, params)
    p["train"]["max_epochs"] = 4
    split, processed = _paths(root)
    init_stores(Settings.from_params(p))
    out = root / "models" / NAME
    kwargs = dict(split_file=split, processed_dir=processed, best_params=None, out_dir=out, curve_csv=root / "c.csv")
    with pytest.raises(RuntimeError, match="simulated kill"):
        train_experiment(Settings.from_params(p), NAME, extra_callbacks=[Crash(at_epoch=2)], **kwargs)
    assert (out / "checkpoints" / "last.ckpt").exists() and not (out / "model.json").exists()
    first_run = json.loads((out / "resume.json").read_text())["run_id"]
    seen = FirstEpoch()
    result = train_experiment(Settings.from_params(p), NAME, extra_callbacks=[seen], **kwargs)
    assert seen.first == 2                       # continued where it stopped, not from scratch
    assert result["run_id"] == first_run          # and in the same MLflow run
    assert [l.split(",")[0] for l in (root / "c.csv").read_text().splitlines()[1:]] == ["0", "1", "2", "3"]
    history = mlflow.MlflowClient().get_metric_history(first_run, "val_dice")
    assert len(history) == 4                      # one value per epoch, across both parts

    # The resumed training is the uninterrupted one: same learning curve, to the last digit.
    other = tmp_path / "uninterrupted"
    other.mkdir()
    monkeypatch.chdir(other)
    q, other_root = make_tiny(other, params)
    q["train"]["max_epochs"] = 4
    init_stores(Settings.from_params(q))
    o_split, o_processed = _paths(other_root)
    train_experiment(Settings.from_params(q), NAME, split_file=o_split, processed_dir=o_processed, best_params=None,
                     out_dir=other / "models", curve_csv=other / "c.csv")
    assert (root / "c.csv").read_text() == (other / "c.csv").read_text()
    monkeypatch.chdir(tmp_path)

    # A checkpoint left by a different configuration is never resumed: the rerun starts from scratch.
    with pytest.raises(RuntimeError, match="simulated kill"):
        train_experiment(Settings.from_params(p), NAME, extra_callbacks=[Crash(at_epoch=2)], **kwargs)
    p["train"]["lr"] = 0.001
    seen = FirstEpoch()
    changed = train_experiment(Settings.from_params(p), NAME, extra_callbacks=[seen], **kwargs)
    assert seen.first == 0 and changed["run_id"] != first_run


def test_two_workers_share_one_sqlite_study(tmp_path, monkeypatch, params):
    monkeypatch.chdir(tmp_path)
    p, root = make_tiny(tmp_path, params)
    p["tune"].update(n_trials=4, max_epochs=1, pruner="none")
    p_file = root / "p.yaml"
    p_file.write_text(yaml.safe_dump(p))
    split, processed = _paths(root)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    base = [sys.executable, "-m", "breastseg.cli", "-q", "--params", str(p_file)]
    subprocess.run([*base, "tracking-init"], cwd=root, check=True, env=env)
    subprocess.run([*base, "study", NAME, "--split", str(split), "--processed-dir", str(processed), "--out",
                    "study.json"], cwd=root, check=True, env=env)
    procs = [subprocess.Popen([*base, "tune", NAME, "--study", "study.json", "--worker", str(w), "--split", str(split),
                               "--processed-dir", str(processed), "--out", f"w{w}.json", "--work-dir", "work"],
                              cwd=root, env=env, stderr=subprocess.PIPE, text=True) for w in (0, 1)]
    errors = [proc.communicate(timeout=600)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errors
    done = [json.loads((root / f"w{w}.json").read_text()) for w in (0, 1)]
    assert max(d["n_finished"] for d in done) == 4
    assert len(done[0]["trials"]) + len(done[1]["trials"]) == 4
    assert not set(done[0]["trials"]) & set(done[1]["trials"])
    study = optuna.load_study(study_name=json.loads((root / "study.json").read_text())["study"],
                              storage=p["tracking"]["optuna_storage"])
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 4


def test_same_seed_same_metrics(tmp_path, monkeypatch, params):
    from breastseg.evaluation.evaluate import evaluate_experiment
    from breastseg.training.train import train_experiment

    outputs = []
    for run in ("a", "b"):
        root = tmp_path / run
        root.mkdir()
        monkeypatch.chdir(root)
        p, _ = make_tiny(root, params)
        split, processed = _paths(root)
        init_stores(Settings.from_params(p))
        train_experiment(Settings.from_params(p), NAME, split_file=split, processed_dir=processed, best_params=None,
                         out_dir=root / "models", curve_csv=root / "curve.csv")
        evaluate_experiment(Settings.from_params(p), NAME, model_json=root / "models" / "model.json", split_file=split,
                            processed_dir=processed, metrics_json=root / "metrics.json", out_dir=root / "res")
        outputs.append(((root / "metrics.json").read_bytes(), (root / "curve.csv").read_bytes()))
    assert outputs[0] == outputs[1]


def test_trial_left_running_by_a_killed_worker_is_failed_and_its_slot_rerun(tmp_path, monkeypatch, params):
    """A worker killed mid-trial leaves it RUNNING; the rerun fails it (in Optuna and MLflow), does not count it,
    and samples that slot again exactly as an uninterrupted worker did."""
    import mlflow

    from breastseg.training.tune import open_study, run_worker

    def study_of(root, p):
        info = json.loads((root / "study.json").read_text())
        return info, optuna.load_study(study_name=info["study"], storage=p["tracking"]["optuna_storage"])

    finished = {}
    for case in ("uninterrupted", "killed"):
        root = tmp_path / case
        root.mkdir()
        monkeypatch.chdir(root)
        p, _ = make_tiny(root, params)
        p["tune"].update(n_trials=2, max_epochs=1, pruner="none")
        split, processed = _paths(root)
        init_stores(Settings.from_params(p))
        open_study(Settings.from_params(p), NAME, split_file=split, processed_dir=processed, out_json=root / "study.json")
        kwargs = dict(study_json=root / "study.json", split_file=split, processed_dir=processed,
                      out_json=root / "w.json", work_dir=root / "work")
        if case == "killed":
            with pytest.raises(SimulatedKill):  # dies in its second trial, as under SIGKILL: no cleanup at all
                run_worker(Settings.from_params(p), NAME, extra_callbacks=[KillInTrial(after_trials=1)], **kwargs)
            info, study = study_of(root, p)
            orphan = study.trials[-1]
            assert orphan.state == optuna.trial.TrialState.RUNNING
            # Lightning's logger closes its run as FAILED on the way out; a killed process leaves it RUNNING
            mlflow.MlflowClient().update_run(orphan.user_attrs["breastseg.mlflow_run"], status="RUNNING")
        run_worker(Settings.from_params(p), NAME, **kwargs)
        info, study = study_of(root, p)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert len(done) == 2
        finished[case] = [(t.params, t.value) for t in done]
        if case == "killed":
            assert study.trials[orphan.number].state == optuna.trial.TrialState.FAIL
            run = mlflow.MlflowClient().get_run(orphan.user_attrs["breastseg.mlflow_run"])
            assert run.info.status == "FAILED" and run.data.tags["optuna.state"] == "FAIL"
    assert finished["killed"] == finished["uninterrupted"]


class SimulatedKill(BaseException):
    """Not an Exception: nothing in the worker catches it, like a process killed by a signal."""


class KillInTrial(pl.Callback):
    def __init__(self, after_trials):
        self.after, self.seen = after_trials, 0

    def on_train_start(self, trainer, pl_module):
        self.seen += 1
        if self.seen > self.after:
            raise SimulatedKill()


def test_trials_record_heartbeats_so_a_dead_worker_elsewhere_is_failed(tmp_path):
    import time

    from breastseg.training.tune import _heartbeat

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/o.db", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage)
    silent, beating = study.ask(), study.ask()
    with _heartbeat(study, beating):
        time.sleep(0.2)
    time.sleep(2.5)  # the worker "died": no more heartbeats past the grace period
    optuna.storages.fail_stale_trials(study)
    states = {t.number: t.state for t in study.trials}
    assert states[beating.number] == optuna.trial.TrialState.FAIL
    assert states[silent.number] == optuna.trial.TrialState.RUNNING  # no heartbeat ever: not judged stale
