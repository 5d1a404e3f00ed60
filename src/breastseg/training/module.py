"""LightningModule: masked Dice+CE training, epoch-level Dice per class on validation."""
from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from ..models.factory import build_model
from .loss import IGNORE, MaskedDiceCELoss


class SegmentationModule(pl.LightningModule):
    def __init__(self, exp: dict[str, Any], lr: float = 1e-3, weight_decay: float = 0.0, max_epochs: int = 10,
                 class_weights: list[float] | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.exp = exp
        self.net = build_model(exp)
        self.loss = MaskedDiceCELoss(exp["classes"], class_weights=class_weights)
        self._inter = torch.zeros(exp["classes"] - 1)
        self._denom = torch.zeros(exp["classes"] - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.loss(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._inter = torch.zeros(self.exp["classes"] - 1, device=self.device)
        self._denom = torch.zeros(self.exp["classes"] - 1, device=self.device)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", self.loss(logits, y), on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        pred = logits.argmax(1)
        valid = y != IGNORE
        for c in range(1, self.exp["classes"]):
            p, t = (pred == c) & valid, (y == c) & valid
            self._inter[c - 1] += (p & t).sum()
            self._denom[c - 1] += p.sum() + t.sum()

    def on_validation_epoch_end(self) -> None:
        dice = torch.where(self._denom > 0, 2 * self._inter / self._denom.clamp(min=1), torch.ones_like(self._denom))
        dice = self.trainer.strategy.reduce(dice, reduce_op="mean")
        names = self.exp.get("class_names") or [f"class{i}" for i in range(self.exp["classes"])]
        for c in range(1, self.exp["classes"]):
            self.log(f"val_dice_{names[c]}", dice[c - 1], sync_dist=False)
        self.log("val_dice", dice.mean(), prog_bar=True, sync_dist=False)

    def configure_optimizers(self) -> dict[str, Any]:
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.hparams.max_epochs))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
