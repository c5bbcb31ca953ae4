"""Reusable 3D building blocks: conv-norm-activation units, basic residual blocks, a 3D ResNet encoder.

All tensors are ``(B, C, D, H, W)`` with the spatial axes in array order ``(z, y, x)``.

Conventions shared by every block here:

* convolutions before a normalisation have no bias (the norm's affine shift replaces it);
* padding is ``kernel // 2`` so a stride-1 conv keeps the spatial size and a stride-2 conv halves an
  even size exactly;
* normalisation is chosen by name (:func:`get_norm`): ``"instance"`` (``InstanceNorm3d`` with learned
  affine, nnU-Net's default; independent of the batch, so it works with batch 1 and keeps the samples
  of a batch independent) or ``"batch"`` (``BatchNorm3d``);
* the non-linearity is LeakyReLU (slope 0.01, in place) as in nnU-Net; ``negative_slope=0`` gives ReLU.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

NORMS = ("instance", "batch")


def get_norm(kind: str, channels: int) -> nn.Module:
    """Normalisation layer by name: ``"instance"`` (affine InstanceNorm3d) or ``"batch"`` (BatchNorm3d)."""
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True, eps=1e-5)
    if kind == "batch":
        return nn.BatchNorm3d(channels, eps=1e-5)
    raise ValueError(f"unknown norm {kind!r}; choose one of {NORMS}")


def get_activation(negative_slope: float = 0.01) -> nn.Module:
    """In-place LeakyReLU (``negative_slope = 0`` gives an in-place ReLU)."""
    if negative_slope == 0:
        return nn.ReLU(inplace=True)
    return nn.LeakyReLU(negative_slope, inplace=True)


class ConvNormAct(nn.Sequential):
    """``Conv3d(k, stride, padding k//2, no bias) -> norm -> activation``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 norm: str = "instance", negative_slope: float = 0.01):
        super().__init__(
            nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                      bias=False),
            get_norm(norm, out_channels),
            get_activation(negative_slope),
        )


class BasicResBlock3d(nn.Module):
    """ResNet basic block in 3D: two 3³ convs with a residual connection.

    ``y = act(norm(conv3(act(norm(conv3_stride(x))))) + shortcut(x))`` where the shortcut is the
    identity when shape and channels are unchanged, else a strided 1×1×1 projection + norm (ResNet
    option B). ``stride = 2`` halves every spatial axis (sizes must be even).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, norm: str = "instance",
                 negative_slope: float = 0.01):
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = get_norm(norm, out_channels)
        self.act1 = get_activation(negative_slope)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.norm2 = get_norm(norm, out_channels)
        self.act2 = get_activation(negative_slope)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride=stride, bias=False),
                get_norm(norm, out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNetEncoder3d(nn.Module):
    """3D ResNet feature extractor: a full-resolution stem, then stages that each halve the grid.

    ``stem``: ``ConvNormAct(k = stem_kernel, stride 1) -> ConvNormAct(k = 3, stride 1)``, both with
    ``stem_channels``. Stage ``i``: ``blocks_per_stage`` :class:`BasicResBlock3d` with
    ``stage_channels[i]`` channels, the first one with stride 2 and a 1×1 projection shortcut.

    Input ``(B, in_channels, D, H, W)`` with D, H, W multiples of :attr:`stride`; output
    ``(B, stage_channels[-1], D / s, H / s, W / s)`` with ``s = 2 ** len(stage_channels)``.
    """

    def __init__(self, in_channels: int = 1, stem_channels: int = 32,
                 stage_channels: Sequence[int] = (64, 128, 192), blocks_per_stage: int = 1,
                 stem_kernel: int = 7, norm: str = "instance", negative_slope: float = 0.01):
        super().__init__()
        if blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage must be >= 1, got {blocks_per_stage}")
        self.stem = nn.Sequential(
            ConvNormAct(in_channels, stem_channels, stem_kernel, 1, norm, negative_slope),
            ConvNormAct(stem_channels, stem_channels, 3, 1, norm, negative_slope),
        )
        stages = []
        previous = stem_channels
        for channels in stage_channels:
            blocks = [BasicResBlock3d(previous, channels, 2, norm, negative_slope)]
            blocks += [BasicResBlock3d(channels, channels, 1, norm, negative_slope)
                       for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
            previous = channels
        self.stages = nn.ModuleList(stages)
        self.out_channels = previous
        self.stride = 2 ** len(stage_channels)
        self.reset_parameters(negative_slope)

    def reset_parameters(self, negative_slope: float = 0.01) -> None:
        """Kaiming-normal conv weights (fan-out, leaky ReLU gain), unit/zero norm affine."""
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, a=negative_slope, mode="fan_out",
                                        nonlinearity="leaky_relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.InstanceNorm3d, nn.BatchNorm3d)) and module.affine:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU in between (none after the last), applied to the last axis."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


def sine_positional_encoding_3d(shape_zyx: Sequence[int], channels: int, temperature: float = 10000.0,
                                device=None, dtype=torch.float32) -> torch.Tensor:
    """Fixed sinusoidal 3D positional encoding of a ``(D, H, W)`` grid, ``(D * H * W, channels)``.

    The channels are split into three equal even-sized groups for z, y and x (in that order; any
    remainder is zero). Within a group, position ``p`` (the integer grid index, not normalised, so
    one feature voxel means the same on grids of different size) is encoded as
    ``[sin(p / T^(2i/n)), cos(p / T^(2i/n))]`` for ``i = 0 .. n/2 - 1`` (DETR's layout, 3D).
    Rows are in the grid's row-major (z, y, x) flattening order, like ``tensor.flatten(2)``.
    """
    d, h, w = (int(v) for v in shape_zyx)
    per_axis = (channels // 3) // 2 * 2
    if per_axis == 0:
        raise ValueError(f"channels must be >= 6 for a 3D sine encoding, got {channels}")
    half = per_axis // 2
    freq = temperature ** (torch.arange(half, device=device, dtype=torch.float64) * 2.0 / per_axis)
    grids = torch.meshgrid(torch.arange(d, device=device, dtype=torch.float64),
                           torch.arange(h, device=device, dtype=torch.float64),
                           torch.arange(w, device=device, dtype=torch.float64), indexing="ij")
    parts = []
    for g in grids:
        angle = g.reshape(-1, 1) / freq
        parts.append(torch.stack((angle.sin(), angle.cos()), dim=-1).reshape(-1, per_axis))
    pos = torch.cat(parts, dim=1)
    if pos.shape[1] < channels:
        pos = torch.cat((pos, pos.new_zeros(pos.shape[0], channels - pos.shape[1])), dim=1)
    return pos.to(dtype)


class CrossAttentionLayer(nn.Module):
    """One cross-attention (CA) unit: queries from one token set, keys/values from another.

    Post-norm transformer layer as in TransT/DETR::

        a = MultiHead(Q = (x + pos_x) W_q, K = (m + pos_m) W_k, V = m W_v)      # attention per head
        x = LayerNorm(x + Dropout(a W_o))
        x = LayerNorm(x + Dropout(FFN(x)))      # FFN = Linear(C, ffn) -> ReLU -> Dropout -> Linear(ffn, C)

    The attention runs through :func:`torch.nn.functional.scaled_dot_product_attention` so fused
    kernels (flash / memory-efficient; on CPU the flash kernel) avoid materialising the
    ``Lq × Lk`` attention matrix. ``attn_bias`` is an additive float mask broadcastable to
    ``(B, heads, Lq, Lk)`` (e.g. ``(B, 1, 1, Lk)``): registration priors are added to the logits
    before the softmax, padded keys carry ``-inf``. Every query row must keep at least one finite key.
    With ``attention_dropout > 0`` most backends fall back to the unfused math path, which stores the
    attention matrix (see documentation/methods/tlt.md).

    Shapes: ``x (B, Lq, C)``, ``memory (B, Lk, C)``, ``pos_x (B or 1, Lq, C)``,
    ``pos_memory (B or 1, Lk, C)`` (positional encodings, may be None) -> ``(B, Lq, C)``.
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.1,
                 attention_dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads = dim, num_heads
        self.attention_dropout = float(attention_dropout)
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                 nn.Linear(ffn_dim, dim))
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.num_heads, self.dim // self.num_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, pos_x: torch.Tensor | None = None,
                pos_memory: torch.Tensor | None = None,
                attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        q_in = x if pos_x is None else x + pos_x
        k_in = memory if pos_memory is None else memory + pos_memory
        q = self._heads(self.q_proj(q_in))
        k = self._heads(self.k_proj(k_in))
        v = self._heads(self.v_proj(memory))
        if attn_bias is not None:
            attn_bias = attn_bias.to(q.dtype)
        a = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_bias,
            dropout_p=self.attention_dropout if self.training else 0.0)
        a = a.transpose(1, 2).reshape(x.shape[0], x.shape[1], self.dim)
        x = self.norm1(x + self.dropout1(self.out_proj(a)))
        return self.norm2(x + self.dropout2(self.ffn(x)))
