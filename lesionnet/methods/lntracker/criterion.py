"""LN-Tracker's training loss: decoupled detection and tracking losses plus the similarity loss.

For a batch of slice pairs (z-1, z) and :meth:`LNTracker.forward`'s outputs:

* **slice z-1** (detection queries only): the boxes of slice z-1, Hungarian-matched (the forward pass's
  own matching);
* **slice z, track queries** keep their instance identity: a track query of instance k is a positive
  with the box of k on slice z when k is there, otherwise (the node ended, or a false-positive track
  query) a negative with no box loss;
* **slice z, detection queries** are Hungarian-matched to *all* boxes of slice z (tracked ones too);
* every query: sigmoid focal loss (α = 0.25, γ = 2) on its score, positives as above; positives: L1 of
  the normalised ``[cx, cy, w, h]`` and 1 - GIoU; all normalised by the number of positive boxes;
* **proposals** (two-stage): on each slice, the encoder's per-token box proposals are Hungarian-matched
  to every box of the slice and scored the same way (the best proposals become the detection queries);
* **similarity**: BCE of ``sigmoid(φ(Q_{z-1}) φ(Q_z)ᵀ)`` against the same-instance matrix of the track
  queries (1 where a track query continues its own instance on slice z).

``loss = λ_cls · focal + λ_L1 · L1 + λ_GIoU · (1 - GIoU) + λ_sim · BCE`` with λ = 1, 2, 2, 1 (the paper's
λ_cls = 1, λ_box = 2). Returns the loss and its parts (detached floats for logging).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lesionnet.methods.lntracker.boxes import cxcywh_to_xyxy, elementwise_giou, xyxy_to_cxcywh
from lesionnet.methods.lntracker.matcher import MatchCosts, hungarian_match


@dataclass(frozen=True)
class LossWeights:
    classification: float = 1.0
    l1: float = 2.0
    giou: float = 2.0
    similarity: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Summed sigmoid focal loss (RetinaNet) of ``logits`` against 0/1 ``targets`` of the same shape."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    weight = alpha * targets + (1 - alpha) * (1 - targets)
    return (weight * (1 - p_t) ** gamma * ce).sum()


class LNTrackerLoss:
    """Callable ``(outputs, batch) -> {"loss", "focal", "l1", "giou", "similarity"}`` (see the module
    docstring). ``batch`` holds ``boxes (B, M, 4)`` xyxy pixels and ``ids (B, M)`` (-1 padding) of slice z
    and ``boxes_prev`` / ``ids_prev`` of slice z-1."""

    def __init__(self, weights: LossWeights = LossWeights(), match_costs: MatchCosts = MatchCosts()):
        self.weights = weights
        self.match_costs = match_costs

    def __call__(self, outputs: dict, batch: dict) -> dict:
        w = self.weights
        current, prev = outputs["current"], outputs["prev"]
        patch = batch["images"].shape[2:]
        t = current["num_track"]
        logits_all, targets_all, boxes, target_boxes = [], [], [], []
        for i in range(batch["images"].shape[0]):
            # slice z-1: the forward pass's matching
            keep_prev = batch["ids_prev"][i] >= 0
            target_prev = xyxy_to_cxcywh(batch["boxes_prev"][i][keep_prev].float(), patch)
            query, box = (torch.as_tensor(a, dtype=torch.long) for a in outputs["prev_match"][i])
            labels = torch.zeros_like(prev["logits"][i])
            labels[query] = 1.0
            logits_all.append(prev["logits"][i])
            targets_all.append(labels)
            boxes.append(prev["boxes"][i][query])
            target_boxes.append(target_prev[box])
            # slice z: track queries keep their identity
            keep = batch["ids"][i] >= 0
            ids, target = batch["ids"][i][keep], xyxy_to_cxcywh(batch["boxes"][i][keep].float(), patch)
            labels = torch.zeros_like(current["logits"][i])
            track_ids = outputs["track_ids"][i]
            for row in range(t):
                found = torch.nonzero(ids == track_ids[row]).flatten() if track_ids[row] >= 0 else []
                if len(found):
                    labels[row] = 1.0
                    boxes.append(current["boxes"][i][row:row + 1])
                    target_boxes.append(target[found[:1]])
            # the encoder's proposals of both slices, each matched to every box of its slice (two-stage)
            for out, slice_target in ((prev, target_prev), (current, target)):
                query, box = hungarian_match(out["proposal_logits"][i], out["proposal_boxes"][i], slice_target,
                                             self.match_costs)
                query, box = torch.as_tensor(query, dtype=torch.long), torch.as_tensor(box, dtype=torch.long)
                proposal_labels = torch.zeros_like(out["proposal_logits"][i])
                proposal_labels[query] = 1.0
                logits_all.append(out["proposal_logits"][i])
                targets_all.append(proposal_labels)
                boxes.append(out["proposal_boxes"][i][query])
                target_boxes.append(slice_target[box])
            # slice z: detection queries matched to every box
            query, box = hungarian_match(current["logits"][i, t:], current["boxes"][i, t:], target, self.match_costs)
            query = torch.as_tensor(query, dtype=torch.long) + t
            labels[query] = 1.0
            boxes.append(current["boxes"][i][query])
            target_boxes.append(target[torch.as_tensor(box, dtype=torch.long)])
            valid_rows = torch.cat((track_ids >= -1, torch.ones(current["logits"].shape[1] - t, dtype=torch.bool,
                                                                  device=track_ids.device)))
            logits_all.append(current["logits"][i][valid_rows])
            targets_all.append(labels[valid_rows])
        predicted, target = torch.cat(boxes), torch.cat(target_boxes)
        n_positive = max(1.0, float(predicted.shape[0]))
        focal = sigmoid_focal_loss(torch.cat(logits_all), torch.cat(targets_all), w.focal_alpha, w.focal_gamma)
        focal = focal / n_positive
        l1 = (predicted - target).abs().sum() / n_positive
        unit = (1.0, 1.0)
        giou = (1 - elementwise_giou(cxcywh_to_xyxy(predicted, unit), cxcywh_to_xyxy(target, unit))).sum() / n_positive
        similarity = self._similarity(outputs, batch)
        loss = w.classification * focal + w.l1 * l1 + w.giou * giou + w.similarity * similarity
        return {"loss": loss, "focal": focal.detach(), "l1": l1.detach(), "giou": giou.detach(),
                "similarity": similarity.detach()}

    @staticmethod
    def _similarity(outputs: dict, batch: dict) -> torch.Tensor:
        """BCE of the track queries' similarity matrix against "continues its own instance on slice z"."""
        track_ids = outputs["track_ids"]                                    # (B, T)
        valid = track_ids >= -1
        ids = torch.where(batch["ids"] >= 0, batch["ids"], torch.full_like(batch["ids"], -3))
        present = (track_ids[:, :, None] == ids[:, None, :]).any(-1) & (track_ids >= 0)     # (B, T)
        target = torch.diag_embed(present.float())
        pair_mask = valid[:, :, None] & valid[:, None, :]
        if not pair_mask.any():
            return outputs["similarity"].sum() * 0.0
        return F.binary_cross_entropy_with_logits(outputs["similarity"][pair_mask], target[pair_mask])


__all__ = ["LossWeights", "sigmoid_focal_loss", "LNTrackerLoss"]
