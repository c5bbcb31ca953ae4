"""LN-Tracker inference (Algorithm 1) with a fake detector, prediction records, and the 2D -> 3D merging baseline."""
import json

import matplotlib.image
import numpy as np
import pytest

from lesionnet.datasets.geometry import Geometry
from lesionnet.evaluation.detection_io import read_prediction_file
from lesionnet.inference.overlays import save_detection_overlay
from lesionnet.methods.lntracker.merging import merge_slice_boxes
from lesionnet.methods.lntracker.tracklets import (
    SliceDetections,
    Tracklet,
    track_scan,
    tracklet_box_3d,
    tracklets_to_record,
)


class FakeDetector:
    """``step(z, track_embeddings)`` over known nodes. An embedding row is ``[node]``.

    ``nodes``: ``{node: {z: box_xyxy}}``; every node present on slice z is detected by a detection query
    (score ``det``), and a track query of a node present on z follows it (score ``track``, similarity
    ``sim``); a track query of an absent node scores 0.05. ``changes``: ``{(node, z): {"det"|"track"|"sim": v}}``.
    ``extra``: ``{z: [(box, score, node), ...]}`` more detection queries.
    """

    def __init__(self, nodes, changes=None, extra=None, as_torch=False):
        self.nodes, self.changes, self.extra = nodes, changes or {}, extra or {}
        self.as_torch = as_torch
        self.calls = []
        self.query_types = []

    def _value(self, node, z, key, default):
        return self.changes.get((node, z), {}).get(key, default)

    def __call__(self, z, track_embeddings):
        track_nodes = [] if track_embeddings is None else [int(v) for v in track_embeddings[:, 0].tolist()]
        self.calls.append((z, None if track_embeddings is None else track_nodes))
        if track_embeddings is not None:
            self.query_types.append(type(track_embeddings))
        t_scores, t_boxes, t_sims = [], [], []
        for node in track_nodes:
            present = z in self.nodes.get(node, {})
            t_scores.append(self._value(node, z, "track", 0.9) if present else 0.05)
            t_boxes.append(self.nodes[node][z] if present else [0, 0, 1, 1])
            t_sims.append(self._value(node, z, "sim", 0.9))
        dets = [(boxes[z], self._value(node, z, "det", 0.8), node) for node, boxes in self.nodes.items() if z in boxes]
        dets += self.extra.get(z, [])
        det_embeddings = np.array([[node] for _, _, node in dets], dtype=np.float32).reshape(-1, 1)
        if self.as_torch:
            import torch
            det_embeddings = torch.from_numpy(det_embeddings)
        return SliceDetections(t_scores, np.reshape(t_boxes, (-1, 4)), t_sims, [d[1] for d in dets],
                               np.reshape([d[0] for d in dets], (-1, 4)),
                               track_embeddings if track_embeddings is not None else det_embeddings[:0],
                               det_embeddings)


def _node(first, last, box=(10, 20, 16, 25)):
    """A node on slices first..last whose box grows by one pixel in x per slice."""
    x1, y1, x2, y2 = box
    return {z: [x1, y1, x2 + (z - first), y2] for z in range(first, last + 1)}


def _summary(tracklets):
    return [(t.first_slice, t.last_slice, tracklet_box_3d(t).tolist()) for t in tracklets]


def test_two_nodes_give_exact_3d_boxes_and_live_tracklets_close_at_the_last_slice():
    detector = FakeDetector({10: _node(1, 3), 20: _node(2, 5, box=(40, 5, 44, 9))})
    tracklets = track_scan(detector, 6)
    assert _summary(tracklets) == [(1, 3, [10, 20, 1, 18, 25, 4]), (2, 5, [40, 5, 2, 47, 9, 6])]
    assert [t.tracklet_id for t in tracklets] == [0, 1]
    # a re-detection of a tracked node starts nothing; track queries follow the live tracklets in order
    assert detector.calls == [(0, None), (1, None), (2, [10]), (3, [10, 20]), (4, [10, 20]), (5, [20])]
    assert tracklets[0].scores == [0.8, 0.9, 0.9] and tracklets[0].score == 0.9     # max of slice scores


def test_track_score_drop_closes_the_tracklet():
    lost = FakeDetector({1: _node(0, 4)}, changes={(1, 2): {"track": 0.2, "det": 0.1}})
    assert [(t.first_slice, t.last_slice) for t in track_scan(lost, 5)] == [(0, 1), (3, 4)]
    redetected = FakeDetector({1: _node(0, 4)}, changes={(1, 2): {"track": 0.3}})      # not > tau_track
    tracklets = track_scan(redetected, 5)
    assert [(t.first_slice, t.last_slice) for t in tracklets] == [(0, 1), (2, 4)]
    assert tracklet_box_3d(tracklets[1]).tolist() == [10, 20, 2, 20, 25, 5]


def test_reattach_continues_a_tracklet_whose_track_query_missed_one_slice():
    # slice 2: the track query of node 1 scores 0.2 but a detection query finds the node again
    changes = {(1, 2): {"track": 0.2}}
    printed = track_scan(FakeDetector({1: _node(0, 4)}, changes=changes), 5)
    assert [(t.first_slice, t.last_slice) for t in printed] == [(0, 1), (2, 4)]          # Algorithm 1 as printed
    detector = FakeDetector({1: _node(0, 4)}, changes=changes)
    tracklets = track_scan(detector, 5, reattach_iou=0.1)
    assert _summary(tracklets) == [(0, 4, [10, 20, 0, 20, 25, 5])]
    assert tracklets[0].scores == [0.8, 0.9, 0.8, 0.9, 0.9]       # the detection's score on slice 2
    assert detector.calls[3] == (3, [1])                         # its query tracks the node from slice 3 on
    # a detection elsewhere (no overlap with the closed tracklet's last box) still starts a new tracklet
    moved = FakeDetector({1: {**_node(0, 1), **_node(2, 4, box=(60, 60, 66, 65))}}, changes=changes)
    assert [(t.first_slice, t.last_slice) for t in track_scan(moved, 5, reattach_iou=0.1)] == [(0, 1), (2, 4)]


def test_one_to_one_association_lets_an_adjacent_node_start_its_own_tracklet():
    # node 2 appears on slice 2 next to tracked node 1: 2D IoU 0.23 (above associate_iou, below duplicate_iou)
    nodes = {1: {z: [10, 20, 18, 28] for z in range(4)}, 2: {z: [15, 20, 23, 28] for z in (2, 3)}}
    # and a duplicate detection query of node 1 on slice 1 (IoU 0.78 with its tracked box)
    extra = {1: [([11, 20, 19, 28], 0.7, 1)]}
    absorbed = track_scan(FakeDetector(nodes, extra=extra), 4, associate_iou=0.1)
    assert [(t.first_slice, t.last_slice) for t in absorbed] == [(0, 3)]        # node 2 is never tracked
    detector = FakeDetector(nodes, extra=extra)
    tracklets = track_scan(detector, 4, associate_iou=0.1, duplicate_iou=0.5)
    assert _summary(tracklets) == [(0, 3, [10, 20, 0, 18, 28, 4]), (2, 3, [15, 20, 2, 23, 28, 4])]
    assert detector.calls == [(0, None), (1, [1]), (2, [1]), (3, [1, 2])]       # the duplicate started nothing


def test_detection_slice_scores_rank_a_tracklet_by_its_detection_queries():
    # node 1's track query keeps 0.95 on slices 1-3 while the detection queries on it score 0.5 / 0.6 / 0.4 / 0.5;
    # a detection query elsewhere on slice 2 (0.99, no overlap) is no evidence for the tracklet
    changes = {(1, 0): {"det": 0.5}, (1, 1): {"det": 0.6, "track": 0.95}, (1, 2): {"det": 0.4, "track": 0.95},
               (1, 3): {"det": 0.5, "track": 0.95}}
    extra = {2: [([60, 60, 66, 66], 0.99, 9)]}
    by_track = track_scan(FakeDetector({1: _node(0, 3)}, changes=changes, extra=extra), 4)
    by_detection = track_scan(FakeDetector({1: _node(0, 3)}, changes=changes, extra=extra), 4,
                              slice_score="detection")
    assert _summary(by_detection)[0] == _summary(by_track)[0] == (0, 3, [10, 20, 0, 19, 25, 4])
    assert by_track[0].scores == [0.5, 0.95, 0.95, 0.95] and by_track[0].score == 0.95
    assert by_detection[0].scores == [0.5, 0.6, 0.4, 0.5] and by_detection[0].score == 0.6
    assert [t.score for t in by_detection[1:]] == [0.99]          # the other detection's own tracklet
    with pytest.raises(ValueError, match="slice_score"):
        track_scan(FakeDetector({1: _node(0, 3)}), 4, slice_score="mean")


def test_similarity_drop_closes_the_tracklet():
    detector = FakeDetector({1: _node(0, 4)}, changes={(1, 3): {"sim": 0.4}})
    tracklets = track_scan(detector, 5)
    assert [(t.first_slice, t.last_slice) for t in tracklets] == [(0, 2), (3, 4)]
    assert detector.calls[3] == (3, [1]) and detector.calls[4] == (4, [1])
    assert track_scan(FakeDetector({1: _node(0, 4)}, changes={(1, 3): {"sim": 0.4}}), 5, tau_sim=0.3)[0].last_slice == 4


def test_new_detection_starts_a_tracklet_and_duplicates_of_it_do_not():
    # slice 1: node 1 appears, seen by two detection queries (the stronger one, listed last, starts the
    # tracklet); slice 2: a detection beside tracked node 1 (2D IoU 0.3 < 0.5) starts a second tracklet
    extra = {1: [([10, 19, 16, 25], 0.85, 1)], 2: [([14, 20, 20, 25], 0.7, 7)], 3: [([14, 20, 20, 25], 0.25, 7)]}
    detector = FakeDetector({1: _node(1, 3)}, extra=extra)
    tracklets = track_scan(detector, 4)
    assert _summary(tracklets) == [(1, 3, [10, 19, 1, 18, 25, 4]), (2, 2, [14, 20, 2, 20, 25, 3])]
    assert detector.calls[2:] == [(2, [1]), (3, [1, 7])]
    assert tracklets[0].scores == [0.85, 0.9, 0.9] and tracklets[1].scores == [0.7]


def test_no_detection_above_tau_det_gives_nothing():
    detector = FakeDetector({1: _node(0, 2)}, changes={(1, z): {"det": 0.3} for z in range(3)})
    assert track_scan(detector, 3) == []
    assert detector.calls == [(0, None), (1, None), (2, None)]


def test_step_must_answer_every_track_query():
    def step(z, queries):
        return SliceDetections([], np.zeros((0, 4)), [], [0.9], [[0, 0, 2, 2]], np.zeros((0, 1)), np.ones((1, 1)))
    with pytest.raises(ValueError, match="1 track queries"):
        track_scan(step, 2)


def test_torch_embeddings_are_selected_as_rows():
    torch = pytest.importorskip("torch")
    detector = FakeDetector({1: _node(0, 1), 2: _node(1, 3, box=(40, 5, 44, 9))}, as_torch=True)
    tracklets = track_scan(detector, 4)
    assert [(t.first_slice, t.last_slice) for t in tracklets] == [(0, 1), (1, 3)]
    assert detector.calls[2] == (2, [1, 2]) and detector.calls[3] == (3, [2])
    assert detector.query_types and all(kind is torch.Tensor for kind in detector.query_types)


def test_record_is_a_detection_prediction_file_with_world_corners(tmp_path):
    first, second = Tracklet(0, 2), Tracklet(1, 0)
    first.append([1, 2, 4, 6], 0.4)
    first.append([0, 3, 3, 7], 0.6)
    second.append([5, 5, 6, 6], 0.9)
    geometry = Geometry((0.5, 0.8, 2.0), origin_xyz=(10.0, 20.0, 30.0), shape_zyx=(8, 16, 16))
    record = tracklets_to_record([first, second], geometry)
    assert record["boxes_xyz"] == [[0, 2, 2, 4, 7, 4], [5, 5, 0, 6, 6, 1]]
    assert record["scores"] == [0.6, 0.9] and record["slice_ranges"] == [[2, 4], [0, 1]]
    low, high = np.asarray(record["boxes_world"][0])
    assert np.allclose(low, [10 - 0.25, 20 + 1.5 * 0.8, 30 + 1.5 * 2.0])
    assert np.allclose(high, [10 + 3.5 * 0.5, 20 + 6.5 * 0.8, 30 + 3.5 * 2.0])
    path = tmp_path / "scan.json"
    path.write_text(json.dumps(record))
    boxes, scores = read_prediction_file(path)
    assert boxes.shape == (2, 6) and scores.tolist() == [0.6, 0.9]
    assert tracklets_to_record([]) == {"boxes_xyz": [], "scores": [], "slice_ranges": []}


def _slices(*per_slice):
    """per_slice: lists of (box, score) per slice -> [(boxes (N, 4), scores (N,)), ...]."""
    return [(np.reshape([b for b, _ in s], (-1, 4)), np.array([p for _, p in s])) for s in per_slice]


def test_merging_bridges_a_one_slice_gap_only_when_allowed():
    box = [10, 10, 20, 20]
    per_slice = _slices([(box, 0.9)], [(box, 0.8)], [], [([11, 10, 21, 20], 0.7)], [])
    merged = merge_slice_boxes(per_slice, max_gap=1)
    assert [(b.tolist(), s) for b, s in merged] == [([10, 10, 0, 21, 20, 4], 0.9)]
    split = merge_slice_boxes(per_slice, max_gap=0)
    assert [(b.tolist(), s) for b, s in split] == [([10, 10, 0, 20, 20, 2], 0.9), ([11, 10, 3, 21, 20, 4], 0.7)]
    two_gaps = _slices([(box, 0.9)], [], [], [(box, 0.8)])
    assert len(merge_slice_boxes(two_gaps, max_gap=1)) == 2 and len(merge_slice_boxes(two_gaps, max_gap=2)) == 1


def test_merging_links_one_to_one_by_highest_iou():
    left, right = [0, 0, 10, 10], [2, 0, 12, 10]           # IoU 2/3: two overlapping nodes
    per_slice = _slices([(left, 0.9), (right, 0.8)], [([1, 0, 11, 10], 0.7)], [([1, 0, 11, 10], 0.6)])
    merged = merge_slice_boxes(per_slice, max_gap=0)
    # slice 1's box has IoU 9/11 with both: it joins the older chain only; the other chain closes
    assert [(b.tolist(), s) for b, s in merged] == [([0, 0, 0, 11, 10, 3], 0.9), ([2, 0, 0, 12, 10, 1], 0.8)]
    per_slice = _slices([([0, 0, 10, 10], 0.9)], [([0, 0, 10, 10], 0.5), ([1, 0, 11, 10], 0.95)])
    merged = merge_slice_boxes(per_slice)
    assert [(b.tolist(), s) for b, s in merged] == [([0, 0, 0, 10, 10, 2], 0.9), ([1, 0, 1, 11, 10, 2], 0.95)]


def test_merging_ignores_boxes_at_or_below_min_score():
    per_slice = _slices([([0, 0, 4, 4], 0.3)], [([0, 0, 4, 4], 0.31)])
    assert [(b.tolist(), s) for b, s in merge_slice_boxes(per_slice)] == [([0, 0, 1, 4, 4, 2], 0.31)]


def _red_pixels(path) -> int:
    rgb = matplotlib.image.imread(path)[..., :3]
    return int(((rgb[..., 0] > 0.8) & (rgb[..., 1] < 0.3) & (rgb[..., 2] < 0.3)).sum())


def test_detection_overlay_draws_the_best_boxes(tmp_path):
    image = np.zeros((6, 40, 50), dtype=np.float32)
    geometry = Geometry((0.8, 0.8, 3.0), shape_zyx=(6, 40, 50))
    boxes = [[10, 5, 1, 30, 20, 4], [35, 25, 2, 45, 35, 3]]
    save_detection_overlay(tmp_path / "two.png", image, geometry, boxes, [0.9, 0.4], title="scan")
    save_detection_overlay(tmp_path / "none.png", image, geometry, [], [])
    assert _red_pixels(tmp_path / "two.png") > 50 and _red_pixels(tmp_path / "none.png") == 0
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        save_detection_overlay(tmp_path / "bad.png", image, geometry, boxes, [0.9])
