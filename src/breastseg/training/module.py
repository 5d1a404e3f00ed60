"""LightningModule: masked Dice+CE training; validation scores what evaluation and the champion gate score.

Validation keeps tp/fp/fn per image and class (``validation_step``; each batch carries the images' indices into
the val subset, see :class:`breastseg.data.datamodule.SliceDataModule`) and computes at the end of the epoch the
Dice figures of :func:`breastseg.evaluation.metrics.dice_figures`, the function evaluation's ``score`` uses:
per patient (pixels of the patient's images pooled), ultrasound images without a mass reported apart. ``val_dice``
is the figure named by ``metric`` (default ``dice_mean``, the default ``register.metric``: the mean over
foreground classes of the mean over patients), so checkpoints, early stopping, Optuna pruning and the champion gate
select on one quantity. Also logged: ``val_dice_<class>``, ``val_dice_median`` and ``val_dice_per_slice_mean``
(MRI) or ``val_dice_per_mass_mean`` (ultrasound). A figure that is undefined (no foreground anywhere in the val
images) is logged as 0.
"""
from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from ..config import Experiment
from ..labels import NOT_ANNOTATED
from ..models.factory import build_model
from .loss import MaskedDiceCELoss, deep_supervision_loss

#: ``train.optimizer`` and ``train.schedule`` values (the first of each: what models trained before them used).
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "poly")


def selection_metrics(exp: Experiment) -> tuple[str, ...]:
    """The headline figures ``val_dice`` can follow for ``exp`` (all higher-is-better Dice figures)."""
    unit = "mass" if exp.dataset == "us" else "slice"
    names = exp.class_names
    return ("dice_mean", "dice_median", *(f"dice_{n}" for n in names[1:]), f"dice_per_{unit}_mean",
            f"dice_per_{unit}_median")


def image_counts(pred: torch.Tensor, y: torch.Tensor, classes: int) -> torch.Tensor:
    """(B, classes - 1, 3) tp, fp, fn per image and foreground class over annotated pixels (torch twin of
    :func:`breastseg.evaluation.metrics.overlap_counts`)."""
    valid = y != NOT_ANNOTATED
    out = []
    for c in range(1, classes):
        p, t = (pred == c) & valid, (y == c) & valid
        out.append(torch.stack([(p & t).flatten(1).sum(1), (p & ~t).flatten(1).sum(1),
                                (~p & t).flatten(1).sum(1)], dim=1))
    return torch.stack(out, dim=1).long()


class PolyDecay:
    """nnU-Net's learning-rate factor at ``epoch``: (1 - epoch / epochs)^0.9 (0 from ``epochs`` on); a class, not
    a closure, so that the scheduler's state pickles."""

    def __init__(self, epochs: int, exponent: float = 0.9):
        self.epochs, self.exponent = epochs, exponent

    def __call__(self, epoch: int) -> float:
        return max(0.0, 1.0 - epoch / self.epochs) ** self.exponent


class SegmentationModule(pl.LightningModule):
    def __init__(self, exp: Experiment | dict[str, Any], lr: float, weight_decay: float, max_epochs: int,
                 class_weights: list[float] | None = None, metric: str = "dice_mean", optimizer: str = "adamw",
                 schedule: str = "cosine", momentum: float = 0.99):
        super().__init__()
        # A checkpoint records the experiment as a plain dict (its hyperparameters): loading one passes that dict
        if not isinstance(exp, Experiment):
            exp = Experiment.from_dict(exp)
        if metric not in selection_metrics(exp):
            raise ValueError(f"val_dice cannot follow '{metric}': choose one of {', '.join(selection_metrics(exp))}")
        if optimizer not in OPTIMIZERS or schedule not in SCHEDULES:
            raise ValueError(f"unknown optimizer '{optimizer}' or schedule '{schedule}' (optimizers: "
                             f"{', '.join(OPTIMIZERS)}; schedules: {', '.join(SCHEDULES)})")
        # A checkpoint saved before optimizer, schedule and momentum existed lacks them: the defaults, what it used.
        self.save_hyperparameters({"exp": exp.as_dict(), "lr": lr, "weight_decay": weight_decay,
                                   "max_epochs": max_epochs, "class_weights": class_weights, "metric": metric,
                                   "optimizer": optimizer, "schedule": schedule, "momentum": momentum},
                                  logger=False)  # MLflow gets the settings once, by their params names (run_params)
        self.exp = exp
        self.metric = metric
        self.net = build_model(exp)
        self.loss = MaskedDiceCELoss(exp.classes, class_weights=class_weights)
        self._counts: torch.Tensor | None = None
        self._seen: torch.Tensor | None = None
        self._patients: np.ndarray | None = None
        self._unindexed: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) logits: of a deeply supervised network in training mode (which returns every head,
        (B, K, C, H, W)), the full-resolution output alone."""
        out = self.net(x)
        return out[:, 0] if out.dim() == x.dim() + 1 else out

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        loss = deep_supervision_loss(self.loss, self.net(x), y)  # every head of a deeply supervised network
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        return loss

    def on_validation_epoch_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        patients = getattr(dm, "val_patients", None)
        self._patients = None if patients is None else np.asarray(patients).astype(str)
        n = 0 if self._patients is None else len(self._patients)
        self._counts = torch.zeros(n, self.exp.classes - 1, 3, dtype=torch.long, device=self.device)
        self._seen = torch.zeros(n, dtype=torch.long, device=self.device)
        self._unindexed = []

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        x, y = batch[0], batch[1]
        logits = self(x)
        self.log("val_loss", self.loss(logits, y), on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        counts = image_counts(logits.argmax(1), y, self.exp.classes)
        if len(batch) > 2 and self._patients is not None:
            idx = batch[2].long()
            self._counts[idx] = counts  # assignment, not addition: DDP's padded samples repeat an image
            self._seen[idx] = 1
        else:  # batches without image indices (not from SliceDataModule): one pool, as one patient
            self._unindexed.append(counts)

    def validation_figures(self) -> dict[str, Any]:
        """:func:`~breastseg.evaluation.metrics.dice_figures` of this epoch's val images (all ranks)."""
        from ..evaluation.metrics import dice_figures

        if self._unindexed:
            counts = torch.cat(self._unindexed).cpu().numpy()
            patients = np.full(len(counts), "all")
        else:
            counts, seen = self._counts, self._seen
            if self._trainer is not None and self.trainer.world_size > 1:
                counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
                seen = self.trainer.strategy.reduce(seen, reduce_op="sum")
            keep = (seen > 0).cpu().numpy()
            counts = (counts // seen.clamp(min=1)[:, None, None]).cpu().numpy()[keep]
            patients = self._patients[keep]
        return dice_figures(counts, patients, no_mass_apart=self.exp.dataset == "us")

    def on_validation_epoch_end(self) -> None:
        figs = self.validation_figures()
        names = self.exp.class_names
        unit = "mass" if self.exp.dataset == "us" else "slice"
        values = {"dice_mean": figs["dice_mean"], "dice_median": figs["dice_median"],
                  f"dice_per_{unit}_mean": figs["image_mean_over_classes"],
                  f"dice_per_{unit}_median": figs["image_median"],
                  **{f"dice_{names[c]}": float(figs["class_mean"][c - 1]) for c in range(1, self.exp.classes)}}
        values = {k: 0.0 if not math.isfinite(v) else float(v) for k, v in values.items()}
        for c in range(1, self.exp.classes):
            self.log(f"val_dice_{names[c]}", values[f"dice_{names[c]}"], sync_dist=False)
        self.log("val_dice_median", values["dice_median"], sync_dist=False)
        self.log(f"val_dice_per_{unit}_mean", values[f"dice_per_{unit}_mean"], sync_dist=False)
        self.log("val_dice", values[self.metric], prog_bar=True, sync_dist=False)

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW or nnU-Net's SGD (Nesterov momentum); cosine annealing or nnU-Net's poly decay
        lr x (1 - epoch / max_epochs)^0.9, both stepped once per epoch."""
        hp = self.hparams
        epochs = max(1, hp.max_epochs)
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(self.parameters(), lr=hp.lr, momentum=hp.momentum, nesterov=True,
                                  weight_decay=hp.weight_decay)
        else:
            opt = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.schedule == "poly":
            sched = torch.optim.lr_scheduler.LambdaLR(opt, PolyDecay(epochs))
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
