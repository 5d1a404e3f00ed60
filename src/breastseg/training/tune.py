"""Optuna search: one study per experiment, TPE + pruning, each trial a nested MLflow run."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import optuna
from lightning.pytorch.loggers import MLFlowLogger
from optuna_integration import PyTorchLightningPruningCallback

from .. import tracking
from ..config import experiment
from ..data.datamodule import SliceDataModule
from ..io import write_json
from .module import SegmentationModule
from .train import make_trainer

log = logging.getLogger(__name__)
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def suggest(trial: optuna.Trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Sample one point of the search space declared in params.yaml (tune.space)."""
    out: dict[str, Any] = {}
    for name, spec in space.items():
        if spec["type"] == "float":
            out[name] = trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))
        elif spec["type"] == "int":
            out[name] = trial.suggest_int(name, int(spec["low"]), int(spec["high"]), log=spec.get("log", False))
        else:
            out[name] = trial.suggest_categorical(name, spec["choices"])
    return out


def make_pruner(kind: str) -> optuna.pruners.BasePruner:
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if kind == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)


def parent_run_id(exp_id: str, study_name: str, tags: dict[str, str]) -> str:
    """The study's parent run, reused across reruns so every trial nests under one run."""
    import mlflow

    client = mlflow.MlflowClient()
    found = client.search_runs([exp_id], filter_string=f"tags.`breastseg.study` = '{study_name}'", max_results=1,
                               order_by=["attributes.start_time ASC"])
    if found:
        return found[0].info.run_id
    run = client.create_run(exp_id, run_name=f"study-{study_name}",
                            tags={**tags, "breastseg.study": study_name, "breastseg.stage": "tune"})
    return run.info.run_id


def tune_experiment(params: dict[str, Any], name: str, *, split_file: Path, processed_dir: Path, out_json: Path,
                    work_dir: Path) -> dict[str, Any]:
    """Run trials until the study has ``tune.n_trials`` finished ones; write the best params to ``out_json``."""
    import mlflow

    exp = experiment(params, name)
    cfg = params["tune"]
    hp0 = exp["train"]
    tracking.configure(params)
    exp_id = tracking.experiment_id(params, name)
    study_name = f"breastseg-{name}"
    study = optuna.create_study(
        study_name=study_name, storage=params["tracking"]["optuna_storage"], direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=int(hp0["seed"])), pruner=make_pruner(cfg.get("pruner", "median")),
        load_if_exists=True,
    )
    data_files = sorted(processed_dir.glob("*.npz"))
    tags = tracking.lineage_tags(params, exp, split_file, data_files)
    parent = parent_run_id(exp_id, study_name, tags)
    dm = SliceDataModule(processed_dir, split_file, batch_size=int(hp0["batch_size"]),
                         num_workers=int(hp0.get("num_workers", 0)), seed=int(hp0["seed"]))
    dm.setup()
    max_epochs = int(cfg.get("max_epochs", hp0["max_epochs"]))
    client = mlflow.MlflowClient()

    def objective(trial: optuna.Trial) -> float:
        hp = {**hp0, **suggest(trial, cfg.get("space", {}))}
        pl.seed_everything(int(hp["seed"]) + trial.number, workers=True)
        run = client.create_run(exp_id, run_name=f"trial-{trial.number}",
                                tags={**tags, "mlflow.parentRunId": parent, "breastseg.study": study_name,
                                      "breastseg.trial": str(trial.number), "breastseg.stage": "trial"})
        rid = run.info.run_id
        for k, v in tracking.flat_params({"trial": hp}).items():
            client.log_param(rid, k, v)
        module = SegmentationModule(exp, lr=float(hp["lr"]), weight_decay=float(hp["weight_decay"]), max_epochs=max_epochs)
        logger = MLFlowLogger(experiment_name=name, tracking_uri=tracking.mlflow_uri(params), run_id=rid)
        trainer = make_trainer(hp, max_epochs, logger, [PyTorchLightningPruningCallback(trial, monitor="val_dice")],
                               enable_checkpointing=False, default_root_dir=str(work_dir))
        try:
            trainer.fit(module, datamodule=dm)
        except optuna.TrialPruned:
            client.set_tag(rid, "optuna.state", "PRUNED")
            client.set_terminated(rid, "KILLED")
            raise
        except Exception:
            client.set_tag(rid, "optuna.state", "FAIL")
            client.set_terminated(rid, "FAILED")
            raise
        value = float(trainer.callback_metrics["val_dice"])
        client.set_tag(rid, "optuna.state", "COMPLETE")
        client.set_terminated(rid, "FINISHED")
        return value

    done = sum(t.state in FINISHED for t in study.trials)
    remaining = max(0, int(cfg["n_trials"]) - done)
    log.info("study %s: %d finished trials, running %d more", study_name, done, remaining)
    if remaining:
        study.optimize(objective, n_trials=remaining, catch=())
    best = study.best_trial
    client.log_metric(parent, "best_val_dice", float(best.value))
    client.set_tag(parent, "breastseg.best_trial", str(best.number))
    client.set_terminated(parent, "FINISHED")
    result = {"experiment": name, "study": study_name, "trial": best.number, "value": best.value,
              "params": best.params, "n_finished": sum(t.state in FINISHED for t in study.trials)}
    write_json(out_json, result)
    return result
