"""TLT's training loss: the Gaussian label on the search feature grid, focal loss (α = β = 2) + L1 (Eq. 5).

Axis order and units: centers are ``center_zyx`` — continuous voxel coordinates (z, y, x) of the search
patch at full resolution; spacings are ``spacing_zyx`` in mm; radii are in mm. Label and logit grids
are ``(B, 1, d, h, w)`` feature grids with stride ``s``; feature voxel ``k`` sits at patch coordinate
``s k + (s - 1) / 2`` (see :mod:`lesionnet.methods.tlt.ops`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lesionnet.training.losses import as_batch, center_l1_mm, focal_loss


def gaussian_label(center_zyx, radius_mm, spacing_zyx, feature_shape_zyx, stride: int = 8,
                       device=None) -> torch.Tensor:
    """TLT training label ``Y`` on the search feature grid, ``(B, 1, d, h, w)``, float32 in [0, 1].

    ``G_L = exp(-|p - c|² / (12 r²))`` (TLT Eq. 1 with an isotropic radius, distances in mm, the formula
    of :func:`lesionnet.methods.tlt.maps.lesion_gaussian`) evaluated at the feature voxel centers
    ``p = s k + (s - 1) / 2`` of the search patch — exactly what trilinear downsampling of the
    full-resolution map samples — then min-max normalised ``Y = (G_L - min) / (max - min)``.
    The maximum (the feature voxel nearest the center, in mm) is set to exactly 1 so there is always
    one positive; a constant map (``max == min``) becomes one-hot at that voxel. A center outside the
    patch still gives a label whose maximum is the nearest border voxel.

    Args:
        center_zyx: ``(B, 3)`` target centers, search-patch voxel coordinates (z, y, x).
        radius_mm: ``(B,)`` or scalar target radius (mm, > 0).
        spacing_zyx: ``(B, 3)``, ``(3,)`` or scalar voxel spacing of the search patch (mm).
        feature_shape_zyx: ``(d, h, w)`` of the logits.
        stride: feature stride s.
    """
    center = torch.as_tensor(center_zyx, dtype=torch.float32, device=device)
    if center.dim() != 2 or center.shape[1] != 3:
        raise ValueError(f"center_zyx must be (B, 3), got shape {tuple(center.shape)}")
    device = center.device
    b = center.shape[0]
    radius = as_batch(radius_mm, b, 1, device, torch.float32, "radius_mm").clamp(min=1e-3)
    spacing = as_batch(spacing_zyx, b, 3, device, torch.float32, "spacing_zyx")
    axes = []
    for axis, n in enumerate(feature_shape_zyx):
        coord = torch.arange(int(n), device=device, dtype=torch.float32) * stride + (stride - 1) / 2.0
        diff_mm = (coord[None, :] - center[:, axis:axis + 1]) * spacing[:, axis:axis + 1]   # (B, n)
        axes.append(diff_mm * diff_mm)
    d2 = (axes[0][:, :, None, None] + axes[1][:, None, :, None] + axes[2][:, None, None, :])
    g = torch.exp(-d2 / (12.0 * radius[:, None, None, None] ** 2)).reshape(b, -1)
    g_min = g.min(dim=1, keepdim=True).values
    g_max = g.max(dim=1, keepdim=True).values
    span = g_max - g_min
    y = torch.where(span > 0, (g - g_min) / span.clamp(min=torch.finfo(g.dtype).tiny), torch.zeros_like(g))
    # Exactly one guaranteed positive: the nearest voxel (smallest mm distance) is 1.
    nearest = d2.reshape(b, -1).argmin(dim=1)
    y = y.clamp(max=1.0).scatter(1, nearest[:, None], 1.0)
    return y.view(b, 1, *(int(n) for n in feature_shape_zyx))


@dataclass
class TLTLossConfig:
    """Weights and focal exponents of :class:`TLTLoss` (paper: α = β = 2, unit weights).

    ``regression_unit``: the L1 term in ``"voxel"`` (default) or ``"mm"``. The paper trains at 1 mm, where
    both are the same; on a coarser grid an L1 in mm grows with the spacing while the focal term does not,
    and at 3.7 mm it outweighs the focal loss about twelve-fold at the start of training (measured: 41 mm
    against 3.5), so the dense classification signal is drowned — in voxels the two keep the paper's
    balance at every spacing (documentation/methods/tlt.md, "What keeps a trained TLT at the prior").
    """

    focal_alpha: float = 2.0
    focal_beta: float = 2.0
    focal_weight: float = 1.0
    regression_weight: float = 1.0
    regression_unit: str = "voxel"

    def __post_init__(self):
        if self.regression_unit not in ("voxel", "mm"):
            raise ValueError(f"regression_unit must be 'voxel' or 'mm', got {self.regression_unit!r}")


class TLTLoss(nn.Module):
    """TLT training loss: ``focal_weight · focal(Ŷ, Y) + regression_weight · L1(ĉ, c_s)`` (L1 in voxels by
    default, see :class:`TLTLossConfig`).

    ``forward(outputs, target_center_zyx, target_radius_mm, spacing_zyx)`` with ``outputs`` from
    :meth:`lesionnet.methods.tlt.network.TLT.forward` returns ``{"loss", "focal", "l1_mm", "label"}``
    (``label`` detached, for logging/plots). The L1 term needs a differentiable center (the global
    regression, or the fine head's soft-arg-max); with an arg-max center (ablation "without global
    regression") the term is 0 and only the focal loss trains the network. ``stride`` is the stride
    of the logits (the network's ``output_stride``).
    """

    def __init__(self, config: TLTLossConfig | None = None, stride: int = 8):
        super().__init__()
        self.config = config if config is not None else TLTLossConfig()
        self.stride = int(stride)

    def forward(self, outputs: dict, target_center_zyx, target_radius_mm, spacing_zyx) -> dict:
        cfg = self.config
        logits = outputs["logits"]
        label = gaussian_label(target_center_zyx, target_radius_mm, spacing_zyx, logits.shape[2:],
                                   self.stride, device=logits.device)
        focal = focal_loss(logits, label, cfg.focal_alpha, cfg.focal_beta)
        if outputs["center_zyx"].requires_grad:
            l1 = center_l1_mm(outputs["center_zyx"], target_center_zyx, spacing_zyx)
            unit = 1.0 if cfg.regression_unit == "mm" else 1.0 / _mean_spacing(spacing_zyx, logits)
            regression = l1 * unit
        else:
            l1 = regression = logits.new_zeros(())
        loss = cfg.focal_weight * focal + cfg.regression_weight * regression
        return {"loss": loss, "focal": focal, "l1_mm": l1, "label": label.detach()}


def _mean_spacing(spacing_zyx, like: torch.Tensor) -> torch.Tensor:
    """Geometric-mean voxel edge (mm) over the batch: mm → voxels for the L1 term."""
    spacing = torch.as_tensor(spacing_zyx, dtype=torch.float32, device=like.device)
    return spacing.log().mean().exp()


__all__ = ["gaussian_label", "TLTLossConfig", "TLTLoss"]
