"""Resampling, normalisation, storage and the whole lesionnet_plan_and_preprocess run (idempotent, atomic)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from phantoms import FAST_DEFORMABLE, FAST_REGISTRATION

from lesionnet.cli import plan_and_preprocess as cli
from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.image_io import read_geometry, read_image
from lesionnet.datasets.synthetic import (
    LymphNodeConfig,
    TrackingConfig,
    generate_lymph_node_dataset,
    generate_tracking_dataset,
)
from lesionnet.methods.tlt.maps import lesion_gaussian
from lesionnet.planning import fingerprint as fp_module
from lesionnet.planning import planner as planner_module
from lesionnet.planning.rules import decision
from lesionnet.preprocessing import preprocess as pre_module
from lesionnet.preprocessing.case import lesion_on_grids, preprocess_scan, register_scan_pair, registration_settings_of
from lesionnet.preprocessing.loading import PreprocessedDataset, centered_start_zyx, crop_zyx, load_case, map_on_crop
from lesionnet.preprocessing.normalization import ct_zscore, linear_hu, normalize
from lesionnet.preprocessing.resampling import map_voxel, resample_array, target_geometry
from lesionnet.registration import cache as registration_cache
from lesionnet.registration.anatomy_maps import project_lesion
from lesionnet.utils.files import TEMP_PREFIX


@pytest.fixture
def fast_registration(monkeypatch):
    """The command's default registration, made fast for tests (same code path)."""
    monkeypatch.setattr(fp_module, "DEFAULT_PRIOR_REGISTRATION", FAST_REGISTRATION)
    monkeypatch.setattr(fp_module, "PRIOR_ERROR_REGISTRATION", FAST_REGISTRATION)
    monkeypatch.setattr(fp_module, "DEFORMABLE_PRIOR", FAST_DEFORMABLE)
    monkeypatch.setattr(pre_module, "DEFAULT_PRIOR_REGISTRATION", FAST_REGISTRATION)


@pytest.fixture
def count_registrations(monkeypatch):
    calls = []
    real = registration_cache.register_prior
    monkeypatch.setattr(registration_cache, "register_prior", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def file_times(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------ resampling
def test_target_geometry_keeps_field_of_view_and_world_points():
    geometry = Geometry((0.8, 0.8, 5.0), (10.0, -20.0, 30.0), shape_zyx=(20, 100, 100))
    target = target_geometry(geometry, [2.5, 1.6, 1.6])
    assert target.shape_zyx == (40, 50, 50)
    # first voxel edge at the same world position
    edge_old = geometry.voxel_to_world((-0.5, -0.5, -0.5))
    edge_new = target.voxel_to_world((-0.5, -0.5, -0.5))
    np.testing.assert_allclose(edge_old, edge_new, atol=1e-9)
    point = (7.3, 12.5, 37.2)
    np.testing.assert_allclose(map_voxel(map_voxel(point, geometry, target), target, geometry), point, atol=1e-9)
    native = target_geometry(geometry, [None, 0.4, 0.4])
    assert native.shape_zyx == (20, 200, 200) and native.spacing_xyz[2] == 5.0


def test_target_geometry_with_rotated_direction():
    c, s = np.cos(0.3), np.sin(0.3)
    direction = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)
    geometry = Geometry((1.0, 1.0, 3.0), (5.0, 5.0, 5.0), direction, (10, 30, 30))
    target = target_geometry(geometry, [1.5, 2.0, 2.0])
    np.testing.assert_allclose(geometry.voxel_to_world((-0.5, -0.5, -0.5)), target.voxel_to_world((-0.5, -0.5, -0.5)),
                               atol=1e-9)


def test_resample_linear_ramp_is_exact_and_masks_keep_labels():
    geometry = Geometry((1.0, 1.0, 2.0), (0, 0, 0), shape_zyx=(12, 20, 24))
    grid_zyx = np.stack(np.meshgrid(*[np.arange(n) for n in geometry.shape_zyx], indexing="ij"), -1)
    world = geometry.voxel_to_world(grid_zyx)
    ramp = (world @ np.array([1.0, 2.0, 3.0])).astype(np.float32)
    target = target_geometry(geometry, [1.5, 0.5, 0.5])
    out = resample_array(ramp, geometry, target, "linear")
    grid_zyx = np.stack(np.meshgrid(*[np.arange(n) for n in target.shape_zyx], indexing="ij"), -1)
    expected = target.voxel_to_world(grid_zyx) @ np.array([1.0, 2.0, 3.0])
    inner = (slice(2, -2),) * 3
    np.testing.assert_allclose(out[inner], expected[inner], atol=1e-3)
    labels = np.zeros(geometry.shape_zyx, dtype=np.uint8)
    labels[3:7, 5:12, 6:14] = 1
    labels[8:11, 14:18, 15:20] = 2
    seg = resample_array(labels, geometry, target, "nearest")
    assert seg.dtype == np.uint8 and set(np.unique(seg)) == {0, 1, 2}
    same = resample_array(ramp, geometry, geometry, "linear")
    np.testing.assert_array_equal(same, ramp)


def test_normalization_schemes():
    hu = np.array([-2000.0, -100.0, 0.0, 100.0, 3000.0], dtype=np.float32)
    out = ct_zscore(hu, (-1000.0, 1000.0), 0.0, 100.0)
    np.testing.assert_allclose(out, [-10.0, -1.0, 0.0, 1.0, 10.0])
    np.testing.assert_allclose(linear_hu(np.array([-800.0, 0.0, 800.0])), [0.0, 0.5, 1.0])
    assert normalize(hu, {"scheme": "linear_hu"}).dtype == np.float32
    with pytest.raises(ValueError):
        normalize(hu, {"scheme": "nope"})


def test_write_array_and_crop_with_padding(tmp_path):
    array = np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8)
    pre_module.write_array(tmp_path / "a.b2nd", array)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]
    import blosc2
    stored = blosc2.open(str(tmp_path / "a.b2nd"), mode="r", mmap_mode="r")
    np.testing.assert_array_equal(stored[:], array)
    crop = crop_zyx(stored, (-2, 3, 5), (4, 5, 6), pad_value=-1.0)
    expected = np.full((4, 5, 6), -1.0, dtype=np.float32)
    expected[2:, :4, :3] = array[0:2, 3:7, 5:8]
    np.testing.assert_array_equal(crop, expected)
    np.testing.assert_array_equal(crop_zyx(array, (-2, 3, 5), (4, 5, 6), -1.0), expected)
    assert (crop_zyx(array, (50, 0, 0), (2, 2, 2), 7.0) == 7.0).all()
    assert centered_start_zyx((5.0, 20.0, 10.0), (4, 8, 8)) == [4, 17, 7]


# ------------------------------------------------------------------------------------------ end to end
def _make_501(raw: Path, num_patients=2):
    generate_tracking_dataset(raw / "Dataset501_SynthLesionTracking",
                              TrackingConfig(num_patients=num_patients, nominal_shape_zyx=(16, 40, 40)),
                              seed=0, progress=False)


def _make_502(raw: Path, num_patients=3):
    generate_lymph_node_dataset(raw / "Dataset502_SynthLymphNodes",
                                LymphNodeConfig(num_patients=num_patients, shape_zyx=(12, 48, 48)), seed=0,
                                progress=False)


def test_tracking_end_to_end_and_noop_rerun(lesionnet_dirs, fast_registration, count_registrations, capsys):
    _make_501(lesionnet_dirs["raw"])
    assert cli.main(["-d", "501", "-np", "1", "--gpu_memory_gb", "8", "--no_progress"]) == 0
    out = lesionnet_dirs["preprocessed"] / "Dataset501_SynthLesionTracking"
    assert "tlt:" in capsys.readouterr().out
    for name in ("dataset_fingerprint.json", "lesionnet_plans.json", "lesionnetPlans_3d/pairs.json"):
        assert (out / name).is_file(), name
    registrations_done = len(count_registrations)
    planning = len(list((out / "registrations" / "planning").rglob("*.json")))
    priors = len(list((out / "registrations").rglob("*.json"))) - planning
    assert registrations_done == priors + planning and priors > 0 and planning > 0

    plans = json.loads((out / "lesionnet_plans.json").read_text())
    section = plans["configurations"]["tlt"]
    data_config = plans["data_configurations"][section["data_identifier"]]
    data = PreprocessedDataset(501, section["data_identifier"])
    raw_images = lesionnet_dirs["raw"] / "Dataset501_SynthLesionTracking" / "imagesTr"
    raw_scans = sorted(p.name[:-12] for p in raw_images.iterdir())
    assert data.scan_ids == raw_scans
    case = data.case(raw_scans[0], as_numpy=True)
    np.testing.assert_allclose(case.geometry.spacing_zyx, data_config["target_spacing_zyx"], rtol=1e-6)
    assert case.image.shape == case.geometry.shape_zyx and case.image.dtype == np.float32
    assert abs(float(case.image.mean())) < 3.0           # normalised
    # pairs: centers mapped to the preprocessed grids, priors = the affine applied there
    pairs = data.pairs()
    raw_pairs = json.loads((lesionnet_dirs["raw"] / "Dataset501_SynthLesionTracking" / "pairsTr.json").read_text())
    assert len(pairs) == len(raw_pairs)
    for pair in pairs[:5]:
        src_raw = read_geometry(raw_images / f"{pair.source}_0000.nii.gz")
        tgt_raw = read_geometry(raw_images / f"{pair.target}_0000.nii.gz")
        src, tgt = data.case(pair.source).geometry, data.case(pair.target).geometry
        np.testing.assert_allclose(src.voxel_to_world(pair.source_center_zyx),
                                   src_raw.voxel_to_world(pair.extra["source_center_zyx_raw"]), atol=1e-6)
        prior_raw, r_raw = project_lesion(pair.registration, pair.extra["source_center_zyx_raw"], pair.source_radius_mm,
                                          src_raw, tgt_raw)
        np.testing.assert_allclose(tgt.voxel_to_world(pair.prior_center_zyx), tgt_raw.voxel_to_world(prior_raw),
                                   atol=1e-6)
        assert pair.prior_radius_mm == pytest.approx(r_raw)
        size = section["search_patch_size_zyx"]
        start = centered_start_zyx(pair.prior_center_zyx, size)
        prior = map_on_crop(lesion_gaussian, pair.prior_center_zyx, pair.prior_radius_mm, start, size, tgt.spacing_zyx)
        assert prior.shape == tuple(size) and prior.max() > 0.5
        assert crop_zyx(data.case(pair.target).image, start, size).shape == tuple(size)

    # a predictor's preprocessing is the training data's: same arrays, grids, registration prior
    pair = next(p for p in pairs if p.source > p.target)          # a direction registered as an inverse
    source = preprocess_scan(raw_images / f"{pair.source}_0000.nii.gz", data_config)
    target = preprocess_scan(raw_images / f"{pair.target}_0000.nii.gz", data_config)
    np.testing.assert_array_equal(source.image, data.case(pair.source, as_numpy=True).image)
    assert source.geometry.same_grid(data.case(pair.source).geometry)
    settings, symmetric = registration_settings_of(data_config, threads=1)
    registration = register_scan_pair(source, target, pair.source, pair.target, settings, symmetric)
    source_zyx, prior_zyx, prior_radius = lesion_on_grids(registration, pair.extra["source_center_zyx_raw"],
                                                          pair.source_radius_mm, source.raw_geometry, source.geometry,
                                                          target.geometry)
    np.testing.assert_allclose(source_zyx, pair.source_center_zyx, atol=1e-9)
    np.testing.assert_allclose(prior_zyx, pair.prior_center_zyx, atol=1e-9)
    assert prior_radius == pytest.approx(pair.prior_radius_mm, abs=1e-9)

    # second run: nothing registered, nothing written
    before = file_times(out)
    assert cli.main(["-d", "501", "-np", "1", "--gpu_memory_gb", "8", "--no_progress"]) == 0
    assert file_times(out) == before
    assert len(count_registrations) == registrations_done

    # a changed budget rewrites the plans, not the data
    assert cli.main(["-d", "501", "-np", "1", "--gpu_memory_gb", "0.5", "--no_progress"]) == 0
    after = file_times(out)
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed <= {"lesionnet_plans.json"}

    # a changed scan redoes that scan (and what depends on it), nothing else
    # (same content, new mtime: the fingerprint is recomputed with the same figures, so the plans and the
    # other cases stay as they are)
    scan = raw_scans[0]
    path = raw_images / f"{scan}_0000.nii.gz"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
    before = file_times(out)
    result = cli.run(501, gpu_memory_gb=0.5, num_processes=1, progress=False)
    assert result["preprocessing"]["lesionnetPlans_3d"]["processed"] == [scan]
    after = file_times(out)
    changed = {k for k in after if after[k] != before.get(k)}
    assert f"lesionnetPlans_3d/{scan}.b2nd" in changed
    assert not any(k.startswith("lesionnetPlans_3d/") and k.endswith(".b2nd") and scan not in k for k in changed)
    assert all(scan in k for k in changed if k.startswith("registrations/")), changed


def test_plan_only_and_verify(lesionnet_dirs, fast_registration):
    _make_501(lesionnet_dirs["raw"], num_patients=2)
    assert cli.main(["-d", "501", "-np", "1", "--plan_only", "--verify", "--no_progress"]) == 0
    out = lesionnet_dirs["preprocessed"] / "Dataset501_SynthLesionTracking"
    assert (out / "lesionnet_plans.json").is_file() and not (out / "lesionnetPlans_3d").exists()
    plans = json.loads((out / "lesionnet_plans.json").read_text())
    assert plans["memory_budget"]["inputs"]["device"] in ("cpu", "cuda")
    # a broken dataset stops at --verify
    (lesionnet_dirs["raw"] / "Dataset501_SynthLesionTracking" / "pairsTr.json").write_text("[{}]")
    assert cli.main(["-d", "501", "--plan_only", "--verify", "--no_progress"]) == 1


def test_detection_end_to_end(lesionnet_dirs):
    _make_502(lesionnet_dirs["raw"])
    assert cli.main(["-d", "502", "-np", "2", "--gpu_memory_gb", "4", "--no_progress"]) == 0
    out = lesionnet_dirs["preprocessed"] / "Dataset502_SynthLymphNodes"
    plans = json.loads((out / "lesionnet_plans.json").read_text())
    config = plans["configurations"]["lntracker"]
    assert set(plans["configurations"]) == {"lntracker"}
    data_config = plans["data_configurations"][config["data_identifier"]]
    assert data_config["native_z"] and data_config["target_spacing_zyx"][0] is None
    assert set(plans["not_planned"]) == {"identity", "affine", "deformable", "matcher", "tlt", "dlt", "dlt_ssl",
                                         "dlt_mix"}
    folder = out / config["data_identifier"]
    raw = lesionnet_dirs["raw"] / "Dataset502_SynthLymphNodes"
    for label_path in sorted((raw / "labelsTr").iterdir()):
        scan = label_path.name[: -len(".nii.gz")]
        case = load_case(folder, scan, as_numpy=True)
        labels, geometry = read_image(label_path, dtype=None)
        assert case.geometry.shape_zyx[0] == geometry.shape_zyx[0]                 # native z
        assert case.geometry.spacing_zyx[0] == pytest.approx(geometry.spacing_zyx[0])
        assert case.seg.shape == case.image.shape
        present = set(np.unique(case.seg)) - {0}
        assert present == {i["label"] for i in case.instances}
        for inst in case.instances:
            z0, y0, x0, z1, y1, x1 = inst["box_zyx"]
            box = case.seg[z0:z1, y0:y1, x0:x1]
            assert (box == inst["label"]).any()
            assert not np.any(np.delete(case.seg, np.s_[z0:z1], axis=0) == inst["label"])
    before = file_times(out)
    assert cli.main(["-d", "502", "-np", "2", "--gpu_memory_gb", "4", "--no_progress"]) == 0
    assert file_times(out) == before


def test_interrupted_preprocessing_leaves_no_half_written_file(lesionnet_dirs, fast_registration, monkeypatch):
    _make_501(lesionnet_dirs["raw"], num_patients=3)
    out = lesionnet_dirs["preprocessed"] / "Dataset501_SynthLesionTracking"
    real_write = pre_module.write_array
    written = []

    def failing_write(path, array):
        if len(written) == 2:
            # die half-way through writing the third array
            from lesionnet.utils.files import atomic_path
            with atomic_path(path) as tmp:
                Path(tmp).write_bytes(b"partial")
                raise KeyboardInterrupt("simulated interruption")
        written.append(path)
        real_write(path, array)

    monkeypatch.setattr(pre_module, "write_array", failing_write)
    with pytest.raises(KeyboardInterrupt):
        cli.run(501, gpu_memory_gb=4, num_processes=1, progress=False)
    folder = out / "lesionnetPlans_3d"
    assert not [p for p in out.rglob("*") if p.name.startswith(TEMP_PREFIX)]
    sidecars = {p.stem for p in folder.glob("*.json")}
    assert len(sidecars) == 2          # the two finished cases are committed, the third is not
    monkeypatch.setattr(pre_module, "write_array", real_write)
    result = cli.run(501, gpu_memory_gb=4, num_processes=1, progress=False)
    summary = result["preprocessing"]["lesionnetPlans_3d"]
    assert summary["up_to_date"] == 2 and len(summary["processed"]) >= 1
    for scan in PreprocessedDataset(501, "lesionnetPlans_3d").scan_ids:
        load_case(folder, scan, as_numpy=True)


def test_deleted_output_is_redone(lesionnet_dirs, fast_registration):
    _make_501(lesionnet_dirs["raw"], num_patients=2)
    cli.run(501, gpu_memory_gb=4, num_processes=1, progress=False)
    folder = lesionnet_dirs["preprocessed"] / "Dataset501_SynthLesionTracking" / "lesionnetPlans_3d"
    victim = sorted(folder.glob("*.b2nd"))[0]
    victim.unlink()
    result = cli.run(501, gpu_memory_gb=4, num_processes=1, progress=False)
    assert result["preprocessing"]["lesionnetPlans_3d"]["processed"] == [victim.name[: -len(".b2nd")]]
    assert victim.is_file()


def test_planned_deformable_prior_flows_through_preprocessing_and_prediction(lesionnet_dirs, fast_registration,
                                                                              monkeypatch):
    """When the planner chooses the deformable prior, preprocessing caches deformable registrations, the pairs'
    priors come from them, and a predictor's registration (same function) gives the same priors."""
    monkeypatch.setattr(planner_module, "rule_registration_prior",
                        lambda candidates: decision("deformable", "forced for this test"))
    _make_501(lesionnet_dirs["raw"])
    assert cli.main(["-d", "501", "-np", "1", "--gpu_memory_gb", "8", "--no_progress"]) == 0
    out = lesionnet_dirs["preprocessed"] / "Dataset501_SynthLesionTracking"
    plans = json.loads((out / "lesionnet_plans.json").read_text())
    section = plans["configurations"]["tlt"]
    data_config = plans["data_configurations"][section["data_identifier"]]
    assert plans["registration_prior"]["value"] == "deformable"
    assert data_config["registration"]["prior"] == "deformable"
    assert data_config["registration"]["settings"]["kind"] == "deformable"
    assert list((out / "registrations" / "deformable").glob("*.json"))
    data = PreprocessedDataset(501, section["data_identifier"])
    pairs = data.pairs()
    assert all(type(p.registration).__name__ == "DeformableRegistration" for p in pairs)
    raw_images = lesionnet_dirs["raw"] / "Dataset501_SynthLesionTracking" / "imagesTr"
    pair = next(p for p in pairs if p.source > p.target)          # a direction registered as an inverse
    source = preprocess_scan(raw_images / f"{pair.source}_0000.nii.gz", data_config)
    target = preprocess_scan(raw_images / f"{pair.target}_0000.nii.gz", data_config)
    settings, symmetric = registration_settings_of(data_config, threads=1)
    assert settings.kind == "deformable" and settings.affine.threads == 1
    registration = register_scan_pair(source, target, pair.source, pair.target, settings, symmetric)
    _, prior_zyx, prior_radius = lesion_on_grids(registration, pair.extra["source_center_zyx_raw"],
                                                 pair.source_radius_mm, source.raw_geometry, source.geometry,
                                                 target.geometry)
    np.testing.assert_allclose(prior_zyx, pair.prior_center_zyx, atol=1e-6)
    assert prior_radius == pytest.approx(pair.prior_radius_mm, abs=1e-9)


def test_scan_pairs_are_registered_once_per_process_in_both_directions(monkeypatch):
    """Trackers compared in one run share registrations: a scan pair with the same settings is registered once,
    the symmetric rule serves the other direction by the inverse, and other contents or settings register anew."""
    from lesionnet.preprocessing import case as case_module
    from lesionnet.preprocessing.case import PreprocessedScan

    calls = []

    class Registration:
        def __init__(self, name):
            self.name = name

        def inverse(self):
            return f"inverse of {self.name}"

    def fake_register(template_image, template_geometry, search_image, search_geometry, settings):
        calls.append(settings.to_dict()["seed"])
        return Registration(f"#{len(calls)}")

    monkeypatch.setattr(case_module, "register_prior_images", fake_register)
    monkeypatch.setattr(case_module, "_REGISTRATIONS", type(case_module._REGISTRATIONS)())
    geometry = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()), (4, 4, 4))

    def scan(value):
        image = np.full((4, 4, 4), value, np.float32)
        return PreprocessedScan(image, geometry, image, geometry)

    a, b, c = scan(1.0), scan(2.0), scan(3.0)
    settings = FAST_REGISTRATION
    assert register_scan_pair(a, b, "P_T0", "P_T1", settings).name == "#1"
    assert register_scan_pair(b, a, "P_T1", "P_T0", settings) == "inverse of #1"
    assert register_scan_pair(a, b, "P_T0", "P_T1", settings).name == "#1" and len(calls) == 1
    assert register_scan_pair(a, c, "P_T0", "P_T2", settings).name == "#2"
    other = type(settings).from_dict({**settings.to_dict(), "seed": 7})
    assert register_scan_pair(a, b, "P_T0", "P_T1", other).name == "#3" and calls[-1] == 7
