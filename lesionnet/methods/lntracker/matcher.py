"""Hungarian matching of LN-Tracker's detection queries to the boxes of one slice (DETR's matcher).

The cost of giving query ``i`` the box ``j`` is the weighted sum of the classification cost (the focal
loss's positive term minus its negative term, Deformable DETR's form), the L1 distance of the normalised
``[cx, cy, w, h]`` boxes, and minus their generalised IoU; the assignment minimising the total cost comes
from :func:`scipy.optimize.linear_sum_assignment`. Every box gets one query (queries outnumber boxes).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from lesionnet.methods.lntracker.boxes import cxcywh_to_xyxy, pairwise_giou


@dataclass(frozen=True)
class MatchCosts:
    """Weights of the matching cost (the loss weights: λ_cls = 1, λ_L1 = 2, λ_GIoU = 2) and the focal
    parameters of the classification cost."""
    classification: float = 1.0
    l1: float = 2.0
    giou: float = 2.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0


def match_cost(logits: torch.Tensor, boxes_cxcywh: torch.Tensor, target_cxcywh: torch.Tensor,
               costs: MatchCosts = MatchCosts()) -> torch.Tensor:
    """Cost matrix ``(Q, M)`` of ``Q`` queries (``logits (Q,)``, ``boxes_cxcywh (Q, 4)``) against ``M``
    target boxes ``(M, 4)`` (normalised cxcywh)."""
    p = logits.sigmoid()
    alpha, gamma = costs.focal_alpha, costs.focal_gamma
    negative = (1 - alpha) * p ** gamma * -(1 - p + 1e-8).log()
    positive = alpha * (1 - p) ** gamma * -(p + 1e-8).log()
    cost = costs.classification * (positive - negative)[:, None]
    cost = cost + costs.l1 * torch.cdist(boxes_cxcywh, target_cxcywh, p=1)
    unit = (1.0, 1.0)
    cost = cost - costs.giou * pairwise_giou(cxcywh_to_xyxy(boxes_cxcywh, unit), cxcywh_to_xyxy(target_cxcywh, unit))
    return cost


@torch.no_grad()
def hungarian_match(logits: torch.Tensor, boxes_cxcywh: torch.Tensor, target_cxcywh: torch.Tensor,
                    costs: MatchCosts = MatchCosts()) -> tuple[np.ndarray, np.ndarray]:
    """``(query_index (M,), target_index (M,))`` of the minimum-cost assignment for one slice; empty arrays
    when the slice has no box. Requires ``Q >= M``."""
    if target_cxcywh.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if logits.shape[0] < target_cxcywh.shape[0]:
        raise ValueError(f"{logits.shape[0]} queries cannot match {target_cxcywh.shape[0]} boxes; plan more queries")
    cost = match_cost(logits.float(), boxes_cxcywh.float(), target_cxcywh.float(), costs)
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return rows.astype(np.int64), cols.astype(np.int64)


__all__ = ["MatchCosts", "match_cost", "hungarian_match"]
