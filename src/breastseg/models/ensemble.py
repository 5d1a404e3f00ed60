"""A fold ensemble (``run.folds``): the members' class probabilities averaged, as nnU-Net ensembles its folds."""
from __future__ import annotations

import torch


class FoldEnsemble(torch.nn.Module):
    """The ``k`` networks trained on the folds of the train and val patients; ``forward`` gives the log of the mean
    of their softmax probabilities, so that a softmax (or argmax) downstream sees the averaged probabilities."""

    def __init__(self, members: list[torch.nn.Module]):
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.stack([m(x).float().softmax(1) for m in self.members]).mean(0)
        return mean.clamp_min(1e-12).log()
