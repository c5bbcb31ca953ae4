"""Dataset fingerprint: body mask, instance figures, tracking prior errors, registration cache, re-runs."""
from __future__ import annotations

import json

import numpy as np
import pytest
from phantoms import FAST_DEFORMABLE, FAST_REGISTRATION

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.instances import instance_statistics
from lesionnet.datasets.raw_format import TrackingPair
from lesionnet.datasets.synthetic import (
    LymphNodeConfig,
    TrackingConfig,
    generate_lymph_node_dataset,
    generate_tracking_dataset,
)
from lesionnet.planning import fingerprint as fp_module
from lesionnet.planning.fingerprint import (
    FINGERPRINT_FILE,
    PLANNING_CACHE,
    body_mask,
    extract_fingerprint,
    quantile_summary,
    sample_scan_pairs,
    unique_lesions,
)
from lesionnet.registration import cache as registration_cache
from lesionnet.registration.affine import AffineRegistration
from lesionnet.registration.cache import REGISTRATION_FOLDER, invert_registration, registration_jobs


@pytest.fixture(autouse=True)
def fast_deformable_candidate(monkeypatch):
    """The fingerprint's deformable prior candidate, made fast for tests (same code path)."""
    monkeypatch.setattr(fp_module, "DEFORMABLE_PRIOR", FAST_DEFORMABLE)


def make_501(raw_dir, num_patients=2, **overrides):
    config = TrackingConfig(num_patients=num_patients, nominal_shape_zyx=(16, 40, 40), **overrides)
    folder = raw_dir / "Dataset501_SynthLesionTracking"
    generate_tracking_dataset(folder, config, seed=0, progress=False)
    return folder


def make_502(raw_dir, num_patients=3):
    folder = raw_dir / "Dataset502_SynthLymphNodes"
    generate_lymph_node_dataset(folder, LymphNodeConfig(num_patients=num_patients, shape_zyx=(12, 48, 48)), seed=0,
                                progress=False)
    return folder


# ------------------------------------------------------------------------------------------ pure parts
def test_body_mask_fills_lungs_and_drops_table():
    image = np.full((6, 40, 40), -1000.0, dtype=np.float32)
    yy, xx = np.mgrid[:40, :40]
    body = (yy - 18) ** 2 / 14 ** 2 + (xx - 20) ** 2 / 16 ** 2 < 1
    lung = (yy - 18) ** 2 / 5 ** 2 + (xx - 14) ** 2 / 4 ** 2 < 1
    image[:, body] = 40.0
    image[:, lung] = -850.0
    image[:, 37:39, 5:35] = 100.0          # a table, not connected to the body
    mask = body_mask(image)
    assert mask[:, lung].all(), "lungs enclosed by the body belong to the body"
    assert not mask[:, 37:39, 5:35].any(), "the table is not the largest component"
    assert not mask[:, 0, 0].any()


def test_body_mask_without_body_keeps_everything():
    assert body_mask(np.full((2, 4, 4), -1000.0)).all()


def test_instance_statistics_boxes_radii_and_slice_counts():
    labels = np.zeros((10, 20, 20), dtype=np.int16)
    labels[2:5, 3:7, 4:9] = 1            # 3 slices, 4 x 5 in-plane
    labels[3, 10:12, 10:12] = 2          # one slice
    stats = instance_statistics(labels, spacing_zyx=(2.0, 0.5, 0.5))
    a, b = stats["instances"]
    assert a["box_zyx"] == [2, 3, 4, 5, 7, 9] and a["extent_slices"] == 3
    assert a["extent_mm_zyx"] == [6.0, 2.0, 2.5]
    volume = 3 * 4 * 5 * 0.5 * 0.5 * 2.0
    assert a["radius_mm"] == pytest.approx((3 * volume / (4 * np.pi)) ** (1 / 3))
    assert b["extent_slices"] == 1 and b["voxels"] == 4
    assert stats["per_slice_counts"] == [0, 0, 1, 2, 1, 0, 0, 0, 0, 0]


def test_instance_statistics_empty_mask():
    stats = instance_statistics(np.zeros((3, 4, 4), dtype=np.uint8), (1, 1, 1))
    assert stats["instances"] == [] and stats["per_slice_counts"] == [0, 0, 0]


def test_unique_lesions_deduplicates_both_sides():
    p1 = TrackingPair("a", "S0", "S1", (1, 2, 3), 5.0, (4, 5, 6), 6.0)
    p2 = TrackingPair("b", "S1", "S0", (4, 5, 6), 6.0, (1, 2, 3), 5.0)
    p3 = TrackingPair("c", "S0", "S1", (9, 9, 9), 2.0, (8, 8, 8), 3.0)
    lesions = unique_lesions([p1, p2, p3])
    assert sorted(r for _, r in lesions["S0"]) == [2.0, 5.0]
    assert sorted(r for _, r in lesions["S1"]) == [3.0, 6.0]


def test_quantile_summary_empty_and_single():
    assert quantile_summary([]) == {"count": 0}
    s = quantile_summary([4.0])
    assert s["p5"] == s["p95"] == 4.0 and s["count"] == 1


def test_invert_registration_round_trip():
    rng = np.random.default_rng(0)
    reg = AffineRegistration(np.eye(3) + 0.05 * rng.standard_normal((3, 3)), rng.normal(0, 10, 3), rng.normal(0, 50, 3))
    points = rng.uniform(-100, 100, (20, 3))
    inverse = invert_registration(reg)
    np.testing.assert_allclose(inverse.map_points(reg.map_points(points)), points, atol=1e-9)
    np.testing.assert_allclose(invert_registration(inverse).map_points(points), reg.map_points(points), atol=1e-9)
    geometry = Geometry((1.0, 2.0, 3.0), (5, 6, 7), shape_zyx=(10, 10, 10))
    back = inverse.map_voxel(reg.map_voxel((5.0, 4.0, 3.0), geometry, geometry), geometry, geometry)
    np.testing.assert_allclose(back, (5.0, 4.0, 3.0), atol=1e-9)


def test_sample_scan_pairs_is_a_seeded_capped_subset():
    directed = [(f"P{p}_T{a}", f"P{p}_T{b}") for p in range(10) for a in range(3) for b in range(3) if a != b]
    every = registration_jobs(directed)
    assert len(every) == 30
    assert sample_scan_pairs(directed, 30, seed=0) == every
    sample = sample_scan_pairs(directed, 8, seed=0)
    assert len(sample) == 8 and set(sample) <= set(every) and sample == sorted(sample)
    assert sample == sample_scan_pairs(directed, 8, seed=0)
    assert sample != sample_scan_pairs(directed, 8, seed=1)


def test_registration_jobs_symmetric_and_directed():
    pairs = [("A", "B"), ("B", "A"), ("A", "C"), ("A", "A")]
    assert registration_jobs(pairs, symmetric=True) == [("A", "B"), ("A", "C")]
    assert registration_jobs(pairs, symmetric=False) == [("A", "B"), ("A", "C"), ("B", "A")]


# ------------------------------------------------------------------------------------------ on generated data
def test_tracking_fingerprint_end_to_end(tmp_path, monkeypatch):
    raw = make_501(tmp_path / "raw")
    out = tmp_path / "pre"
    calls = []
    real = registration_cache.register_prior
    monkeypatch.setattr(registration_cache, "register_prior", lambda *a, **k: calls.append(a[2].kind) or real(*a, **k))
    fp = extract_fingerprint(raw, num_processes=1, registration_settings=FAST_REGISTRATION, output_folder=out,
                             progress=False)
    meta = json.loads((raw / "dataset.json").read_text())
    pairs = json.loads((raw / "pairsTr.json").read_text())
    scans = {p["source"] for p in pairs} | {p["target"] for p in pairs}
    assert fp["num_scans"] == meta["numTraining"] == len(fp["scans"])
    assert fp["tracking"]["num_pairs"] == len(pairs)
    # each unordered scan pair registered exactly once per candidate prior, cached on disk
    unordered = {tuple(sorted((p["source"], p["target"]))) for p in pairs}
    assert sorted(calls) == sorted(["affine", "deformable"] * len(unordered))
    assert fp["tracking"]["num_registrations"] == len(unordered)
    assert len(list((out / REGISTRATION_FOLDER / PLANNING_CACHE).glob("*.json"))) == len(unordered)
    assert len(list((out / REGISTRATION_FOLDER / PLANNING_CACHE / "deformable").glob("*.json"))) == len(unordered)
    assert fp["tracking"]["num_pairs_measured"] == len(pairs)
    assert not fp["tracking"]["prior_error_registration"]["sampled"]
    # the preprocessing registrations are recorded for the planner, not computed here
    candidates = fp["tracking"]["prior_candidates"]
    assert set(candidates) == {"affine", "deformable"}
    assert candidates["affine"]["prior_settings"]["working_spacing_mm"] == 4.0
    assert candidates["deformable"]["prior_settings"]["kind"] == "deformable"
    for candidate in candidates.values():
        assert candidate["num_pairs"] == len(pairs) and candidate["seconds_per_scan_pair_median"] > 0
        assert 0 <= candidate["CPM@10mm"] <= 100 and candidate["MED"] > 0
    assert not list((out / REGISTRATION_FOLDER).glob("*.json"))
    # figures
    for scan in fp["scans"].values():
        assert len(scan["spacing_zyx"]) == 3 and scan["num_lesions"] >= 1
        assert scan["intensity"]["num_samples"] > 0
    assert fp["intensity"]["p0.5"] < fp["intensity"]["p50"] < fp["intensity"]["p99.5"]
    assert fp["lesions"]["radius_mm"]["count"] == sum(s["num_lesions"] for s in fp["scans"].values())
    errors = np.array([p["abs_error_mm_zyx"]["affine"] for p in fp["tracking"]["pairs"]])
    assert errors.shape == (len(pairs), 3) and (errors >= 0).all()
    assert np.median(np.linalg.norm(errors, axis=1)) < 30.0, "the affine prior is roughly right"
    assert fp["slice_thickness_mm"]["count"] == fp["num_scans"]
    assert set(fp["scans"]) == scans
    # re-run: nothing read, registered or written
    path = out / FINGERPRINT_FILE
    mtime = path.stat().st_mtime_ns
    monkeypatch.setattr(fp_module, "_scan_worker", lambda job: pytest.fail("re-read a scan"))
    again = extract_fingerprint(raw, num_processes=1, registration_settings=FAST_REGISTRATION, output_folder=out,
                                progress=False)
    assert again == json.loads(path.read_text()) and path.stat().st_mtime_ns == mtime
    assert len(calls) == 2 * len(unordered)


def test_fingerprint_recomputes_after_input_change_but_reuses_registrations(tmp_path, monkeypatch):
    raw = make_501(tmp_path / "raw", num_patients=2)
    out = tmp_path / "pre"
    extract_fingerprint(raw, num_processes=1, registration_settings=FAST_REGISTRATION, output_folder=out,
                        progress=False)
    calls = []
    real = registration_cache.register_prior
    monkeypatch.setattr(registration_cache, "register_prior", lambda *a, **k: calls.append(a[2].kind) or real(*a, **k))
    # touching dataset.json changes the fingerprint's inputs, not the scans: no registration is redone
    (raw / "dataset.json").write_text((raw / "dataset.json").read_text())
    fp = extract_fingerprint(raw, num_processes=1, registration_settings=FAST_REGISTRATION, output_folder=out,
                             progress=False)
    assert calls == [] and fp["tracking"]["num_pairs"] > 0


def test_prior_error_from_a_capped_sample_of_scan_pairs(tmp_path, monkeypatch):
    raw = make_501(tmp_path / "raw", num_patients=3)
    calls = []
    real = registration_cache.register_prior
    monkeypatch.setattr(registration_cache, "register_prior", lambda *a, **k: calls.append(a[2].kind) or real(*a, **k))
    fp = extract_fingerprint(raw, num_processes=1, registration_settings=FAST_REGISTRATION,
                             output_folder=tmp_path / "pre", progress=False, max_registrations=1)
    tracking = fp["tracking"]
    assert sorted(calls) == ["affine", "deformable"] and tracking["num_scan_pairs_to_register"] > 1
    assert tracking["prior_error_registration"]["sampled"]
    (only,) = tracking["prior_error_registration"]["scan_pairs"]
    assert 0 < tracking["num_pairs_measured"] == len(tracking["pairs"]) < tracking["num_pairs"]
    pairs = {p["pair_id"]: p for p in json.loads((raw / "pairsTr.json").read_text())}
    assert all("__".join(sorted((pairs[e["pair_id"]]["source"], pairs[e["pair_id"]]["target"]))) == only
               for e in tracking["pairs"])
    for candidate in tracking["prior_candidates"].values():
        assert candidate["prior_error_mm"]["distance"]["count"] == tracking["num_pairs_measured"]
    with pytest.raises(ValueError, match="max_registrations"):
        extract_fingerprint(raw, num_processes=1, output_folder=tmp_path / "pre2", progress=False, max_registrations=0)


def test_tracking_fingerprint_in_a_process_pool(tmp_path):
    raw = make_501(tmp_path / "raw", num_patients=2)
    serial = extract_fingerprint(raw, num_processes=1, registration_settings=FAST_REGISTRATION,
                                 output_folder=tmp_path / "a", progress=False)
    pooled = extract_fingerprint(raw, num_processes=2, registration_settings=FAST_REGISTRATION,
                                 output_folder=tmp_path / "b", progress=False)
    assert pooled["scans"] == serial["scans"] and pooled["intensity"] == serial["intensity"]
    # single-threaded registration is repeatable, so the prior errors agree too
    assert pooled["tracking"]["pairs"] == serial["tracking"]["pairs"]


def test_detection_fingerprint(tmp_path):
    raw = make_502(tmp_path / "raw")
    fp = extract_fingerprint(raw, num_processes=1, output_folder=tmp_path / "pre", progress=False)
    det = fp["detection"]
    assert fp["task"] == "detection" and "tracking" not in fp
    assert det["num_instances"] == sum(s["num_lesions"] for s in fp["scans"].values()) > 0
    assert det["per_slice_instance_counts"]["max"] >= 1
    hist = det["per_slice_instance_counts"]["histogram"]
    assert sum(hist.values()) == sum(s["shape_zyx"][0] for s in fp["scans"].values())
    assert det["extent_slices"]["min"] >= 1
    assert all(i["radius_mm"] > 0 for i in det["instances"])
