"""Chain mode (``lesionnet.inference.chains``): time order, hops, hop-by-hop seeding and shared hops."""
from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest

from lesionnet.datasets.geometry import xyz_to_zyx, zyx_to_xyz
from lesionnet.datasets.prediction_format import prediction_record_from_pair, read_predictions, write_predictions
from lesionnet.datasets.raw_format import TrackingPair
from lesionnet.datasets.synthetic import TrackingConfig, generate_tracking_dataset
from lesionnet.inference.chains import (
    PREDICTED_RADIUS_KEY,
    chain_hops,
    natural_scan_key,
    patient_chains,
    predict_chained,
)
from lesionnet.inference.tracking_input import load_tracking_input
from lesionnet.methods.affine.tracker import RegistrationTracker


def _pair(pair_id, source, target, center=(1.0, 2.0, 3.0), radius=5.0, patient=None):
    return TrackingPair(pair_id, source, target, center, radius, patient=patient)


@pytest.fixture(scope="module")
def tracking_input(tmp_path_factory):
    """One synthetic patient P0000 with scans T0, T1, T2 and 2 lesions: 12 directed pairs (tiny grid)."""
    folder = tmp_path_factory.mktemp("chains") / "Dataset501_SynthLesionTracking"
    config = TrackingConfig(num_patients=2, test_fraction=0.5, timepoints_range=(3, 3), lesions_range=(2, 2),
                            nominal_shape_zyx=(16, 40, 40))
    generate_tracking_dataset(folder, config, seed=0, progress=False)
    return load_tracking_input(folder / "imagesTr")


class ShiftTracker:
    """Fake tracker: predicts the source center + 1 voxel in x (the last array axis), 0.5 s per hop; records
    every call."""

    def __init__(self, radius_factor=None):
        self.calls = []
        self.radius_factor = radius_factor

    def __call__(self, tracking_input, hop_pairs):
        self.calls.append(list(hop_pairs))
        records = []
        for pair in hop_pairs:
            assert pair.source == hop_pairs[0].source and pair.target == hop_pairs[0].target
            assert pair.target_center_zyx is None  # hops carry no truth
            predicted = np.asarray(pair.source_center_zyx) + (0.0, 0.0, 1.0)
            geometry = tracking_input.geometries[pair.target]
            record = prediction_record_from_pair(pair, predicted.tolist(), geometry.spacing_zyx,
                                                 geometry.voxel_to_world(predicted).tolist(), processing_time_s=0.5)
            if self.radius_factor:
                record[PREDICTED_RADIUS_KEY] = pair.source_radius_mm * self.radius_factor
            records.append(record)
        return records


def _identity(tracking_input, pairs):
    return RegistrationTracker(None)(tracking_input, pairs)


# ------------------------------------------------------------------------------------ time order and hops
def test_natural_time_order_and_patients():
    pairs = [_pair("a", "P1_T10", "P1_T2"), _pair("b", "P1_T0", "P1_T10"), _pair("c", "P0_T1", "P0_T0")]
    chains = patient_chains(pairs, scans=["P1_T9", "P2_T0"])
    assert chains == {"P0": ["P0_T0", "P0_T1"], "P1": ["P1_T0", "P1_T2", "P1_T9", "P1_T10"], "P2": ["P2_T0"]}
    assert natural_scan_key("000016_02_01_002-014") > natural_scan_key("000016_01_05_100-112")
    # an explicit patient field wins over the scan id prefix
    explicit = patient_chains([_pair("x", "scanB", "scanA", patient="X")])
    assert explicit == {"X": ["scanA", "scanB"]}
    # a custom time order
    by_suffix = patient_chains(pairs, time_key=lambda s: -int(s.split("_T")[1]))
    assert by_suffix["P1"] == ["P1_T10", "P1_T2", "P1_T0"]


def test_one_scan_cannot_belong_to_two_patients():
    pairs = [_pair("p1", "s_0", "s_1", patient="A"), _pair("p2", "s_1", "s_2", patient="B")]
    with pytest.raises(ValueError, match="s_1.*'A'.*p1.*'B'.*p2"):
        patient_chains(pairs)


def test_hops_consecutive_skipping_backward_and_same_scan():
    chains = {"P0": ["P0_T0", "P0_T1", "P0_T2", "P0_T3"]}
    assert chain_hops(_pair("a", "P0_T1", "P0_T2"), chains) == [("P0_T1", "P0_T2")]
    assert chain_hops(_pair("b", "P0_T0", "P0_T3"), chains) == [("P0_T0", "P0_T1"), ("P0_T1", "P0_T2"),
                                                                ("P0_T2", "P0_T3")]
    assert chain_hops(_pair("c", "P0_T3", "P0_T1"), chains) == [("P0_T3", "P0_T2"), ("P0_T2", "P0_T1")]
    assert chain_hops(_pair("d", "P0_T2", "P0_T2"), chains) == [("P0_T2", "P0_T2")]
    with pytest.raises(ValueError, match="pair 'c'.*earlier.*allow_backward"):
        chain_hops(_pair("c", "P0_T3", "P0_T1"), chains, allow_backward=False)


def test_scans_of_different_patients_are_a_clear_error():
    pairs = [_pair("cross", "P0_T0", "P1_T1"), _pair("ok", "P1_T0", "P1_T1")]
    chains = patient_chains(pairs)
    with pytest.raises(ValueError, match="pair 'cross'.*P0_T0.*'P0'.*P1_T1.*'P1'.*different patients"):
        chain_hops(pairs[0], chains)
    with pytest.raises(ValueError, match="pair 'lost'.*'Q_T0' is in no patient's chain"):
        chain_hops(_pair("lost", "Q_T0", "P1_T1"), chains)


# ------------------------------------------------------------------------------------ chained prediction
def test_prediction_of_a_hop_seeds_the_next_and_shared_hops_run_once(tracking_input):
    pairs = tracking_input.pairs
    assert len(pairs) == 12
    tracker = ShiftTracker()
    records = predict_chained(tracking_input, pairs, tracker, progress=False)
    assert [r["pair_id"] for r in records] == [p.pair_id for p in pairs]
    order = ["P0000_T0", "P0000_T1", "P0000_T2"]
    for pair, record in zip(pairs, records):
        i, j = order.index(pair.source), order.index(pair.target)
        n_hops = abs(j - i)
        np.testing.assert_allclose(record["predict target center"],
                                   np.asarray(zyx_to_xyz(pair.source_center_zyx)) + (n_hops, 0, 0), atol=1e-9)
        assert record["chain"] == (order[i:j + 1] if j > i else order[j:i + 1][::-1])
        assert record["processing time"] == pytest.approx(0.5 * n_hops)
        assert record["source"] == pair.source and record["target"] == pair.target
        assert record["source center"] == list(zyx_to_xyz(pair.source_center_zyx))
        assert record["target center"] == list(zyx_to_xyz(pair.target_center_zyx))
        assert record["target radius mm"] == pair.target_radius_mm
        geometry = tracking_input.geometries[pair.target]
        np.testing.assert_allclose(record["predict target center world"],
                                   geometry.voxel_to_world(xyz_to_zyx(record["predict target center"])), atol=1e-9)
    # each directed scan pair of consecutive scans is tracked once; T0->T1 is shared by the lesions' T0->T1 and
    # T0->T2 pairs (2 hops, not 4), T1->T2 gets the 2 true T1 centers plus the 2 predicted ones
    calls = Counter((c[0].source, c[0].target) for c in tracker.calls)
    assert calls == {("P0000_T0", "P0000_T1"): 1, ("P0000_T1", "P0000_T2"): 1,
                     ("P0000_T2", "P0000_T1"): 1, ("P0000_T1", "P0000_T0"): 1}
    assert {(c[0].source, c[0].target): len(c) for c in tracker.calls} == {
        ("P0000_T0", "P0000_T1"): 2, ("P0000_T1", "P0000_T2"): 4, ("P0000_T2", "P0000_T1"): 2,
        ("P0000_T1", "P0000_T0"): 4}
    # the records are a valid lesionnet predictions file
    doc = read_predictions(write_predictions(tracking_input.folder.parent / "chained.json", records, "shift", None))
    assert doc["results"][0]["chain"] == records[0]["chain"]


def test_cache_is_shared_between_calls(tracking_input):
    tracker, cache = ShiftTracker(), {}
    groups = tracking_input.scan_pairs()
    first = predict_chained(tracking_input, groups[("P0000_T0", "P0000_T1")], tracker, False, cache=cache)
    assert len(tracker.calls) == 1
    second = predict_chained(tracking_input, groups[("P0000_T0", "P0000_T2")], tracker, False, cache=cache)
    assert [(c[0].source, c[0].target) for c in tracker.calls[1:]] == [("P0000_T1", "P0000_T2")]
    np.testing.assert_allclose(np.array([r["predict target center"] for r in second]),
                               np.array([r["predict target center"] for r in first]) + (1, 0, 0), atol=1e-9)


def test_projected_radius_is_carried_to_the_next_hop(tracking_input):
    tracker = ShiftTracker(radius_factor=2.0)
    pair = tracking_input.scan_pairs()[("P0000_T0", "P0000_T2")][0]
    predict_chained(tracking_input, [pair], tracker, progress=False)
    assert [c[0].source_radius_mm for c in tracker.calls] == pytest.approx(
        [pair.source_radius_mm, 2 * pair.source_radius_mm])
    np.testing.assert_allclose(tracker.calls[1][0].source_center_zyx,
                               np.asarray(pair.source_center_zyx) + (0, 0, 1), atol=1e-9)


def test_consecutive_pairs_equal_the_single_hop_tracker(tracking_input):
    pairs = tracking_input.pairs
    records = predict_chained(tracking_input, pairs, _identity, progress=False)
    checked = 0
    for pair, record in zip(pairs, records):
        if abs(int(pair.source[-1]) - int(pair.target[-1])) != 1:
            continue
        checked += 1
        plain = _identity(tracking_input, [pair])[0]
        assert len(record["chain"]) == 2
        assert {k: v for k, v in record.items() if k not in ("chain", "processing time")} == \
            {k: v for k, v in plain.items() if k != "processing time"}
    assert checked == 8


def test_identity_chain_through_an_intermediate_scan_keeps_the_world_point(tracking_input):
    pairs = tracking_input.scan_pairs()[("P0000_T2", "P0000_T0")]
    chained = predict_chained(tracking_input, pairs, _identity, progress=False)
    direct = _identity(tracking_input, pairs)
    for c, d in zip(chained, direct):
        assert c["chain"] == ["P0000_T2", "P0000_T1", "P0000_T0"]
        np.testing.assert_allclose(c["predict target center"], d["predict target center"], atol=1e-6)


def test_pairs_without_truth_and_backward_refusal(tracking_input):
    pairs = [dataclasses.replace(p, target_center_zyx=None, target_radius_mm=None) for p in tracking_input.pairs]
    records = predict_chained(tracking_input, pairs[:3], ShiftTracker(), progress=False)
    assert all("target center" not in r and "target radius mm" not in r for r in records)
    backward = next(p for p in pairs if p.source.endswith("T2"))
    with pytest.raises(ValueError, match=f"pair '{backward.pair_id}'.*earlier"):
        predict_chained(tracking_input, [backward], ShiftTracker(), progress=False, allow_backward=False)
