"""The networks, all MONAI's own: U-Net for BPE/FGT MRI, attention-gated U-Net (Oktay et al. 2018) for ultrasound,
and DynUNet, the nnU-Net-style network, optionally with deep supervision."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ..config import Experiment


def deep_supervision_heads(levels: int) -> int:
    """Decoder outputs below full resolution that deep supervision scores for a network of ``levels`` levels
    (len(model.features)): all of them (1/2, 1/4, ... down to the one just above the bottleneck), the outputs
    nnU-Net supervises (at least one)."""
    return max(1, levels - 2)


def build_model(exp: Experiment) -> torch.nn.Module:
    """A 2-D network for ``exp``: in = len(channels), out = classes, widths = model.features.

    ``dynunet`` in training mode with ``model.deep_supervision`` returns (B, 1 + k, C, H, W), the full-resolution
    output first and the k lower decoder outputs upsampled to full size (:func:`deep_supervision_heads`); in
    evaluation mode (and without deep supervision) every network returns (B, C, H, W).
    """
    m = exp.model
    features = list(m.features)
    if m.name == "dynunet":
        return _dynunet(exp)
    from monai.networks.nets import AttentionUnet, UNet

    strides = [2] * (len(features) - 1)
    common = dict(spatial_dims=2, in_channels=len(exp.channels), out_channels=exp.classes,
                  channels=features, strides=strides, dropout=float(m.dropout or 0.0))
    if m.name == "unet":
        return UNet(num_res_units=1, **common)
    if m.name == "attention_unet":
        return AttentionUnet(**common)
    raise ValueError(f"unknown model {m.name!r}")


def _dynunet(exp: Experiment) -> torch.nn.Module:
    """MONAI's DynUNet: 3x3 kernels, the first level at full resolution and each further one halving it,
    instance norm and leaky ReLU (MONAI's defaults), plain (not residual) blocks."""
    from monai.networks.nets import DynUNet

    m = exp.model
    levels = len(m.features)
    if levels < 3:
        raise ValueError(f"dynunet needs at least 3 levels (model.features has {levels})")
    strides = [1] + [2] * (levels - 1)
    return DynUNet(spatial_dims=2, in_channels=len(exp.channels), out_channels=exp.classes,
                   kernel_size=[3] * levels, strides=strides, upsample_kernel_size=strides[1:],
                   filters=list(m.features), dropout=m.dropout or None, res_block=False,
                   deep_supervision=bool(m.deep_supervision), deep_supr_num=deep_supervision_heads(levels))
