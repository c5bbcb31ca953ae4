"""The affine recipe's initialisation over z-offsets: scans that cover different parts of the body."""
from __future__ import annotations

import numpy as np
from phantoms import make_pair

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.image_io import to_sitk
from lesionnet.registration.affine import RegistrationSettings, register_affine
from lesionnet.registration.initialisation import candidate_starts
from lesionnet.registration.working_images import body_mask, working_image

FIRST_SLICE = 45  # the follow-up keeps its slices from here on: about 55 % of its z-range


def partial_pair():
    """The phantom pair of the other tests, the follow-up cut to its upper slices (another z-coverage)."""
    source, source_geom, target, target_geom, truth = make_pair(rotation_deg=(0, 0, 4), translation_mm=(6, -4, 25),
                                                                scale=1.0)
    origin_xyz = tuple(float(v) for v in target_geom.voxel_to_world((FIRST_SLICE, 0, 0)))
    cut_geom = Geometry(target_geom.spacing_xyz, origin_xyz,
                        shape_zyx=(target.shape[0] - FIRST_SLICE,) + target.shape[1:])
    return source, source_geom, target[FIRST_SLICE:], cut_geom, truth


def test_z_offset_candidates_find_the_shared_slab():
    source, source_geom, target, target_geom, truth = partial_pair()
    settings = RegistrationSettings(threads=1)
    fixed = working_image(to_sitk(source, source_geom), 4.0, settings.clip_hu)
    moving = working_image(to_sitk(target, target_geom), 4.0, settings.clip_hu)
    starts = candidate_starts(fixed, body_mask(fixed, -500.0), moving, body_mask(moving, -500.0), count=3,
                              min_overlap_fraction=0.4)
    assert 1 <= len(starts) <= 3 and starts[0].score <= min(s.score for s in starts)
    # the true map is a pure translation in z of +25 mm (rotation about z only): the best start knows it
    assert abs(starts[0].z_offset_mm - 25.0) <= 8.0, [s.z_offset_mm for s in starts]
    assert abs(starts[0].translation_mm[2] - 25.0) <= 8.0


def test_affine_registers_scans_with_different_z_coverage():
    source, source_geom, target, target_geom, truth = partial_pair()
    registration = register_affine(to_sitk(source, source_geom), to_sitk(target, target_geom),
                                   RegistrationSettings(threads=1))
    # lesion-like points inside the slab both scans cover
    z_low = target_geom.voxel_to_world((0, 0, 0))[2] + 20.0
    points = np.array([[30.0, -20.0, z_low + 10.0], [-40.0, 10.0, z_low + 40.0], [0.0, 30.0, z_low + 70.0]])
    error_mm = np.linalg.norm(registration.map_points(points) - truth.map_points(points), axis=1)
    assert error_mm.max() < 4.0, error_mm
