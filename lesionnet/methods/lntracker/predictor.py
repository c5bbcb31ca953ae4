"""``lesionnet_predict -m lntracker``: LN-Tracker on one input scan, boxes in the input scan's voxels.

The scan is preprocessed as the training data were (:func:`lesionnet.preprocessing.case.preprocess_scan`:
native z, the planned in-plane spacing, normalisation), each trained fold runs Algorithm 1 on it
(:func:`~lesionnet.methods.lntracker.inference.track_volume`), several folds' boxes are pooled and
reduced by 3D non-maximum suppression (IoU > 0.5, by score), and each box is carried from the
preprocessed grid to the input scan's grid through world coordinates (its corners are voxel edges, so a
box keeps covering the same region; indices may be fractional after in-plane resampling).
"""
from __future__ import annotations

import numpy as np

from lesionnet.datasets.geometry import box_corners_world, boxes_between_grids
from lesionnet.evaluation.boxes3d import non_maximum_suppression
from lesionnet.methods.lntracker.inference import merge_volume, track_volume
from lesionnet.methods.lntracker.tracklets import tracklets_to_record
from lesionnet.preprocessing.case import preprocess_scan


class LNTrackerScanDetector:
    """The per-scan detector of ``lesionnet_predict`` (see the module docstring)."""

    #: how the per-slice detections become 3D boxes: Algorithm 1 with track queries, or the baseline that
    #: links the same detector's per-slice boxes by 2D IoU
    LINKINGS = ("tracks", "merging")

    def __init__(self, folds, device="cpu", linking: str = "tracks", thresholds: dict | None = None):
        if not folds:
            raise ValueError("LN-Tracker prediction needs a trained model (lesionnet_train DATASET lntracker FOLD).")
        self.folds = folds
        self.device = device
        section = folds[0].info["configuration"]
        self.data_configuration = folds[0].info["data_configuration"]
        if linking not in self.LINKINGS:
            raise ValueError(f"linking must be one of {self.LINKINGS}, got {linking!r}")
        self.linking = linking
        self.thresholds = {**section["thresholds"], **(thresholds or {})}
        self.description = {"linking": linking, "thresholds": self.thresholds, "folds": [f.fold for f in folds],
                            "fold_merging": "3D NMS at IoU 0.5" if len(folds) > 1 else "one fold"}

    def predict_scan(self, path) -> dict:
        """The record of one scan: ``boxes_xyz`` (input-scan voxels, half open), ``scores``, ``slice_ranges``,
        ``boxes_world`` (``[low_xyz, high_xyz]`` corners, mm, LPS)."""
        scan = preprocess_scan(path, self.data_configuration)
        boxes, scores = [], []
        for fold in self.folds:
            section = fold.info["configuration"]
            if self.linking == "tracks":
                tracklets = track_volume(fold.model.network, scan.image, section["slices_per_side"], self.thresholds,
                                         self.device)
                record = tracklets_to_record(tracklets)
                found = (record["boxes_xyz"], record["scores"])
            else:
                merged = merge_volume(fold.model.network, scan.image, section["slices_per_side"], self.thresholds,
                                      self.device)
                found = ([box for box, _ in merged], [score for _, score in merged])
            boxes.append(np.asarray(found[0], dtype=np.float64).reshape(-1, 6))
            scores.append(np.asarray(found[1], dtype=np.float64))
        boxes, scores = np.concatenate(boxes), np.concatenate(scores)
        if len(self.folds) > 1 and len(boxes):
            kept = non_maximum_suppression(boxes, scores)
            boxes, scores = boxes[kept], scores[kept]
        order = np.argsort(-scores, kind="stable")
        boxes, scores = boxes[order], scores[order]
        on_input = boxes_between_grids(boxes, scan.geometry, scan.raw_geometry)
        world = box_corners_world(on_input, scan.raw_geometry)
        return {"boxes_xyz": np.round(on_input, 3).tolist(), "scores": scores.tolist(),
                "slice_ranges": [[int(np.floor(b[2] + 1e-6)), int(np.ceil(b[5] - 1e-6))] for b in on_input],
                "boxes_world": np.round(world, 3).tolist()}


__all__ = ["LNTrackerScanDetector"]
