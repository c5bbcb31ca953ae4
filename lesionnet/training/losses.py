"""Loss terms shared by the trackers: the CornerNet-style focal loss on a soft label (TLT uses
α = β = 2, DLT α = 2, β = 4) and the L1 center distance in mm.

Axis order and units: centers are ``center_zyx`` — continuous voxel coordinates (z, y, x) of a patch;
spacings are ``spacing_zyx`` in mm. Each method builds its own label and criterion from these
(``lesionnet/methods/<method>/loss.py``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lesionnet.networks.feature_grid import as_batch  # noqa: F401  (re-exported)


def focal_loss(logits: torch.Tensor, label: torch.Tensor, alpha: float = 2.0, beta: float = 2.0,
               positive_mask: torch.Tensor | None = None) -> torch.Tensor:
    """CornerNet focal loss on a soft (Gaussian) label — TLT Eq. 5, DLT's classification loss.

    With ``p = sigmoid(logits)`` and ``y = label`` (both any shape, e.g. ``(B, 1, d, h, w)``)::

        L = -1 / max(N_pos, 1) * ( Σ_{y = 1} (1 - p)^α log p  +  Σ_{y ≠ 1} (1 - y)^β p^α log(1 - p) )

    summed over the whole batch and normalised by the number of positives in the batch (CornerNet's
    reference implementation). ``log p`` and ``log(1 - p)`` are computed with ``logsigmoid`` so large
    logits of either sign stay finite. TLT uses α = β = 2, DLT α = 2, β = 4.

    Args:
        positive_mask: bool tensor like ``label`` marking the positives; default ``label == 1`` (the
            builders here put an exact 1 at the label's maximum).
    """
    if logits.shape != label.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and label {tuple(label.shape)} differ in shape")
    logits = logits.float()
    label = label.to(logits.dtype)
    pos = label.eq(1.0) if positive_mask is None else positive_mask.bool()
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    p = torch.sigmoid(logits)
    pos_term = (1.0 - p).pow(alpha) * log_p
    neg_term = (1.0 - label).clamp(min=0.0).pow(beta) * p.pow(alpha) * log_not_p
    total = torch.where(pos, pos_term, neg_term).sum()
    num_pos = pos.sum().clamp(min=1).to(logits.dtype)
    return -total / num_pos


def center_l1_mm(pred_center_zyx: torch.Tensor, target_center_zyx, spacing_zyx) -> torch.Tensor:
    """L1 distance in mm between centers, mean over the batch: ``mean_b Σ_a |ĉ_a - c_a| · spacing_a``.

    Centers are ``(B, 3)`` (z, y, x) voxel coordinates of the same patch; ``spacing_zyx`` is ``(B, 3)``,
    ``(3,)`` or a scalar (mm). This is TLT Eq. 4's ``||ĉ - c_s||_1`` measured in mm, so anisotropic
    voxels weigh by their physical size.
    """
    target = torch.as_tensor(target_center_zyx, dtype=pred_center_zyx.dtype, device=pred_center_zyx.device)
    if pred_center_zyx.shape != target.shape or pred_center_zyx.dim() != 2 or pred_center_zyx.shape[1] != 3:
        raise ValueError(f"centers must both be (B, 3), got {tuple(pred_center_zyx.shape)} and "
                         f"{tuple(target.shape)}")
    spacing = as_batch(spacing_zyx, target.shape[0], 3, target.device, target.dtype, "spacing_zyx")
    return ((pred_center_zyx - target).abs() * spacing).sum(dim=1).mean()


__all__ = ["focal_loss", "center_l1_mm", "as_batch"]
