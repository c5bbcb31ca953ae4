"""3D DenseNet with a feature pyramid on top (DLT's "3D DenseFPN" image encoder).

DenseNet in 3D (Huang et al.; DLT, Sec. 3.1): a stem, then dense blocks whose layers each add
``growth_rate`` channels (BN/norm → ReLU → 1³ bottleneck of ``bn_size × growth_rate`` channels →
norm → ReLU → 3³ conv) to the concatenation of everything before them, with transitions (norm → ReLU →
1³ conv halving the channels → 2³ average pooling) between the blocks. The outputs of the last three
blocks are the three scales; an FPN (Lin et al.) maps each to ``fpn_width`` channels by a lateral 1³
conv, adds the upsampled coarser level (top-down pathway) and smooths with a 3³ conv.

Shapes: input ``(B, C_in, D, H, W)`` with every spatial size a multiple of ``4 × stem_stride``; outputs
``[P1, P2, P3]``, ``(B, fpn_width, D / s, H / s, W / s)`` for ``s = stem_stride, 2 stem_stride,
4 stem_stride`` (finest first, ψ₁, ψ₂, ψ₃ in the paper's notation). Axis order ``(z, y, x)``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lesionnet.networks.blocks import ConvNormAct, get_norm


class DenseLayer3d(nn.Module):
    """One dense layer: ``x -> cat(x, conv3(act(norm(conv1(act(norm(x)))))))`` (adds ``growth_rate`` channels)."""

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int, norm: str):
        super().__init__()
        width = bn_size * growth_rate
        self.body = nn.Sequential(
            get_norm(norm, in_channels), nn.ReLU(inplace=True),
            nn.Conv3d(in_channels, width, 1, bias=False),
            get_norm(norm, width), nn.ReLU(inplace=True),
            nn.Conv3d(width, growth_rate, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)


class Transition3d(nn.Sequential):
    """``norm → ReLU → 1³ conv (channels → out_channels) → 2³ average pooling`` (halves every axis)."""

    def __init__(self, in_channels: int, out_channels: int, norm: str):
        super().__init__(get_norm(norm, in_channels), nn.ReLU(inplace=True),
                         nn.Conv3d(in_channels, out_channels, 1, bias=False), nn.AvgPool3d(2))


class DenseFPN3d(nn.Module):
    """3D DenseNet (three dense blocks) + FPN; see the module docstring.

    Args:
        in_channels: image channels (1 for CT).
        growth_rate: channels each dense layer adds (k; DenseNet-121: 32).
        block_layers: dense layers per block (DenseNet-121's first three: 6, 12, 24).
        bn_size: bottleneck width factor (4).
        fpn_width: channels of every pyramid level.
        stem_stride: stride of the finest scale, a power of two (the stem's strided conv, then max pooling).
        stem_kernel: kernel of the stem convolution (DenseNet: 7).
        norm: ``"instance"`` or ``"batch"`` (:func:`lesionnet.networks.blocks.get_norm`).
    """

    def __init__(self, in_channels: int = 1, growth_rate: int = 32, block_layers: Sequence[int] = (6, 12, 24),
                 bn_size: int = 4, fpn_width: int = 64, stem_stride: int = 2, stem_kernel: int = 7,
                 norm: str = "instance"):
        super().__init__()
        if len(block_layers) != 3:
            raise ValueError(f"DenseFPN3d needs three dense blocks (three scales), got block_layers={block_layers}")
        if stem_stride < 1 or stem_stride & (stem_stride - 1):
            raise ValueError(f"stem_stride must be a power of two, got {stem_stride}")
        self.stem_stride = int(stem_stride)
        self.strides = (self.stem_stride, 2 * self.stem_stride, 4 * self.stem_stride)
        stem_channels = 2 * growth_rate
        stem = [ConvNormAct(in_channels, stem_channels, stem_kernel, stride=2 if stem_stride > 1 else 1, norm=norm)]
        stem += [nn.MaxPool3d(2) for _ in range(int(math.log2(stem_stride)) - 1)]
        self.stem = nn.Sequential(*stem)
        blocks, transitions, widths = [], [], []
        channels = stem_channels
        for i, layers in enumerate(block_layers):
            block = []
            for _ in range(int(layers)):
                block.append(DenseLayer3d(channels, growth_rate, bn_size, norm))
                channels += growth_rate
            blocks.append(nn.Sequential(*block))
            widths.append(channels)
            if i < len(block_layers) - 1:
                transitions.append(Transition3d(channels, channels // 2, norm))
                channels //= 2
        self.blocks = nn.ModuleList(blocks)
        self.transitions = nn.ModuleList(transitions)
        self.lateral = nn.ModuleList(nn.Conv3d(w, fpn_width, 1) for w in widths)
        self.smooth = nn.ModuleList(nn.Conv3d(fpn_width, fpn_width, 3, padding=1) for _ in widths)
        self.out_channels = int(fpn_width)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        multiple = 4 * self.stem_stride
        if any(int(n) % multiple for n in x.shape[2:]):
            raise ValueError(f"DenseFPN3d input spatial size {tuple(x.shape[2:])} must be a multiple of {multiple}")
        x = self.stem(x)
        outs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            outs.append(x)
            if i < len(self.transitions):
                x = self.transitions[i](x)
        levels = [None, None, None]
        top = None
        for i in (2, 1, 0):          # top-down: coarsest first
            lateral = self.lateral[i](outs[i])
            if top is not None:
                lateral = lateral + F.interpolate(top, size=lateral.shape[2:], mode="nearest")
            top = lateral
            levels[i] = self.smooth[i](lateral)
        return levels


__all__ = ["DenseLayer3d", "Transition3d", "DenseFPN3d"]
