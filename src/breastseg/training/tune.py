"""Optuna search: one study per experiment, TPE + pruning, each trial a nested MLflow run.

Three steps, so that several workers can share one study without racing:
``open_study`` creates the study and its MLflow parent run once; ``run_worker`` (any number of processes, on
any machines sharing the storage) runs trials until the study holds ``tune.n_trials`` finished ones (COMPLETE
or PRUNED, so a rerun after a crash completes the study instead of restarting it); ``close_study`` writes the
best parameters for the ``train`` rule and closes the parent run.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import optuna

from .. import tracking
from ..config import Experiment, Settings, TrackingSettings, trial_epochs
from ..data.split import split_data_files
from ..io import write_json

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
        return optuna.pruners.HyperbandPruner(min_resource=1)
    if kind == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)


def study_name(name: str, exp: Experiment, tune: dict[str, Any], data_hash: str) -> str:
    """``breastseg-<experiment>-<key>``: the key changes with the experiment's settings, the search settings or
    the data, so a changed setup gets a fresh study while a rerun of the same setup completes the same one."""
    from ..config import params_hash

    return f"breastseg-{name}-{params_hash({'experiment': exp.as_dict(), 'tune': tune, 'data': data_hash})[:8]}"


def load_study(stores: TrackingSettings, pruner: str, study: str, seed: int) -> optuna.Study:
    storage = tracking.optuna_storage(stores, heartbeat_interval=30, grace_period=120)
    return optuna.create_study(
        study_name=study, storage=storage, direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed), pruner=make_pruner(pruner),
        load_if_exists=True,
    )


def open_study(s: Settings, name: str, *, split_file: Path, processed_dir: Path, out_json: Path) -> dict:
    """Create (or reopen) the study and its MLflow parent run; write their ids to ``out_json``."""
    import mlflow

    exp = s.experiments[name]
    tags = tracking.lineage_tags(s.cohort.name, exp, split_file, split_data_files(processed_dir, split_file))
    tune = {k: v for k, v in s.tune.as_dict().items() if k != "workers" and not (k == "max_epochs" and v is None)}
    study = load_study(s.tracking, s.tune.pruner, study_name(name, exp, tune, tags["breastseg.data_hash"]),
                       int(exp.train.seed))
    tracking.configure(s.tracking)
    exp_id = tracking.experiment_id(s.tracking, name)
    client = mlflow.MlflowClient()
    found = client.search_runs([exp_id], filter_string=f"tags.`breastseg.study` = '{study.study_name}' and "
                               "tags.`breastseg.stage` = 'tune'", max_results=1)
    if found:
        parent = found[0].info.run_id
        client.update_run(parent, status="RUNNING")
    else:
        parent = client.create_run(exp_id, run_name=f"study-{study.study_name}",
                                   tags={**tags, "breastseg.study": study.study_name, "breastseg.stage": "tune"}).info.run_id
        client.log_param(parent, "tune.n_trials", s.tune.n_trials)
        client.log_param(parent, "tune.pruner", s.tune.pruner)
    result = {"experiment": name, "study": study.study_name, "parent_run_id": parent, "experiment_id": exp_id}
    write_json(out_json, result)
    return result


def _claim(study: optuna.Study, trial: optuna.Trial, n_trials: int) -> bool:
    """True if this trial is among the first ``n_trials`` finished-or-running ones (by trial number)."""
    live = sorted(t.number for t in study.get_trials(deepcopy=False, states=(*FINISHED, optuna.trial.TrialState.RUNNING)))
    return trial.number in live[:n_trials]


def _heartbeat(study: optuna.Study, trial: optuna.Trial):
    """Record the running trial's heartbeat in the storage (as ``study.optimize`` does; ask/tell does not), so
    that ``fail_stale_trials`` on any machine fails the trials of a worker that died elsewhere."""
    import contextlib

    try:
        from optuna.storages._heartbeat import get_heartbeat_thread
    except ImportError:  # pragma: no cover - a future Optuna without it: the same-worker rule still applies
        return contextlib.nullcontext()
    return get_heartbeat_thread(trial._trial_id, study._storage)


def fail_orphans(study: optuna.Study, worker: int, client: Any = None) -> list[int]:
    """Mark FAIL the trials this worker left RUNNING when it was killed, in the study and in MLflow.

    Snakemake reruns a worker's job only when its earlier process is gone, so those trials run nowhere; they
    are failed (never counted as done) and their slots are tried again. Orphans of workers on other machines
    are failed by the storage heartbeat (``fail_stale_trials``).
    """
    orphans = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
               if t.user_attrs.get("breastseg.worker") == worker]
    for t in orphans:
        study.tell(t.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        rid = t.user_attrs.get("breastseg.mlflow_run")
        if client is not None and rid:
            client.set_tag(rid, "optuna.state", "FAIL")
            client.set_terminated(rid, "FAILED")
        log.warning("trial %d was left running by an interrupted worker %d: failed, its slot runs again",
                    t.number, worker)
    return [t.number for t in orphans]


def run_worker(s: Settings, name: str, *, study_json: Path, split_file: Path, processed_dir: Path,
               out_json: Path, work_dir: Path, worker: int = 0, extra_callbacks: list | None = None) -> dict:
    """Run trials until the study holds ``tune.n_trials`` finished ones; write this worker's summary."""
    import lightning.pytorch as pl
    import mlflow
    from lightning.pytorch.loggers import MLFlowLogger
    from optuna_integration import PyTorchLightningPruningCallback

    from ..data.datamodule import SliceDataModule
    from .module import SegmentationModule
    from .train import make_trainer, module_kwargs, selection_metric

    exp = s.experiments[name]
    cfg = s.tune
    n_trials = int(cfg.n_trials)
    hp0 = exp.train
    info = json.loads(study_json.read_text())
    study = load_study(s.tracking, cfg.pruner, info["study"], int(hp0.seed) + worker)
    tracking.configure(s.tracking)
    client = mlflow.MlflowClient()
    tags = tracking.lineage_tags(s.cohort.name, exp, split_file, split_data_files(processed_dir, split_file))
    dm = SliceDataModule.from_params(exp, processed_dir, split_file)
    dm.setup()
    max_epochs = trial_epochs(cfg, exp)
    split_input = tracking.split_input(s.cohort.name, exp, split_file)
    mine: list[int] = []
    optuna.storages.fail_stale_trials(study)
    fail_orphans(study, worker, client)
    live_states = (*FINISHED, optuna.trial.TrialState.RUNNING)
    while (slot := len(study.get_trials(deepcopy=False, states=live_states))) < n_trials:
        # The sampler is seeded by worker and slot (not by how many asks this process made), so a slot run
        # again after a crash samples what the uninterrupted run sampled, given the same finished trials.
        study.sampler = optuna.samplers.TPESampler(seed=int(hp0.seed) + 1000 * worker + slot)
        trial = study.ask()
        trial.set_user_attr("breastseg.worker", worker)
        trial.set_user_attr("breastseg.slot", slot)
        if not _claim(study, trial, n_trials):
            study.tell(trial, state=optuna.trial.TrialState.FAIL)  # another worker took the last slot
            break
        hp = hp0.with_values(suggest(trial, cfg.as_dict()["space"]))
        pl.seed_everything(int(hp.seed) + slot, workers=True)
        rid = client.create_run(info["experiment_id"], run_name=f"trial-{trial.number}",
                                tags={**tags, "mlflow.parentRunId": info["parent_run_id"],
                                      "breastseg.study": info["study"], "breastseg.trial": str(trial.number),
                                      "breastseg.worker": str(worker), "breastseg.stage": "trial"}).info.run_id
        trial.set_user_attr("breastseg.mlflow_run", rid)
        for k, v in tracking.run_params(exp, hp, selection_metric(s.register, exp)).items():  # named as in the final training
            client.log_param(rid, k, v)
        tracking.log_split(rid, *split_input, context="training")
        module = SegmentationModule(exp, **module_kwargs(hp, max_epochs, selection_metric(s.register, exp)))
        logger = MLFlowLogger(experiment_name=name, tracking_uri=s.tracking.mlflow_uri, run_id=rid)
        callbacks = [PyTorchLightningPruningCallback(trial, monitor="val_dice"), *(extra_callbacks or [])]
        # Trials run one process each (the search scales by adding workers); DDP settings apply to `train`.
        trainer = make_trainer(hp.with_values({"strategy": "auto", "devices": 1, "num_nodes": 1}), max_epochs, logger, callbacks,
                               enable_checkpointing=False,
                               default_root_dir=str(work_dir), enable_progress_bar=False)
        try:
            with _heartbeat(study, trial):
                trainer.fit(module, datamodule=dm)
            value = float(trainer.callback_metrics["val_dice"])
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            client.set_tag(rid, "optuna.state", "PRUNED")
            client.set_terminated(rid, "KILLED")
            log.info("trial %d pruned", trial.number)
        except Exception:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            client.set_tag(rid, "optuna.state", "FAIL")
            client.set_terminated(rid, "FAILED")
            raise
        else:
            study.tell(trial, value)
            client.set_tag(rid, "optuna.state", "COMPLETE")
            client.log_metric(rid, "objective_val_dice", value)
            client.set_terminated(rid, "FINISHED")
            log.info("trial %d: val Dice %.4f", trial.number, value)
        mine.append(trial.number)
    result = {"experiment": name, "worker": worker, "trials": mine,
              "n_finished": sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))}
    write_json(out_json, result)
    return result


def close_study(s: Settings, name: str, *, study_json: Path, out_json: Path) -> dict:
    """Write the best trial's parameters (read by ``train``) and close the parent run."""
    import mlflow

    info = json.loads(study_json.read_text())
    stores = s.tracking
    study = load_study(stores, s.tune.pruner, info["study"], 0)
    finished = [t for t in study.trials if t.state in FINISHED]
    completed = [t for t in finished if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise RuntimeError(f"study {study.study_name}: no completed trial (all {len(finished)} pruned or failed)")
    best = study.best_trial
    tracking.configure(stores)
    client = mlflow.MlflowClient()
    client.log_metric(info["parent_run_id"], "best_val_dice", float(best.value))
    client.set_tag(info["parent_run_id"], "breastseg.best_trial", str(best.number))
    client.set_tag(info["parent_run_id"], "breastseg.n_pruned",
                   str(sum(t.state == optuna.trial.TrialState.PRUNED for t in finished)))
    client.set_terminated(info["parent_run_id"], "FINISHED")
    result = {"experiment": name, "study": study.study_name, "trial": best.number, "value": best.value,
              "params": best.params, "n_finished": len(finished)}
    write_json(out_json, result)
    return result


def tune_experiment(s: Settings, name: str, *, split_file: Path, processed_dir: Path, out_json: Path,
                    work_dir: Path, study_json: Path | None = None, worker_json: Path | None = None) -> dict:
    """All three steps in one process (the study's only worker): open, run the trials, write the best
    parameters to ``out_json``. ``study_json`` / ``worker_json`` default to ``work_dir``/study.json, worker-0.json."""
    study_json = study_json or work_dir / "study.json"
    open_study(s, name, split_file=split_file, processed_dir=processed_dir, out_json=study_json)
    run_worker(s, name, study_json=study_json, split_file=split_file, processed_dir=processed_dir,
               out_json=worker_json or work_dir / "worker-0.json", work_dir=work_dir)
    return close_study(s, name, study_json=study_json, out_json=out_json)
