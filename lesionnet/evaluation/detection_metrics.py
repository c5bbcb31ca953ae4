"""Detection metrics of 3D lesion boxes: per-scan matching at 3D IoU > 0.1, FROC (sens@1/2/4/8 false
positives per scan and their mean AS) and COCO-style AP@0.1 (documentation/evaluation.md).

Conventions (LN-Tracker's benchmark, ``papers.md``):

* boxes are ``[x1, y1, z1, x2, y2, z2]`` voxel indices, half open (:mod:`lesionnet.evaluation.boxes3d`);
* per scan, predictions are taken in descending score order (equal scores keep the file's order); each
  takes the still-unmatched ground-truth box with the highest IoU if that IoU exceeds the threshold
  (a true positive), otherwise it is a false positive — a second box on an already-found lesion is a
  false positive;
* FROC: the score threshold is swept over all scans at once (predictions with equal scores enter
  together); ``sens@k`` is the highest sensitivity reached with at most ``k`` false positives per scan on
  average (total false positives / number of scans); ``AS`` is the mean of ``sens@1, 2, 4, 8``;
* ``AP@0.1``: all predictions of all scans in descending score order (a stable sort of the scans in
  name order, each in its file's order, as COCO's evaluation does), precision made monotone
  (non-increasing in recall), sampled at the 101 recall points 0, 0.01, ..., 1 (0 where a recall is
  never reached), averaged.

Percentages are 0-100.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from lesionnet.evaluation.boxes3d import as_boxes, iou_3d

IOU_THRESHOLD = 0.1
FROC_FPS_PER_SCAN = (1, 2, 4, 8)
#: the 101 recall points; i / 100 exactly (``np.linspace`` gives 0.7000000000000001 for the 71st, which a
#: recall of exactly 7 / 10 would miss)
RECALL_POINTS = np.arange(101) / 100.0


@dataclass(frozen=True)
class ScanMatch:
    """The matching of one scan's predictions, in the scan's file order.

    ``true_positive (N,)`` bool; ``matched_label (N,)`` int, the index of the ground-truth box a true
    positive found (-1 for a false positive); ``n_ground_truth`` boxes in the scan.
    """
    scores: np.ndarray
    true_positive: np.ndarray
    matched_label: np.ndarray
    n_ground_truth: int


def match_scan(boxes_xyz, scores, ground_truth_xyz, iou_threshold: float = IOU_THRESHOLD) -> ScanMatch:
    """Match one scan's predicted boxes ``(N, 6)`` with ``scores (N,)`` to its ground-truth boxes
    ``(M, 6)`` (see the module docstring)."""
    boxes = as_boxes(boxes_xyz)
    truth = as_boxes(ground_truth_xyz, "ground truth boxes")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {scores.shape[0]} scores")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite numbers")
    true_positive = np.zeros(len(boxes), dtype=bool)
    matched = np.full(len(boxes), -1, dtype=np.int64)
    if len(boxes) and len(truth):
        iou = iou_3d(boxes, truth)
        free = np.ones(len(truth), dtype=bool)
        for i in np.argsort(-scores, kind="stable"):
            candidates = np.where(free, iou[i], -1.0)
            best = int(np.argmax(candidates))
            if candidates[best] > iou_threshold:
                true_positive[i], matched[i], free[best] = True, best, False
    return ScanMatch(scores, true_positive, matched, len(truth))


def fragmentation(boxes_xyz, ground_truth_xyz, iou_threshold: float = IOU_THRESHOLD) -> tuple[int, int]:
    """``(split lesions, merging boxes)`` of one scan: lesions that two or more of the boxes overlap with
    IoU > ``iou_threshold`` (one node cut into several boxes), and boxes that overlap two or more lesions
    so (several nodes in one box). Scores play no part: every given box counts."""
    boxes, truth = as_boxes(boxes_xyz), as_boxes(ground_truth_xyz, "ground truth boxes")
    if not len(boxes) or not len(truth):
        return 0, 0
    hits = iou_3d(boxes, truth) > iou_threshold
    return int((hits.sum(axis=0) >= 2).sum()), int((hits.sum(axis=1) >= 2).sum())


def froc(matches: Mapping[str, ScanMatch], fps_per_scan=FROC_FPS_PER_SCAN) -> dict:
    """FROC of matched scans: ``{"sens@k": %, ..., "AS": %, "curve": {"fps_per_scan": [...],
    "sensitivity": [...], "thresholds": [...]}}`` (the curve has one point per distinct score, in
    descending score order)."""
    n_scans = len(matches)
    n_truth = sum(m.n_ground_truth for m in matches.values())
    scores = np.concatenate([m.scores for m in matches.values()]) if matches else np.zeros(0)
    tp = np.concatenate([m.true_positive for m in matches.values()]) if matches else np.zeros(0, bool)
    thresholds = np.unique(scores)[::-1]
    # counts of predictions with score >= each threshold (equal scores enter together)
    order = np.argsort(-scores, kind="stable")
    cum_tp, cum_fp = np.cumsum(tp[order]), np.cumsum(~tp[order])
    last = np.searchsorted(-scores[order], -thresholds, side="right") - 1
    sensitivity = 100.0 * cum_tp[last] / n_truth if len(thresholds) else np.zeros(0)
    fps = cum_fp[last] / n_scans if len(thresholds) else np.zeros(0)
    result = {}
    for k in fps_per_scan:
        reached = sensitivity[fps <= k]
        result[f"sens@{k:g}"] = float(reached.max()) if reached.size else 0.0
    result["AS"] = float(np.mean([result[f"sens@{k:g}"] for k in fps_per_scan]))
    result["curve"] = {"fps_per_scan": fps.tolist(), "sensitivity": sensitivity.tolist(),
                       "thresholds": thresholds.tolist()}
    return result


def average_precision(matches: Mapping[str, ScanMatch]) -> float:
    """COCO-style AP (%) of matched scans: 101-point interpolated, monotone precision."""
    n_truth = sum(m.n_ground_truth for m in matches.values())
    names = sorted(matches)
    if not names:
        return 0.0
    scores = np.concatenate([matches[n].scores for n in names])
    tp = np.concatenate([matches[n].true_positive for n in names])
    if not scores.size:
        return 0.0
    order = np.argsort(-scores, kind="mergesort")
    cum_tp, cum_fp = np.cumsum(tp[order]), np.cumsum(~tp[order])
    recall = cum_tp / n_truth
    precision = cum_tp / (cum_tp + cum_fp)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    index = np.searchsorted(recall, RECALL_POINTS - 1e-12, side="left")   # reached up to float rounding
    sampled = np.where(index < len(precision), precision[np.minimum(index, len(precision) - 1)], 0.0)
    return float(100.0 * sampled.mean())


def evaluate_detection(predictions: Mapping[str, tuple], ground_truth: Mapping[str, np.ndarray],
                       iou_threshold: float = IOU_THRESHOLD) -> dict:
    """Detection metrics over scans.

    Args:
        predictions: ``{scan_id: (boxes_xyz (N, 6), scores (N,))}``; a scan of ``ground_truth`` without
            an entry has no predictions.
        ground_truth: ``{scan_id: boxes_xyz (M, 6)}``, every evaluated scan (also those without lesions).
        iou_threshold: a prediction finds a lesion when their 3D IoU exceeds this.

    Returns:
        ``{"AS", "sens@1", "sens@2", "sens@4", "sens@8", "AP@0.1", "n_scans", "n_lesions",
        "n_predictions", "n_split_lesions", "n_merging_boxes", "froc_curve", "per_scan"}``; percentages
        0-100; the two counts are :func:`fragmentation`'s, summed over the scans.
    """
    unknown = sorted(set(predictions) - set(ground_truth))
    if unknown:
        raise ValueError(f"predictions for scan(s) without ground truth: {', '.join(unknown[:5])}"
                         + (" ..." if len(unknown) > 5 else ""))
    if not ground_truth:
        raise ValueError("no ground-truth scans to evaluate")
    matches, split, merging = {}, 0, 0
    for scan_id in sorted(ground_truth):
        boxes, scores = predictions.get(scan_id, (np.zeros((0, 6)), np.zeros(0)))
        matches[scan_id] = match_scan(boxes, scores, ground_truth[scan_id], iou_threshold)
        counts = fragmentation(boxes, ground_truth[scan_id], iou_threshold)
        split, merging = split + counts[0], merging + counts[1]
    n_lesions = sum(m.n_ground_truth for m in matches.values())
    if n_lesions == 0:
        raise ValueError("the ground truth holds no lesion: sensitivity and AP are undefined")
    curve = froc(matches)
    result = {k: curve[k] for k in ("AS", *(f"sens@{k:g}" for k in FROC_FPS_PER_SCAN))}
    result[f"AP@{iou_threshold:g}"] = average_precision(matches)
    result.update({"n_scans": len(matches), "n_lesions": int(n_lesions),
                   "n_predictions": int(sum(len(m.scores) for m in matches.values())),
                   "n_split_lesions": split, "n_merging_boxes": merging,
                   "iou_threshold": float(iou_threshold), "froc_curve": curve["curve"],
                   "per_scan": {s: {"n_lesions": m.n_ground_truth, "n_predictions": int(len(m.scores)),
                                    "n_found": int(m.true_positive.sum())} for s, m in matches.items()}})
    return result


def format_detection_table(results: Mapping[str, dict]) -> str:
    """A Markdown table of ``{row label: evaluate_detection result}``."""
    keys = ["AS", "sens@1", "sens@2", "sens@4", "sens@8"]
    header = ["", *keys, "AP@0.1", "scans", "lesions", "boxes", "split lesions", "merging boxes"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for label, r in results.items():
        ap = next(v for k, v in r.items() if k.startswith("AP@"))
        cells = [label, *(f"{r[k]:.1f}" for k in keys), f"{ap:.1f}", str(r["n_scans"]), str(r["n_lesions"]),
                 str(r["n_predictions"]), str(r["n_split_lesions"]), str(r["n_merging_boxes"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["IOU_THRESHOLD", "ScanMatch", "match_scan", "fragmentation", "froc", "average_precision",
           "evaluate_detection",
           "format_detection_table"]
