"""The parameter-free matcher as a module with TLT's interface, so TLT's tracker and sliding window run it.

``forward(template, template_gaussian, search, search_prior)`` (shapes as
:meth:`lesionnet.methods.tlt.network.TLT.forward`, ``(B, 1, D, H, W)`` = ``(z, y, x)``):

1. the template's central ``kernel_zyx`` voxels around the lesion center are matched with every
   search position by a normalised cross-correlation weighted by ``G_t ** weight_power`` (``exp(-d² / r²)``
   for TLT's Gaussian), :func:`lesionnet.networks.matching.weighted_ncc`;
2. logits ``ncc_scale · NCC + prior_scale · G_s − (ncc_scale + prior_scale)`` (a perfect match on the
   prior's peak scores 0): appearance and the registration prior together;
3. the center is the local soft-arg-max (``window`` voxels around the peak) plus the template lesion's
   sub-voxel offset.

No parameter is learned: it is what the fine matching head of TLT computes before any training, as its
own baseline. Centers are continuous voxel coordinates (z, y, x) of the search patch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from lesionnet.methods.tlt.ops import argmax_center_zyx, local_soft_argmax_zyx, template_ncc_maps
from lesionnet.utils.dataclass_dict import dataclass_from_dict


@dataclass
class MatcherConfig:
    """Settings of :class:`NCCPriorMatcher` (the initial values of TLT's fine head)."""

    kernel_zyx: tuple = (9, 13, 13)
    weight_power: float = 12.0
    ncc_scale: float = 8.0
    prior_scale: float = 4.0
    window: int = 2

    def __post_init__(self):
        self.kernel_zyx = tuple(int(k) for k in self.kernel_zyx)
        if len(self.kernel_zyx) != 3 or any(k < 1 or k % 2 == 0 for k in self.kernel_zyx):
            raise ValueError(f"kernel_zyx must be three odd sizes, got {self.kernel_zyx}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["kernel_zyx"] = list(self.kernel_zyx)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MatcherConfig":
        return dataclass_from_dict(cls, d, "matcher setting")


class NCCPriorMatcher(nn.Module):
    """Weighted NCC + prior, with TLT's ``forward`` / ``predict_center`` interface (see the module docstring)."""

    output_stride = 1

    def __init__(self, config: MatcherConfig | None = None):
        super().__init__()
        self.config = config or MatcherConfig()

    @torch.no_grad()
    def forward(self, template: torch.Tensor, template_gaussian: torch.Tensor, search: torch.Tensor,
                search_prior: torch.Tensor) -> dict:
        cfg = self.config
        maps = template_ncc_maps(template.float(), template_gaussian.float(), search.float(), cfg.kernel_zyx,
                                 cfg.weight_power)
        logits = (cfg.ncc_scale * maps["ncc_search"] + cfg.prior_scale * search_prior.float()
                  - (cfg.ncc_scale + cfg.prior_scale))
        center = local_soft_argmax_zyx(logits, cfg.window) + maps["center_offset_zyx"]
        return {"logits": logits, "heatmap": torch.sigmoid(logits), "center_zyx": center}

    def predict_center(self, outputs: dict, use_soft_argmax: bool = True) -> torch.Tensor:
        """``(B, 3)`` centers (z, y, x): the local soft-arg-max, or the arg-max voxel with False."""
        return outputs["center_zyx"] if use_soft_argmax else argmax_center_zyx(outputs["logits"], 1)


__all__ = ["MatcherConfig", "NCCPriorMatcher"]
