"""DLT's hyper-parameters: :class:`DLTConfig` (the paper's architecture by default).

A plan's ``dlt`` section holds these fields as its ``network`` (see :mod:`lesionnet.methods.dlt.planning`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from lesionnet.methods.dlt.correlation import FLATTENINGS
from lesionnet.networks.blocks import NORMS
from lesionnet.utils.dataclass_dict import dataclass_from_dict

#: how the global kernel K_g enters the correlation (the paper's model and its ablations)
GLOBAL_KERNELS = ("decomposed", "full", "middle_slice", "none")


@dataclass
class DLTConfig:
    """Hyper-parameters of :class:`lesionnet.methods.dlt.network.DLT`.

    Attributes:
        in_channels: image channels (1 for CT).
        growth_rate, block_layers, bn_size: the 3D DenseNet (DenseNet-121's first three blocks: 32,
            (6, 12, 24), 4).
        fpn_width: channels of the three FPN levels and of the anatomy signal encoder's outputs (64).
        stem_stride: stride of the finest scale; the scales are ``s, 2 s, 4 s`` (planned so that a median
            lesion spans about as many cells as on DLS; the paper's images keep z and halve x, y twice).
        stem_kernel: kernel of the stem convolution (7).
        norm: ``"instance"`` (default, batch-size independent) or ``"batch"`` (DenseNet's).
        local_kernel: side of the local template kernel K (3).
        global_kernel_zyx: size of the global kernel K_g (7, 11, 11); on a template feature map smaller
            than that, each side is cut to the largest odd size that fits (recorded by the network).
        global_kernel: ``"decomposed"`` (the paper's fast cross-correlation: K_g flattened by learned 3D
            convolutions to (1, kh, kw), (kd, 1, kw), (kd, kh, 1)), ``"full"`` (Eq. 5, the direct
            correlation with K_g), ``"middle_slice"`` (ablation: the middle slices of K_g) or ``"none"``
            (ablation "no global kernel").
        flattening: how the decomposed form's learned flattening treats channels: ``"depthwise"`` (default,
            one weighting per channel) or ``"dense"`` (a ``C → C`` convolution; what lesionnet built before
            this field existed). See :mod:`lesionnet.methods.dlt.correlation`.
        anatomy_encoder: False drops the anatomy signal encoder (ablation "no ASE"): the features are
            then the image features alone.
        cls_prior: initial foreground probability of the output bias (focal-loss prior init, 0.01).
    """

    in_channels: int = 1
    growth_rate: int = 32
    block_layers: tuple = (6, 12, 24)
    bn_size: int = 4
    fpn_width: int = 64
    stem_stride: int = 2
    stem_kernel: int = 7
    norm: str = "instance"
    local_kernel: int = 3
    global_kernel_zyx: tuple = (7, 11, 11)
    global_kernel: str = "decomposed"
    flattening: str = "depthwise"
    anatomy_encoder: bool = True
    cls_prior: float = 0.01

    def __post_init__(self):
        self.block_layers = tuple(int(v) for v in self.block_layers)
        self.global_kernel_zyx = tuple(int(v) for v in self.global_kernel_zyx)
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.global_kernel not in GLOBAL_KERNELS:
            raise ValueError(f"global_kernel must be one of {GLOBAL_KERNELS}, got {self.global_kernel!r}")
        if self.flattening not in FLATTENINGS:
            raise ValueError(f"flattening must be one of {FLATTENINGS}, got {self.flattening!r}")
        if self.local_kernel < 1 or self.local_kernel % 2 == 0:
            raise ValueError(f"local_kernel must be odd and positive, got {self.local_kernel}")
        if len(self.global_kernel_zyx) != 3 or any(k < 1 or k % 2 == 0 for k in self.global_kernel_zyx):
            raise ValueError(f"global_kernel_zyx must be three odd sizes, got {self.global_kernel_zyx}")
        if len(self.block_layers) != 3:
            raise ValueError(f"block_layers must give three dense blocks, got {self.block_layers}")

    @property
    def output_stride(self) -> int:
        """Stride of the output map (the finest scale)."""
        return int(self.stem_stride)

    @property
    def patch_multiple(self) -> int:
        """Every patch side must be a multiple of this (the coarsest scale's stride)."""
        return 4 * int(self.stem_stride)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["block_layers"] = list(self.block_layers)
        d["global_kernel_zyx"] = list(self.global_kernel_zyx)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DLTConfig":
        return dataclass_from_dict(cls, dict(d), "DLT network setting")


__all__ = ["GLOBAL_KERNELS", "DLTConfig"]
