"""The affine tracker's error grows with the synthetic generator's non-rigid deformation; the deformable
prior recovers part of it."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from lesionnet.datasets.image_io import to_sitk
from lesionnet.datasets.synthetic import TrackingConfig, make_patient
from lesionnet.registration.affine import register_affine, register_images
from lesionnet.registration.deformable import register_deformable
from lesionnet.registration.priors import prior_from_dict

# small grid and one follow-up keep this to a few seconds per registration
CONFIG = TrackingConfig(nominal_shape_zyx=(32, 80, 80), timepoints_range=(2, 2), lesions_range=(5, 5))


def affine_errors_mm(nonrigid_displacement_mm: float, seed: int = 3) -> np.ndarray:
    """Distances (mm) between T_aff(source center) and the true target center, one per lesion."""
    config = dataclasses.replace(CONFIG, nonrigid_displacement_mm=nonrigid_displacement_mm)
    patient = make_patient(config, seed=seed)
    source, source_geometry = patient.render(0)
    target, target_geometry = patient.render(1)
    registration = register_images(source, source_geometry, target, target_geometry)
    errors = []
    for k in range(len(patient.lesions)):
        predicted_zyx = registration.map_voxel(patient.lesion_center_zyx(0, k), source_geometry, target_geometry)
        offset_zyx = predicted_zyx - patient.lesion_center_zyx(1, k)
        errors.append(np.linalg.norm(offset_zyx * np.asarray(target_geometry.spacing_zyx)))
    return np.asarray(errors)


def test_affine_error_grows_with_nonrigid_deformation():
    # same seed: anatomy, lesions and the affine part of the motion are identical, only the
    # non-rigid displacement (and the lesions' own drift, unchanged) differ
    mean_error_mm = [affine_errors_mm(d).mean() for d in (0.0, 6.0, 12.0)]
    assert mean_error_mm[0] < mean_error_mm[1] < mean_error_mm[2], mean_error_mm
    assert mean_error_mm[2] > mean_error_mm[0] + 3.0, mean_error_mm


def test_deformable_prior_recovers_the_nonrigid_part_and_inverts_points():
    config = dataclasses.replace(CONFIG, nonrigid_displacement_mm=12.0)
    affine_errors, deformable_errors = [], []
    for seed in (4, 5):  # two patients, ten lesions: the gap is about 4 mm (8.7 / 11.4 -> 3.7 / 8.0 mm)
        patient = make_patient(config, seed=seed)
        source, source_geometry = patient.render(0)
        target, target_geometry = patient.render(1)
        template, search = to_sitk(source, source_geometry), to_sitk(target, target_geometry)
        deformable = register_deformable(template, search)
        for registration, errors in ((register_affine(template, search), affine_errors),
                                     (deformable, deformable_errors)):
            for k in range(len(patient.lesions)):
                predicted_zyx = registration.map_voxel(patient.lesion_center_zyx(0, k), source_geometry,
                                                       target_geometry)
                errors.append(np.linalg.norm((predicted_zyx - patient.lesion_center_zyx(1, k))
                                             * np.asarray(target_geometry.spacing_zyx)))
    assert np.mean(deformable_errors) < np.mean(affine_errors) - 2.0, (deformable_errors, affine_errors)
    # JSON round trip and the iterative inverse
    restored = prior_from_dict(json.loads(json.dumps(deformable.to_dict())))
    points = np.array([[10.0, -20.0, 5.0], [-30.0, 15.0, -10.0]])
    np.testing.assert_allclose(restored.map_points(points), deformable.map_points(points), atol=1e-9)
    np.testing.assert_allclose(deformable.inverse().map_points(deformable.map_points(points)), points, atol=1e-2)
    assert deformable.inverse().inverse().map_points(points) == pytest.approx(deformable.map_points(points))
