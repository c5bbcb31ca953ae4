"""Test helpers: an analytic CT-like phantom, a scan pair related by a known affine, and fast registration
settings for tests that run the planning / preprocessing code path."""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from lesionnet.datasets.geometry import Geometry
from lesionnet.registration.affine import AffineRegistration, RegistrationSettings
from lesionnet.registration.deformable import DeformableSettings

#: registration settings that make the fingerprint / preprocessing path fast enough for tests
FAST_REGISTRATION = RegistrationSettings(working_spacing_mm=8.0, shrink_factors=(2, 1), smoothing_sigmas_mm=(4.0, 0.0),
                                         iterations_similarity=20, iterations_affine=20, threads=1)
#: B-spline settings of the deformable prior candidate, made fast for tests (few iterations and samples)
FAST_DEFORMABLE = DeformableSettings(iterations=3, metric_samples=1000, threads=1)


def phantom_hu(points_mm: np.ndarray) -> np.ndarray:
    """CT-like analytic phantom (HU) at world points ``(..., 3)`` (x, y, z) in mm, centred on 0."""
    x, y, z = points_mm[..., 0], points_mm[..., 1], points_mm[..., 2]
    hu = np.full(x.shape, -1000.0)
    body = (x / 110) ** 2 + (y / 80) ** 2 + (z / 150) ** 2 < 1
    hu[body] = 40.0
    for side in (-1, 1):
        lung = ((x - side * 50) / 35) ** 2 + ((y + 10) / 45) ** 2 + ((z - 20) / 90) ** 2 < 1
        hu[lung] = -850.0
    hu[((x / 12) ** 2 + ((y - 50) / 12) ** 2 < 1) & body] = 700.0  # spine
    hu[((x + 40) / 30) ** 2 + ((y - 10) / 25) ** 2 + ((z + 70) / 40) ** 2 < 1] = 70.0  # liver-like
    hu[(x - 30) ** 2 + (y + 20) ** 2 + (z + 40) ** 2 < 15**2] = -60.0
    return hu


def render(spacing_xyz, shape_zyx, world_to_canonical=None) -> tuple[np.ndarray, Geometry]:
    geometry = Geometry(spacing_xyz, origin_xyz=(0, 0, 0), shape_zyx=shape_zyx)
    extent = np.asarray(geometry.extent_mm_xyz)
    geometry = Geometry(spacing_xyz, origin_xyz=tuple(-extent / 2), shape_zyx=shape_zyx)
    world = geometry.voxel_to_world(np.stack(np.meshgrid(*[np.arange(n) for n in shape_zyx], indexing="ij"), axis=-1))
    if world_to_canonical is not None:
        world = world_to_canonical(world)
    return phantom_hu(world).astype(np.float32), geometry


def make_pair(rotation_deg=(0, 0, 6), translation_mm=(8, -6, 10), scale=1.05):
    """Source and target scans of the phantom; target = affine A applied to the source anatomy."""
    matrix = Rotation.from_euler("xyz", rotation_deg, degrees=True).as_matrix() * scale
    translation = np.asarray(translation_mm, dtype=float)
    source, source_geom = render((3.0, 3.0, 4.0), (80, 64, 84))
    inverse = np.linalg.inv(matrix)
    target, target_geom = render((3.5, 3.5, 3.0), (100, 56, 72),
                                 world_to_canonical=lambda p: (p - translation) @ inverse.T)
    truth = AffineRegistration(matrix, translation, np.zeros(3))
    return source, source_geom, target, target_geom, truth
