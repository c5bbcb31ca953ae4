"""Tests of Dataset503_SynthTorsoFollowUp (the follow-up torso generator) and ``lesionnet_make_synthetic -d 503``.

A coarse configuration (3.5–4.5 mm pixels, 5–6 mm slices) keeps the whole file to about 30 s on a 2-core CPU.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import ndimage

from lesionnet.cli import make_synthetic
from lesionnet.datasets.dataset_id import find_dataset_folder
from lesionnet.datasets.image_io import read_image
from lesionnet.datasets.raw_format import RawDataset
from lesionnet.datasets.synthetic import (
    FollowUpTorsoConfig,
    generate_followup_dataset,
    make_followup_patient,
    patient_seed_sequence,
)
from lesionnet.datasets.synthetic.common import distance_to_border_mm
from lesionnet.datasets.synthetic.followup_torso import anatomy as tissues
from lesionnet.datasets.synthetic.followup_torso.anatomy_eval import evaluate_anatomy
from lesionnet.datasets.verify import verify_dataset

SMALL = FollowUpTorsoConfig(num_patients=2, inplane_spacing_range_mm=(3.5, 4.5), slice_thickness_range_mm=(5.0, 6.0),
                            subslice_spacing_mm=3.0)


@pytest.fixture(scope="module")
def patients():
    """Small patients of seeds 0 and 1, and (key ``"partial"``) the first patient with a lesion outside one scan."""
    found = {seed: make_followup_patient(SMALL, seed=seed) for seed in (0, 1)}
    for seed in range(2, 40):
        patient = make_followup_patient(SMALL, seed=seed)
        if not all(lesion.in_scan.all() for lesion in patient.lesions):
            found["partial"] = patient
            break
    assert "partial" in found, "some patient should have a lesion outside one scan's coverage"
    return found


# ------------------------------------------------------------------------------ mapping and motion
def test_mapping_inverse_is_exact_and_breathing_is_not_affine(patients):
    patient = patients[0]
    rng = np.random.default_rng(0)
    world = rng.uniform(-120.0, 120.0, size=(200, 3))
    for scan in patient.scans:
        mapping = scan.mapping
        np.testing.assert_allclose(mapping.inverse(mapping(world)), world, atol=1e-5)
        canonical = mapping(world)
        assert np.max(np.abs(mapping(mapping.inverse(canonical)) - canonical)) < 1e-4
    # breathing moves the liver by its depth along z, not the spine or the body wall
    depths = [scan.mapping.breathing.depth_mm for scan in patient.scans]
    assert max(depths) - min(depths) > 3.0
    liver_center, liver_semi = (np.asarray(v) for v in patient.anatomy.ellipsoids["liver"])
    liver = liver_center + rng.uniform(-0.5, 0.5, size=(200, 3)) * liver_semi
    spine = np.array([*patient.anatomy.vertebra["center_xy"], liver_center[2]])
    wall = np.array([patient.anatomy.body_semi_axes_mm[0] - 3.0, 0.0, liver_center[2]])
    for scan in patient.scans:
        breathing = scan.mapping.breathing
        dx, dy, dz = breathing.displacement_components(liver[:, 0], liver[:, 1], liver[:, 2])
        assert np.max(dz) == pytest.approx(breathing.depth_mm, rel=0.02) and np.all(dx == 0)
        np.testing.assert_allclose(dy, breathing.ap_ratio * dz)
        assert breathing.displacement_components(*spine)[2] == 0.0
        assert breathing.displacement_components(*wall)[2] == 0.0
    # no single affine map carries organ points of one scan onto the same points in another
    t_low, t_high = int(np.argmin(depths)), int(np.argmax(depths))
    points = np.concatenate([liver_center + rng.uniform(-40, 40, size=(100, 3)),
                             spine + rng.uniform(-10, 10, size=(100, 3))])
    source = patient.scans[t_low].mapping.inverse(points)
    target = patient.scans[t_high].mapping.inverse(points)
    design = np.hstack([source, np.ones((len(source), 1))])
    fitted = design @ np.linalg.lstsq(design, target, rcond=None)[0]
    assert np.sqrt(np.mean(np.sum((fitted - target) ** 2, axis=1))) > 1.0


def test_anatomy_has_bone_lungs_organs_and_bowel_gas(patients):
    anatomy = patients[1].anatomy
    apex = anatomy.diaphragm_apex_z_mm
    probes = {tissues.BONE: (*anatomy.vertebra["center_xy"], apex + 0.5 * anatomy.vertebra["period_mm"]),
              tissues.LIVER: anatomy.ellipsoids["liver"][0],
              tissues.KIDNEY: anatomy.ellipsoids["kidney_left"][0],
              tissues.LUNG: (anatomy.lungs[0][0], anatomy.lungs[0][1], apex + 60.0),
              tissues.AIR: (0.0, -anatomy.body_semi_axes_mm[1] - 10.0, 0.0)}
    points = np.array([probes[k] for k in probes], dtype=np.float32)
    hu, labels = evaluate_anatomy(anatomy, points[:, 0], points[:, 1], points[:, 2])
    assert labels[0] in (tissues.BONE, tissues.DISC) and labels[2] in (tissues.KIDNEY, tissues.RENAL_SINUS)
    assert (labels[1], labels[3], labels[4]) == (tissues.LIVER, tissues.LUNG, tissues.AIR)
    assert hu[-1] < -900 and hu[1] > 50 and hu[3] < -700
    # gas pockets somewhere in the bowel
    low, high = (np.asarray(v) for v in anatomy.bowel_box)
    grid = np.random.default_rng(1).uniform(np.maximum(low, -200.0), high, size=(40000, 3)).astype(np.float32)
    hu, labels = evaluate_anatomy(anatomy, grid[:, 0], grid[:, 1], grid[:, 2])
    assert np.any(labels == tissues.BOWEL_GAS) and np.median(hu[labels == tissues.BOWEL_GAS]) < -850


# ------------------------------------------------------------------------------ truth
def test_lesion_centers_match_rendered_lesions(patients):
    """The centroid of each lesion's rendered occupancy lies on its reported center (within 0.5 voxel)."""
    for patient in (patients[0], patients["partial"]):
        for t in range(patient.num_timepoints):
            for k in range(len(patient.lesions)):
                if not patient.lesion_in_scan(t, k):
                    continue
                occupancy = patient.lesion_occupancy(t, k)
                assert occupancy.sum() > 0, f"lesion {k} invisible in scan {t}"
                centroid_zyx = np.array(ndimage.center_of_mass(occupancy))
                center_zyx = patient.lesion_center_zyx(t, k)
                assert np.max(np.abs(centroid_zyx - center_zyx)) < 0.5, (t, k, centroid_zyx, center_zyx)


def test_lesions_are_inside_with_margin_or_absent(patients):
    saw_absent = False
    for patient in patients.values():
        for t in range(patient.num_timepoints):
            geometry = patient.geometry(t)
            for k, lesion in enumerate(patient.lesions):
                distance = distance_to_border_mm(geometry, patient.lesion_center_zyx(t, k))
                if patient.lesion_in_scan(t, k):
                    assert distance >= lesion.radii_mm[t] + SMALL.scan_margin_mm
                else:
                    saw_absent = True
                    assert distance < -lesion.radii_mm[t]
                    assert patient.lesion_occupancy(t, k).sum() == 0
    assert saw_absent, "some lesion should be outside one scan's coverage"


def test_pairs_only_between_scans_that_contain_the_lesion(patients):
    patient = patients["partial"]
    pairs = patient.pairs()
    expected = sum(int(lesion.in_scan.sum()) * (int(lesion.in_scan.sum()) - 1) for lesion in patient.lesions)
    assert len(pairs) == expected < len(patient.lesions) * patient.num_timepoints * (patient.num_timepoints - 1)
    scan_index = {patient.scan_id(t): t for t in range(patient.num_timepoints)}
    for pair in pairs:
        s, g = scan_index[pair.source], scan_index[pair.target]
        k = int(pair.pair_id.split("_L")[1].split("_")[0])
        assert patient.lesion_in_scan(s, k) and patient.lesion_in_scan(g, k)
        assert pair.patient == patient.patient_id
        np.testing.assert_allclose(pair.target_center_zyx, patient.lesion_center_zyx(g, k))
        np.testing.assert_allclose(patient.transport_voxel(pair.source_center_zyx, s, g), pair.target_center_zyx,
                                   atol=1e-3)
        assert SMALL.radius_range_mm[0] <= pair.source_radius_mm <= SMALL.radius_range_mm[1]
    assert len({p.pair_id for p in pairs}) == len(pairs)


def test_scans_differ_in_grid_and_z_coverage(patients):
    config = FollowUpTorsoConfig()
    for seed in range(3):
        patient = make_followup_patient(config, seed=seed)
        starts = []
        for scan in patient.scans:
            nz, ny, nx = scan.geometry.shape_zyx
            spacing_z, spacing_y, spacing_x = scan.geometry.spacing_zyx
            assert config.slice_thickness_range_mm[0] <= spacing_z <= config.slice_thickness_range_mm[1]
            assert config.inplane_spacing_range_mm[0] <= spacing_y == spacing_x <= config.inplane_spacing_range_mm[1]
            assert config.fov_range_mm[0] - spacing_x <= nx * spacing_x <= config.fov_range_mm[1] + spacing_x
            assert ny == nx and 170 <= nx <= 310 and 36 <= nz <= 112
            assert config.coverage_range_mm[0] - spacing_z <= (nz - 1) * spacing_z <= config.coverage_range_mm[1]
            # the first slice, on the table axis, lies where the planned coverage starts (up to breathing)
            first = scan.mapping(scan.geometry.voxel_to_world(np.array([0.0, (ny - 1) / 2, (nx - 1) / 2])))
            assert abs(first[2] - scan.coverage_mm[0]) <= scan.mapping.breathing.depth_mm + 8.0
            starts.append(scan.coverage_mm[0])
        assert 1.0 < np.ptp(starts) <= 2 * config.coverage_shift_mm, "follow-ups start at other heights of the body"
        assert len({scan.geometry.spacing_zyx for scan in patient.scans}) == patient.num_timepoints


def test_border_lesions_and_twins_exist():
    near_border = twins = 0
    for seed in range(4):
        patient = make_followup_patient(SMALL, seed=seed)
        for k, lesion in enumerate(patient.lesions):
            twins += lesion.twin_of is not None
            for t in np.flatnonzero(lesion.in_scan):
                index_z = patient.lesion_center_zyx(t, k)[0]
                spacing_z = patient.geometry(t).spacing_zyx[0]
                gap_mm = min(index_z, patient.geometry(t).shape_zyx[0] - 1 - index_z) * spacing_z - lesion.reach_mm(t)
                near_border += gap_mm < SMALL.scan_margin_mm + SMALL.border_gap_range_mm[1] + 2.0
    assert near_border >= 2 and twins >= 1


def test_same_seed_same_data_and_different_seed_differs(patients):
    again = make_followup_patient(SMALL, seed=1)
    image, geometry = patients[1].render(1)
    image_again, geometry_again = again.render(1)
    np.testing.assert_array_equal(image, image_again)
    assert geometry == geometry_again
    assert [p.to_json() for p in again.pairs()] == [p.to_json() for p in patients[1].pairs()]
    assert [p.to_json() for p in patients[0].pairs()] != [p.to_json() for p in patients[1].pairs()]
    assert image.dtype == np.float32 and image.shape == tuple(geometry.shape_zyx)
    assert image.min() < -900 and image.max() > 350  # air and bone


# ------------------------------------------------------------------------------ files and CLI
def test_written_dataset_verifies_and_does_not_depend_on_worker_count(tmp_path):
    folders = {}
    for workers in (1, 2):
        folders[workers] = tmp_path / str(workers) / "Dataset503_SynthTorsoFollowUp"
        summary = generate_followup_dataset(folders[workers], SMALL, seed=3, num_processes=workers, progress=False)
    assert summary["patients_tr"] == ["P0000"] and summary["patients_ts"] == ["P0001"]
    assert verify_dataset(folders[2], progress=False) == []
    dataset = RawDataset(folders[1])
    assert dataset.meta["generator"]["seed"] == 3 and dataset.meta["numTraining"] == summary["num_scans_tr"]
    assert dataset.meta["generator"]["config"]["inplane_spacing_range_mm"] == [3.5, 4.5]
    for split in ("Tr", "Ts"):
        assert (folders[1] / f"pairs{split}.json").read_bytes() == (folders[2] / f"pairs{split}.json").read_bytes()
        for scan in dataset.scan_ids(split):
            a, geometry_a = read_image(dataset.image_path(scan, split), dtype=None)
            b, geometry_b = read_image(RawDataset(folders[2]).image_path(scan, split), dtype=None)
            assert a.dtype == np.int16 and geometry_a.same_grid(geometry_b)
            np.testing.assert_array_equal(a, b)
    # the files hold what the in-memory patient gives
    patient = make_followup_patient(SMALL, patient_seed_sequence(3, 0), "P0000")
    assert json.loads(dataset.pairs_path("Tr").read_text()) == [p.to_json() for p in patient.pairs()]


def test_cli_makes_dataset_503(lesionnet_dirs, monkeypatch, capsys):
    def coarse(output_folder, config, **kwargs):  # the CLI's config on SMALL's coarse grids
        assert config.num_patients == 2
        grids = {k: getattr(SMALL, k) for k in ("inplane_spacing_range_mm", "slice_thickness_range_mm",
                                                "subslice_spacing_mm")}
        return generate_followup_dataset(output_folder, dataclasses.replace(config, **grids), **kwargs)

    monkeypatch.setattr(make_synthetic, "generate_followup_dataset", coarse)
    argv = ["-d", "503", "--num_patients", "2", "--seed", "4", "--no_progress"]
    assert make_synthetic.main(argv) == 0
    assert "Dataset503_SynthTorsoFollowUp" in capsys.readouterr().out
    dataset = RawDataset(find_dataset_folder(503))
    assert dataset.task == "tracking" and dataset.pairs("Tr") and dataset.pairs("Ts")
    assert verify_dataset(dataset.folder, progress=False) == []
    assert make_synthetic.main(argv) == 1
    assert "already exists" in capsys.readouterr().err
    assert make_synthetic.main(argv + ["--overwrite", "--shape", "16", "40", "40"]) == 1
    assert "--shape does not apply" in capsys.readouterr().err
    with pytest.raises(SystemExit) as help_exit:
        make_synthetic.main(["-h"])
    assert help_exit.value.code == 0 and "503" in capsys.readouterr().out
