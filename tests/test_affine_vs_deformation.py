"""The affine tracker's error grows with the synthetic generator's non-rigid deformation."""
from __future__ import annotations

import dataclasses

import numpy as np

from lesionnet.datasets.synthetic import TrackingConfig, make_patient
from lesionnet.registration.affine import register_images

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
