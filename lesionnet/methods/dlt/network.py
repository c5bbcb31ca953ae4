"""The Deep Lesion Tracker network (Cai et al., CVPR 2021), built from :class:`DLTConfig`.

Pipeline (paper Sec. 3, Fig. 2–3):

1. the shared image encoder ψ (:class:`lesionnet.networks.densefpn.DenseFPN3d`) gives three scales of
   template and search features, strides ``s, 2 s, 4 s``;
2. the anatomy signal encoder φ (:class:`AnatomySignalEncoder`) encodes the Gaussian maps ``G_t =
   G(μ_t, 4 r_t)`` and ``G_s = G(T(μ_t), 4 T(r_t))`` to the same three shapes; the features are fused
   by element-wise product (Eq. 3); ablation ``anatomy_encoder=False`` keeps ψ alone;
3. per scale, the cross-correlation of :mod:`lesionnet.methods.dlt.correlation` (Eq. 4–6) gives
   ``M_i``; the coarser maps are upsampled to the finest (``U_2``, ``U_3``), summed, and a 1³
   convolution gives the logits: ``Ŷ = σ(Wᵀ(M_1 + U_2 + U_3) + b)`` (Eq. 7), at stride ``s``;
4. the center is the arg-max of ``Ŷ``, refined to sub-voxel by a soft-arg-max of the logits in the
   3³ cells around it (lesionnet's refinement; the paper takes the arg-max voxel).

``forward(template, template_gaussian, template_center_zyx, search, search_prior)``: images and maps
``(B, 1, D, H, W)`` (z, y, x; every side a multiple of ``4 s``), ``template_center_zyx (B, 3)`` the
template lesion's center in template-patch voxels. Returns ``logits``/``heatmap`` ``(B, 1, D/s, H/s,
W/s)`` and ``center_zyx (B, 3)`` in search-patch voxels.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lesionnet.methods.dlt.config import DLTConfig
from lesionnet.methods.dlt.correlation import ScaleCorrelation, template_cells
from lesionnet.networks.blocks import ConvNormAct
from lesionnet.networks.densefpn import DenseFPN3d
from lesionnet.networks.feature_grid import argmax_center_zyx, local_soft_argmax_zyx


class AnatomySignalEncoder(nn.Module):
    """φ: a Gaussian map ``(B, 1, D, H, W)`` → three feature maps of ``out_channels`` at strides
    ``s, 2 s, 4 s`` (the DenseFPN's shapes): a strided stem, then a conv block per scale (stride 2
    between scales) and a 3³ output conv per scale."""

    def __init__(self, out_channels: int, stem_stride: int = 2, width: int = 16, norm: str = "instance"):
        super().__init__()
        stem = [ConvNormAct(1, width, 3, stride=2 if stem_stride > 1 else 1, norm=norm)]
        stem += [nn.MaxPool3d(2) for _ in range(int(math.log2(stem_stride)) - 1)]
        self.stem = nn.Sequential(*stem)
        self.levels = nn.ModuleList([ConvNormAct(width, width, 3, norm=norm),
                                     ConvNormAct(width, width, 3, stride=2, norm=norm),
                                     ConvNormAct(width, width, 3, stride=2, norm=norm)])
        self.outputs = nn.ModuleList(nn.Conv3d(width, out_channels, 3, padding=1) for _ in range(3))

    def forward(self, gaussian: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(gaussian)
        out = []
        for level, head in zip(self.levels, self.outputs):
            x = level(x)
            out.append(head(x))
        return out


class DLT(nn.Module):
    """DLT (see the module docstring)."""

    def __init__(self, config: DLTConfig | None = None):
        super().__init__()
        self.config = config if config is not None else DLTConfig()
        cfg = self.config
        self.encoder = DenseFPN3d(cfg.in_channels, cfg.growth_rate, cfg.block_layers, cfg.bn_size, cfg.fpn_width,
                                  cfg.stem_stride, cfg.stem_kernel, cfg.norm)
        self.anatomy = (AnatomySignalEncoder(cfg.fpn_width, cfg.stem_stride, max(8, cfg.fpn_width // 4), cfg.norm)
                        if cfg.anatomy_encoder else None)
        self.correlations = nn.ModuleList(
            ScaleCorrelation(cfg.fpn_width, cfg.local_kernel, cfg.global_kernel_zyx, cfg.global_kernel, cfg.flattening)
            for _ in range(3))
        self.head = nn.Conv3d(cfg.fpn_width, 1, 1)
        nn.init.constant_(self.head.bias, -math.log((1.0 - cfg.cls_prior) / cfg.cls_prior))
        self.output_stride = cfg.output_stride
        self.strides = self.encoder.strides

    def _features(self, images: list[torch.Tensor], maps: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        """Fused features ``ψ(I) ⊙ φ(G)`` per input, per scale (one encoder pass when the shapes agree)."""
        if all(t.shape == images[0].shape for t in images):
            splits = [t.shape[0] for t in images]
            psi = [torch.split(f, splits) for f in self.encoder(torch.cat(images))]
            phi = ([torch.split(f, splits) for f in self.anatomy(torch.cat(maps))]
                   if self.anatomy is not None else None)
            per_input = [[psi[s][i] for s in range(3)] for i in range(len(images))]
            anat = [[phi[s][i] for s in range(3)] for i in range(len(images))] if phi is not None else None
        else:
            per_input = [self.encoder(t) for t in images]
            anat = [self.anatomy(m) for m in maps] if self.anatomy is not None else None
        if anat is None:
            return per_input
        return [[f * a for f, a in zip(fs, ans)] for fs, ans in zip(per_input, anat)]

    def forward(self, template: torch.Tensor, template_gaussian: torch.Tensor, template_center_zyx: torch.Tensor,
                search: torch.Tensor, search_prior: torch.Tensor) -> dict:
        template_feats, search_feats = self._features([template, search], [template_gaussian, search_prior])
        center = torch.as_tensor(template_center_zyx, device=template.device, dtype=torch.float32)
        center = center.reshape(-1, 3).expand(template.shape[0], 3)
        total = None
        for correlation, stride, ft, fs in zip(self.correlations, self.strides, template_feats, search_feats):
            m = correlation(ft, fs, template_cells(center, stride, ft.shape[2:]))
            if total is None:
                total = m
            else:
                total = total + F.interpolate(m, size=total.shape[2:], mode="trilinear", align_corners=False)
        logits = self.head(total)
        center_zyx = self.predict_center({"logits": logits})
        return {"logits": logits, "heatmap": torch.sigmoid(logits), "center_zyx": center_zyx}

    def predict_center(self, outputs: dict) -> torch.Tensor:
        """Center ``(B, 3)`` (z, y, x search-patch voxels, detached): the arg-max cell of the logits, refined by
        a soft-arg-max over its 3³ neighbourhood, mapped to the cell centers ``s k + (s - 1) / 2``."""
        logits = outputs["logits"].detach().float()
        s = self.output_stride
        if min(logits.shape[2:]) < 3:
            return argmax_center_zyx(logits, s)
        return local_soft_argmax_zyx(logits, 1) * s + (s - 1) / 2.0


def build_dlt(config: DLTConfig | dict | None = None) -> DLT:
    """DLT from a config (a :class:`DLTConfig`, a plan's ``network`` dict, or None for the paper's)."""
    if isinstance(config, dict):
        config = DLTConfig.from_dict(config)
    return DLT(config)


__all__ = ["AnatomySignalEncoder", "DLT", "build_dlt"]
