"""Affine registration and anatomy maps on an analytic phantom with a known transform."""
from __future__ import annotations

import numpy as np
import pytest
from phantoms import make_pair
from scipy.spatial.transform import Rotation

from lesionnet.datasets.geometry import Geometry
from lesionnet.methods.dlt.maps import lesion_gaussian as dlt_gaussian
from lesionnet.methods.tlt.maps import keep_radius_mm, lesion_gaussian
from lesionnet.registration.affine import (
    AffineRegistration,
    RegistrationSettings,
    register_images,
)
from lesionnet.registration.anatomy_maps import gaussian_map, project_lesion, warp_to_target


@pytest.fixture(scope="module")
def registered_pair():
    source, source_geom, target, target_geom, truth = make_pair()
    result = register_images(source, source_geom, target, target_geom)
    return source_geom, target_geom, truth, result


def test_registration_recovers_known_affine(registered_pair):
    source_geom, target_geom, truth, result = registered_pair
    rng = np.random.default_rng(0)
    points = rng.uniform([-60, -40, -80], [60, 40, 80], size=(50, 3))  # inside the body
    error_mm = np.linalg.norm(result.map_points(points) - truth.map_points(points), axis=1)
    assert np.median(error_mm) < 3.0, error_mm
    assert error_mm.max() < 6.0, error_mm
    assert result.seconds > 0


def test_registration_beats_identity(registered_pair):
    source_geom, target_geom, truth, result = registered_pair
    center_zyx = source_geom.world_to_voxel([30.0, -20.0, -40.0])
    true_target = truth.map_voxel(center_zyx, source_geom, target_geom)
    predicted = result.map_voxel(center_zyx, source_geom, target_geom)
    unmoved = target_geom.world_to_voxel(source_geom.voxel_to_world(center_zyx))
    spacing = np.asarray(target_geom.spacing_zyx)
    err_reg = np.linalg.norm((predicted - true_target) * spacing)
    err_unmoved = np.linalg.norm((unmoved - true_target) * spacing)
    assert err_reg < 4.0 and err_reg < err_unmoved / 3


def test_registration_round_trips_through_dict(registered_pair):
    result = registered_pair[3]
    again = AffineRegistration.from_dict(result.to_dict())
    pts = np.array([[1.0, 2.0, 3.0], [-40.0, 10.0, 60.0]])
    np.testing.assert_allclose(again.map_points(pts), result.map_points(pts))
    np.testing.assert_allclose(result.to_sitk().TransformPoint((1.0, 2.0, 3.0)), result.map_points(pts[0]), atol=1e-9)


def test_registration_is_repeatable():
    source, source_geom, target, target_geom, _ = make_pair(rotation_deg=(0, 0, 0), translation_mm=(5, 0, 0), scale=1)
    settings = RegistrationSettings(iterations_similarity=30, iterations_affine=30, threads=1)
    a = register_images(source, source_geom, target, target_geom, settings)
    b = register_images(source, source_geom, target, target_geom, settings)
    np.testing.assert_array_equal(a.map_points([10.0, 0, 0]), b.map_points([10.0, 0, 0]))


def test_gaussian_map_formula():
    spacing_zyx = (3.0, 2.0, 1.0)
    g = gaussian_map((11, 21, 31), (5, 10, 15), 2.0, spacing_zyx)
    assert g.shape == (11, 21, 31) and g.dtype == np.float32 and g[5, 10, 15] == pytest.approx(1.0)
    # one voxel along z is 3 mm: exp(-9 / (2 * 4))
    assert g[6, 10, 15] == pytest.approx(np.exp(-9.0 / 8.0), rel=1e-6)


def test_tlt_gaussian_formula_and_keep_radius():
    spacing_zyx = (3.0, 2.0, 1.0)
    g = lesion_gaussian((11, 21, 31), (5, 10, 15), 4.0, spacing_zyx)
    assert g[5, 10, 15] == pytest.approx(1.0)
    # one voxel along y is 2 mm: exp(-4 / (12 * 16)), a Gaussian of sigma = sqrt(6) r
    assert g[5, 11, 15] == pytest.approx(np.exp(-4.0 / 192.0), rel=1e-6)
    np.testing.assert_allclose(g, gaussian_map((11, 21, 31), (5, 10, 15), np.sqrt(6.0) * 4.0, spacing_zyx), rtol=1e-6)
    # papers.md: with Tr = 0.7 tokens are kept within ~2.07 r
    assert keep_radius_mm(1.0, 0.7) == pytest.approx(2.07, abs=0.01)


def test_dlt_gaussian_formula():
    g = dlt_gaussian((5, 5, 5), (2, 2, 2), 1.0, (1.0, 1.0, 1.0), n=4)
    assert g[2, 2, 3] == pytest.approx(np.exp(-1.0 / 32.0), rel=1e-6)
    g1 = dlt_gaussian((5, 5, 5), (2, 2, 2), 1.0, (1.0, 1.0, 1.0), n=1)
    assert g1[2, 2, 3] < g[2, 2, 3]


def test_projected_map_matches_warped_map_for_similarity_transform():
    source_geom = Geometry((2.0, 2.0, 2.0), (-40, -40, -40), shape_zyx=(40, 40, 40))
    target_geom = Geometry((2.5, 2.5, 2.0), (-50, -50, -40), shape_zyx=(40, 40, 50))
    matrix = Rotation.from_euler("z", 8, degrees=True).as_matrix() * 1.1
    registration = AffineRegistration(matrix, np.array([4.0, -3.0, 2.0]), np.zeros(3))
    center_zyx, radius_mm = np.array([20.0, 18.0, 22.0]), 6.0
    warped = warp_to_target(lesion_gaussian(source_geom.shape_zyx, center_zyx, radius_mm, source_geom.spacing_zyx),
                            source_geom, target_geom, registration)
    center_t, radius_t = project_lesion(registration, center_zyx, radius_mm, source_geom, target_geom)
    assert radius_t == pytest.approx(6.6, rel=1e-6)
    projected = lesion_gaussian(target_geom.shape_zyx, center_t, radius_t, target_geom.spacing_zyx)
    near_lesion = projected > 0.3  # the warped map is 0 where the target grid leaves the source's field of view
    assert np.abs(warped - projected)[near_lesion].max() < 0.02
    peak_zyx = np.unravel_index(np.argmax(warped), warped.shape)
    assert np.linalg.norm((np.array(peak_zyx) - center_t) * target_geom.spacing_zyx) < 2.0
