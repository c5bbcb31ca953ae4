"""The baseline "without track queries": heuristic 2D -> 3D merging of the detector's per-slice boxes.

Rule (:func:`merge_slice_boxes`), slices visited from the bottom ``z = 0`` up:

1. keep the boxes of slice ``z`` with score > ``min_score`` (as ``tau_det`` in Algorithm 1);
2. close every open chain whose last box lies more than ``max_gap`` missing slices below ``z``
   (its last slice ``l`` has ``z - l - 1 > max_gap``);
3. link the boxes of slice ``z`` to the open chains by the 2D IoU of each box with the chain's *last*
   box: greedily, highest IoU first, one-to-one (a chain takes at most one box per slice, a box joins at
   most one chain), only pairs with IoU > ``iou_threshold``; ties go to the older chain, then to the
   box listed first;
4. every box left unlinked starts a new chain; chains left without a box stay open (a gap).

A chain becomes the 3D box ``[x1, y1, z1, x2, y2, z2]``: the union of its 2D boxes in x/y and the
z-extent ``[first, last + 1)`` (gap slices included), scored like a tracklet
(:func:`lesionnet.methods.lntracker.tracklets.chain_score`, the maximum of its slice scores). Boxes are
``[x1, y1, x2, y2]`` pixels, half open.
"""
from __future__ import annotations

import numpy as np

from lesionnet.methods.lntracker.tracklets import box_3d_from_slices, box_iou_2d, chain_score, greedy_pairs


class _Chain:
    """Boxes ``(4,)`` and scores of one chain, with the slice of each box."""

    def __init__(self, z: int, box, score: float):
        self.slices, self.boxes, self.scores = [z], [np.asarray(box, dtype=np.float64)], [float(score)]

    def add(self, z: int, box, score: float) -> None:
        self.slices.append(z)
        self.boxes.append(np.asarray(box, dtype=np.float64))
        self.scores.append(float(score))

    def box_3d(self) -> np.ndarray:
        return box_3d_from_slices(self.boxes, self.slices[0], self.slices[-1])


def merge_slice_boxes(per_slice, iou_threshold: float = 0.5, max_gap: int = 1,
                      min_score: float = 0.3) -> list[tuple[np.ndarray, float]]:
    """3D boxes from per-slice detections (see the module docstring for the rule).

    Args:
        per_slice: over ``z = 0 .. Z - 1``, ``(boxes (N_z, 4), scores (N_z,))`` of slice ``z``.
        iou_threshold: least 2D IoU (exclusive) between a chain's last box and a box to link them.
        max_gap: most consecutive slices without a box a chain may bridge (0: adjacent slices only).
        min_score: boxes with a score at or below it are ignored.

    Returns ``[(box_xyz (6,) [x1, y1, z1, x2, y2, z2], score), ...]`` in order of the chains' first box.
    """
    chains: list[_Chain] = []          # every chain, in order of its first box
    open_chains: list[_Chain] = []
    for z, (boxes, scores) in enumerate(per_slice):
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(boxes) != len(scores):
            raise ValueError(f"slice {z}: {len(boxes)} boxes but {len(scores)} scores")
        keep = scores > min_score
        boxes, scores = boxes[keep], scores[keep]
        open_chains = [c for c in open_chains if z - c.slices[-1] - 1 <= max_gap]
        linked = set()
        if open_chains and len(boxes):
            iou = box_iou_2d(np.stack([c.boxes[-1] for c in open_chains]), boxes)
            for chain_index, box_index in greedy_pairs(iou, iou_threshold):
                open_chains[chain_index].add(z, boxes[box_index], scores[box_index])
                linked.add(box_index)
        born = [_Chain(z, boxes[i], scores[i]) for i in range(len(boxes)) if i not in linked]
        open_chains.extend(born)
        chains.extend(born)
    return [(c.box_3d(), chain_score(c.scores)) for c in chains]


__all__ = ["merge_slice_boxes"]
