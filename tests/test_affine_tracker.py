"""The affine tracker and ``lesionnet_predict -m affine|identity`` on a phantom pair with known truth."""
from __future__ import annotations

import json

import numpy as np
import pytest
from phantoms import make_pair

from lesionnet.cli.predict import main as predict_main
from lesionnet.datasets.geometry import zyx_to_xyz
from lesionnet.datasets.image_io import write_image
from lesionnet.datasets.prediction_format import read_predictions
from lesionnet.datasets.raw_format import TrackingPair, save_pairs
from lesionnet.evaluation.tracking_metrics import evaluate_tracking_file
from lesionnet.inference.tracking_input import TrackingInputError, load_tracking_input
from lesionnet.methods.affine.tracker import RegistrationTracker

LESIONS_WORLD_MM = [(30.0, -20.0, -40.0), (-40.0, 10.0, -70.0), (0.0, 30.0, 40.0)]


@pytest.fixture(scope="module")
def input_folder(tmp_path_factory):
    """Two phantom scans (P1_T0, P1_T1) and pairs for three lesions in both directions."""
    folder = tmp_path_factory.mktemp("affine_input")
    source, source_geom, target, target_geom, truth = make_pair()
    write_image(folder / "P1_T0_0000.nii.gz", source, source_geom)
    write_image(folder / "P1_T1_0000.nii.gz", target, target_geom)
    pairs = []
    for i, world in enumerate(LESIONS_WORLD_MM):
        c0 = source_geom.world_to_voxel(world)
        c1 = target_geom.world_to_voxel(truth.map_points(world))
        pairs.append(TrackingPair(f"L{i}_fwd", "P1_T0", "P1_T1", tuple(c0), 8.0, tuple(c1), 8.0 * 1.05))
        pairs.append(TrackingPair(f"L{i}_bwd", "P1_T1", "P1_T0", tuple(c1), 8.0 * 1.05, tuple(c0), 8.0))
    save_pairs(folder / "pairs.json", pairs)
    return folder


def test_affine_beats_identity_and_reuses_registration(input_folder, tmp_path, caplog):
    assert predict_main(["-i", str(input_folder), "-o", str(tmp_path / "affine"), "-m", "affine",
                         "--no_progress"]) == 0
    assert predict_main(["-i", str(input_folder), "-o", str(tmp_path / "identity"), "-m", "identity",
                         "--no_progress"]) == 0
    affine = evaluate_tracking_file(tmp_path / "affine" / "predictions.json").summary()
    identity = evaluate_tracking_file(tmp_path / "identity" / "predictions.json").summary()
    assert affine["n"] == identity["n"] == 6
    assert affine["MED"] < 4.0, affine
    assert identity["MED"] > 3 * affine["MED"], (affine, identity)
    doc = read_predictions(tmp_path / "affine" / "predictions.json")
    assert doc["method"] == "affine" and doc["registration"]["working_spacing_mm"] == 4.0
    record = doc["results"][0]
    assert len(record["predict target center world"]) == 3 and record["processing time"] > 0
    # one registration per directed scan pair: the three lesions of a direction share its time
    fwd_times = [r["processing time"] for r in doc["results"] if r["pair_id"].endswith("fwd")]
    assert max(fwd_times) - min(fwd_times) < 0.05 * max(fwd_times)


def test_predictions_are_a_dls_results_file(input_folder, tmp_path):
    predict_main(["-i", str(input_folder), "-o", str(tmp_path), "-m", "identity", "--no_progress"])
    doc = json.loads((tmp_path / "predictions.json").read_text())
    for record in doc["results"]:  # the keys the DLS evaluator reads
        for key in ("target center", "predict target center", "target spacing", "target recist diameter"):
            assert key in record


def _write_pairs(folder, pairs):
    save_pairs(folder / "pairs.json", pairs)


def test_missing_scan_names_the_pair(input_folder, tmp_path, capsys):
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "P1_T0_0000.nii.gz").symlink_to(input_folder / "P1_T0_0000.nii.gz")
    _write_pairs(bad, [TrackingPair("lonely", "P1_T0", "P9_T3", (10.0, 10.0, 10.0), 5.0)])
    with pytest.raises(TrackingInputError, match="lonely.*P9_T3"):
        load_tracking_input(bad)
    assert predict_main(["-i", str(bad), "-o", str(tmp_path / "out"), "--no_progress"]) == 1
    assert "lonely" in capsys.readouterr().err
    assert not (tmp_path / "out" / "predictions.json").exists()


def test_center_outside_scan_names_the_pair(input_folder, tmp_path):
    bad = tmp_path / "in"
    bad.mkdir()
    for name in ("P1_T0_0000.nii.gz", "P1_T1_0000.nii.gz"):
        (bad / name).symlink_to(input_folder / name)
    _write_pairs(bad, [TrackingPair("far_away", "P1_T0", "P1_T1", (10.0, 500.0, 10.0), 5.0)])  # y = 500
    with pytest.raises(TrackingInputError, match="far_away.*outside"):
        load_tracking_input(bad)


def test_missing_pairs_file_says_what_to_do(tmp_path):
    with pytest.raises(TrackingInputError, match="pairs.json"):
        load_tracking_input(tmp_path)


def test_identity_prediction_is_the_unmoved_world_point(input_folder, tmp_path):
    predict_main(["-i", str(input_folder), "-o", str(tmp_path), "-m", "identity", "--no_progress"])
    tracking_input = load_tracking_input(input_folder)
    doc = read_predictions(tmp_path / "predictions.json")
    pair = tracking_input.pairs[0]
    src, tgt = tracking_input.geometries[pair.source], tracking_input.geometries[pair.target]
    expected_zyx = tgt.world_to_voxel(src.voxel_to_world(pair.source_center_zyx))
    np.testing.assert_allclose(doc["results"][0]["predict target center"], zyx_to_xyz(expected_zyx), atol=1e-9)


def _copy_input(src, dst):
    dst.mkdir()
    for path in src.iterdir():
        (dst / path.name).symlink_to(path)
    return dst


def test_continue_after_a_killed_run_predicts_only_missing_cases(input_folder, tmp_path, monkeypatch):
    real = RegistrationTracker.__call__
    calls = []

    def dies_on_second_case(self, tracking_input, pairs):
        calls.append((pairs[0].source, pairs[0].target))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process is killed while predicting the second case
        return real(self, tracking_input, pairs)

    monkeypatch.setattr(RegistrationTracker, "__call__", dies_on_second_case)
    out = tmp_path / "out"
    assert predict_main(["-i", str(input_folder), "-o", str(out), "-m", "identity", "--no_progress"]) == 130
    written = sorted(p.name for p in (out / "cases").iterdir())
    assert written == ["P1_T0__P1_T1.json"]  # one complete case, no temporary or partial file
    assert not (out / "predictions.json").exists()

    calls.clear()
    monkeypatch.setattr(RegistrationTracker, "__call__",
                        lambda self, ti, pairs: calls.append(pairs[0].source) or real(self, ti, pairs))
    assert predict_main(["-i", str(input_folder), "-o", str(out), "-m", "identity", "--continue",
                         "--no_progress"]) == 0
    assert calls == ["P1_T1"]  # only the missing case was predicted
    assert len(read_predictions(out / "predictions.json")["results"]) == 6


def test_corrupt_case_file_is_predicted_again_with_continue(input_folder, tmp_path):
    out = tmp_path / "out"
    predict_main(["-i", str(input_folder), "-o", str(out), "-m", "identity", "--no_progress"])
    (out / "cases" / "P1_T0__P1_T1.json").write_text('{"trunc')
    assert predict_main(["-i", str(input_folder), "-o", str(out), "-m", "identity", "--continue",
                         "--no_progress"]) == 0
    assert len(read_predictions(out / "predictions.json")["results"]) == 6


def test_unreadable_scan_is_refused_before_any_work(input_folder, tmp_path, caplog, capsys):
    folder = _copy_input(input_folder, tmp_path / "in")
    (folder / "pairs.json").unlink()
    (folder / "P2_T0_0000.nii.gz").write_bytes(b"\x1f\x8b garbage, not a NIfTI file")
    pairs = load_tracking_input(input_folder).pairs + [
        TrackingPair("broken", "P2_T0", "P1_T1", (5.0, 5.0, 5.0), 5.0)]
    save_pairs(folder / "pairs.json", pairs)
    out = tmp_path / "out"
    assert predict_main(["-i", str(folder), "-o", str(out), "-m", "identity", "--no_progress"]) == 1
    said = caplog.text + capsys.readouterr().err
    assert "P2_T0_0000.nii.gz" in said and "unreadable" in said
    assert not (out / "predictions.json").exists()


def test_markups_and_overlays(input_folder, tmp_path):
    out = tmp_path / "out"
    assert predict_main(["-i", str(input_folder), "-o", str(out), "-m", "identity", "--save_overlays",
                         "--no_progress"]) == 0
    markups = json.loads((out / "markups" / "P1_T1.mrk.json").read_text())
    points = markups["markups"][0]["controlPoints"]
    assert markups["markups"][0]["coordinateSystem"] == "LPS" and len(points) == 3
    doc = read_predictions(out / "predictions.json")
    fwd = [r for r in doc["results"] if r["target"] == "P1_T1"]
    np.testing.assert_allclose(points[0]["position"], fwd[0]["predict target center world"])
    overlays = sorted(p.name for p in (out / "overlays").iterdir())
    assert overlays == sorted(f"{r['pair_id']}.png" for r in doc["results"])
    assert (out / "overlays" / overlays[0]).read_bytes()[:4] == b"\x89PNG"


def test_deformable_method_predicts_through_the_cli(input_folder, tmp_path):
    assert predict_main(["-i", str(input_folder), "-o", str(tmp_path / "deformable"), "-m", "deformable",
                         "--no_progress"]) == 0
    summary = evaluate_tracking_file(tmp_path / "deformable" / "predictions.json").summary()
    # a flat analytic phantom under a pure affine motion: the B-spline has little to add here (the planner
    # measures on training pairs whether it helps), but it must stay in the right place
    assert summary["n"] == 6 and summary["MED"] < 10.0, summary
    doc = read_predictions(tmp_path / "deformable" / "predictions.json")
    assert doc["method"] == "deformable" and doc["registration"]["kind"] == "deformable"
