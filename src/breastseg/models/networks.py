"""The two networks, U-Net and attention-gated U-Net (Oktay et al. 2018), as MONAI 1.6 defines them.

The module tree, the class and attribute names (so ``state_dict`` keys and printed models), the order in which
layers are created (so the initial weights drawn from torch's generator) and every operation of the forward
pass are MONAI's ``monai.networks.nets.UNet`` and ``AttentionUnet`` for the settings breastseg uses (kernel 3,
PReLU + instance norm in the U-Net, ReLU + batch norm in the attention U-Net, norm - dropout - activation):
``tests/test_networks.py`` checks printed models, initial weights, outputs and gradients against MONAI bit for
bit, and bundles saved with MONAI's classes load into these. Defining them here spares every process that
builds a network MONAI's import (1.5 s after torch: it imports all of its submodules).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["UNet", "AttentionUnet"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_INSTANCE = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_BATCH = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_ACT = {"prelu": nn.PReLU, "relu": nn.ReLU}


class ADN(nn.Sequential):
    """Norm (``N``), dropout (``D``) and activation (``A``) in ``ordering``; made norm, activation, dropout."""

    def __init__(self, ordering: str, in_channels: int, act: str | None, norm: str | None, norm_dim: int,
                 dropout: float | None, dropout_dim: int) -> None:
        super().__init__()
        ops: dict[str, nn.Module | None] = {"A": None, "D": None, "N": None}
        if norm is not None:
            ops["N"] = (_INSTANCE if norm == "instance" else _BATCH)[norm_dim](in_channels)
        if act is not None:
            ops["A"] = _ACT[act]()
        if dropout is not None:
            ops["D"] = {1: nn.Dropout, 2: nn.Dropout2d, 3: nn.Dropout3d}[dropout_dim](p=float(dropout))
        for item in ordering:
            if ops[item] is not None:
                self.add_module(item, ops[item])


class Convolution(nn.Sequential):
    """A (transposed) convolution with "same" padding, then :class:`ADN` unless ``conv_only``."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, strides: int = 1,
                 kernel_size: int = 3, adn_ordering: str = "NDA", act: str | None = "prelu",
                 norm: str | None = "instance", dropout: float | None = None, dropout_dim: int = 1,
                 bias: bool = True, conv_only: bool = False, is_transposed: bool = False,
                 padding: int | None = None) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.is_transposed = is_transposed
        if padding is None:
            padding = (kernel_size - 1) // 2
        if is_transposed:
            conv: nn.Module = _CONV_T[spatial_dims](in_channels, out_channels, kernel_size=kernel_size, stride=strides,
                                                    padding=padding, output_padding=strides - 1, groups=1, bias=bias,
                                                    dilation=1)
        else:
            conv = _CONV[spatial_dims](in_channels, out_channels, kernel_size=kernel_size, stride=strides,
                                       padding=padding, dilation=1, groups=1, bias=bias)
        self.add_module("conv", conv)
        if conv_only or (act is None and norm is None and dropout is None):
            return
        self.add_module("adn", ADN(adn_ordering, out_channels, act, norm, spatial_dims, dropout, dropout_dim))


class ResidualUnit(nn.Module):
    """``subunits`` convolutions plus the input (through a convolution where the stride or width changes)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, strides: int = 1,
                 kernel_size: int = 3, subunits: int = 2, adn_ordering: str = "NDA", act: str | None = "prelu",
                 norm: str | None = "instance", dropout: float | None = None, bias: bool = True,
                 last_conv_only: bool = False) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv = nn.Sequential()
        self.residual: nn.Module = nn.Identity()
        padding = (kernel_size - 1) // 2
        schannels, sstrides = in_channels, strides
        subunits = max(1, subunits)
        for su in range(subunits):
            unit = Convolution(spatial_dims, schannels, out_channels, strides=sstrides, kernel_size=kernel_size,
                               adn_ordering=adn_ordering, act=act, norm=norm, dropout=dropout, bias=bias,
                               conv_only=last_conv_only and su == subunits - 1, padding=padding)
            self.conv.add_module(f"unit{su:d}", unit)
            schannels, sstrides = out_channels, 1
        if strides != 1 or in_channels != out_channels:
            rkernel, rpadding = (kernel_size, padding) if strides != 1 else (1, 0)
            self.residual = _CONV[spatial_dims](in_channels, out_channels, rkernel, strides, rpadding, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.residual(x)
        cx = self.conv(x)
        return cx + res


class SkipConnection(nn.Module):
    """``cat([x, submodule(x)], dim)``."""

    def __init__(self, submodule: nn.Module, dim: int = 1) -> None:
        super().__init__()
        self.submodule = submodule
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.submodule(x)
        return torch.cat([x, y], dim=self.dim)


class UNet(nn.Module):
    """U-Net with residual units (``num_res_units``), PReLU and instance norm, built from the bottom up."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, channels: Sequence[int],
                 strides: Sequence[int], kernel_size: int = 3, up_kernel_size: int = 3, num_res_units: int = 0,
                 dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if len(channels) < 2:
            raise ValueError("the length of `channels` should be no less than 2.")
        if len(strides) < len(channels) - 1:
            raise ValueError("the length of `strides` should equal to `len(channels) - 1`.")
        self.dimensions = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.channels = channels
        self.strides = strides
        self.kernel_size = kernel_size
        self.up_kernel_size = up_kernel_size
        self.num_res_units = num_res_units
        self.dropout = dropout
        self.bias = bias

        def _create_block(inc: int, outc: int, channels: Sequence[int], strides: Sequence[int],
                          is_top: bool) -> nn.Module:
            c, s = channels[0], strides[0]
            if len(channels) > 2:
                subblock = _create_block(c, c, channels[1:], strides[1:], False)
                upc = c * 2
            else:
                subblock = self._get_down_layer(c, channels[1], 1, False)  # the bottom layer
                upc = c + channels[1]
            down = self._get_down_layer(inc, c, s, is_top)
            up = self._get_up_layer(upc, outc, s, is_top)
            return nn.Sequential(down, SkipConnection(subblock), up)

        self.model = _create_block(in_channels, out_channels, self.channels, self.strides, True)

    def _get_down_layer(self, in_channels: int, out_channels: int, strides: int, is_top: bool) -> nn.Module:
        if self.num_res_units > 0:
            return ResidualUnit(self.dimensions, in_channels, out_channels, strides=strides,
                                kernel_size=self.kernel_size, subunits=self.num_res_units, dropout=self.dropout,
                                bias=self.bias)
        return Convolution(self.dimensions, in_channels, out_channels, strides=strides, kernel_size=self.kernel_size,
                           dropout=self.dropout, bias=self.bias)

    def _get_up_layer(self, in_channels: int, out_channels: int, strides: int, is_top: bool) -> nn.Module:
        conv: nn.Module = Convolution(self.dimensions, in_channels, out_channels, strides=strides,
                                      kernel_size=self.up_kernel_size, dropout=self.dropout, bias=self.bias,
                                      conv_only=is_top and self.num_res_units == 0, is_transposed=True)
        if self.num_res_units > 0:
            ru = ResidualUnit(self.dimensions, out_channels, out_channels, strides=1, kernel_size=self.kernel_size,
                              subunits=1, dropout=self.dropout, bias=self.bias, last_conv_only=is_top)
            conv = nn.Sequential(conv, ru)
        return conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ConvBlock(nn.Module):
    """Two convolutions with batch norm and ReLU (the first one strided)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3,
                 strides: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        layers = [
            Convolution(spatial_dims, in_channels, out_channels, kernel_size=kernel_size, strides=strides,
                        padding=None, adn_ordering="NDA", act="relu", norm="batch", dropout=dropout),
            Convolution(spatial_dims, out_channels, out_channels, kernel_size=kernel_size, strides=1,
                        padding=None, adn_ordering="NDA", act="relu", norm="batch", dropout=dropout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class UpConv(nn.Module):
    """A transposed convolution with batch norm and ReLU."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3,
                 strides: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.up = Convolution(spatial_dims, in_channels, out_channels, strides=strides, kernel_size=kernel_size,
                              act="relu", adn_ordering="NDA", norm="batch", dropout=dropout, is_transposed=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


class AttentionBlock(nn.Module):
    """The attention gate: ``x * sigmoid(norm(conv(relu(W_g g + W_x x))))``."""

    def __init__(self, spatial_dims: int, f_int: int, f_g: int, f_l: int, dropout: float = 0.0) -> None:
        super().__init__()

        def conv1(cin: int, cout: int) -> Convolution:
            return Convolution(spatial_dims, cin, cout, kernel_size=1, strides=1, padding=0, dropout=dropout,
                               conv_only=True)

        self.W_g = nn.Sequential(conv1(f_g, f_int), _BATCH[spatial_dims](f_int))
        self.W_x = nn.Sequential(conv1(f_l, f_int), _BATCH[spatial_dims](f_int))
        self.psi = nn.Sequential(conv1(f_int, 1), _BATCH[spatial_dims](1), nn.Sigmoid())
        self.relu = nn.ReLU()

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        g1 = self.W_g(g)
        x1 = self.W_x(x)
        psi = self.relu(g1 + x1)
        psi = self.psi(psi)
        return x * psi


class AttentionLayer(nn.Module):
    """One level: the lower levels (``submodule``), up-convolved, gate this level's features; both are merged."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, submodule: nn.Module,
                 up_kernel_size: int = 3, strides: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.attention = AttentionBlock(spatial_dims, f_g=in_channels, f_l=in_channels, f_int=in_channels // 2)
        self.upconv = UpConv(spatial_dims, in_channels=out_channels, out_channels=in_channels, strides=strides,
                             kernel_size=up_kernel_size)
        self.merge = Convolution(spatial_dims, 2 * in_channels, in_channels, dropout=dropout)
        self.submodule = submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fromlower = self.upconv(self.submodule(x))
        att = self.attention(g=fromlower, x=x)
        return self.merge(torch.cat((att, fromlower), dim=1))


class AttentionUnet(nn.Module):
    """Attention-gated U-Net: a head block, the gated levels from the top down, a 1 x 1 output convolution."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, channels: Sequence[int],
                 strides: Sequence[int], kernel_size: int = 3, up_kernel_size: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.dimensions = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.channels = channels
        self.strides = strides
        self.kernel_size = kernel_size
        self.dropout = dropout
        head = ConvBlock(spatial_dims, in_channels, channels[0], dropout=dropout, kernel_size=kernel_size)
        reduce_channels = Convolution(spatial_dims, channels[0], out_channels, kernel_size=1, strides=1, padding=0,
                                      conv_only=True)
        self.up_kernel_size = up_kernel_size

        def _create_block(channels: Sequence[int], strides: Sequence[int]) -> nn.Module:
            if len(channels) > 2:
                subblock = _create_block(channels[1:], strides[1:])
                return AttentionLayer(
                    spatial_dims, channels[0], channels[1],
                    submodule=nn.Sequential(ConvBlock(spatial_dims, channels[0], channels[1], strides=strides[0],
                                                      dropout=self.dropout, kernel_size=self.kernel_size), subblock),
                    up_kernel_size=self.up_kernel_size, strides=strides[0], dropout=dropout)
            return AttentionLayer(
                spatial_dims, channels[0], channels[1],
                submodule=ConvBlock(spatial_dims, channels[0], channels[1], strides=strides[0], dropout=self.dropout,
                                    kernel_size=self.kernel_size),
                up_kernel_size=self.up_kernel_size, strides=strides[0], dropout=self.dropout)

        encdec = _create_block(self.channels, self.strides)
        self.model = nn.Sequential(head, encdec, reduce_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
