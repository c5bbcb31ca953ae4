"""LN-Tracker inference (the paper's Algorithm 1): link per-slice detections into 3D tracklets along z.

Independent of the network: :func:`track_scan` calls ``step(z, track_embeddings)`` — the detector on
axial slice ``z`` given the track queries of the live tracklets — from the bottom slice ``z = 0`` up,
and turns what it returns (:class:`SliceDetections`) into :class:`Tracklet` objects. 2D boxes are
``[x1, y1, x2, y2]`` pixels of the slice, half open; 3D boxes ``[x1, y1, z1, x2, y2, z2]`` voxels,
half open (a tracklet on slices ``a .. b`` has z-extent ``[a, b + 1)``).

Rules where the paper is silent:

* **Associate T and d** (line 14): a detection (score > ``tau_det``) is a re-detection of a live tracklet
  when its 2D IoU with that tracklet's box *on the same slice* exceeds ``associate_iou``; it is then
  dropped. Detections are visited by decreasing score, and tracklets born earlier on the same slice
  count as live, so duplicate detection queries on one new node start one tracklet (the highest-scoring).
  A tracklet closed on this slice (score or similarity too low) is not live: a detection on its node
  starts a new tracklet, as in the paper's pseudo-code.
* **One-to-one association** (lesionnet's option ``duplicate_iou``; off in the plan): the detections are
  paired with the live tracklets one-to-one, highest IoU first, only pairs with IoU > ``associate_iou``
  (:func:`greedy_pairs`, the merging baseline's linking rule), and a paired detection is its tracklet's
  node found again; of the others, one whose 2D IoU with a live tracklet's box, a paired detection or a
  higher-scoring detection exceeds ``duplicate_iou`` is a duplicate (the 2D non-maximum suppression the
  baseline applies to the same detector's boxes); the rest start tracklets. With ``duplicate_iou=None`` a live tracklet
  absorbs *every* detection that overlaps it by more than ``associate_iou`` (the rule above), so the
  detection of an adjacent node whose box touches a tracked one (IoU 0.1-0.5 for nodes about 7 pixels
  wide) never starts its own tracklet: most nodes the merging baseline found and LN-Tracker missed on
  Dataset502 were such neighbours (documentation/methods/ln_tracker.md).
* **Re-attach** (lesionnet's addition, off with ``reattach_iou=None``, the pseudo-code as printed): a
  detection that matches no live tracklet but overlaps (2D IoU > ``reattach_iou``) the last box of a
  tracklet closed *on this slice* continues that tracklet instead of starting a new one; its query
  becomes the tracklet's track query. A track query that misses one slice of its node then no longer
  splits the node into two boxes (measured in documentation/methods/ln_tracker.md).
* **Tracklet score** (:func:`chain_score`): the *maximum* of its per-slice scores. A node's slice scores
  fall at its upper and lower ends (partial volume), so a mean would rank a correctly extended tracklet
  below a short one; the maximum is the detector's confidence on the node's clearest slice and does not
  depend on the tracklet's length. The merging baseline (:mod:`.merging`) uses the same rule.
* **Which score a slice gives** (lesionnet's option ``slice_score``): ``"track"`` (Algorithm 1 as printed)
  keeps the track query's class score of its box; ``"detection"`` takes the detection queries' word
  instead: the highest score of a detection query whose box overlaps the tracklet's box on that slice by
  2D IoU > ``associate_iou`` (0 when none does; the birth slice keeps its detection's score). The track
  score still decides whether the tracklet goes on (``tau_track``); only the ranking changes. The paper
  decouples detection queries from tracking so that they "produce a complete set of predictions
  independent of tracking status"; their scores are the ones trained on every node of every slice, while a
  track query is trained to keep its node, and a track query born on a structure that is no node keeps a
  high score on it (measured in documentation/methods/ln_tracker.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from lesionnet.datasets.geometry import box_corners_world
from lesionnet.evaluation.boxes3d import box_iou


def box_iou_2d(boxes_a_xyxy, boxes_b_xyxy) -> np.ndarray:
    """``(N, M)`` IoU of ``(N, 4)`` and ``(M, 4)`` half-open boxes ``[x1, y1, x2, y2]``."""
    return box_iou(boxes_a_xyxy, boxes_b_xyxy, 2)


def box_3d_from_slices(boxes_xyxy, first_slice: int, last_slice: int) -> np.ndarray:
    """``(6,)`` box ``[x1, y1, z1, x2, y2, z2]``: the union of 2D boxes ``(K, 4)`` in x/y, z-extent
    ``[first_slice, last_slice + 1)``."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    x1, y1 = boxes[:, 0].min(), boxes[:, 1].min()
    x2, y2 = boxes[:, 2].max(), boxes[:, 3].max()
    return np.array([x1, y1, first_slice, x2, y2, last_slice + 1], dtype=np.float64)


def greedy_pairs(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """One-to-one ``(row, column)`` pairs of an IoU matrix, highest IoU first, only IoU > ``threshold``;
    ties go to the lower row, then the lower column."""
    rows, cols = np.nonzero(iou > threshold)
    order = np.lexsort((cols, rows, -iou[rows, cols]))
    used_rows, used_cols, pairs = set(), set(), []
    for r, c in zip(rows[order], cols[order]):
        if r not in used_rows and c not in used_cols:
            used_rows.add(r)
            used_cols.add(c)
            pairs.append((int(r), int(c)))
    return pairs


def chain_score(scores) -> float:
    """Score of a tracklet / chain from its per-slice scores: their maximum (see the module docstring)."""
    return float(np.max(np.asarray(scores, dtype=np.float64)))


@dataclass
class SliceDetections:
    """The detector's output on one slice ``z`` given ``T`` track queries (one per live tracklet, in order).

    Attributes:
        track_scores: ``(T,)`` class scores of the track queries' boxes on slice ``z``.
        track_boxes: ``(T, 4)`` their boxes ``[x1, y1, x2, y2]``, pixels of the slice, half open.
        track_similarity: ``(T,)`` ``sim(q', q)`` in [0, 1] between each track query on slice ``z - 1`` and
            its update on slice ``z``.
        det_scores: ``(N,)`` class scores of the detection queries.
        det_boxes: ``(N, 4)`` their boxes, as ``track_boxes``.
        track_embeddings: ``(T, C)`` updated track queries (numpy array or torch tensor; only rows are taken).
        det_embeddings: ``(N, C)`` detection queries' embeddings, likewise.
    """

    track_scores: np.ndarray
    track_boxes: np.ndarray
    track_similarity: np.ndarray
    det_scores: np.ndarray
    det_boxes: np.ndarray
    track_embeddings: object
    det_embeddings: object

    def __post_init__(self):
        self.track_scores = np.asarray(self.track_scores, dtype=np.float64).reshape(-1)
        self.track_boxes = np.asarray(self.track_boxes, dtype=np.float64).reshape(-1, 4)
        self.track_similarity = np.asarray(self.track_similarity, dtype=np.float64).reshape(-1)
        self.det_scores = np.asarray(self.det_scores, dtype=np.float64).reshape(-1)
        self.det_boxes = np.asarray(self.det_boxes, dtype=np.float64).reshape(-1, 4)
        counts = {len(self.track_scores), len(self.track_boxes), len(self.track_similarity)}
        if len(counts) != 1:
            raise ValueError("track_scores, track_boxes and track_similarity disagree on the number of track queries: "
                             f"{len(self.track_scores)}, {len(self.track_boxes)}, {len(self.track_similarity)}")
        if len(self.det_scores) != len(self.det_boxes):
            raise ValueError(f"{len(self.det_scores)} det_scores but {len(self.det_boxes)} det_boxes")


@dataclass
class Tracklet:
    """One 3D instance: its per-slice boxes ``[x1, y1, x2, y2]`` and scores on slices ``first_slice ..``
    (consecutive, one per slice)."""

    tracklet_id: int
    first_slice: int
    boxes: list = field(default_factory=list)
    scores: list = field(default_factory=list)

    @property
    def last_slice(self) -> int:
        return self.first_slice + len(self.boxes) - 1

    def append(self, box_xyxy, score: float) -> None:
        self.boxes.append(np.asarray(box_xyxy, dtype=np.float64).reshape(4))
        self.scores.append(float(score))

    @property
    def score(self) -> float:
        return chain_score(self.scores)


def tracklet_box_3d(tracklet: Tracklet) -> np.ndarray:
    """``(6,)`` box ``[x1, y1, z1, x2, y2, z2]`` of a tracklet (union in x/y, z ``[first, last + 1)``)."""
    return box_3d_from_slices(tracklet.boxes, tracklet.first_slice, tracklet.last_slice)


def _take_rows(rows, index: list, name: str):
    """Rows ``index`` (non-empty) of a numpy array or torch tensor."""
    if rows is None:
        raise ValueError(f"step returned no {name}: they are needed as the track queries of the next slice")
    if isinstance(rows, np.ndarray):
        return rows[np.asarray(index, dtype=np.int64)]
    import torch
    return rows[torch.as_tensor(index, dtype=torch.long, device=rows.device)]


def _concat_rows(first, second):
    """``first`` then ``second`` along rows (numpy arrays or torch tensors; ``first`` may be None)."""
    if first is None:
        return second
    if isinstance(first, np.ndarray):
        return np.concatenate([first, second], axis=0)
    import torch
    return torch.cat([first, second], dim=0)


def _reopen(closed: list, box_xyxy, reattach_iou: float | None):
    """The tracklet of ``closed`` (closed on this slice) whose last box overlaps ``box_xyxy`` most, if that
    2D IoU exceeds ``reattach_iou``; it is taken out of ``closed``. None otherwise, or when off."""
    if reattach_iou is None or not closed:
        return None
    overlaps = box_iou_2d(box_xyxy, np.stack([tracklet.boxes[-1] for tracklet in closed]))[0]
    best = int(np.argmax(overlaps))
    return closed.pop(best) if overlaps[best] > reattach_iou else None


def _unmatched_detections(detections: SliceDetections, live_boxes: list, tau_det: float, associate_iou: float,
                          duplicate_iou: float | None) -> list[int]:
    """Indices of the detections above ``tau_det`` that are no live tracklet's node, by decreasing score
    (see the module docstring: many-to-one with ``duplicate_iou=None``, else one-to-one, duplicates dropped;
    detections born on this slice are checked by the caller)."""
    order = [int(i) for i in np.argsort(-detections.det_scores, kind="stable") if detections.det_scores[i] > tau_det]
    if not order or not live_boxes:
        return order
    boxes = detections.det_boxes[order]
    tracked = box_iou_2d(boxes, np.stack(live_boxes))
    if duplicate_iou is None:
        return [i for i, row in zip(order, tracked) if row.max() <= associate_iou]
    paired = {r for r, _ in greedy_pairs(tracked, associate_iou)}
    kept: list[int] = []   # positions in ``order`` of the detections that are neither re-detections nor duplicates
    for position in range(len(order)):
        if position in paired or tracked[position].max() > duplicate_iou:
            continue
        others = sorted(paired) + kept
        if others and box_iou_2d(boxes[position], boxes[others]).max() > duplicate_iou:
            continue
        kept.append(position)
    return [order[position] for position in kept]


def _detection_evidence(detections: SliceDetections, boxes_xyxy: np.ndarray, associate_iou: float) -> np.ndarray:
    """``(K,)`` for ``K`` boxes of the slice: the highest score of a detection query whose box overlaps the
    box by 2D IoU > ``associate_iou``, 0 where none does."""
    if not len(boxes_xyxy) or not len(detections.det_scores):
        return np.zeros(len(boxes_xyxy))
    overlapping = box_iou_2d(boxes_xyxy, detections.det_boxes) > associate_iou
    return np.where(overlapping, detections.det_scores[None, :], 0.0).max(axis=1)


def track_scan(step: Callable[[int, object], SliceDetections], num_slices: int, tau_det: float = 0.3,
               tau_track: float = 0.3, tau_sim: float = 0.5, associate_iou: float = 0.5,
               reattach_iou: float | None = None, duplicate_iou: float | None = None,
               slice_score: str = "track") -> list[Tracklet]:
    """Algorithm 1 over slices ``0 .. num_slices - 1``; returns every tracklet, in order of birth.

    ``step(z, track_embeddings)`` runs the detector on slice ``z``; ``track_embeddings`` holds one row per
    live tracklet, in the order of the tracklets (survivors first, then those born on slice ``z - 1``), or
    is None when there is none. A live tracklet is kept when its track score > ``tau_track`` and its
    similarity > ``tau_sim`` (its box is appended), else closed; a detection with score > ``tau_det`` that
    matches no live tracklet (see the module docstring) starts a new one, and its embedding becomes a
    track query for slice ``z + 1``, unless ``reattach_iou`` is set and it continues a tracklet closed on
    this slice (see the module docstring). ``duplicate_iou`` switches the association with the live
    tracklets to one-to-one (see the module docstring). ``slice_score`` (``"track"`` or ``"detection"``)
    picks the score a continued tracklet records on a slice (see the module docstring). Tracklets still live
    after the last slice are closed.
    """
    if slice_score not in ("track", "detection"):
        raise ValueError(f"slice_score must be 'track' or 'detection', not {slice_score!r}")
    finished: list[Tracklet] = []
    live: list[Tracklet] = []
    queries = None
    next_id = 0
    for z in range(int(num_slices)):
        detections = step(z, queries)
        if len(detections.track_scores) != len(live):
            raise ValueError(f"slice {z}: step returned {len(detections.track_scores)} track outputs for "
                             f"{len(live)} track queries")
        kept, closed = [], []
        recorded = detections.track_scores if slice_score == "track" else \
            _detection_evidence(detections, detections.track_boxes, associate_iou)
        for k, tracklet in enumerate(live):
            if detections.track_scores[k] > tau_track and detections.track_similarity[k] > tau_sim:
                tracklet.append(detections.track_boxes[k], recorded[k])
                kept.append(k)
            else:
                closed.append(tracklet)
        live = [live[k] for k in kept]
        queries = _take_rows(detections.track_embeddings, kept, "track_embeddings") if kept else None
        live_boxes = [tracklet.boxes[-1] for tracklet in live]
        born = []
        # tracklets born on this slice count as live for the next detections (duplicates of a new node)
        born_boxes: list = []
        born_iou = associate_iou if duplicate_iou is None else duplicate_iou
        for i in _unmatched_detections(detections, live_boxes, tau_det, associate_iou, duplicate_iou):
            box = detections.det_boxes[i]
            if born_boxes and box_iou_2d(box, np.stack(born_boxes)).max() > born_iou:
                continue
            tracklet = _reopen(closed, box, reattach_iou)
            if tracklet is None:
                tracklet = Tracklet(next_id, z)
                next_id += 1
            tracklet.append(box, detections.det_scores[i])
            live.append(tracklet)
            born_boxes.append(tracklet.boxes[-1])
            born.append(int(i))
        finished.extend(closed)
        if born:
            queries = _concat_rows(queries, _take_rows(detections.det_embeddings, born, "det_embeddings"))
    finished.extend(live)
    return sorted(finished, key=lambda t: t.tracklet_id)


def tracklets_to_record(tracklets, geometry=None) -> dict:
    """The per-scan prediction record (``{scan_id}.json``, read by ``lesionnet_evaluate_detection``):

    * ``boxes_xyz``: ``[[x1, y1, z1, x2, y2, z2], ...]`` voxels of the scan, half open; ``scores``: one each;
    * ``slice_ranges``: ``[[z1, z2], ...]`` the slices ``z1 <= z < z2`` of each tracklet;
    * with a :class:`lesionnet.datasets.geometry.Geometry` of the scan's grid, ``boxes_world``:
      ``[[low_xyz, high_xyz], ...]``, the world points (mm, LPS) of each box's two opposite corners, the
      voxel edges: continuous indices ``(x1 - 0.5, y1 - 0.5, z1 - 0.5)`` and ``(x2 - 0.5, y2 - 0.5, z2 - 0.5)``
      (voxel centers lie on integer indices).
    """
    tracklets = list(tracklets)
    boxes = np.array([tracklet_box_3d(t) for t in tracklets], dtype=np.float64).reshape(-1, 6)
    record = {"boxes_xyz": boxes.tolist(), "scores": [chain_score(t.scores) for t in tracklets],
              "slice_ranges": [[int(b[2]), int(b[5])] for b in boxes]}
    if geometry is not None:
        record["boxes_world"] = box_corners_world(boxes, geometry).tolist()
    return record


__all__ = ["box_iou_2d", "box_3d_from_slices", "chain_score", "greedy_pairs", "SliceDetections", "Tracklet",
           "tracklet_box_3d", "track_scan", "tracklets_to_record"]
