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
