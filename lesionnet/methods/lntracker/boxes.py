"""2D box operations of LN-Tracker's detector (torch, differentiable).

Two forms of an axial-slice box, both in ``(x, y)`` order:

* ``xyxy``: ``[x1, y1, x2, y2]`` pixels of the slice patch, half open (a one-pixel box has size 1), the
  form of the data and of the predictions written to files;
* ``cxcywh``: ``[cx, cy, w, h]`` normalised by the patch width / height to [0, 1], the form the box head
  predicts (DETR's).

Box tensors are ``(..., 4)``; ``patch_size_yx`` is the patch's ``(height, width)`` in pixels.
"""
from __future__ import annotations

import torch


def cxcywh_to_xyxy(boxes: torch.Tensor, patch_size_yx) -> torch.Tensor:
    """Normalised ``[cx, cy, w, h]`` → ``[x1, y1, x2, y2]`` pixels of a ``(height, width)`` patch."""
    height, width = (float(v) for v in patch_size_yx)
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack(((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height),
                       dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor, patch_size_yx) -> torch.Tensor:
    """``[x1, y1, x2, y2]`` pixels → normalised ``[cx, cy, w, h]`` of a ``(height, width)`` patch."""
    height, width = (float(v) for v in patch_size_yx)
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / (2 * width), (y1 + y2) / (2 * height), (x2 - x1) / width, (y2 - y1) / height),
                       dim=-1)


def box_area(boxes_xyxy: torch.Tensor) -> torch.Tensor:
    """Areas ``(...)`` of ``(..., 4)`` boxes (0 for inverted ones)."""
    size = (boxes_xyxy[..., 2:] - boxes_xyxy[..., :2]).clamp(min=0)
    return size[..., 0] * size[..., 1]


def pairwise_iou_and_union(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and union areas ``(N, M)`` of boxes ``a (N, 4)`` and ``b (M, 4)`` (xyxy)."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(-1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - intersection
    return intersection / union.clamp(min=1e-9), union


def pairwise_giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Generalised IoU ``(N, M)`` of boxes ``a (N, 4)`` and ``b (M, 4)`` (xyxy), in [-1, 1]."""
    iou, union = pairwise_iou_and_union(a, b)
    enclosing = (torch.maximum(a[:, None, 2:], b[None, :, 2:]) - torch.minimum(a[:, None, :2], b[None, :, :2]))
    enclosing_area = enclosing.clamp(min=0).prod(-1).clamp(min=1e-9)
    return iou - (enclosing_area - union) / enclosing_area


def elementwise_giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Generalised IoU ``(N,)`` of corresponding boxes ``a (N, 4)`` and ``b (N, 4)`` (xyxy)."""
    top_left = torch.maximum(a[:, :2], b[:, :2])
    bottom_right = torch.minimum(a[:, 2:], b[:, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(-1)
    union = box_area(a) + box_area(b) - intersection
    enclosing = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(-1)
    return intersection / union.clamp(min=1e-9) - (enclosing - union) / enclosing.clamp(min=1e-9)


__all__ = ["cxcywh_to_xyxy", "xyxy_to_cxcywh", "box_area", "pairwise_iou_and_union", "pairwise_giou",
           "elementwise_giou"]
