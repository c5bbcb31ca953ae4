"""Planner rules (pure), the assembly over the registered methods, monotonicity in the memory budget and
lesion-size behaviour. (The memory models are tested in test_memory_models.py.)"""
from __future__ import annotations

import json

import numpy as np
import pytest
from phantoms import FAST_DEFORMABLE, FAST_REGISTRATION

from lesionnet.datasets.synthetic import TrackingConfig, generate_tracking_dataset
from lesionnet.methods import REGISTRY
from lesionnet.methods.lntracker.planning import rule_queries, rule_slice_context
from lesionnet.methods.tlt.maps import keep_radius_mm
from lesionnet.methods.tlt.planning import count_kept_tokens, rule_fine_matching, rule_sss_threshold
from lesionnet.planning import fingerprint as fp_module
from lesionnet.planning import memory as mm
from lesionnet.planning import planner
from lesionnet.planning.fingerprint import extract_fingerprint
from lesionnet.planning.plans_io import cpu_budget_bytes, detect_memory_budget, get_configuration, plan_experiment
from lesionnet.planning.resolution import radius_cells, rule_tracking_resolution
from lesionnet.planning.rules import (
    build_chain,
    decision,
    patch_reduction_levels,
    round_up,
    rule_max_batch,
    rule_native_z_spacing,
    rule_registration_prior,
    rule_search_patch,
    rule_target_spacing,
    rule_template_patch,
    search_coverage,
    select_from_chain,
    template_search_reduction_levels,
)


@pytest.fixture(autouse=True)
def fast_deformable_candidate(monkeypatch):
    """The fingerprint's deformable prior candidate, made fast for tests (same code path)."""
    monkeypatch.setattr(fp_module, "DEFORMABLE_PRIOR", FAST_DEFORMABLE)


def plan_from_fingerprint(fingerprint: dict, budget_record: dict) -> dict:
    """The planner's assembly over every registered method (what lesionnet_plan_and_preprocess plans)."""
    return planner.plan_from_fingerprint(fingerprint, budget_record, REGISTRY.values())


def value_at(section: dict, dotted_key: str):
    """``section["network"]["channels"]`` for ``"network.channels"``."""
    for part in dotted_key.split("."):
        section = section[part]
    return section


def budget(gb: float, device: str = "cuda") -> dict:
    return decision(int(gb * mm.GIB), "test", device=device)


def tracking_fingerprint(radii, errors_zyx=None, spacings_zyx=None, shapes_zyx=None, seed=0) -> dict:
    """A fingerprint-level synthetic tracking dataset (what extract_fingerprint writes, minimal)."""
    rng = np.random.default_rng(seed)
    radii = list(np.asarray(radii, dtype=float))
    n_scans = 10
    spacings_zyx = spacings_zyx or [[2.0, 0.8, 0.8]] * n_scans
    shapes_zyx = shapes_zyx or [[120, 400, 400]] * len(spacings_zyx)
    if errors_zyx is None:
        errors_zyx = np.abs(rng.normal(0, [4.0, 3.0, 3.0], size=(len(radii), 3)))
    pairs = [{"pair_id": f"p{i}", "abs_error_mm_zyx": {"affine": list(map(float, e))},
              "target_radius_mm": float(radii[i % len(radii)]),
              "source_radius_mm": float(radii[i % len(radii)])} for i, e in enumerate(errors_zyx)]
    return {
        "dataset": "Dataset900_Test", "task": "tracking", "inputs_signature": "x",
        "scans": {f"S{i}": {"spacing_zyx": list(s), "shape_zyx": list(n)}
                  for i, (s, n) in enumerate(zip(spacings_zyx, shapes_zyx))},
        "spacing_zyx": {"all": [list(s) for s in spacings_zyx]},
        "slice_thickness_mm": {"p50": float(np.median([s[0] for s in spacings_zyx]))},
        "intensity": {"num_samples": 100, "p0.5": -900.0, "p50": 20.0, "p99.5": 800.0, "mean": -100.0, "std": 300.0},
        "lesions": {"radii_mm": radii},
        "tracking": {"pairs": pairs, "registration_symmetric": True},
    }


def detection_fingerprint(per_slice_max=6, thickness=5.0, inplane=0.7, shape=(60, 512, 512)) -> dict:
    spacings = [[thickness, inplane, inplane]] * 8
    return {
        "dataset": "Dataset901_Test", "task": "detection", "inputs_signature": "y",
        "scans": {f"S{i}": {"spacing_zyx": s, "shape_zyx": list(shape)} for i, s in enumerate(spacings)},
        "spacing_zyx": {"all": spacings},
        "slice_thickness_mm": {"p50": thickness},
        "intensity": {"num_samples": 100, "p0.5": -200.0, "p50": 20.0, "p99.5": 300.0, "mean": 0.0, "std": 100.0},
        "lesions": {"radii_mm": [3.0, 5.0, 8.0]},
        "detection": {"per_slice_instance_counts": {"max": per_slice_max}},
    }


# ------------------------------------------------------------------------------------------ spacing
def test_target_spacing_median():
    rec = rule_target_spacing([[2.0, 0.8, 0.8], [2.4, 0.7, 0.7], [2.2, 0.9, 0.9]])
    assert rec["value"] == pytest.approx([2.2, 0.8, 0.8])
    assert rec["inputs"]["anisotropy_ratio"] == pytest.approx(2.2 / 0.8)
    assert "rule" in rec


def test_target_spacing_anisotropic_uses_p10_of_thick_axis():
    z = [1.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0]
    spacings = [[s, 0.7, 0.7] for s in z]
    rec = rule_target_spacing(spacings)
    assert rec["value"][0] == pytest.approx(np.percentile(z, 10)) and rec["value"][0] < 5.0
    assert rec["inputs"]["thick_axis"] == "z"


def test_target_spacing_thick_axis_never_finer_than_inplane():
    rec = rule_target_spacing([[5.0, 1.0, 1.0]] * 3 + [[0.3, 1.0, 1.0]] * 2)  # median z 5 > 3 × 1
    assert rec["value"][0] >= 1.0


def test_target_spacing_single_scan_and_very_thick_slices():
    assert rule_target_spacing([[10.0, 0.5, 0.5]])["value"] == pytest.approx([10.0, 0.5, 0.5])
    with pytest.raises(ValueError):
        rule_target_spacing([])


def test_native_z_for_lntracker():
    rec = rule_native_z_spacing([[5.0, 0.7, 0.7], [2.0, 0.9, 0.9]])
    assert rec["value"][0] is None and rec["value"][1] == pytest.approx(0.8)


# ------------------------------------------------------------------------------------------ patches
def test_tracking_resolution_spans_the_papers_cells_per_radius():
    """The spacing and stride are chosen together: the median radius spans about 1.33 feature cells (DLS at
    1 mm, stride 8); never finer than the native spacing; the finest candidate without a compute budget,
    a cheaper one within it."""
    def voxels(spacing, stride):                   # a 120 mm template and search patch, as voxels
        return int(2 * np.prod([120.0 / s for s in spacing]))

    fine = rule_tracking_resolution([10.6] * 5, [0.8, 0.8, 0.8], voxels, voxel_budget=None)
    assert fine["value"]["stride"] == 8 and fine["value"]["spacing_zyx"] == pytest.approx([1.0025] * 3, abs=0.01)
    assert fine["value"]["radius_cells"] == pytest.approx(10.6 / 8.0, rel=0.01)
    cheap = rule_tracking_resolution([10.6] * 5, [0.8, 0.8, 0.8], voxels, voxel_budget=100_000)
    assert cheap["value"]["stride"] == 2 and cheap["value"]["spacing_zyx"] == pytest.approx([4.0] * 3, abs=0.02)
    coarse = rule_tracking_resolution([10.0] * 5, [3.0, 2.5, 2.5], voxels, voxel_budget=None)
    assert coarse["value"]["stride"] == 2            # stride 4 would need 1.9 mm, finer than the native spacing
    assert all(c["spacing_zyx"][0] >= 3.0 for c in coarse["inputs"]["candidates"])
    tiny = rule_tracking_resolution([2.0] * 5, [3.0, 3.0, 3.0], voxels, voxel_budget=10)
    assert tiny["value"]["stride"] == 2 and "cheapest" in tiny["rule"]       # nothing fits: the cheapest
    assert radius_cells(10.6, [1.0, 1.0, 1.0], 8) == pytest.approx(1.325)


def test_template_patch_grows_with_lesion_size_and_is_stride_multiple():
    small = rule_template_patch([3.0, 4.0, 5.0], [1.0, 1.0, 1.0])["value"]
    large = rule_template_patch([25.0, 30.0, 40.0], [1.0, 1.0, 1.0])["value"]
    assert all(s % 8 == 0 for s in small + large)
    assert all(b > a for a, b in zip(small, large))
    assert min(small) >= 16


def test_template_patch_contains_the_kept_region_at_paper_tr():
    radii = np.linspace(5, 20, 50)
    rec = rule_template_patch(radii, [1.0, 1.0, 1.0])
    r95 = np.percentile(radii, 95)
    assert min(rec["value"]) / 2 >= keep_radius_mm(r95, 0.7)


def test_template_patch_huge_lesions_capped_and_one_lesion():
    rec = rule_template_patch([300.0], [1.0, 1.0, 1.0], max_size_zyx=[100, 300, 300])
    assert rec["value"] == [104, 304, 304]
    assert rule_template_patch([5.0], [2.0, 1.0, 1.0])["value"] == [16, 32, 32]
    assert rule_template_patch([], [1.0, 1.0, 1.0])["inputs"]["used_default_radius"]


def test_search_patch_contains_target_for_99_percent_of_pairs():
    rng = np.random.default_rng(1)
    errors = np.abs(rng.standard_t(3, size=(500, 3)) * [6.0, 4.0, 4.0])   # heavy tails
    radii = rng.uniform(3, 20, 500)
    spacing = [2.0, 1.0, 1.0]
    rec = rule_search_patch(errors, radii, spacing, template_patch_zyx=[16, 32, 32])
    assert all(v % 8 == 0 for v in rec["value"])
    assert search_coverage(errors, radii, rec["value"], spacing) >= 0.99
    assert rec["inputs"]["coverage_achieved"] >= 0.99
    assert all(a >= b for a, b in zip(rec["value"], [16, 32, 32]))


def test_search_patch_grows_when_axes_miss_jointly():
    # every pair misses on at most one axis: per-axis p99 alone would lose ~3 % jointly
    rng = np.random.default_rng(0)
    errors = np.abs(rng.normal(0, 5.0, size=(300, 3)))
    radii = np.full(300, 5.0)
    rec = rule_search_patch(errors, radii, [1.0, 1.0, 1.0], [16, 16, 16], error_quantile=97.0, margin_voxels=0)
    assert rec["inputs"]["coverage_achieved"] >= 0.99
    assert rec["inputs"]["grown_by_strides"] > 0


def test_search_patch_without_pairs_and_with_one_pair():
    rec = rule_search_patch([], [], [1.0, 1.0, 1.0], [16, 16, 16])
    assert "no training pairs" in rec["rule"] and all(v >= 16 for v in rec["value"])
    one = rule_search_patch([[2.0, 3.0, 4.0]], [5.0], [1.0, 1.0, 1.0], [16, 16, 16])
    assert search_coverage([[2.0, 3.0, 4.0]], [5.0], one["value"], [1, 1, 1]) == 1.0


def test_search_patch_capped_at_median_image():
    errors = np.full((10, 3), 500.0)
    rec = rule_search_patch(errors, np.full(10, 5.0), [1.0, 1.0, 1.0], [16, 16, 16], max_size_zyx=[100, 200, 200])
    assert rec["value"] == [104, 200, 200]
    assert rec["inputs"]["coverage_achieved"] < 0.99


# ------------------------------------------------------------------------------------------ SSS threshold
def test_count_kept_tokens_matches_brute_force():
    fs = np.array([8.0, 6.0, 6.0])
    for r, tr, off in ((10.0, 0.7, (0, 0, 0)), (4.0, 0.5, (0.5, 0.5, 0.5)), (25.0, 0.9, (0.5, 0, 0))):
        keep = keep_radius_mm(r, tr)
        k = np.arange(-30, 31)
        z, y, x = np.meshgrid(k, k, k, indexing="ij")
        d2 = ((z - off[0]) * fs[0]) ** 2 + ((y - off[1]) * fs[1]) ** 2 + ((x - off[2]) * fs[2]) ** 2
        assert count_kept_tokens(r, tr, fs, off) == int(np.count_nonzero(d2 < keep ** 2))


def test_sss_threshold_paper_default_when_data_allow():
    rec = rule_sss_threshold(np.linspace(6, 20, 40), [8.0, 8.0, 8.0], token_budget=512)
    assert rec["value"] == 0.7
    assert rec["inputs"]["min_tokens_small_lesion"] >= 1
    assert rec["inputs"]["tokens_large_lesion"] <= 512


def test_sss_threshold_small_lesions_lower_tr_to_keep_a_token():
    rec = rule_sss_threshold([2.0, 2.5, 3.0], [8.0, 8.0, 8.0])
    assert rec["value"] < 0.7
    assert count_kept_tokens(rec["inputs"]["radius_low_mm"], rec["value"], [8, 8, 8], (0.5, 0.5, 0.5)) >= 1


def test_sss_threshold_huge_lesions_raise_tr_into_budget():
    rec = rule_sss_threshold([80.0, 90.0, 100.0], [8.0, 8.0, 8.0], token_budget=512)
    assert rec["value"] > 0.7
    assert count_kept_tokens(rec["inputs"]["radius_high_mm"], rec["value"], [8, 8, 8]) <= 512
    assert not rec["inputs"]["conflict"]


def test_sss_threshold_single_lesion_and_conflict():
    single = rule_sss_threshold([10.0], [8.0, 8.0, 8.0])
    assert 0 < single["value"] < 1
    conflict = rule_sss_threshold([1.0, 200.0], [8.0, 8.0, 8.0], token_budget=4)
    assert conflict["inputs"]["conflict"] and conflict["value"] == conflict["inputs"]["upper_bound"]


# ------------------------------------------------------------------------------------------ LN-Tracker rules
def test_lntracker_queries_and_context():
    assert rule_queries(7)["value"] == 70
    assert rule_queries(0)["value"] == 20
    assert rule_queries(100)["value"] == 300
    assert rule_slice_context(5.0)["value"] == 2
    assert rule_slice_context(2.0)["value"] == 4
    assert rule_slice_context(0.5)["value"] == 4
    assert rule_slice_context(20.0)["value"] == 1


def test_round_up():
    assert round_up(1, 8) == 8 and round_up(8, 8) == 8 and round_up(8.01, 8) == 16 and round_up(0, 8) == 8


def test_max_batch():
    assert rule_max_batch(1000, 4)["value"] == 4
    assert rule_max_batch(10, 4)["value"] == 2
    assert rule_max_batch(0, 1)["value"] == 1


# ------------------------------------------------------------------------------------------ chains
def test_chain_selection_picks_last_fitting():
    chain = build_chain({"a": 1}, [("a", 2), ("a", 3), ("a", 4)])
    est = lambda c: mm.MemoryEstimate(0, 0, 0, 0, c["a"] * 100, 0, 0)  # noqa: E731
    assert select_from_chain(chain, est, 250)["config"] == {"a": 2}
    none = select_from_chain(chain, est, 50)
    assert none["config"] == {"a": 1} and not none["fits"]


def test_patch_reduction_levels_ascend_to_full():
    levels = patch_reduction_levels([32, 64, 64], [16, 32, 32], [2.0, 1.0, 1.0], 8)
    assert levels[-1] == [32, 64, 64] and levels[0] == [16, 32, 32]
    assert all(all(b >= a for a, b in zip(p, q)) for p, q in zip(levels, levels[1:]))


def test_template_search_reduction_levels():
    levels = template_search_reduction_levels([24, 32, 32], [32, 48, 48], [2.0, 1.0, 1.0], 8)
    assert levels[-1] == ([24, 32, 32], [32, 48, 48])
    assert levels[0] == ([16, 16, 16], [16, 16, 16])
    for (t0, s0), (t1, s1) in zip(levels, levels[1:]):
        assert all(b >= a for a, b in zip(t0 + s0, t1 + s1))
        assert sum(t1 + s1) - sum(t0 + s0) in (8, 16)
        assert all(s >= t for s, t in zip(s1, t1))


@pytest.mark.parametrize("fingerprint", [
    tracking_fingerprint(np.linspace(3, 30, 60)),
    tracking_fingerprint(np.full(30, 60.0), spacings_zyx=[[1.0, 1.0, 1.0]] * 5),
    detection_fingerprint(),
], ids=["tracking", "tracking-large-lesions", "detection"])
def test_memory_driven_sizes_are_monotone_in_the_budget(fingerprint):
    budgets = [0.125 * 2 ** k for k in range(13)]          # 0.125 ... 512 GiB
    plans = [plan_from_fingerprint(fingerprint, budget(g)) for g in budgets]
    seen_change = False
    for method in REGISTRY.values():
        if method.name not in plans[0]["configurations"] or not method.memory_driven_keys:
            continue
        for lo, hi in zip(plans, plans[1:]):             # hi has twice lo's budget
            a, b = lo["configurations"][method.name], hi["configurations"][method.name]
            for key in method.memory_driven_keys:
                va, vb = np.atleast_1d(value_at(a, key)), np.atleast_1d(value_at(b, key))
                assert np.all(vb >= va), f"{method}.{key}: doubling the budget lowered it ({va} -> {vb})"
                seen_change |= bool(np.any(vb > va))
            assert b["estimated_memory_bytes"] <= hi["usable_memory_bytes"] or not b["fits_memory_budget"]
    assert seen_change, "the budget range should change at least one size"
    # the largest budget reaches the paper configuration
    top = plans[-1]["configurations"]
    if "tlt" in top:
        net = top["tlt"]["network"]
        assert (net["layers_per_line"], net["num_heads"], net["channels"][-1]) == (3, 8, 192)
    if "lntracker" in top:
        assert top["lntracker"]["decoder_layers"] == 9 and top["lntracker"]["hidden_dim"] == 256


def test_lntracker_on_a_cpu_stops_at_the_small_size():
    from lesionnet.methods.lntracker.method import PRESETS
    from lesionnet.methods.lntracker.planning import CPU_NETWORK

    cpu = plan_from_fingerprint(detection_fingerprint(), budget(12, device="cpu"))["configurations"]["lntracker"]
    gpu = plan_from_fingerprint(detection_fingerprint(), budget(12))["configurations"]["lntracker"]
    assert {k: cpu[k] for k in CPU_NETWORK} == CPU_NETWORK
    assert {k: v for k, v in PRESETS["small"].items()} == {k: cpu[k] for k in PRESETS["small"]}
    assert "on a CPU" in cpu["decisions"]["capacity"]["rule"]
    assert gpu["hidden_dim"] >= 128 and "backbone_widths" not in gpu
    assert cpu["fits_memory_budget"]


def test_large_lesions_get_larger_template_and_tr_within_budget():
    small = plan_from_fingerprint(tracking_fingerprint(np.linspace(3, 6, 40)), budget(24))
    large = plan_from_fingerprint(tracking_fingerprint(np.linspace(35, 60, 40)), budget(24))
    ts, tl = small["configurations"]["tlt"], large["configurations"]["tlt"]
    assert all(b > a for a, b in zip(ts["template_patch_size_zyx"], tl["template_patch_size_zyx"]))
    rec = tl["decisions"]["sss_threshold"]
    assert rec["inputs"]["tokens_large_lesion"] <= tl["max_template_tokens"]
    assert tl["network"]["sss_threshold"] >= ts["network"]["sss_threshold"]


def test_plan_with_one_scan_one_lesion_and_no_pairs():
    fp = tracking_fingerprint([7.0], errors_zyx=np.zeros((0, 3)), spacings_zyx=[[5.0, 0.7, 0.7]],
                              shapes_zyx=[[40, 512, 512]])
    plans = plan_from_fingerprint(fp, budget(8))
    tlt = plans["configurations"]["tlt"]
    assert "no training pairs" in tlt["decisions"]["search_patch_size"]["rule"]
    spacing = plans["data_configurations"][tlt["data_identifier"]]["target_spacing_zyx"]
    assert all(s >= n - 1e-9 for s, n in zip(spacing, [5.0, 0.7, 0.7]))       # never finer than the scan
    stride = tlt["feature_stride"]
    assert stride == 2 ** (len(tlt["network"]["channels"]) - 1)
    assert all(v % stride == 0 for v in tlt["template_patch_size_zyx"] + tlt["search_patch_size_zyx"])
    assert 0 < tlt["network"]["sss_threshold"] < 1 and tlt["batch_size"] >= 1


def test_plan_structure_for_the_trainer():
    plans = plan_from_fingerprint(tracking_fingerprint(np.linspace(4, 20, 50)), budget(16))
    tlt = get_configuration(plans, "tlt")
    for key in ("template_patch_size_zyx", "search_patch_size_zyx", "batch_size", "data_identifier", "network"):
        assert key in tlt
    for name, rec in tlt["decisions"].items():
        assert set(rec) == {"value", "rule", "inputs"}, name
    json.dumps(plans)  # plain JSON
    with pytest.raises(KeyError, match="lntracker.*tracking dataset"):
        get_configuration(plans, "lntracker")
    from lesionnet.methods.tlt.config import TLTConfig
    TLTConfig.from_dict(tlt["network"])   # the network dict is a valid TLTConfig, and holds each size once
    assert not {"sss_threshold", "attention_depth", "attention_width"} & set(tlt)
    # tracking methods share one data configuration (spacing, normalisation, registration of the priors)
    assert plans["configurations"]["dlt"]["data_identifier"] == tlt["data_identifier"]
    assert set(plans["data_configurations"]) == {tlt["data_identifier"]}
    assert "registration" in plans["data_configurations"][tlt["data_identifier"]]
    assert set(plans["configurations"]) == {"affine", "matcher", "tlt", "dlt"} and "identity" in plans["not_planned"]
    # DLT's training modes are variants that use the dlt section, not planned again
    assert plans["not_planned"]["dlt_mix"] == "'dlt_mix' trains and predicts from the 'dlt' section."
    dlt = plans["configurations"]["dlt"]
    assert dlt["memory_model_verified"] and dlt["decisions"]["scales"]["value"] == [dlt["feature_stride"] * f
                                                                                    for f in (1, 2, 4)]
    assert all(n % (4 * dlt["feature_stride"]) == 0 for n in dlt["search_patch_size_zyx"])


def test_assembly_asks_only_the_methods_it_is_given_and_checks_shared_data():
    class Spacing:
        """A method that plans its own data at a fixed spacing."""

        def __init__(self, name, spacing):
            self.name, self.task, self.spacing = name, "tracking", spacing

        def plan(self, context):
            data_id, config = context.data_configuration(self.spacing)
            return {"data_identifier": data_id, "data_configuration": config, "size": 1}

    fp = tracking_fingerprint(np.linspace(4, 20, 50))
    plans = planner.plan_from_fingerprint(fp, budget(8), [Spacing("a", [2.0, 1.0, 1.0])])
    assert set(plans["configurations"]) == {"a"} and plans["configurations"]["a"] == {
        "method": "a", "data_identifier": "lesionnetPlans_3d", "size": 1}
    with pytest.raises(ValueError, match="'a' and 'b' plan different preprocessing"):
        planner.plan_from_fingerprint(fp, budget(8), [Spacing("a", [2.0, 1.0, 1.0]), Spacing("b", [3.0, 1.0, 1.0])])


def test_budget_detection(monkeypatch):
    rec = detect_memory_budget(12)
    assert rec["value"] == 12 * mm.GIB and rec["inputs"]["device"] == "cuda"
    with pytest.raises(ValueError):
        detect_memory_budget(0)
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu = detect_memory_budget(None)
    assert cpu["inputs"]["device"] == "cpu" and cpu["value"] % (mm.GIB // 2) == 0
    assert cpu_budget_bytes(16 * mm.GIB) == 8 * mm.GIB


def test_plan_on_generated_datasets_large_vs_small_lesions(tmp_path):
    """End to end on two tiny generated Dataset501 variants that differ only in lesion size."""
    templates, trs = {}, {}
    for name, radii in (("small", (3.0, 4.0)), ("large", (14.0, 16.0))):
        config = TrackingConfig(num_patients=1, nominal_shape_zyx=(32, 96, 96), timepoints_range=(2, 2),
                                baseline_radius_range_mm=radii, radius_range_mm=(radii[0] * 0.8, radii[1] * 1.3),
                                growth_range=(0.9, 1.1), lesions_range=(3, 3))
        folder = tmp_path / name / "Dataset501_SynthLesionTracking"
        generate_tracking_dataset(folder, config, seed=3, progress=False)
        fp = extract_fingerprint(folder, num_processes=1, registration_settings=FAST_REGISTRATION,
                                 output_folder=tmp_path / name / "pre", progress=False)
        plans = plan_experiment(folder, REGISTRY.values(), gpu_memory_gb=8, fingerprint=fp,
                                output_folder=tmp_path / name / "pre")
        assert set(plans["configurations"]) == {"affine", "matcher", "tlt", "dlt"}
        tlt = plans["configurations"]["tlt"]
        templates[name], trs[name] = tlt["template_patch_size_zyx"], tlt
        assert tlt["decisions"]["sss_threshold"]["inputs"]["tokens_large_lesion"] <= tlt["max_template_tokens"]
        assert (tmp_path / name / "pre" / "lesionnet_plans.json").is_file()
    assert np.prod(templates["large"]) > np.prod(templates["small"])
    assert all(b >= a for a, b in zip(templates["small"], templates["large"]))


# ------------------------------------------------------------------------------------------ fine matching
def test_fine_matching_rule_turns_on_when_lesions_are_smaller_than_a_feature_cell():
    # Dataset501-like: 2.5 mm voxels, 20 mm cells, median radius 5.7 mm -> on, kernel 2 ceil(2.5 r / s) + 1
    coarse = rule_fine_matching([4.0, 5.7, 9.0], [3.141, 2.545, 2.545], [24, 32, 32])
    assert coarse["value"] == {"enabled": True, "kernel_zyx": [11, 13, 13]}
    assert coarse["inputs"]["feature_cell_mm"] == pytest.approx(8 * (3.141 * 2.545 ** 2) ** (1 / 3))
    # paper-like: 0.8 mm in-plane, 2 mm slices, 10 mm lesions -> off
    fine = rule_fine_matching([8.0, 10.0, 14.0], [2.0, 0.8, 0.8], [40, 64, 64])
    assert fine["value"]["enabled"] is False
    # the kernel never exceeds the template (made odd)
    assert rule_fine_matching([30.0], [1.0, 1.0, 1.0], [24, 31, 40])["value"]["kernel_zyx"] == [23, 31, 39]


# ------------------------------------------------------------------------------------------ registration prior
def _candidates(affine_cpm, deformable_cpm, affine_med, deformable_med, affine_s, deformable_s):
    return {"affine": {"CPM@10mm": affine_cpm, "MED": affine_med, "seconds_per_scan_pair_median": affine_s,
                       "num_pairs": 40},
            "deformable": {"CPM@10mm": deformable_cpm, "MED": deformable_med,
                           "seconds_per_scan_pair_median": deformable_s, "num_pairs": 40}}


@pytest.mark.parametrize("figures, expected", [
    ((40.0, 80.0, 8.0, 4.0, 2.0, 6.0), "deformable"),   # much better, 3x the time
    ((40.0, 80.0, 8.0, 4.0, 2.0, 9.0), "deformable"),   # 4.5x the time: within what timing noise gives
    ((40.0, 80.0, 8.0, 4.0, 2.0, 24.0), "affine"),      # better, but 12x the time
    ((40.0, 43.0, 8.0, 7.5, 2.0, 4.0), "affine"),       # 3 points only
    ((40.0, 50.0, 8.0, 8.5, 2.0, 4.0), "affine"),       # more hits but a worse MED
])
def test_registration_prior_rule(figures, expected):
    record = rule_registration_prior(_candidates(*figures))
    assert record["value"] == expected and record["rule"].startswith(expected)
    assert record["inputs"]["candidates"]["deformable"]["CPM@10mm"] == figures[1]


def test_planned_prior_sets_the_data_configuration_and_the_search_errors():
    radii = [8.0] * 20
    fp = tracking_fingerprint(radii, errors_zyx=np.full((20, 3), 9.0))
    for p in fp["tracking"]["pairs"]:
        p["abs_error_mm_zyx"]["deformable"] = [1.0, 1.0, 1.0]
    fp["tracking"]["prior_candidates"] = _candidates(10.0, 90.0, 15.6, 1.7, 2.0, 5.0)
    fp["tracking"]["prior_candidates"]["deformable"]["prior_settings"] = {"kind": "deformable", "grid_spacing_mm": 60}
    context = planner.PlanningContext(fp, budget(24.0))
    assert context.registration_prior["value"] == "deformable"
    assert context.prior_errors_mm_zyx == [[1.0, 1.0, 1.0]] * 20
    _, config = context.data_configuration([2.0, 1.0, 1.0])
    assert config["registration"] == {"prior": "deformable", "symmetric": True,
                                      "settings": {"kind": "deformable", "grid_spacing_mm": 60}}
    fp["tracking"]["prior_candidates"]["deformable"]["seconds_per_scan_pair_median"] = 25.0
    assert planner.PlanningContext(fp, budget(24.0)).registration_prior["value"] == "affine"
