"""DLT's training loss (Sec. 4.1, Eq. 8): focal loss (α = 2, β = 4) of the output map against
``Y = G(μ_s, r_s) = exp(-|p - μ_s|² / (2 r_s²))`` sampled on the output grid, normalised to a maximum of
exactly 1 at the cell nearest ``μ_s`` (:func:`lesionnet.networks.feature_grid.gaussian_label`, ``k = 2``).

Centers are ``(B, 3)`` search-patch voxels (z, y, x); spacings ``(z, y, x)`` mm; radii mm.
"""
from __future__ import annotations

import torch

from lesionnet.networks.feature_grid import gaussian_label
from lesionnet.training.losses import focal_loss

#: DLT's target G(μ, r): exp(-d² / (2 r²))
LABEL_WIDTH_FACTOR = 2.0


def dlt_loss(outputs: dict, target_center_zyx, target_radius_mm, spacing_zyx, stride: int,
             alpha: float = 2.0, beta: float = 4.0) -> dict:
    """``{"loss": focal, "distance_mm": mean distance of the predicted center (detached)}``."""
    logits = outputs["logits"]
    label = gaussian_label(target_center_zyx, target_radius_mm, spacing_zyx, logits.shape[2:], stride,
                           device=logits.device, width_factor=LABEL_WIDTH_FACTOR)
    loss = focal_loss(logits, label, alpha, beta)
    target = torch.as_tensor(target_center_zyx, device=logits.device, dtype=torch.float32)
    spacing = torch.as_tensor(spacing_zyx, device=logits.device, dtype=torch.float32)
    distance = ((outputs["center_zyx"].float() - target) * spacing).norm(dim=-1).mean()
    return {"loss": loss, "distance_mm": distance.detach()}


__all__ = ["LABEL_WIDTH_FACTOR", "dlt_loss"]
