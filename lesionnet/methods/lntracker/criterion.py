"""LN-Tracker's training loss: decoupled detection and tracking losses plus the similarity loss.

For a batch of chains of adjacent slices and :meth:`LNTracker.forward`'s outputs, on every slice:

* **track queries** (every slice but the first) keep their instance identity: a track query of
  instance k is a positive with the box of k on the slice when k is there, otherwise (the node ended,
  or a false-positive track query) a negative with no box loss;
* **detection queries** are Hungarian-matched to *all* boxes of the slice (tracked ones too; on the
  first slice the forward pass's own matching);
* every query: sigmoid focal loss (α = 0.25, γ = 2) on its score, positives as above; positives: L1 of
  the normalised ``[cx, cy, w, h]`` and 1 - GIoU; all normalised by the number of positive boxes;
* **proposals** (two-stage): on each slice, the encoder's per-token box proposals are Hungarian-matched
  to every box of the slice and scored the same way (the best proposals become the detection queries);
* **similarity**: BCE of ``sigmoid(φ(Q_{z-1}) φ(Q_z)ᵀ)`` against the same-instance matrix of the track
  queries (1 where a track query continues its own instance on the slice), the positive and negative
  pairs weighted equally (a matrix of T track queries has at most T positives among T² pairs: plain
  BCE taught the head to answer "no" and closed most tracks), averaged over the slices.

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
    docstring) for :meth:`LNTracker.forward`'s outputs over a chain of slices; ``batch`` holds the chain's
    ``boxes (B, L, M, 4)`` xyxy pixels and ``ids (B, L, M)`` (-1 padding)."""

    def __init__(self, weights: LossWeights = LossWeights(), match_costs: MatchCosts = MatchCosts()):
        self.weights = weights
        self.match_costs = match_costs

    def __call__(self, outputs: dict, batch: dict) -> dict:
        w = self.weights
        patch = batch["images"].shape[-2:]
        logits_all, targets_all, boxes, target_boxes = [], [], [], []
        similarity = []
        for step, current in enumerate(outputs["passes"]):
            out, t = current["out"], current["out"]["num_track"]
            for i in range(batch["images"].shape[0]):
                keep = batch["ids"][i, step] >= 0
                ids = batch["ids"][i, step][keep]
                target = xyxy_to_cxcywh(batch["boxes"][i, step][keep].float(), patch)
                labels = torch.zeros_like(out["logits"][i])
                valid_rows = torch.ones_like(labels, dtype=torch.bool)
                if t:                         # track queries keep their identity
                    track_ids = current["track_ids"][i]
                    valid_rows[:t] = track_ids >= -1
                    for row in range(t):
                        found = torch.nonzero(ids == track_ids[row]).flatten() if track_ids[row] >= 0 else []
                        if len(found):
                            labels[row] = 1.0
                            boxes.append(out["boxes"][i][row:row + 1])
                            target_boxes.append(target[found[:1]])
                # detection queries: Hungarian-matched to every box of the slice (the first slice: the
                # forward pass's own matching)
                if step == 0:
                    query, box = outputs["match"][i] if outputs["match"] is not None else \
                        hungarian_match(out["logits"][i], out["boxes"][i], target, self.match_costs)
                else:
                    query, box = hungarian_match(out["logits"][i, t:], out["boxes"][i, t:], target, self.match_costs)
                query = torch.as_tensor(query, dtype=torch.long) + t
                labels[query] = 1.0
                boxes.append(out["boxes"][i][query])
                target_boxes.append(target[torch.as_tensor(box, dtype=torch.long)])
                logits_all.append(out["logits"][i][valid_rows])
                targets_all.append(labels[valid_rows])
                # the encoder's proposals, matched to every box of the slice (two-stage)
                query, box = hungarian_match(out["proposal_logits"][i], out["proposal_boxes"][i], target,
                                             self.match_costs)
                proposal_labels = torch.zeros_like(out["proposal_logits"][i])
                proposal_labels[torch.as_tensor(query, dtype=torch.long)] = 1.0
                logits_all.append(out["proposal_logits"][i])
                targets_all.append(proposal_labels)
                boxes.append(out["proposal_boxes"][i][torch.as_tensor(query, dtype=torch.long)])
                target_boxes.append(target[torch.as_tensor(box, dtype=torch.long)])
            if t:
                similarity.append(self._similarity(current, batch["ids"][:, step]))
        predicted, target = torch.cat(boxes), torch.cat(target_boxes)
        n_positive = max(1.0, float(predicted.shape[0]))
        focal = sigmoid_focal_loss(torch.cat(logits_all), torch.cat(targets_all), w.focal_alpha, w.focal_gamma)
        focal = focal / n_positive
        l1 = (predicted - target).abs().sum() / n_positive
        unit = (1.0, 1.0)
        giou = (1 - elementwise_giou(cxcywh_to_xyxy(predicted, unit), cxcywh_to_xyxy(target, unit))).sum() / n_positive
        similarity = torch.stack(similarity).mean() if similarity else focal * 0.0
        loss = w.classification * focal + w.l1 * l1 + w.giou * giou + w.similarity * similarity
        return {"loss": loss, "focal": focal.detach(), "l1": l1.detach(), "giou": giou.detach(),
                "similarity": similarity.detach()}

    @staticmethod
    def _similarity(current: dict, ids: torch.Tensor) -> torch.Tensor:
        """BCE of one pass's similarity matrix against "the track query continues its own instance on this
        slice" (the diagonal, where the instance is present)."""
        track_ids = current["track_ids"]                                    # (B, T)
        valid = track_ids >= -1
        ids = torch.where(ids >= 0, ids, torch.full_like(ids, -3))
        present = (track_ids[:, :, None] == ids[:, None, :]).any(-1) & (track_ids >= 0)      # (B, T)
        target = torch.diag_embed(present.float())
        pair_mask = valid[:, :, None] & valid[:, None, :]
        if not pair_mask.any():
            return current["similarity"].sum() * 0.0
        logits, target = current["similarity"][pair_mask], target[pair_mask]
        losses = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        positive = target > 0.5
        if not positive.any() or positive.all():
            return losses.mean()
        # balanced: a continuing track is one pair among T² (the rest are other tracks, or ended ones)
        return 0.5 * (losses[positive].mean() + losses[~positive].mean())


__all__ = ["LossWeights", "sigmoid_focal_loss", "LNTrackerLoss"]
