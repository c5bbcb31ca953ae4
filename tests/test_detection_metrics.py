"""Detection metrics (3D boxes, IoU > 0.1 matching, FROC, AS, AP@0.1) on hand-computed cases, against an
independent brute-force computation on random box sets, and ``lesionnet_evaluate_detection`` on files."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from lesionnet.cli import evaluate_detection as cli
from lesionnet.datasets.geometry import Geometry, box_corners_world, boxes_between_grids
from lesionnet.datasets.image_io import write_image
from lesionnet.evaluation.boxes3d import instance_boxes, iou_3d, non_maximum_suppression
from lesionnet.evaluation.detection_metrics import evaluate_detection, fragmentation, match_scan


def box(x1, y1, z1, size=2):
    return [x1, y1, z1, x1 + size, y1 + size, z1 + size]


# ------------------------------------------------------------------------------------------ boxes
def test_iou_of_half_open_boxes():
    one_voxel = [3, 4, 5, 4, 5, 6]
    assert iou_3d([one_voxel], [one_voxel])[0, 0] == 1.0
    assert iou_3d([box(0, 0, 0)], [box(1, 1, 1)])[0, 0] == pytest.approx(1 / 15)   # 1 voxel of 8 + 8 - 1
    assert iou_3d([box(0, 0, 0)], [box(2, 0, 0)])[0, 0] == 0.0                      # touching faces share nothing
    assert iou_3d(np.zeros((0, 6)), [box(0, 0, 0)]).shape == (0, 1)


def test_instance_boxes_are_min_to_max_plus_one_in_xyz():
    mask = np.zeros((6, 7, 8), dtype=np.uint8)          # [z, y, x]
    mask[1, 2, 3] = 1                                   # one voxel: z=1, y=2, x=3
    mask[2:5, 0:2, 5:8] = 3                             # label 2 absent
    labels, boxes = instance_boxes(mask)
    assert labels.tolist() == [1, 3]
    assert boxes.tolist() == [[3, 2, 1, 4, 3, 2], [5, 0, 2, 8, 2, 5]]
    with pytest.raises(ValueError, match="integer labels"):
        instance_boxes(mask + 0.5)


# ------------------------------------------------------------------------------------------ matching
def test_a_second_box_on_a_found_lesion_is_a_false_positive():
    truth = [box(0, 0, 0, 4)]
    m = match_scan([box(0, 0, 0, 4), box(1, 0, 0, 4)], [0.5, 0.9], truth)
    assert m.true_positive.tolist() == [False, True]    # the higher score finds it, whatever the file order


def test_equal_scores_keep_the_file_order():
    truth = [box(0, 0, 0, 4)]
    m = match_scan([box(1, 0, 0, 4), box(0, 0, 0, 4)], [0.7, 0.7], truth)
    assert m.true_positive.tolist() == [True, False]    # the first in the file, not the better overlap


def test_a_box_on_two_lesions_takes_the_best_free_one():
    truth = [box(0, 0, 0, 4), box(4, 0, 0, 4)]
    straddling = [1, 0, 0, 6, 4, 4]                     # IoU 1/2 with the first, 2/7 with the second
    first = iou_3d([straddling], truth)[0]
    assert first[0] > first[1] > 0.1
    m = match_scan([box(0, 0, 0, 4), straddling], [0.9, 0.8], truth)
    assert m.true_positive.tolist() == [True, True] and m.matched_label.tolist() == [0, 1]
    m = match_scan([straddling, [100, 0, 0, 104, 4, 4]], [0.9, 0.8], truth)
    assert m.matched_label.tolist() == [0, -1]


def test_iou_must_exceed_the_threshold():
    truth = [box(0, 0, 0, 2)]
    assert not match_scan([[0, 0, 0, 2, 2, 20]], [1.0], truth).true_positive[0]    # IoU 8 / 80 = 0.1
    assert match_scan([[0, 0, 0, 2, 2, 19]], [1.0], truth).true_positive[0]        # 8 / 76


# ------------------------------------------------------------------------------------------ FROC and AP
def _hand_case():
    """Scan a: lesions g1, g2; scan b: lesion g3; scan c: no lesion, no prediction."""
    g1, g2, g3 = box(0, 0, 0, 4), box(10, 10, 10, 4), box(20, 0, 0, 4)
    far = box(50, 50, 50, 2)
    truth = {"a": np.array([g1, g2]), "b": np.array([g3]), "c": np.zeros((0, 6))}
    predictions = {
        "a": ([g1, box(1, 0, 0, 4), g2], [0.9, 0.8, 0.5]),            # hit, duplicate (FP), hit
        "b": ([far, g3, far, far], [0.8, 0.3, 0.6, 0.4]),             # FP, hit, FP, FP
    }
    return predictions, truth


def test_froc_and_ap_by_hand():
    predictions, truth = _hand_case()
    r = evaluate_detection(predictions, truth)
    # thresholds 0.9 .8 .6 .5 .4 .3 -> FP/scan 0 2/3 1 1 4/3 4/3, sensitivity 1/3 1/3 1/3 2/3 2/3 1
    assert r["n_scans"] == 3 and r["n_lesions"] == 3 and r["n_predictions"] == 7
    assert r["sens@1"] == pytest.approx(200 / 3)
    assert r["sens@2"] == r["sens@4"] == r["sens@8"] == pytest.approx(100.0)
    assert r["AS"] == pytest.approx((200 / 3 + 300) / 4)
    # ranked: .9 TP, .8 FP (a first), .8 FP, .6 FP, .5 TP, .4 FP, .3 TP: monotone precision 1 up to recall
    # 1/3 (34 of the 101 points), then 3/7 (67 points)
    assert r["AP@0.1"] == pytest.approx(100 * (34 + 67 * 3 / 7) / 101)
    assert r["per_scan"]["c"] == {"n_lesions": 0, "n_predictions": 0, "n_found": 0}


def test_equal_scores_enter_the_froc_together():
    truth = {"a": np.array([box(0, 0, 0)]), "b": np.zeros((0, 6))}
    # the hit and a false positive share a score: at 0 FP per scan nothing is reached, at 1 both are in
    predictions = {"a": ([box(0, 0, 0)], [0.5]), "b": ([box(9, 9, 9), box(20, 20, 20)], [0.5, 0.5])}
    r = evaluate_detection(predictions, truth)
    assert r["froc_curve"]["fps_per_scan"] == [1.0] and r["sens@1"] == 100.0
    r = evaluate_detection(predictions, {**truth, "c": np.zeros((0, 6))})   # 2 FP / 3 scans <= 1
    assert r["sens@1"] == 100.0
    predictions["b"] = ([box(9, 9, 9), box(20, 20, 20), box(30, 30, 30)], [0.5, 0.5, 0.5])
    assert evaluate_detection(predictions, truth)["sens@1"] == 0.0         # 3 FP / 2 scans > 1


def test_scans_without_predictions_and_errors():
    truth = {"a": np.array([box(0, 0, 0)]), "b": np.array([box(0, 0, 0)])}
    r = evaluate_detection({"a": ([box(0, 0, 0)], [1.0])}, truth)
    assert r["sens@1"] == 50.0 and r["AP@0.1"] == pytest.approx(100 * 51 / 101)   # recall 0.5 at precision 1
    assert evaluate_detection({}, truth)["AS"] == 0.0
    with pytest.raises(ValueError, match="without ground truth: x"):
        evaluate_detection({"x": ([box(0, 0, 0)], [1.0])}, truth)
    with pytest.raises(ValueError, match="no lesion"):
        evaluate_detection({}, {"a": np.zeros((0, 6))})
    with pytest.raises(ValueError, match="is empty"):
        evaluate_detection({"a": ([[0, 0, 0, 0, 1, 1]], [1.0])}, truth)


# ------------------------------------------------------------------------------------------ brute force
def _voxels(b):
    return set(itertools.product(*(range(int(b[a]), int(b[a + 3])) for a in range(3))))


def _brute_force(predictions, truth, threshold=0.1):
    """Matching from voxel sets, FROC by re-matching every thresholded subset, AP as the largest precision
    over all ranked prefixes that reach each recall point."""
    def statuses(scan, minimum_score):
        boxes, scores = predictions.get(scan, ([], []))
        kept = [i for i in range(len(scores)) if scores[i] >= minimum_score]
        kept.sort(key=lambda i: -scores[i])                       # Python's sort is stable
        free, out = list(range(len(truth[scan]))), {}
        for i in kept:
            mine = _voxels(boxes[i])
            ious = [(len(mine & _voxels(truth[scan][g])) / len(mine | _voxels(truth[scan][g])), g) for g in free]
            best = max(ious, key=lambda t: (t[0], -t[1])) if ious else (0.0, None)
            out[i] = best[0] > threshold
            if out[i]:
                free.remove(best[1])
        return out

    n_truth, n_scans = sum(len(t) for t in truth.values()), len(truth)
    all_scores = sorted({s for _, scores in predictions.values() for s in scores}, reverse=True)
    curve = []
    for t in all_scores:
        found = [statuses(scan, t) for scan in truth]
        tp = sum(sum(f.values()) for f in found)
        fp = sum(len(f) - sum(f.values()) for f in found)
        curve.append((fp / n_scans, 100 * tp / n_truth))
    sens = {k: max([s for f, s in curve if f <= k], default=0.0) for k in (1, 2, 4, 8)}
    ranked = []
    for scan in sorted(truth):
        full = statuses(scan, -np.inf)
        ranked += [(predictions[scan][1][i], full[i]) for i in range(len(full))] if scan in predictions else []
    ranked.sort(key=lambda x: -x[0])
    points = []
    for k in range(1, len(ranked) + 1):
        tp = sum(hit for _, hit in ranked[:k])
        points.append((tp / n_truth, tp / k))
    ap = np.mean([max([p for rec, p in points if rec >= r - 1e-12], default=0.0) for r in np.linspace(0, 1, 101)])
    return sens, 100 * ap


@pytest.mark.parametrize("seed", range(12))
def test_agrees_with_brute_force_on_random_boxes(seed):
    rng = np.random.default_rng(seed)

    def random_box():
        start = rng.integers(0, 8, 3)
        return [*start.tolist(), *(start + rng.integers(1, 5, 3)).tolist()]

    truth = {f"s{i}": np.array([random_box() for _ in range(rng.integers(0, 4))]).reshape(-1, 6) for i in range(4)}
    if not sum(len(t) for t in truth.values()):
        truth["s0"] = np.array([random_box()])
    predictions = {}
    for scan in truth:
        n = int(rng.integers(0, 7))
        boxes = [random_box() if rng.random() < 0.5 or not len(truth[scan]) else
                 (np.array(truth[scan][rng.integers(len(truth[scan]))]) + rng.integers(0, 2, 6) * [0, 0, 0, 1, 1, 1]
                  ).tolist() for _ in range(n)]
        predictions[scan] = (boxes, np.round(rng.random(n), 1).tolist())     # rounding makes ties
    expected_sens, expected_ap = _brute_force(predictions, truth)
    r = evaluate_detection(predictions, truth)
    for k, value in expected_sens.items():
        assert r[f"sens@{k}"] == pytest.approx(value)
    assert r["AP@0.1"] == pytest.approx(expected_ap)


# ------------------------------------------------------------------------------------------ command
def test_evaluate_detection_command(tmp_path, capsys):
    gt, pred = tmp_path / "labelsTs", tmp_path / "pred"
    gt.mkdir(), pred.mkdir()
    mask = np.zeros((10, 12, 14), dtype=np.uint8)
    geometry = Geometry(spacing_xyz=(1.0, 1.0, 2.0), shape_zyx=mask.shape)
    mask[2:4, 3:6, 4:8] = 1                              # box x 4..8, y 3..6, z 2..4
    mask[6:9, 0:2, 0:2] = 2
    write_image(gt / "LN0001.nii.gz", mask, geometry)
    write_image(gt / "LN0002.nii.gz", np.zeros_like(mask), geometry)
    (pred / "LN0001.json").write_text(json.dumps({"boxes_xyz": [[4, 3, 2, 8, 6, 4], [0, 0, 0, 1, 1, 1]],
                                                  "scores": [0.9, 0.2], "boxes_world": "ignored"}))
    assert cli.main([str(pred), str(gt), "-o", str(tmp_path / "m.json")]) == 0
    result = json.loads((tmp_path / "m.json").read_text())
    assert (result["n_scans"], result["n_lesions"], result["per_scan"]["LN0001"]["n_found"]) == (2, 2, 1)
    assert result["sens@8"] == 50.0 and "| AS |" in capsys.readouterr().out.replace("|  |", "|")

    (pred / "LN0003.json").write_text(json.dumps({"boxes_xyz": [[0, 0, 0, 1, 1, 1]], "scores": [1]}))
    (pred / "LN0002.json").write_text(json.dumps({"boxes_xyz": [[0, 0, 0, 1, 1, 1]], "scores": [1, 2]}))
    assert cli.main([str(pred), str(gt)]) == 1
    err = capsys.readouterr().err
    assert "LN0003.json: no ground-truth mask for scan 'LN0003'" in err
    assert "LN0002.json: 1 boxes but 2 scores" in err and "Traceback" not in err
    assert cli.main([str(tmp_path / "nope"), str(gt)]) == 1
    assert "prediction folder not found" in capsys.readouterr().err


def test_split_lesions_and_merging_boxes():
    upper, lower = [0, 0, 0, 6, 6, 3], [0, 0, 4, 6, 6, 7]                 # two nodes stacked along z
    halves = [[0, 0, 0, 6, 6, 2], [0, 0, 2, 6, 6, 3]]                     # the upper one cut in two
    assert fragmentation(halves, [upper, lower]) == (1, 0)
    assert fragmentation([[0, 0, 0, 6, 6, 7]], [upper, lower]) == (0, 1)   # one box over both
    assert fragmentation([upper, lower], [upper, lower]) == (0, 0)
    r = evaluate_detection({"a": (halves + [[0, 0, 0, 6, 6, 7]], [0.9, 0.8, 0.7])}, {"a": np.array([upper, lower])})
    assert (r["n_split_lesions"], r["n_merging_boxes"]) == (1, 1)


def test_non_maximum_suppression_in_2d_and_3d():
    boxes_2d = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]], dtype=float)
    assert non_maximum_suppression(boxes_2d, [0.5, 0.9, 0.4, 0.9]).tolist() == [1, 2]   # ties keep the first
    boxes_3d = np.array([box(0, 0, 0, 4), [0, 0, 1, 4, 4, 5], box(9, 9, 9)], dtype=float)
    assert non_maximum_suppression(boxes_3d, [0.2, 0.9, 0.5]).tolist() == [1, 2]           # IoU 3/5 > 0.5
    assert non_maximum_suppression(boxes_3d, [0.2, 0.9, 0.5], iou_threshold=0.7).tolist() == [1, 2, 0]
    assert non_maximum_suppression(np.zeros((0, 6)), []).tolist() == []


def test_boxes_keep_their_region_between_grids():
    fine = Geometry(spacing_xyz=(0.5, 0.5, 2.0), origin_xyz=(10.0, -4.0, 3.0), shape_zyx=(10, 40, 40))
    # coarse voxel 0 spans exactly fine voxels 0 and 1: edges coincide
    coarse = Geometry(spacing_xyz=(1.0, 1.0, 2.0), origin_xyz=(10.25, -3.75, 3.0), shape_zyx=(10, 20, 20))
    boxes = np.array([[4, 6, 1, 10, 8, 3]], dtype=float)                   # fine voxels, half open
    on_coarse = boxes_between_grids(boxes, fine, coarse)
    assert np.allclose(on_coarse, [[2, 3, 1, 5, 4, 3]])                     # the same edges in mm
    assert np.allclose(box_corners_world(on_coarse, coarse), box_corners_world(boxes, fine))
    assert np.allclose(boxes_between_grids(on_coarse, coarse, fine), boxes)
    flipped = Geometry(spacing_xyz=(0.5, 0.5, 2.0), origin_xyz=(29.5, -4.0, 3.0),
                       direction=(-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), shape_zyx=(10, 40, 40))
    mirrored = boxes_between_grids(boxes, fine, flipped)
    assert (mirrored[:, 3:] > mirrored[:, :3]).all() and np.allclose(mirrored[0, [0, 3]], [30, 36])


def test_lesion_hits_at_an_operating_point_and_mcnemar():
    from lesionnet.evaluation.detection_comparison import lesion_hits, mcnemar

    predictions, truth = _hand_case()
    # at <= 1 FP/scan the threshold is 0.5 (FROC above): g1 and g2 found, g3 (score 0.3) not
    assert lesion_hits(predictions, truth, 1).tolist() == [True, True, False]
    assert lesion_hits(predictions, truth, 2).tolist() == [True, True, True]
    assert lesion_hits(predictions, truth, 0.1).tolist() == [True, False, False]
    test = mcnemar(np.array([True, True, False, True]), np.array([False, True, False, False]))
    assert (test["only_a"], test["only_b"]) == (2, 0) and test["p_value"] == pytest.approx(0.5)
    assert mcnemar(np.array([True]), np.array([True]))["p_value"] == 1.0


def test_paired_bootstrap_over_scans():
    from lesionnet.evaluation.detection_comparison import paired_bootstrap

    predictions, truth = _hand_case()
    same = paired_bootstrap(predictions, predictions, truth, n_resamples=50)
    assert same["AS"]["difference"] == 0.0 and same["AS"]["ci95"] == [0.0, 0.0] and same["AS"]["p_value"] == 1.0
    perfect = {name: (boxes, np.ones(len(boxes))) for name, boxes in truth.items() if len(boxes)}
    dominant = paired_bootstrap(perfect, {}, truth, n_resamples=50)     # every lesion found, no FP vs nothing
    n = dominant["AP@0.1"]["n_resamples"]
    assert dominant["AP@0.1"]["ci95"] == [100.0, 100.0] and dominant["AP@0.1"]["p_value"] == pytest.approx(2 / (n + 1))

    # the observed difference and the resamples agree with evaluate_detection on the drawn scans, a scan drawn
    # twice counting as two scans (c, which holds no lesion, can be drawn alone: such draws are left out)
    weaker = {"a": predictions["a"], "b": ([predictions["b"][0][0]], [0.8])}     # misses g3
    result = paired_bootstrap(predictions, weaker, truth, n_resamples=40, seed=3)
    full = evaluate_detection(predictions, truth), evaluate_detection(weaker, truth)
    assert result["AS"]["difference"] == pytest.approx(full[0]["AS"] - full[1]["AS"])
    rng, names, expected = np.random.default_rng(3), sorted(truth), []
    for _ in range(40):
        draw = [names[i] for i in rng.integers(0, 3, 3)]
        drawn_truth = {f"{k:02d}{n}": truth[n] for k, n in enumerate(draw)}
        if not sum(len(t) for t in drawn_truth.values()):
            continue
        rows = [evaluate_detection({f"{k:02d}{n}": p[n] for k, n in enumerate(draw) if n in p}, drawn_truth)
                for p in (predictions, weaker)]
        expected.append(rows[0]["AP@0.1"] - rows[1]["AP@0.1"])
    assert result["AP@0.1"]["n_resamples"] == len(expected) < 40
    assert result["AP@0.1"]["ci95"] == pytest.approx([np.percentile(expected, 2.5), np.percentile(expected, 97.5)])
    expected = np.asarray(expected)
    tail = min(np.sum(expected <= 0), np.sum(expected >= 0)) + 1
    assert result["AP@0.1"]["p_value"] == pytest.approx(min(1, 2 * tail / (len(expected) + 1)))
