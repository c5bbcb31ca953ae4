"""The robustness protocol: shifted template centers (deterministic, inside the quarter-radius ball, ids that
map back to their pair) and its scores (CPM drop, MED increase, spread) through lesionnet_evaluate_tracking."""
from __future__ import annotations

import json

import numpy as np
import pytest

from lesionnet.cli.evaluate_tracking import main as evaluate_main
from lesionnet.datasets.prediction_format import make_prediction_record, write_predictions
from lesionnet.datasets.raw_format import TrackingPair
from lesionnet.datasets.robustness_pairs import base_pair_id, is_shifted, with_shifted_templates

SPACING = {"a_T0": (2.0, 1.0, 1.0), "b_T0": (1.0, 0.5, 0.5)}


def _pairs() -> list[TrackingPair]:
    return [TrackingPair("p1", "a_T0", "a_T1", (10.0, 20.0, 30.0), 8.0, (11.0, 20.0, 30.0), 8.0),
            TrackingPair("p2", "b_T0", "b_T1", (5.0, 6.0, 7.0), 4.0, (5.0, 6.0, 7.0), 4.0)]


def test_shifted_templates_stay_in_the_quarter_radius_ball_and_are_reproducible():
    pairs = _pairs()
    out = with_shifted_templates(pairs, SPACING.__getitem__, seed=3)
    assert [p.pair_id for p in out[:2]] == ["p1", "p2"] and len(out) == 2 + 2 * 9
    for pair in out[2:]:
        original = next(p for p in pairs if p.pair_id == base_pair_id(pair.pair_id))
        assert is_shifted(pair.pair_id) and pair.target_center_zyx == original.target_center_zyx
        moved_mm = (np.subtract(pair.source_center_zyx, original.source_center_zyx) * SPACING[pair.source])
        assert 0 < np.linalg.norm(moved_mm) <= 0.25 * original.source_radius_mm + 1e-9
    # a pair's shifts do not depend on the other pairs or their order
    alone = with_shifted_templates(pairs[1:], SPACING.__getitem__, seed=3)
    assert [p.source_center_zyx for p in alone[1:]] == [p.source_center_zyx for p in out if p.pair_id.startswith("p2#")]
    assert with_shifted_templates(pairs, SPACING.__getitem__, seed=4)[2] != out[2]
    with pytest.raises(ValueError, match="reserved"):
        with_shifted_templates(out[2:3], SPACING.__getitem__)


def _record(pair: TrackingPair, predicted_zyx) -> dict:
    return make_prediction_record(pair_id=pair.pair_id, source=pair.source, target=pair.target,
                                  source_center_zyx=pair.source_center_zyx, source_radius_mm=pair.source_radius_mm,
                                  target_spacing_zyx=(1.0, 1.0, 1.0), predicted_center_zyx=predicted_zyx,
                                  target_center_zyx=pair.target_center_zyx, target_radius_mm=pair.target_radius_mm)


def test_evaluate_robustness_reports_drop_increase_and_spread(tmp_path, capsys):
    """p1: exact from every center; p2: exact from the original, 12 mm off (along x) from every shifted one."""
    pairs = with_shifted_templates(_pairs(), SPACING.__getitem__)
    records = []
    for pair in pairs:
        target = np.asarray(pair.target_center_zyx)
        off = pair.pair_id.startswith("p2#")
        records.append(_record(pair, target + (np.array([0.0, 0.0, 12.0]) if off else 0.0)))
    path = write_predictions(tmp_path / "predictions.json", records, "test", None)
    out = tmp_path / "metrics.json"
    assert evaluate_main([str(path), "--robustness", "-o", str(out)]) == 0
    result = json.loads(out.read_text())["robustness"]
    assert result["n_pairs"] == 2 and result["shifts_per_pair"] == 9
    assert result["original"]["CPM@10mm"] == 100.0 and result["original"]["n"] == 2
    assert result["all"]["CPM@10mm"] == pytest.approx(100.0 * 11 / 20)
    assert result["cpm_10mm_drop"] == pytest.approx(45.0)
    assert result["med_increase_mm"] == pytest.approx(9 * 12.0 / 20)
    # p1 has no spread; p2: one prediction 10.8 mm from the centroid, nine 1.2 mm from it -> mean 2.16 mm
    assert result["spread_mm"]["mean"] == pytest.approx((0.0 + 2.16) / 2)
    assert "CPM@10mm drop 45.00 points" in capsys.readouterr().out
    # without shifted predictions, and with a reference, it is a clear error
    plain = write_predictions(tmp_path / "plain.json", records[:2], "test", None)
    assert evaluate_main([str(plain), "--robustness"]) == 1
    assert "lesionnet_predict --robustness" in capsys.readouterr().err
    assert evaluate_main([str(path), "--robustness", "--reference", str(plain)]) == 1


def _protocol_evaluation(path, off_mm_by_pair: dict):
    """An evaluation of the protocol where the shifted predictions of pair ``p`` are ``off_mm_by_pair[p]`` mm
    off along x (the originals exact)."""
    from lesionnet.evaluation.tracking_metrics import evaluate_tracking_file

    pairs = with_shifted_templates(_pairs(), SPACING.__getitem__)
    records = [_record(p, np.asarray(p.target_center_zyx) + (np.array([0.0, 0.0, off_mm_by_pair[base_pair_id(
        p.pair_id)]]) if is_shifted(p.pair_id) else 0.0)) for p in pairs]
    return evaluate_tracking_file(write_predictions(path, records, "test", None))


def test_compare_drops_tests_the_per_pair_drops_of_two_trackers(tmp_path):
    from lesionnet.evaluation.robustness import compare_drops, format_drop_comparison, per_pair_drops

    robust = _protocol_evaluation(tmp_path / "a.json", {"p1": 0.0, "p2": 2.0})    # every shifted one still a hit
    fragile = _protocol_evaluation(tmp_path / "b.json", {"p1": 12.0, "p2": 2.0})  # p1's nine shifted ones miss
    drops = per_pair_drops(fragile)
    assert drops["p1"] == pytest.approx((90.0, 9 * 12.0 / 10)) and drops["p2"] == pytest.approx((0.0, 9 * 2.0 / 10))
    result = compare_drops(robust, fragile, "robust", "fragile")
    assert result["n"] == 2
    assert result["CPM@10mm_drop"]["mean_a"] == 0.0 and result["CPM@10mm_drop"]["mean_b"] == pytest.approx(45.0)
    assert result["CPM@10mm_drop"]["mean_difference"] == pytest.approx(-45.0)
    assert result["distance_increase_mm"]["mean_difference"] == pytest.approx(-9 * 12.0 / 20)
    assert "CPM@10mm drop 0.00 vs 45.00 points" in format_drop_comparison(result)
    assert compare_drops(robust, robust)["CPM@10mm_drop"]["p_value"] == 1.0


def test_compare_drops_averages_each_pairs_drop_over_several_runs(tmp_path):
    from lesionnet.evaluation.robustness import compare_drops, format_drop_comparison

    robust = _protocol_evaluation(tmp_path / "a.json", {"p1": 0.0, "p2": 2.0})
    fragile = _protocol_evaluation(tmp_path / "b.json", {"p1": 12.0, "p2": 2.0})   # p1 drops 90 points
    also_fragile = _protocol_evaluation(tmp_path / "c.json", {"p1": 2.0, "p2": 12.0})   # p2 drops 90 points
    result = compare_drops([robust, robust], [fragile, also_fragile], "robust", "fragile")
    assert (result["runs_a"], result["runs_b"], result["n"]) == (2, 2, 2)
    # each pair's drop is the mean over the runs: 45 points for both p1 and p2
    assert result["CPM@10mm_drop"]["mean_b"] == pytest.approx(45.0)
    assert result["CPM@10mm_drop"]["mean_difference"] == pytest.approx(-45.0)
    assert result["CPM@10mm_drop"]["p_value"] == 0.0            # the same difference on every pair
    assert "averaged over 2 and 2 runs" in format_drop_comparison(result)
    assert compare_drops(robust, [fragile])["runs_b"] == 1
    other_pairs = _protocol_evaluation(tmp_path / "d.json", {"p1": 0.0, "p2": 0.0})
    from lesionnet.evaluation.robustness import subset
    from lesionnet.evaluation.tracking_metrics import evaluate_predictions
    one_pair = evaluate_predictions(subset(other_pairs.predictions, np.array(
        [base_pair_id(i) == "p1" for i in other_pairs.predictions.pair_ids])))
    with pytest.raises(ValueError, match="not tracked on the same pairs"):
        compare_drops(robust, [fragile, one_pair])


def test_evaluate_tracking_compares_the_robustness_of_two_prediction_files(tmp_path, capsys):
    _protocol_evaluation(tmp_path / "a.json", {"p1": 0.0, "p2": 2.0})
    _protocol_evaluation(tmp_path / "b.json", {"p1": 12.0, "p2": 2.0})
    out = tmp_path / "metrics.json"
    assert evaluate_main([str(tmp_path / "a.json"), "--robustness", "--compare", str(tmp_path / "b.json"),
                          "-o", str(out)]) == 0
    result = json.loads(out.read_text())
    # the paired test of the trackers uses the original centers only (both exact there)
    assert result["comparison"]["n"] == 2 and result["comparison"]["CPM@10mm"]["mean_difference"] == 0.0
    assert result["comparison"]["robustness_b"]["cpm_10mm_drop"] == pytest.approx(45.0)
    assert result["robustness_comparison"]["CPM@10mm_drop"]["mean_difference"] == pytest.approx(-45.0)
    assert "CPM@10mm drop 0.00 vs 45.00 points" in capsys.readouterr().out


def test_compare_trackers_tests_the_drops_of_the_compared_methods(env_501, tmp_path):
    """With ``robustness`` the side-by-side comparison holds each method's protocol summary and the paired test
    of the per-pair drops for each compared pair of methods."""
    import os

    from lesionnet.datasets.dataset_id import find_dataset_folder
    from lesionnet.evaluation.tracker_comparison import compare_trackers
    from lesionnet.methods import get_method

    folder = find_dataset_folder(501, os.environ["lesionnet_raw"])
    results = compare_trackers(folder, tmp_path / "cmp", [get_method("identity"), get_method("affine")],
                               progress=False, comparisons=[("affine", "identity")], robustness=True)
    identity = results["methods"]["identity"]["robustness"]
    assert identity["shifts_per_pair"] == 9 and identity["n_pairs"] == results["n_pairs"] > 0
    # identity predicts the template center itself: each shifted center moves the prediction by the shift
    assert identity["spread_mm"]["median"] > 0
    [drops] = results["robustness_comparisons"]
    assert (drops["a"], drops["b"], drops["n"]) == ("affine", "identity", results["n_pairs"])
    assert drops["CPM@10mm_drop"]["mean_b"] == pytest.approx(identity["cpm_10mm_drop"])
