"""Final training: best params from the study, checkpoint/resume, MLflow logging and registration."""
from __future__ import annotations

import csv
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger

from .. import tracking
from ..config import CohortSettings, Experiment, RegisterSettings, Settings, TrainSettings, params_hash
from ..data.cohort import dvc_hash
from ..data.datamodule import SliceDataModule
from ..data.split import split_data_files
from ..evaluation.evaluate import SPLIT_BY_IMAGE_WARNING, split_check, split_tags
from ..io import atomic_path, write_json
from ..models.bundle import bundle_config, write_bundle
from .module import SegmentationModule
from ..paths import interim_beside

log = logging.getLogger(__name__)
CURVE_COLUMNS = ("epoch", "train_loss", "val_loss", "val_dice")


class CurveRecorder(Callback):
    """Writes the learning curve (one row per epoch) as CSV for DVC plots; survives a resume."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        rows = []
        if self.path.exists():
            with open(self.path) as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) < trainer.current_epoch]
        rows.append({"epoch": trainer.current_epoch, **{k: f"{float(m[k]):.6f}" for k in CURVE_COLUMNS[1:] if k in m}})
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=CURVE_COLUMNS)
                w.writeheader()
                w.writerows(rows)


@contextmanager
def ensemble_by_value():
    """Pickle breastseg's fold ensemble (:mod:`breastseg.models.ensemble`) with the model while the block runs, so
    that MLflow's logged model loads with torch, MONAI and MLflow alone, where breastseg is not installed (the
    networks themselves are MONAI's and pickle by reference)."""
    import cloudpickle

    from ..models import ensemble

    cloudpickle.register_pickle_by_value(ensemble)
    try:
        yield
    finally:
        cloudpickle.unregister_pickle_by_value(ensemble)


def hyperparameters(exp: Experiment, best_params: Path | None) -> TrainSettings:
    """Training settings: the experiment's ``train`` block overridden by the study's best params."""
    if best_params and best_params.exists():
        return exp.train.with_values(json.loads(best_params.read_text())["params"], source=best_params)
    return exp.train


def cluster_plugins(hp: TrainSettings) -> list[Any]:
    """Single-node DDP inside a one-task SLURM job (how the slurm executor runs a rule): Lightning starts one process
    per device itself, instead of waiting for srun to have started them. Several nodes keep SLURM's environment
    (the `train` rule then starts one srun task per device)."""
    from lightning.fabric.plugins.environments import LightningEnvironment

    devices = hp.devices
    one_task = "SLURM_JOB_ID" in os.environ and os.environ.get("SLURM_NTASKS", "1") == "1"
    ddp = "ddp" in str(hp.strategy) and isinstance(devices, int) and devices > 1
    return [LightningEnvironment()] if one_task and ddp and int(hp.num_nodes) == 1 else []


def make_trainer(hp: TrainSettings, max_epochs: int, logger: Any, callbacks: list[Callback], **kwargs: Any) -> pl.Trainer:
    """A Trainer from params: accelerator, devices, strategy, num_nodes (DDP needs no code change), precision.

    ``deterministic=True`` makes CPU runs bit-reproducible; on GPU some kernels (e.g. cuDNN convolutions'
    backward, scatter-adds) may still differ in the last bits between runs and between GPU models.
    """
    torch.set_num_threads(int(hp.threads))
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator=hp.accelerator,
        devices=hp.devices,
        strategy=hp.strategy,
        num_nodes=int(hp.num_nodes),
        plugins=cluster_plugins(hp) or None,
        precision=hp.precision,
        deterministic=True,
        logger=logger,
        callbacks=callbacks,
        gradient_clip_val=float(hp.gradient_clip_val),
        log_every_n_steps=1,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def module_kwargs(hp: TrainSettings, max_epochs: int, metric: str | None = None) -> dict[str, Any]:
    """SegmentationModule arguments from merged hyperparameters; ``metric``: the validation figure models are
    selected on (:func:`selection_metric`)."""
    kwargs = {"lr": float(hp.lr), "weight_decay": float(hp.weight_decay), "max_epochs": max_epochs,
              "class_weights": None if hp.class_weights is None else list(hp.class_weights),
              "optimizer": str(hp.optimizer), "schedule": str(hp.schedule), "momentum": float(hp.momentum)}
    if metric is not None:
        kwargs["metric"] = metric
    return kwargs


def selection_metric(register: RegisterSettings, exp: Experiment) -> str:
    """The validation figure checkpoints, early stopping and Optuna select on: ``register.metric`` when it is a
    Dice figure of ``exp`` (what the champion gate compares), else ``dice_mean``."""
    from .module import selection_metrics

    return register.metric if register.metric in selection_metrics(exp) else "dice_mean"


def is_rank_zero() -> bool:
    """True in the process that owns logging (rank 0 of the job; always true without DDP).

    Reads the variables the launchers set before Lightning starts: its own (LOCAL_RANK, NODE_RANK), torchrun (RANK)
    and srun (SLURM_PROCID, the global rank of each task of a multi-node job).
    """
    return all(int(os.environ.get(k, 0) or 0) == 0 for k in ("RANK", "NODE_RANK", "LOCAL_RANK", "SLURM_PROCID"))


def warm_start(module: SegmentationModule, registered: str, init_from: str) -> str | None:
    """``train.init_from: champion``: start from the current champion's weights (same network only).

    Returns what the training started from (``champion v<N>``), or None for a training from scratch: the
    setting is ``scratch``, there is no champion yet, or its network differs from this one.
    """
    if init_from != "champion":
        return None
    import mlflow

    from ..models.bundle import load_model

    try:
        version = mlflow.MlflowClient().get_model_version_by_alias(registered, "champion").version
    except mlflow.exceptions.MlflowException:
        log.info("init_from champion: %s has no champion yet, training from scratch", registered)
        return None
    champion = load_model(f"models:/{registered}/{version}", allow_pickle=True)
    try:
        module.net.load_state_dict(champion.net.state_dict())
    except RuntimeError as exc:
        log.warning("init_from champion: v%s has another network (%s), training from scratch", version,
                    str(exc).splitlines()[0])
        return None
    log.info("init_from champion: starting from %s version %s", registered, version)
    return f"champion v{version}"


def inference_settings(exp: Experiment, hp: TrainSettings, scored: list[tuple[torch.nn.Module, dict[str, Any]]],
                       record: Path) -> dict[str, Any]:
    """The inference settings a trained model's bundle records: test-time mirroring over the axes training mirrored
    (``inference.tta``) and the post-processing, each ``auto`` setting chosen on validation images
    (:func:`breastseg.models.segment.choose_postprocessing`; ``record``: the scores of each candidate, as JSON).
    ``scored``: (network, the validation slices it is scored on) pairs: one for a single model, one per fold (its
    held-out patients) for a fold ensemble."""
    from ..models.segment import choose_postprocessing, probabilities

    requested = exp.inference
    mirror = list(hp.augment.mirror) if requested.tta else []
    probs = np.concatenate([probabilities(net, val["image"], mirror) for net, val in scored])
    truth = [label for _, val in scored for label in val["native_label"]]
    shapes = np.concatenate([val["native_shape"] for _, val in scored])
    spacings = np.concatenate([val["native_spacing_mm"] for _, val in scored])
    chosen = choose_postprocessing(exp, probs, truth, shapes, spacings, requested)
    write_json(record, chosen)
    log.info("%s: post-processing on %d validation images: %s (score %.4f, without %.4f)", exp.name,
             chosen["validation"]["n_images"], {k: chosen[k] for k in ("keep_largest", "min_component", "empty_below")},
             chosen["validation"]["with"], chosen["validation"]["without"])
    return {"tta": bool(requested.tta), "mirror": mirror,
            **{k: chosen[k] for k in ("keep_largest", "min_component", "empty_below")}}


def training_tags(cohort: CohortSettings, exp: Experiment, split_file: Path, processed_dir: Path,
                  best_params: Path | None) -> dict[str, str]:
    """The lineage tags of a training run (and of its model version): commit, data, split and params hashes,
    whether the split could tell women apart, the DVC data hash and version, the best trial."""
    data_files = split_data_files(processed_dir, split_file)
    tags = tracking.lineage_tags(cohort.name, exp, split_file, data_files)
    interim = interim_beside(processed_dir, exp.dataset)
    split = split_check(cohort.patient_map, exp.dataset, split_file, interim)
    if split["by_image"] and is_rank_zero():
        log.warning("%s: %s (%s)", exp.name, SPLIT_BY_IMAGE_WARNING, split["reason"])
    tags.update(split_tags(split))
    cohort_dvc = dvc_hash(cohort.root)
    if cohort_dvc:
        tags["breastseg.data_hash"] = cohort_dvc
        tags["breastseg.data_hash_source"] = "dvc"
    versions = json.loads(Path(split_file).read_text()).get("data_versions") or []
    if versions:
        tags["breastseg.data_version"] = str(versions[-1])
    if best_params and best_params.exists():
        tags["breastseg.best_trial"] = str(json.loads(best_params.read_text()).get("trial"))
    return tags


def train_folds(s: Settings, name: str, *, split_file: Path, processed_dir: Path,
                best_params: Path | None, out_dir: Path, curve_csv: Path | None = None, seed: int | None = None,
                register: bool = True) -> dict[str, Any]:
    """``run.folds`` k >= 2: k networks, fold i holding out the i-th fold of the train and val patients
    (:func:`breastseg.data.split.fold_assignment`; ``out_dir/folds/<i>/``, MLflow runs nested under one
    ``train-<experiment>-folds`` run), their ensemble (:class:`breastseg.models.ensemble.FoldEnsemble`) registered
    as the model. Its post-processing is chosen on the out-of-fold predictions (each patient predicted by the
    network that did not see it); the bundle records the folds, so the champion gate scores it the same way."""
    import mlflow

    from ..data.slices import load_subset
    from ..data.split import fold_assignment, fold_split
    from ..models.bundle import load_bundle
    from ..models.ensemble import FoldEnsemble
    from ..data.ranges import training_ranges

    exp = s.experiments[name]
    hp = hyperparameters(exp, best_params)
    if seed is not None:
        hp = hp.with_values({"seed": int(seed)})
    k = int(s.run.folds)
    assignment = fold_assignment(split_file, k, int(s.split.seed))
    tracking.configure(s.tracking)
    tags = training_tags(s.cohort, exp, split_file, processed_dir, best_params)
    registered = tracking.model_name(name)
    run = mlflow.MlflowClient().create_run(tracking.experiment_id(s.tracking, name), run_name=f"train-{name}-folds",
                                           tags={**tags, "breastseg.stage": "train", "breastseg.seed": str(hp.seed),
                                                 "breastseg.folds": str(k)})
    run_id = run.info.run_id
    members, held_out = [], []
    for i in range(k):
        folder = Path(out_dir) / "folds" / str(i)
        fsplit = fold_split(split_file, assignment, i, folder / "split.json")
        member = train_experiment(s, name, split_file=fsplit, processed_dir=processed_dir,
                                  best_params=best_params, out_dir=folder, curve_csv=curve_csv if i == 0 else None,
                                  seed=hp.seed, register=False, fold=i, parent_run=run_id)
        net = load_bundle(Path(member["model_uri"])).net
        members.append((member, net))
        held_out.append((net, load_subset(processed_dir, fsplit, "val")))
    inference = inference_settings(exp, hp, held_out, Path(out_dir) / "postprocessing.json")  # out of fold
    ensemble = FoldEnsemble([net for _, net in members]).eval()
    interim = interim_beside(processed_dir, exp.dataset)
    ranges = training_ranges(exp.dataset, interim, list(assignment), processed_dir)
    config = bundle_config(s.evaluation, exp, tags, run_id, training_ranges=ranges, inference=inference)
    config["folds"] = {"k": k, "assignment": dict(sorted(assignment.items()))}
    bundle = write_bundle(ensemble, config, Path(out_dir) / "inference")
    sample = load_subset(processed_dir, split_file, "val")["image"][:2].astype(np.float32)
    oof_score = json.loads((Path(out_dir) / "postprocessing.json").read_text())["validation"]["with"]
    with mlflow.start_run(run_id=run_id):
        from ..environment import environment, mlflow_tags

        mlflow.set_tags(mlflow_tags(environment(precision=str(hp.precision))))
        mlflow.log_params({**tracking.run_params(exp, hp, selection_metric(s.register, exp)), "run.folds": k})
        mlflow.set_tags(tracking.flat_params({key: v for key, v in inference.items() if key != "tta"},
                                             "breastseg.chosen."))
        mlflow.log_metric("oof_dice_per_image", oof_score)
        mlflow.log_artifact(str(Path(out_dir) / "postprocessing.json"))
        tracking.log_split(run_id, *tracking.split_input(s.cohort.name, exp, split_file), context="training")
        mlflow.log_artifact(str(split_file), artifact_path="split")
        if not register:
            for f in bundle:
                mlflow.log_artifact(str(f), artifact_path="inference")
    mlflow.MlflowClient().set_terminated(run_id)
    result = {"experiment": name, "run_id": run_id, "model_name": registered, "version": None, "seed": int(hp.seed),
              "model_uri": str(Path(bundle[0]).parent), "folds": k, "oof_score": oof_score,
              "members": [m["run_id"] for m, _ in members], "hyperparameters": hp.as_dict(),
              "best_val_dice": float(np.mean([m["best_val_dice"] for m, _ in members]))}
    if register:
        version, model_id = log_and_register(ensemble, sample, bundle, run_id, registered, tags)
        result.update(version=version, model_id=model_id, model_uri=f"models:/{registered}/{version}")
        log.info("registered %s version %s (ensemble of %d folds) as challenger", registered, version, k)
    write_json(Path(out_dir) / "model.json", result)

    return result


def log_and_register(net: torch.nn.Module, sample: np.ndarray, bundle: list[Path], run_id: str, registered: str,
                     tags: dict[str, str]) -> tuple[str, str]:
    """Log ``net`` with its inference ``bundle`` as the model of run ``run_id``, register it as a new version of
    ``registered`` with alias ``challenger`` and the lineage ``tags``; return (version, logged model id)."""
    import mlflow
    from mlflow.models import infer_signature

    with torch.no_grad():
        out = net(torch.from_numpy(sample)).softmax(1).numpy()
    with mlflow.start_run(run_id=run_id), ensemble_by_value():
        info = mlflow.pytorch.log_model(
            net,
            name="model",
            signature=infer_signature(sample, out),
            input_example=sample,
            serialization_format="pickle",
            # the networks are MONAI's and pickle by reference: the logged model needs MONAI
            pip_requirements=["torch==2.13.0", "numpy", "monai==1.6.1"],
            registered_model_name=registered,
            extra_files=[str(f) for f in bundle],
        )
    client = mlflow.MlflowClient()
    version = str(info.registered_model_version)
    client.set_registered_model_alias(registered, "challenger", version)
    for k, v in tags.items():
        client.set_model_version_tag(registered, version, k, v)
    return version, info.model_id


def seeds_parent_run(seeds: Sequence[int], name: str, exp_id: str, out_dir: Path, *, fingerprint: str,
                     tags: dict[str, str]) -> str:
    """The MLflow parent run of this experiment's trainings over ``run.seeds`` (one per training set-up): created
    by whichever seed's job comes first, under a file lock beside the models, reused by the others."""
    import fcntl

    import mlflow

    root = out_dir if out_dir.parent.name != "seeds" else out_dir.parent.parent
    root.mkdir(parents=True, exist_ok=True)
    record = root / "seeds_parent.json"
    with open(root / ".seeds_parent.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        known = json.loads(record.read_text()) if record.exists() else {}
        if known.get("fingerprint") == fingerprint:
            return known["run_id"]
        run = mlflow.MlflowClient().create_run(exp_id, run_name=f"train-{name}-seeds", tags={
            **tags, "breastseg.stage": "train-seeds", "breastseg.seeds": ",".join(map(str, seeds))})
        mlflow.MlflowClient().set_terminated(run.info.run_id)
        write_json(record, {"run_id": run.info.run_id, "fingerprint": fingerprint})
        return run.info.run_id


def train_experiment(
    s: Settings,
    name: str,
    *,
    split_file: Path,
    processed_dir: Path,
    best_params: Path | None,
    out_dir: Path,
    curve_csv: Path | None = None,
    extra_callbacks: list[Callback] | None = None,
    seed: int | None = None,
    register: bool = True,
    fold: int | None = None,
    parent_run: str | None = None,
) -> dict[str, Any]:
    """Train ``name`` and register the model as a new version with alias ``challenger``.

    ``seed`` overrides ``train.seed`` (one of ``run.seeds``). ``register=False`` (the seeds after the first):
    the model is logged with its run and kept as an inference bundle in ``out_dir``, but not registered. With
    several ``run.seeds`` each training is a nested run under one parent run per experiment. With ``run.folds``
    k >= 2: :func:`train_folds` (``fold``: one member of it, nested under ``parent_run``).
    """
    import mlflow

    if fold is None and int(s.run.folds) >= 2:
        return train_folds(s, name, split_file=split_file, processed_dir=processed_dir, best_params=best_params,
                           out_dir=out_dir, curve_csv=curve_csv, seed=seed, register=register)
    exp = s.experiments[name]
    hp = hyperparameters(exp, best_params)
    if seed is not None:
        hp = hp.with_values({"seed": int(seed)})
    pl.seed_everything(int(hp.seed), workers=True)
    tracking.configure(s.tracking)
    exp_id = tracking.experiment_id(s.tracking, name)

    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    interim = interim_beside(processed_dir, exp.dataset)
    tags = training_tags(s.cohort, exp, split_file, processed_dir, best_params)
    # A checkpoint is resumed only by the same training: same settings, hyperparameters, split and data.
    fingerprint = params_hash({"exp": exp.as_dict(), "hp": hp.as_dict(), "split": tags["breastseg.split_hash"],
                               "data": tags["breastseg.data_hash"]})
    resume_file = out_dir / "resume.json"
    state = json.loads(resume_file.read_text()) if resume_file.exists() else {}
    resume = last.exists() and state.get("fingerprint") == fingerprint
    rank_zero = is_rank_zero()
    if rank_zero and not resume:
        for stale in ckpt_dir.glob("*.ckpt"):
            stale.unlink()
    if resume or not rank_zero:  # DDP ranks > 0 re-run this function: they join rank 0's run (and log nothing)
        run_id = state.get("run_id")
        if rank_zero:
            log.info("resuming %s from %s (MLflow run %s)", name, last, run_id)
    else:
        seeds = [int(x) for x in s.run.seeds]
        run_tags = {**tags, "breastseg.stage": "train", "breastseg.seed": str(hp.seed)}
        run_name = f"train-{name}"
        if parent_run is not None:  # a fold of train_folds
            run_tags.update({"mlflow.parentRunId": parent_run, "breastseg.fold": str(fold)})
            run_name = f"train-{name}-fold{fold}"
        elif len(seeds) > 1:
            parent = seeds_parent_run(seeds, name, exp_id, Path(out_dir), fingerprint=params_hash(
                {"exp": exp.as_dict(), "hp": {k: v for k, v in hp.as_dict().items() if k != "seed"}, "seeds": seeds,
                 "split": tags["breastseg.split_hash"], "data": tags["breastseg.data_hash"]}), tags=tags)
            run_tags["mlflow.parentRunId"] = parent
            run_name = f"train-{name}-seed{hp.seed}"
        run = mlflow.MlflowClient().create_run(exp_id, run_name=run_name, tags=run_tags)
        run_id = run.info.run_id
        write_json(resume_file, {"run_id": run_id, "fingerprint": fingerprint})

    dm = SliceDataModule.from_params(exp, processed_dir, split_file)
    module = SegmentationModule(exp, **module_kwargs(hp, int(hp.max_epochs), selection_metric(s.register, exp)))
    if not resume:
        warm = warm_start(module, tracking.model_name(name), str(hp.init_from))
        if warm and rank_zero:
            mlflow.MlflowClient().set_tag(run_id, "breastseg.init_from", warm)
    logger = MLFlowLogger(experiment_name=name, tracking_uri=s.tracking.mlflow_uri, run_id=run_id)
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_dice", mode="max", save_last=True)
    callbacks: list[Callback] = [
        checkpoint,
        EarlyStopping(monitor="val_dice", mode="max", patience=int(hp.early_stopping_patience)),
        LearningRateMonitor(logging_interval="epoch"),
        *(extra_callbacks or []),
    ]
    if curve_csv:
        callbacks.append(CurveRecorder(curve_csv))
    trainer = make_trainer(hp, int(hp.max_epochs), logger, callbacks)
    trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None)
    if not trainer.is_global_zero:
        return {}

    best_path = checkpoint.best_model_path or str(last)
    best = SegmentationModule.load_from_checkpoint(best_path, map_location="cpu", weights_only=False)
    net = best.net.eval().float().cpu()
    dm.setup()
    sample = dm.data["val"]["image"][:2].astype(np.float32)
    registered = tracking.model_name(name)
    # The inference bundle (config + state dict) travels inside the model: `breastseg predict` rebuilds the network
    # from it and loads tensors only (no unpickling), with the preprocessing settings this model was trained with.
    # The training patients' geometry (from conversion's sidecars, no image read): predict warns outside it.
    from ..data.split import subset_patients
    from ..data.ranges import training_ranges

    ranges = training_ranges(exp.dataset, interim, subset_patients(split_file, "train"), processed_dir)
    inference = inference_settings(exp, hp, [(net, dm.data["val"])], out_dir / "postprocessing.json")
    bundle = write_bundle(net, bundle_config(s.evaluation, exp, tags, run_id, training_ranges=ranges, inference=inference),
                          out_dir / "inference")
    with mlflow.start_run(run_id=run_id):
        from ..environment import environment, mlflow_tags

        # torch version and CPU instruction sets: same fingerprint, bit-identical results on CPU
        mlflow.set_tags(mlflow_tags(environment(precision=str(hp.precision))))
        mlflow.log_params(tracking.run_params(exp, hp, selection_metric(s.register, exp)))
        # chosen after training on the validation images (the params stay those trials share): tags
        mlflow.set_tags(tracking.flat_params({k: v for k, v in inference.items() if k != "tta"}, "breastseg.chosen."))
        mlflow.log_artifact(str(out_dir / "postprocessing.json"))
        tracking.log_split(run_id, *tracking.split_input(s.cohort.name, exp, split_file), context="training")
        mlflow.log_artifact(str(split_file), artifact_path="split")
        mlflow.log_artifact(best_path, artifact_path="checkpoints")
        if not register:  # a further seed: its bundle in out_dir serves evaluation; no registry entry
            for f in bundle:
                mlflow.log_artifact(str(f), artifact_path="inference")
    best_score = float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else float("nan")
    if not register:
        result = {"experiment": name, "run_id": run_id, "model_name": registered, "version": None,
                  "seed": int(hp.seed), "model_uri": str(Path(bundle[0]).parent),
                  "best_val_dice": best_score, "hyperparameters": hp.as_dict()}
        write_json(out_dir / "model.json", result)
        resume_file.unlink(missing_ok=True)
        log.info("trained %s seed %s, not registered (val Dice %.3f)", name, hp.seed, best_score)
        return result
    version, model_id = log_and_register(net, sample, bundle, run_id, registered, tags)
    result = {"experiment": name, "run_id": run_id, "model_name": registered, "version": version,
              "model_id": model_id,  # MLflow's logged model: evaluation runs link it
              "seed": int(hp.seed), "model_uri": f"models:/{registered}/{version}", "best_val_dice": best_score,
              "hyperparameters": hp.as_dict()}
    write_json(out_dir / "model.json", result)
    resume_file.unlink(missing_ok=True)
    log.info("registered %s version %s as challenger (val Dice %.3f)", registered, version, best_score)
    return result
