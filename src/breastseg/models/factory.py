"""The networks (MONAI's definitions, :mod:`.networks`): U-Net for BPE/FGT MRI, attention-gated U-Net (Oktay et al. 2018)
for ultrasound."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ..config import Experiment


def build_model(exp: Experiment) -> torch.nn.Module:
    """A 2-D network for ``exp``: in = len(channels), out = classes, widths = model.features."""
    from .networks import AttentionUnet, UNet

    m = exp.model
    features = list(m.features)
    strides = [2] * (len(features) - 1)
    common = dict(spatial_dims=2, in_channels=len(exp.channels), out_channels=exp.classes,
                  channels=features, strides=strides, dropout=float(m.dropout or 0.0))
    if m.name == "unet":
        return UNet(num_res_units=1, **common)
    if m.name == "attention_unet":
        return AttentionUnet(**common)
    raise ValueError(f"unknown model {m.name!r}")
