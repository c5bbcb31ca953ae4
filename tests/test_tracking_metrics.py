"""Tracking metrics with the DLS conventions, prediction I/O in its three forms, paired comparison."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lesionnet.datasets.geometry import points_xyz_to_zyx, xyz_to_zyx
from lesionnet.datasets.prediction_format import (
    PREDICTIONS_FORMAT,
    PredictionFormatError,
    make_prediction_record,
    prediction_record_from_pair,
    read_predictions,
    write_predictions,
)
from lesionnet.datasets.raw_format import TrackingPair, save_pairs
from lesionnet.evaluation import (
    compare_predictions,
    detect_form,
    evaluate_predictions,
    evaluate_tracking,
    evaluate_tracking_file,
    load_tracking_predictions,
)
from lesionnet.evaluation.pair_matching import scan_key
from lesionnet.evaluation.tracking_metrics import SUMMARY_KEYS, dls_radius_mm, paired_ttest

DLS = Path(__file__).parent / "data" / "dls"
DLTMIX = DLS / "DLTMix.json"
TEST_JSON = DLS / "test.json"

# Figures from papers.md (DLS conventions), rounded to 2 decimals.
DLTMIX_EXPECTED = {"CPM@10mm": 78.85, "CPM@Radius": 86.88, "MED": 6.98, "MED_std": 8.95,
                   "MED_X": 3.48, "MED_Y": 2.93, "MED_Z": 4.03, "n": 960}
AFFINE_EXPECTED = {"CPM@10mm": 48.33, "CPM@Radius": 65.10, "MED": 11.23, "MED_std": 9.88,
                   "MED_X": 4.14, "MED_Y": 5.36, "MED_Z": 7.14, "n": 960}


def rounded(summary: dict) -> dict:
    return {k: (v if k == "n" else round(v, 2)) for k, v in summary.items()}


@pytest.fixture(scope="module")
def dltmix_results() -> list[dict]:
    return json.loads(DLTMIX.read_text())["results"]


@pytest.fixture(scope="module")
def dltmix_eval():
    return evaluate_tracking_file(DLTMIX)


@pytest.fixture(scope="module")
def affine_eval():
    return evaluate_tracking_file(TEST_JSON)


def write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def dls_radius(record: dict) -> float:
    return max(record["target recist diameter"]) / 2.0 * record["target spacing"][0]


def to_lesionnet_records(results: list[dict]) -> list[dict]:
    """DLS results records -> lesionnet records (form a), pair ids 0001..."""
    out = []
    for i, r in enumerate(results):
        out.append(make_prediction_record(
            pair_id=f"{i + 1:04d}", source=r["source"], target=r["target"],
            source_center_zyx=xyz_to_zyx(r["source center"]),
            source_radius_mm=max(r["source recist diameter"]) / 2.0 * r["source spacing"][0],
            target_spacing_zyx=xyz_to_zyx(r["target spacing"]),
            predicted_center_zyx=xyz_to_zyx(r["predict target center"]),
            confidence=r.get("predict confidence"), processing_time_s=r.get("processing time"),
            target_center_zyx=xyz_to_zyx(r["target center"]), target_radius_mm=dls_radius(r)))
    return out


# --------------------------------------------------------------------------------------------------
# The DLS fixtures reproduce the published figures
# --------------------------------------------------------------------------------------------------

def test_dltmix_figures(dltmix_eval):
    summary = dltmix_eval.summary()
    assert tuple(summary) == SUMMARY_KEYS
    assert rounded(summary) == DLTMIX_EXPECTED
    assert dltmix_eval.predictions.form == "dls_results"


def test_affine_prior_figures(affine_eval):
    assert rounded(affine_eval.summary()) == AFFINE_EXPECTED
    assert affine_eval.predictions.form == "dls_annotation"
    assert affine_eval.pair_ids[:2] == ("0001", "0002")


def test_med_std_is_population_std(dltmix_eval):
    d = dltmix_eval.distance_mm
    assert dltmix_eval.summary()["MED_std"] == np.std(d, ddof=0)
    assert round(float(np.std(d, ddof=1)), 3) != round(float(np.std(d, ddof=0)), 3)


def test_per_pair_arrays(dltmix_eval, dltmix_results):
    e = dltmix_eval
    assert e.distance_mm.shape == (960,) and e.distance_zyx_mm.shape == (960, 3)
    np.testing.assert_allclose(e.distance_mm, np.linalg.norm(e.distance_zyx_mm, axis=1))
    assert e.hit_10mm.dtype == bool and e.hit_radius.dtype == bool
    rows = e.per_pair_rows()
    assert len(rows) == 960 and rows[0]["distance_mm"] == pytest.approx(e.distance_mm[0])
    assert e.per_pair_csv().count("\n") == 961
    # the arrays hold the file's [x, y, z] as (z, y, x); the rows give them back as x, y, z
    for key, name in (("predict target center", "predicted_center_zyx"), ("target center", "target_center_zyx"),
                      ("target spacing", "target_spacing_zyx")):
        np.testing.assert_array_equal(getattr(e.predictions, name), points_xyz_to_zyx([r[key] for r in dltmix_results]))
    assert list(rows[0]) == ["pair_id", "source", "target", "pred_x", "pred_y", "pred_z", "true_x", "true_y", "true_z",
                             "spacing_x", "spacing_y", "spacing_z", "radius_mm", "d_x_mm", "d_y_mm", "d_z_mm",
                             "distance_mm", "hit_10mm", "hit_radius"]
    first = dltmix_results[0]
    assert [rows[0][f"pred_{a}"] for a in "xyz"] == first["predict target center"]
    assert [rows[0][f"spacing_{a}"] for a in "xyz"] == first["target spacing"]
    assert [rows[0][f"d_{a}_mm"] for a in "xyz"] == pytest.approx(
        [abs(p - t) * s for p, t, s in zip(first["predict target center"], first["target center"],
                                           first["target spacing"])])


# --------------------------------------------------------------------------------------------------
# The three input forms give identical numbers
# --------------------------------------------------------------------------------------------------

def test_three_forms_identical(tmp_path, dltmix_results, dltmix_eval):
    form_a = write_predictions(tmp_path / "a.json", to_lesionnet_records(dltmix_results), method="DLT-Mix",
                               dataset="DLS")
    form_c = write(tmp_path / "c.json", {f"{i + 1:04d}": r for i, r in enumerate(dltmix_results)})
    ea, ec = evaluate_tracking_file(form_a), evaluate_tracking_file(form_c)
    assert ea.predictions.form == "lesionnet" and ec.predictions.form == "dls_annotation"
    reference = dltmix_eval.summary()
    assert ea.summary() == reference
    assert ec.summary() == reference
    for e in (ea, ec):
        np.testing.assert_array_equal(e.distance_mm, dltmix_eval.distance_mm)
        np.testing.assert_array_equal(e.distance_zyx_mm, dltmix_eval.distance_zyx_mm)
        np.testing.assert_array_equal(e.radius_mm, dltmix_eval.radius_mm)
        np.testing.assert_array_equal(e.hit_radius, dltmix_eval.hit_radius)
        np.testing.assert_array_equal(e.hit_10mm, dltmix_eval.hit_10mm)


def test_detect_form(dltmix_results):
    assert detect_form({"format": PREDICTIONS_FORMAT, "version": 1, "results": []}) == "lesionnet"
    assert detect_form({"results": dltmix_results[:2]}) == "dls_results"
    assert detect_form({"0001": dltmix_results[0]}) == "dls_annotation"
    assert detect_form([{"pair_id": "a", "source_center": [0, 0, 0]}]) == "raw_pairs"
    for bad in ({"foo": 1}, [1, 2], "text", {}, {"format": "other"}):
        with pytest.raises(PredictionFormatError, match="somefile.json"):
            detect_form(bad, "somefile.json")
    with pytest.raises(PredictionFormatError, match="version"):
        detect_form({"format": PREDICTIONS_FORMAT, "version": 99, "results": []})


# --------------------------------------------------------------------------------------------------
# Conventions on hand-made cases
# --------------------------------------------------------------------------------------------------

def test_cpm_radius_strict_and_cpm10_inclusive():
    # d = 5 exactly (3-4-5 triangle, 1 mm spacing), r = 5: CPM@Radius miss (d/r < 1 is strict),
    # CPM@10mm hit (d <= min(r, 10)).
    e = evaluate_tracking([[3.0, 4.0, 0.0]], [[0.0, 0.0, 0.0]], [1.0, 1.0, 1.0], [5.0])
    assert e.distance_mm[0] == 5.0
    assert not e.hit_radius[0] and e.hit_10mm[0]
    s = e.summary()
    assert s["CPM@Radius"] == 0.0 and s["CPM@10mm"] == 100.0


def test_cpm10_caps_at_10mm():
    pred = [[6.0, 8.0, 0.0], [6.0, 8.0, 0.0], [6.0, 8.01, 0.0]]  # d = 10, 10, > 10
    true = np.zeros((3, 3))
    e = evaluate_tracking(pred, true, [1.0, 1.0, 1.0], [20.0, 10.0, 20.0])
    assert e.distance_mm[0] == 10.0
    assert e.hit_10mm.tolist() == [True, True, False]       # d == min(r, 10) is a hit
    assert e.hit_radius.tolist() == [True, False, True]      # 10 / 10 is not < 1


def test_anisotropic_spacing():
    # (z, y, x) offsets (1, -1.5, 2) voxels at spacing (5, 2, 0.5) mm -> (5, 3, 1) mm: MED_X/Y/Z = 1, 3, 5
    e = evaluate_tracking([[4.0, 8.5, 12.0]], [[3.0, 10.0, 10.0]], [5.0, 2.0, 0.5], [100.0])
    np.testing.assert_allclose(e.distance_zyx_mm[0], [5.0, 3.0, 1.0])
    assert e.distance_mm[0] == pytest.approx(math.sqrt(35.0))
    s = e.summary()
    assert (s["MED_X"], s["MED_Y"], s["MED_Z"]) == pytest.approx((1.0, 3.0, 5.0))


def test_spacing_is_the_target_scans(tmp_path):
    record = {"source": "a.nii.gz", "target": "b.nii.gz", "source center": [0, 0, 0], "target center": [0, 0, 0],
              "predict target center": [0, 0, 2], "source spacing": [1, 1, 1], "target spacing": [1, 1, 2.5],
              "target recist diameter": [100, 50]}
    e = evaluate_tracking_file(write(tmp_path / "p.json", {"results": [record]}))
    assert e.distance_mm[0] == 5.0


def test_radius_fallback_and_override(tmp_path):
    base = {"source": "a.nii.gz", "target": "b.nii.gz", "source center": [10, 10, 3], "target center": [10, 10, 3],
            "predict target center": [17, 10, 3], "target spacing": [0.8, 0.8, 5.0]}
    # fallback: max(20, 10) / 2 * 0.8 = 8 mm; d = 7 * 0.8 = 5.6 mm
    fallback = dict(base, **{"target recist diameter": [10.0, 20.0]})
    # explicit radius wins over the recist diameter: r = 4 mm -> miss
    explicit = dict(fallback, **{"target radius mm": 4.0, "source center": [50, 50, 3], "target center": [50, 50, 3],
                                 "predict target center": [57, 50, 3]})
    e = evaluate_tracking_file(write(tmp_path / "p.json", {"results": [fallback, explicit]}))
    assert e.radius_mm.tolist() == pytest.approx([8.0, 4.0])
    assert e.distance_mm == pytest.approx([5.6, 5.6])
    assert e.hit_radius.tolist() == [True, False]
    assert e.hit_10mm.tolist() == [True, False]
    # spacings (z, y, x): the x spacing (0.8, 0.5) is the one used
    assert dls_radius_mm([[10.0, 20.0], [4.0, 3.0]], [[5.0, 0.8, 0.8], [1.0, 0.7, 0.5]]).tolist() == \
        pytest.approx([8.0, 1.0])


def test_zero_radius_guard():
    # r = 0: CPM@Radius divides by 1e-3 instead; CPM@10mm needs d <= 0.
    pred = [[0.0, 0.0, 0.0], [0.0005, 0.0, 0.0], [0.002, 0.0, 0.0]]
    e = evaluate_tracking(pred, np.zeros((3, 3)), [1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    assert e.hit_radius.tolist() == [True, True, False]
    assert e.hit_10mm.tolist() == [True, False, False]
    assert np.all(np.isfinite(e.distance_mm))


def test_population_std_on_two_pairs():
    e = evaluate_tracking([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]], np.zeros((2, 3)), [1.0, 1.0, 1.0], 5.0)
    s = e.summary()
    assert s["MED"] == 1.0 and s["MED_std"] == 1.0 and s["n"] == 2


def test_evaluate_tracking_rejects_bad_arrays():
    with pytest.raises(ValueError, match="no pairs"):
        evaluate_tracking(np.zeros((0, 3)), np.zeros((0, 3)), [1, 1, 1], [])
    with pytest.raises(ValueError, match="non-finite"):
        evaluate_tracking([[np.nan, 0, 0]], [[0, 0, 0]], [1, 1, 1], [1.0])
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        evaluate_tracking([[0, 0]], [[0, 0]], [1, 1, 1], [1.0])


# --------------------------------------------------------------------------------------------------
# Writing and reading the lesionnet format
# --------------------------------------------------------------------------------------------------

def test_make_record_and_round_trip(tmp_path):
    pair = TrackingPair("P0003_L1_T0-T1", "P0003_T0", "P0003_T1", (5.0, 20.0, 10.0), 6.0, (6.0, 19.0, 11.0), 7.5)
    record = prediction_record_from_pair(pair, (6.0, 19.0, 12.0), (2.0, 0.75, 0.75),
                                         predicted_center_world=(9.0, 14.25, 12.0), confidence=0.9,
                                         processing_time_s=1.5)
    assert record["target radius mm"] == 7.5
    # the file holds [x, y, z]
    assert record["source center"] == [10.0, 20.0, 5.0] and record["target center"] == [11.0, 19.0, 6.0]
    assert record["predict target center"] == [12.0, 19.0, 6.0] and record["target spacing"] == [0.75, 0.75, 2.0]
    # the DLS radius rule on the written diameter gives back r
    assert max(record["target recist diameter"]) / 2 * record["target spacing"][0] == pytest.approx(7.5)
    path = write_predictions(tmp_path / "preds" / "affine.json", [record], method="affine", dataset="Dataset501_X")
    doc = read_predictions(path)
    assert doc["format"] == PREDICTIONS_FORMAT and doc["method"] == "affine" and doc["results"] == [record]
    assert not list(path.parent.glob(".tmp-*"))
    e = evaluate_tracking_file(path)
    assert e.pair_ids == ("P0003_L1_T0-T1",)
    assert e.distance_mm[0] == pytest.approx(0.75)
    np.testing.assert_array_equal(e.distance_zyx_mm[0], [0.0, 0.0, 0.75])
    p = e.predictions
    np.testing.assert_array_equal(p.predicted_center_zyx[0], [6.0, 19.0, 12.0])
    np.testing.assert_array_equal(p.target_center_zyx[0], pair.target_center_zyx)
    np.testing.assert_array_equal(p.source_center_zyx[0], pair.source_center_zyx)
    np.testing.assert_array_equal(p.target_spacing_zyx[0], [2.0, 0.75, 0.75])

    no_truth = make_prediction_record(pair_id="x", source="s", target="t", source_center_zyx=(0, 0, 0),
                                      source_radius_mm=1, target_spacing_zyx=(1, 1, 1), predicted_center_zyx=(1, 1, 1))
    assert "target center" not in no_truth and no_truth["predict confidence"] is None
    with pytest.raises(ValueError, match="both"):
        make_prediction_record(pair_id="x", source="s", target="t", source_center_zyx=(0, 0, 0), source_radius_mm=1,
                               target_spacing_zyx=(1, 1, 1), predicted_center_zyx=(1, 1, 1),
                               target_center_zyx=(0, 0, 0))


def test_write_predictions_rejects_bad_records(tmp_path):
    record = make_prediction_record(pair_id="p1", source="s", target="t", source_center_zyx=(0, 0, 0),
                                    source_radius_mm=1, target_spacing_zyx=(1, 1, 1), predicted_center_zyx=(1, 1, 1))
    out = tmp_path / "p.json"
    with pytest.raises(PredictionFormatError, match="p1"):
        write_predictions(out, [record, dict(record)], method="affine", dataset=None)
    bad = dict(record)
    del bad["target spacing"]
    with pytest.raises(PredictionFormatError, match="target spacing"):
        write_predictions(out, [bad], method="affine", dataset=None)
    assert not out.exists() and not list(tmp_path.iterdir())
    with pytest.raises(PredictionFormatError, match="not a lesionnet predictions file"):
        read_predictions(DLTMIX)


# --------------------------------------------------------------------------------------------------
# References and matching
# --------------------------------------------------------------------------------------------------

def test_dls_results_matched_to_annotation_reference():
    p = load_tracking_predictions(DLTMIX, reference=TEST_JSON)
    assert p.match_rule == "geometry"            # DLS results records have no ids
    assert p.pair_ids[:3] == ["0001", "0002", "0003"]
    truth = json.loads(TEST_JSON.read_text())
    np.testing.assert_array_equal(p.target_center_zyx[5], xyz_to_zyx(truth["0006"]["target center"]))
    np.testing.assert_array_equal(p.target_spacing_zyx[5], xyz_to_zyx(truth["0006"]["target spacing"]))
    s = evaluate_predictions(p).summary()
    # the reference rounds centers to 0.1 voxel: same figures to within a few hundredths of a percent
    assert s["n"] == 960 and abs(s["MED"] - DLTMIX_EXPECTED["MED"]) < 0.02


def test_index_matching_when_records_have_no_centers(tmp_path, dltmix_results):
    stripped = [{k: v for k, v in r.items() if k not in ("source center", "target center")}
                for r in dltmix_results[:40]]
    reference = {f"{i + 1:04d}": r for i, r in enumerate(json.loads(TEST_JSON.read_text()).values()) if i < 40}
    p = load_tracking_predictions(write(tmp_path / "p.json", {"results": stripped}),
                                  reference=write(tmp_path / "ref.json", reference))
    assert p.match_rule == "index" and p.pair_ids[0] == "0001"


def test_raw_pairs_reference_uses_prediction_spacing(tmp_path, dltmix_results):
    records = to_lesionnet_records(dltmix_results[:30])
    pairs = []
    for rec in records:
        pairs.append(TrackingPair(rec["pair_id"], scan_key(rec["source"]), scan_key(rec["target"]),
                                  xyz_to_zyx(rec["source center"]), rec["source radius mm"],
                                  xyz_to_zyx(rec["target center"]), rec["target radius mm"]))
        for key in ("target center", "target radius mm", "target recist diameter"):
            del rec[key]
    save_pairs(tmp_path / "pairsTs.json", pairs)
    preds = write_predictions(tmp_path / "p.json", records, method="DLT-Mix", dataset="DLS")
    with pytest.raises(PredictionFormatError, match="target center"):
        evaluate_tracking_file(preds)            # no truth in the file and no reference
    e = evaluate_tracking_file(preds, reference=tmp_path / "pairsTs.json")
    assert e.predictions.match_rule == "id"
    np.testing.assert_allclose(e.distance_mm, evaluate_tracking_file(DLTMIX).distance_mm[:30], rtol=0, atol=1e-12)


def test_prediction_the_reference_lacks_is_named(tmp_path, dltmix_results):
    extra = dict(dltmix_results[0], source="999999_01_01_000-010.nii.gz")
    path = write(tmp_path / "p.json", {"results": dltmix_results + [extra]})
    with pytest.raises(PredictionFormatError) as info:
        load_tracking_predictions(path, reference=TEST_JSON)
    message = str(info.value)
    assert "999999_01_01_000-010.nii.gz" in message and "000016_02_01_223-283.nii.gz" in message
    assert "reference" in message and str(path) in message

    # by pair id: form (a) file with an id the raw pairs reference lacks
    records = to_lesionnet_records(dltmix_results[:3])
    pairs = [TrackingPair(r["pair_id"], r["source"], r["target"], xyz_to_zyx(r["source center"]), 1.0,
                          xyz_to_zyx(r["target center"]), r["target radius mm"]) for r in records[:2]]
    save_pairs(tmp_path / "pairs.json", pairs)
    preds = write_predictions(tmp_path / "a.json", records, method="m", dataset=None)
    with pytest.raises(PredictionFormatError, match="pair 0003"):
        load_tracking_predictions(preds, reference=tmp_path / "pairs.json")


def test_reference_pairs_without_prediction(tmp_path, dltmix_results):
    path = write(tmp_path / "p.json", {"results": dltmix_results[:950]})
    with pytest.raises(PredictionFormatError, match=r"no prediction for 10 pair\(s\).*allow_missing") as info:
        load_tracking_predictions(path, reference=TEST_JSON)
    assert "0951" in str(info.value)
    p = load_tracking_predictions(path, reference=TEST_JSON, allow_missing=True)
    assert len(p) == 950 and p.missing == [f"{i:04d}" for i in range(951, 961)]


def test_inputs_in_none_of_the_forms(tmp_path):
    for name, text in (("garbage.json", "this is not json"), ("other.json", json.dumps({"a": 1})),
                       ("numbers.json", json.dumps([1, 2, 3]))):
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ValueError, match=name):
            load_tracking_predictions(path)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_tracking_predictions(tmp_path / "nope.json")
    save_pairs(tmp_path / "pairs.json", [TrackingPair("a", "s", "t", (0, 0, 0), 1.0)])
    with pytest.raises(PredictionFormatError, match="no predictions"):
        load_tracking_predictions(tmp_path / "pairs.json")


def test_record_missing_key_is_named(tmp_path, dltmix_results):
    records = [dict(r) for r in dltmix_results[:5]]
    del records[3]["predict target center"]
    path = write(tmp_path / "p.json", {"results": records})
    with pytest.raises(PredictionFormatError, match=r"p\.json: results\[3\].*predict target center"):
        load_tracking_predictions(path)
    annotation = {"0001": dict(dltmix_results[0]), "0002": dict(dltmix_results[1], **{"target spacing": [1, 1]})}
    with pytest.raises(PredictionFormatError, match=r"'0002'.*target spacing"):
        load_tracking_predictions(write(tmp_path / "c.json", annotation))


# --------------------------------------------------------------------------------------------------
# Paired comparison
# --------------------------------------------------------------------------------------------------

def test_compare_dltmix_with_affine(dltmix_eval, affine_eval):
    c = compare_predictions(dltmix_eval, affine_eval)
    assert c.n == 960 and c.match_rule == "geometry"
    d = c.tests["distance_mm"]
    assert d.p_value < 0.001
    assert d.mean_difference == pytest.approx(dltmix_eval.summary()["MED"] - affine_eval.summary()["MED"])
    assert c.tests["CPM@10mm"].mean_difference == pytest.approx(78.85 - 48.33, abs=0.01)
    assert c.tests["CPM@Radius"].p_value < 0.001
    assert json.dumps(c.to_dict())


def test_compare_identical_sets(affine_eval):
    c = compare_predictions(affine_eval, affine_eval.predictions)
    for test in c.tests.values():
        assert test.p_value == 1.0 and test.mean_difference == 0.0
        assert "identical" in test.note


def test_paired_ttest_degenerate_cases():
    assert paired_ttest([1.0, 2.0], [0.0, 1.0]).p_value == 0.0          # constant nonzero difference
    single = paired_ttest([1.0], [2.0])
    assert single.p_value is None and "at least 2" in single.note
    normal = paired_ttest([1.0, 2.0, 4.0], [0.5, 2.5, 3.0])
    assert 0.0 < normal.p_value < 1.0 and normal.note is None


def test_compare_requires_the_same_pairs(dltmix_eval, affine_eval):
    half = affine_eval.predictions.subset(range(900))
    with pytest.raises(PredictionFormatError, match=r"only in A .*60 pair\(s\)"):
        compare_predictions(dltmix_eval, half)
