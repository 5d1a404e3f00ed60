"""Dice + cross-entropy that ignores unannotated pixels (label 255)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..labels import NOT_ANNOTATED


class MaskedDiceCELoss(torch.nn.Module):
    """Soft Dice over foreground classes plus cross-entropy, both restricted to pixels with label != 255."""

    def __init__(self, classes: int, class_weights: list[float] | None = None, smooth: float = 1e-5):
        super().__init__()
        self.classes, self.smooth = classes, smooth
        w = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("weight", w, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        valid = target != NOT_ANNOTATED
        if not valid.any():
            return logits.sum() * 0.0
        ce = F.cross_entropy(logits, target, weight=self.weight, ignore_index=NOT_ANNOTATED)
        probs = logits.softmax(1) * valid.unsqueeze(1)
        onehot = F.one_hot(torch.where(valid, target, 0), self.classes).permute(0, 3, 1, 2).float()
        onehot = onehot * valid.unsqueeze(1)
        dims = (0, 2, 3)
        inter = (probs * onehot).sum(dims)[1:]
        denom = (probs.sum(dims) + onehot.sum(dims))[1:]
        dice = (2 * inter + self.smooth) / (denom + self.smooth)
        return ce + (1 - dice.mean())
