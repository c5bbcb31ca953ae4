"""Tests of the built-in synthetic datasets (Dataset501 tracking, Dataset502 lymph nodes) and their CLI.

Everything runs on small grids so the whole file takes seconds on a 2-core CPU.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import ndimage

from lesionnet.cli import make_synthetic
from lesionnet.datasets.dataset_id import find_dataset_folder
from lesionnet.datasets.image_io import read_geometry, read_image
from lesionnet.datasets.raw_format import RawDataset
from lesionnet.datasets.synthetic import (
    DatasetExistsError,
    LymphNodeConfig,
    TrackingConfig,
    generate_lymph_node_dataset,
    generate_tracking_dataset,
    make_lymph_node_case,
    make_patient,
    make_tracking_pair,
)
from lesionnet.datasets.synthetic.transforms import AffinePose, FourierDisplacement, WorldToCanonical

# nominal spacing 6 × 5 × 5 mm: coarse but every lesion (radius >= 3 mm) still covers voxel centers
SMALL_TRACKING = TrackingConfig(nominal_shape_zyx=(24, 56, 56))
TINY_TRACKING = TrackingConfig(nominal_shape_zyx=(16, 40, 40), num_patients=2)
SMALL_NODES = LymphNodeConfig(shape_zyx=(12, 64, 64), num_patients=3)


# ------------------------------------------------------------------------------ mappings
def test_world_to_canonical_inverse_is_exact():
    rng = np.random.default_rng(0)
    mapping = WorldToCanonical(AffinePose.random(rng, 10.0, 20.0, (0.92, 1.08)),
                               FourierDisplacement.random(rng, 5.0, 120.0, 8))
    world = rng.uniform(-120, 120, size=(50, 3))
    np.testing.assert_allclose(mapping.inverse(mapping(world)), world, atol=1e-5)
    assert FourierDisplacement.random(np.random.default_rng(1), 3.0, 120.0, 8).rms_mm == pytest.approx(3.0)


# ------------------------------------------------------------------------------ Dataset501 in memory
def test_tracking_same_seed_same_data_and_different_seed_differs():
    a = make_patient(TINY_TRACKING, seed=3)
    b = make_patient(TINY_TRACKING, seed=3)
    c = make_patient(TINY_TRACKING, seed=4)
    image_a, geometry_a = a.render(1)
    image_b, geometry_b = b.render(1)
    np.testing.assert_array_equal(image_a, image_b)
    assert geometry_a == geometry_b
    assert [p.to_json() for p in a.pairs()] == [p.to_json() for p in b.pairs()]
    image_c, geometry_c = c.render(1)
    assert geometry_c != geometry_a or not np.array_equal(image_c, image_a)
    assert [p.to_json() for p in c.pairs()] != [p.to_json() for p in a.pairs()]
    # rendering is repeatable in any order (noise has its own seed per scan)
    np.testing.assert_array_equal(a.render(1)[0], image_a)


def test_lesion_centers_match_rendered_lesions():
    """The centroid of each lesion as rendered by the generator lies on its reported center."""
    patient = make_patient(SMALL_TRACKING, seed=1)
    for t in range(patient.num_timepoints):
        labels = patient.lesion_labels(t)
        for k in range(len(patient.lesions)):
            occupancy = patient.lesion_occupancy(t, k)
            assert occupancy.sum() > 0, f"lesion {k} invisible in scan {t}"
            centroid_zyx = np.array(ndimage.center_of_mass(occupancy))
            center_zyx = patient.lesion_center_zyx(t, k)
            assert np.max(np.abs(centroid_zyx - center_zyx)) < 0.5, (t, k, centroid_zyx, center_zyx)
            assert patient.geometry(t).contains_voxel(center_zyx, margin=0.0)
            if patient.lesion_radius_mm(t, k) > max(patient.geometry(t).spacing_zyx):
                assert labels[tuple(np.round(center_zyx).astype(int))] == k + 1


def test_lesion_contrast_is_visible_in_image():
    patient = make_patient(SMALL_TRACKING, seed=2)
    image, _ = patient.render(1)
    for k, lesion in enumerate(patient.lesions):
        occupancy = patient.lesion_occupancy(1, k)
        inside = image[occupancy > 0.9]
        if inside.size < 10:
            continue
        ring = ndimage.binary_dilation(occupancy > 0.05, iterations=2) & (occupancy == 0)
        contrast = inside.mean() - np.median(image[ring])
        if lesion.organ == "lung":
            assert contrast > 100
        else:  # hypo- or hyperdense by at least ~half the smallest contrast, whatever the texture
            assert abs(contrast) > 10, (k, lesion.organ, contrast)


def test_pairs_transport_source_center_onto_target_center():
    patient = make_patient(SMALL_TRACKING, seed=5)
    pairs = patient.pairs()
    num_timepoints, num_lesions = patient.num_timepoints, len(patient.lesions)
    assert len(pairs) == num_lesions * num_timepoints * (num_timepoints - 1)
    scan_index = {patient.scan_id(t): t for t in range(num_timepoints)}
    for pair in pairs:
        s, g = scan_index[pair.source], scan_index[pair.target]
        k = int(pair.pair_id.split("_L")[1].split("_")[0])
        assert pair.patient_id == patient.patient_id == pair.source.split("_")[0]
        carried = patient.transport_voxel(pair.source_center_zyx, s, g, lesion=k)
        np.testing.assert_allclose(carried, pair.target_center_zyx, atol=1e-3)
        # following the anatomy alone misses only by the lesion's own drift
        anatomy_only = patient.transport_voxel(pair.source_center_zyx, s, g)
        miss_mm = np.linalg.norm((anatomy_only - np.asarray(pair.target_center_zyx)) * patient.geometry(g).spacing_zyx)
        assert miss_mm <= 1.3 * SMALL_TRACKING.lesion_drift_mm * abs(g - s) + 1e-3
    ids = [p.pair_id for p in pairs]
    assert len(set(ids)) == len(ids)


def test_radii_and_spacings_within_documented_ranges():
    config = TrackingConfig()
    thickness_range, inplane_range = config.spacing_ranges_mm()
    saw_twin = False
    for seed in range(4):
        patient = make_patient(config, seed=seed)
        assert config.timepoints_range[0] <= patient.num_timepoints <= config.timepoints_range[1]
        spacings = [patient.geometry(t).spacing_zyx for t in range(patient.num_timepoints)]
        assert len(set(spacings)) == len(spacings), "every time point has its own spacing"
        for spacing_z, spacing_y, spacing_x in spacings:
            assert thickness_range[0] <= spacing_z <= thickness_range[1]
            assert inplane_range[0] <= spacing_y == spacing_x <= inplane_range[1]
        for lesion in patient.lesions:
            assert np.all(lesion.radii_mm >= config.radius_range_mm[0])
            assert np.all(lesion.radii_mm <= config.radius_range_mm[1])
            saw_twin |= lesion.twin_of is not None
        for pair in patient.pairs():
            assert config.radius_range_mm[0] <= pair.source_radius_mm <= config.radius_range_mm[1]
    assert saw_twin, "some lesions should have a look-alike neighbour"


def test_motion_magnitudes_change_only_the_motion():
    still = dataclasses.replace(TINY_TRACKING, max_rotation_deg=0.0, max_translation_mm=0.0, scale_range=(1.0, 1.0),
                                nonrigid_displacement_mm=0.0)
    moving = dataclasses.replace(TINY_TRACKING, nonrigid_displacement_mm=8.0)
    a = make_patient(still, seed=7, num_timepoints=2)
    b = make_patient(moving, seed=7, num_timepoints=2)
    assert [t.geometry for t in a.timepoints] == [t.geometry for t in b.timepoints]
    np.testing.assert_array_equal(a.lesions[0].centers_canonical_mm, b.lesions[0].centers_canonical_mm)
    # without motion a lesion moves only by its own drift between the scans
    for k in range(len(a.lesions)):
        moved = a.lesion_center_world(1, k) - a.lesion_center_world(0, k)
        assert np.linalg.norm(moved) <= still.lesion_drift_mm + 1e-6
    assert b.timepoints[1].mapping.displacement.rms_mm == pytest.approx(8.0)


def test_make_tracking_pair_in_memory():
    result = make_tracking_pair(TINY_TRACKING, seed=0, lesion_index=1, source_timepoint=1, target_timepoint=0)
    assert result.source_image_zyx.shape == tuple(result.source_geometry.shape_zyx)
    assert result.target_image_zyx.shape == tuple(result.target_geometry.shape_zyx)
    assert result.pair.source.endswith("_T1") and result.pair.target.endswith("_T0")
    np.testing.assert_allclose(result.pair.target_center_zyx, result.patient.lesion_center_zyx(0, 1))
    assert result.target_geometry.contains_voxel(result.pair.target_center_zyx)


# ------------------------------------------------------------------------------ Dataset502 in memory
def test_lymph_node_case_masks_and_determinism():
    first = make_lymph_node_case(SMALL_NODES, seed=11)
    again = make_lymph_node_case(SMALL_NODES, seed=11)
    other = make_lymph_node_case(SMALL_NODES, seed=12)
    np.testing.assert_array_equal(first.image_zyx, again.image_zyx)
    np.testing.assert_array_equal(first.labels_zyx, again.labels_zyx)
    assert not np.array_equal(first.image_zyx, other.image_zyx)
    for case in (first, other):
        labels = case.labels_zyx
        assert labels.shape == case.image_zyx.shape == tuple(case.geometry.shape_zyx)
        assert labels.dtype == np.uint8
        assert sorted(np.unique(labels)) == list(range(case.num_nodes + 1))
        for i in range(case.num_nodes):
            _, count = ndimage.label(labels == i + 1, structure=np.ones((3, 3, 3)))
            assert count == 1, f"node {i + 1} is not one blob"
            assert case.geometry.contains_voxel(case.node_center_zyx(i))


def test_lymph_node_sizes_thin_nodes_and_distractors():
    config = LymphNodeConfig()
    heights, diameters, vessel_count = [], [], 0
    for seed in range(3):
        case = make_lymph_node_case(config, seed=seed)
        spacing_z, spacing_y, spacing_x = case.geometry.spacing_zyx
        assert config.slice_thickness_range_mm[0] <= spacing_z <= config.slice_thickness_range_mm[1]
        assert config.inplane_spacing_range_mm[0] <= spacing_x == spacing_y <= config.inplane_spacing_range_mm[1]
        assert case.num_nodes >= 3
        for i, node in enumerate(case.nodes):
            diameters.append(2 * node.semi_axes_mm[0])
            slices = np.unique(np.nonzero(case.labels_zyx == i + 1)[0])
            heights.append(len(slices))
        vessel_count += sum(t.kind == "vessel" for t in case.tubes)
    assert config.node_diameter_range_mm[0] <= min(diameters) and max(diameters) <= config.node_diameter_range_mm[1]
    assert min(heights) <= 3, "some nodes are only a few slices thick"
    assert vessel_count >= 3 * config.vessels_range[0]


# ------------------------------------------------------------------------------ files and CLI
def test_cli_writes_a_valid_tracking_dataset(lesionnet_dirs, capsys):
    argv = ["-d", "501", "--num_patients", "2", "--shape", "16", "40", "40", "--seed", "1", "--no_progress"]
    assert make_synthetic.main(argv) == 0
    assert "Dataset501_SynthLesionTracking" in capsys.readouterr().out
    dataset = RawDataset(find_dataset_folder(501))
    assert dataset.task == "tracking" and dataset.meta["licence"] == "synthetic, CC0"
    assert dataset.meta["generator"]["seed"] == 1
    assert dataset.meta["generator"]["config"]["nominal_shape_zyx"] == [16, 40, 40]
    assert dataset.meta["numTraining"] == len(dataset.scan_ids("Tr"))
    patients = {}
    for split in ("Tr", "Ts"):
        pairs = dataset.pairs(split)
        assert pairs, f"no pairs in {split}"
        for pair in pairs:
            for scan, center_zyx in ((pair.source, pair.source_center_zyx), (pair.target, pair.target_center_zyx)):
                path = dataset.image_path(scan, split)
                assert path.is_file(), path
                assert read_geometry(path).contains_voxel(center_zyx, margin=0.0)
            assert pair.patient_id == pair.source.split("_")[0] == pair.target.split("_")[0]
            assert 3.0 <= pair.source_radius_mm <= 25.0 and 3.0 <= pair.target_radius_mm <= 25.0
            patients.setdefault(split, set()).add(pair.patient_id)
    assert patients["Tr"] == {"P0000"} and patients["Ts"] == {"P0001"}  # split by patient
    image, geometry = read_image(dataset.image_path("P0000_T0"))
    assert -1024 <= image.min() < -900 and image.max() > 300  # air and bone in HU
    # same seed, same files: P0000 of this run equals the in-memory patient
    patient = make_patient(dataclasses.replace(TrackingConfig(), nominal_shape_zyx=(16, 40, 40)),
                           seed=_patient_seed(1, 0), patient_id="P0000")
    assert geometry.same_grid(patient.geometry(0))
    assert json.loads(dataset.pairs_path("Tr").read_text())[0] == patient.pairs()[0].to_json()

    # re-running refuses without --overwrite, replaces cleanly with it
    capsys.readouterr()
    assert make_synthetic.main(argv) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and "Traceback" not in err
    assert make_synthetic.main(argv[:-1] + ["--overwrite", "--no_progress", "--seed", "2"]) == 0
    assert RawDataset(find_dataset_folder(501)).meta["generator"]["seed"] == 2
    assert not [p for p in lesionnet_dirs["raw"].iterdir() if p.name.startswith(".")], "no staging leftovers"


def test_cli_writes_a_valid_detection_dataset(lesionnet_dirs):
    argv = ["-d", "502", "--num_patients", "3", "--shape", "12", "64", "64", "--no_progress"]
    assert make_synthetic.main(argv) == 0
    dataset = RawDataset(find_dataset_folder(502))
    assert dataset.task == "detection" and dataset.meta["numTraining"] == 2
    assert len(dataset.scan_ids("Tr")) == 2 and len(dataset.scan_ids("Ts")) == 1
    for split in ("Tr", "Ts"):
        for scan in dataset.scan_ids(split):
            image_geometry = read_geometry(dataset.image_path(scan, split))
            labels, label_geometry = read_image(dataset.label_path(scan, split), dtype=None)
            assert label_geometry.same_grid(image_geometry)
            assert np.issubdtype(labels.dtype, np.integer)
            ids = [int(v) for v in np.unique(labels) if v]
            assert ids == list(range(1, len(ids) + 1)) and ids
            for i in ids:
                _, count = ndimage.label(labels == i, structure=np.ones((3, 3, 3)))
                assert count == 1


def test_generator_refuses_an_ambiguous_dataset_id(tmp_path):
    (tmp_path / "Dataset501_Other").mkdir()
    with pytest.raises(DatasetExistsError, match="ambiguous"):
        generate_tracking_dataset(tmp_path / "Dataset501_SynthLesionTracking", TINY_TRACKING, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset501_Other"]


def test_results_do_not_depend_on_worker_count(tmp_path):
    config = dataclasses.replace(SMALL_NODES, num_patients=2)
    generate_lymph_node_dataset(tmp_path / "a" / "Dataset502_X", config, seed=5, num_processes=1, progress=False)
    generate_lymph_node_dataset(tmp_path / "b" / "Dataset502_X", config, seed=5, num_processes=2, progress=False)
    for sub in ("imagesTr/LN0000_0000.nii.gz", "labelsTs/LN0001.nii.gz"):
        a, _ = read_image(tmp_path / "a" / "Dataset502_X" / sub)
        b, _ = read_image(tmp_path / "b" / "Dataset502_X" / sub)
        np.testing.assert_array_equal(a, b)


def _patient_seed(seed: int, index: int):
    from lesionnet.datasets.synthetic import patient_seed_sequence
    return patient_seed_sequence(seed, index)
