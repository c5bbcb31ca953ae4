"""LN-Tracker on a whole volume: the trained detector slice by slice, linked into 3D boxes by track queries
(Algorithm 1, :func:`~lesionnet.methods.lntracker.tracklets.track_scan`) or, for the baseline, by 2D IoU
of the same detector's per-slice boxes (:func:`~lesionnet.methods.lntracker.merging.merge_slice_boxes`).

Each axial slice's 2.5D input (:func:`~lesionnet.methods.lntracker.slices.stack_context`) is the whole
slice, padded at its high ends to a multiple of the network's stride with the minimum of the volume (as
the training crops are padded); boxes come back as ``[x1, y1, x2, y2]`` pixels of the slice, clipped
to it. Volumes are ``[z, y, x]``, normalised as in preprocessing.
"""
from __future__ import annotations

import numpy as np
import torch

from lesionnet.evaluation.boxes3d import non_maximum_suppression
from lesionnet.methods.lntracker.boxes import cxcywh_to_xyxy
from lesionnet.methods.lntracker.merging import merge_slice_boxes
from lesionnet.methods.lntracker.network import LNTracker
from lesionnet.methods.lntracker.slices import stack_context
from lesionnet.methods.lntracker.tracklets import SliceDetections, Tracklet, track_scan


class VolumeSlices:
    """The 2.5D inputs of a volume's slices, padded to the network's stride: ``inputs(zs) -> (len(zs), S,
    Hp, Wp)`` tensor; ``to_pixels(boxes_cxcywh)`` → xyxy pixels of the slice (clipped)."""

    def __init__(self, image_zyx, slices_per_side: int, stride: int, device):
        self.image = np.asarray(image_zyx, dtype=np.float32)
        self.slices_per_side = int(slices_per_side)
        self.device = device
        self.shape_yx = self.image.shape[1:]
        self.padded_yx = tuple(int(np.ceil(s / stride) * stride) for s in self.shape_yx)
        self.pad_value = float(self.image.min()) if self.image.size else 0.0

    @property
    def num_slices(self) -> int:
        return int(self.image.shape[0])

    def inputs(self, zs) -> torch.Tensor:
        stacks = np.stack([stack_context(self.image, int(z), self.slices_per_side) for z in zs])
        padding = [(0, 0), (0, 0)] + [(0, p - s) for p, s in zip(self.padded_yx, self.shape_yx)]
        stacks = np.pad(stacks, padding, constant_values=self.pad_value)
        return torch.as_tensor(stacks, device=self.device)

    def to_pixels(self, boxes_cxcywh: torch.Tensor) -> np.ndarray:
        boxes = cxcywh_to_xyxy(boxes_cxcywh.float(), self.padded_yx).cpu().numpy().astype(np.float64)
        height, width = self.shape_yx
        return np.clip(boxes, 0.0, [width, height, width, height])


@torch.no_grad()
def track_volume(network: LNTracker, image_zyx, slices_per_side: int, thresholds: dict,
                 device=None) -> list[Tracklet]:
    """Algorithm 1 on a volume with a trained :class:`LNTracker` (in eval mode); ``thresholds`` holds
    ``tau_det``, ``tau_track`` and ``tau_sim`` (the plan's), ``associate_iou`` (default 0.1), the 2D IoU
    above which a detection is a live tracklet's node found again, and ``reattach_iou`` (default None: off),
    the 2D IoU above which it continues a tracklet closed on the same slice, and ``duplicate_iou`` (default
    None: a tracklet absorbs every overlapping detection), which makes the association one-to-one, and
    ``slice_score`` (default ``"track"``), which score a continued tracklet records on a slice."""
    device = device or next(network.parameters()).device
    volume = VolumeSlices(image_zyx, slices_per_side, network.config.stride, device)

    def step(z: int, track_embeddings):
        tracks = None if track_embeddings is None else track_embeddings[None]
        out = network.detect(volume.inputs([z]), tracks)
        t = out["num_track"]
        scores = out["logits"][0].sigmoid()
        similarity = np.zeros(t)
        if t:
            logits = network.similarity_logits(tracks[..., :-2], out["embeddings"][:, :t])[0]
            similarity = logits.diagonal().sigmoid().cpu().numpy()
        pixels = volume.to_pixels(out["boxes"][0])
        # a query of the next slice: its embedding and box center (LNTracker.detect's "queries" rows)
        return SliceDetections(scores[:t].cpu().numpy(), pixels[:t], similarity, scores[t:].cpu().numpy(), pixels[t:],
                               out["queries"][0, :t], out["queries"][0, t:])

    return track_scan(step, volume.num_slices, float(thresholds["tau_det"]), float(thresholds["tau_track"]),
                      float(thresholds["tau_sim"]), float(thresholds.get("associate_iou", 0.1)),
                      thresholds.get("reattach_iou"), thresholds.get("duplicate_iou"),
                      thresholds.get("slice_score", "track"))


@torch.no_grad()
def slice_detections(network: LNTracker, image_zyx, slices_per_side: int, min_score: float, device=None,
                     batch_size: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per slice, the detection queries' boxes ``(N, 4)`` (xyxy pixels) and scores ``(N,)`` above
    ``min_score``, without track queries, after 2D non-maximum suppression at IoU 0.5 (the usual
    post-processing of a 2D detector; several detection queries may find one node)."""
    device = device or next(network.parameters()).device
    volume = VolumeSlices(image_zyx, slices_per_side, network.config.stride, device)
    found = []
    for start in range(0, volume.num_slices, batch_size):
        zs = list(range(start, min(start + batch_size, volume.num_slices)))
        out = network.detect(volume.inputs(zs))
        scores = out["logits"].sigmoid().cpu().numpy()
        for i in range(len(zs)):
            keep = scores[i] > min_score
            boxes, kept_scores = volume.to_pixels(out["boxes"][i])[keep], scores[i][keep].astype(np.float64)
            best = non_maximum_suppression(boxes, kept_scores)
            found.append((boxes[best], kept_scores[best]))
    return found


def merge_volume(network: LNTracker, image_zyx, slices_per_side: int, thresholds: dict, device=None,
                 iou_threshold: float | None = None, max_gap: int | None = None) -> list[tuple[np.ndarray, float]]:
    """The baseline without track queries: the same detector's per-slice boxes (score > ``tau_det``)
    linked into 3D boxes by 2D IoU > ``iou_threshold`` across gaps of up to ``max_gap`` slices (default:
    the plan's ``merge_link_iou`` and ``merge_max_gap``, else 0.1 and 1); ``[(box_xyz (6,), score), ...]``."""
    per_slice = slice_detections(network, image_zyx, slices_per_side, float(thresholds["tau_det"]), device)
    link = float(thresholds.get("merge_link_iou", 0.1)) if iou_threshold is None else float(iou_threshold)
    gap = int(thresholds.get("merge_max_gap", 1)) if max_gap is None else int(max_gap)
    return merge_slice_boxes(per_slice, iou_threshold=link, max_gap=gap, min_score=float(thresholds["tau_det"]))


__all__ = ["VolumeSlices", "track_volume", "slice_detections", "merge_volume"]
