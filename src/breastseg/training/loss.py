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


def deep_supervision_weights(heads: int) -> torch.Tensor:
    """nnU-Net's weights of ``heads`` outputs, full resolution first: 1, 1/2, 1/4, ... normalised to sum 1."""
    w = 0.5 ** torch.arange(heads, dtype=torch.float64)
    return (w / w.sum()).float()


def deep_supervision_loss(loss: torch.nn.Module, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``loss`` of a network's output against ``target`` (B, H, W): of (B, C, H, W) logits as it is; of a deeply
    supervised network's (B, K, C, H, W) (MONAI's DynUNet in training: the full-resolution output first, then the
    lower decoder outputs upsampled to full size), the sum over the K heads weighted by
    :func:`deep_supervision_weights`."""
    if outputs.dim() == target.dim() + 1:
        return loss(outputs, target)
    heads = outputs.unbind(1)
    weights = deep_supervision_weights(len(heads)).tolist()
    return sum(w * loss(h, target) for w, h in zip(weights, heads))
