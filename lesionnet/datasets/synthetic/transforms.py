"""World ↔ canonical mappings of the synthetic tracking phantoms.

Every patient of Dataset501 is an analytic phantom in a *canonical* space (mm, axes x = patient
left, y = posterior, z = superior, origin at the body center). A scan at time point ``t`` sees the
patient through a mapping ``phi_t`` from its own world coordinates (mm) to canonical coordinates:

    q = M_t @ w + b_t            (affine part: rotation, per-axis scale, translation)
    c = q + d_t(q)               (smooth non-rigid displacement, a few mm)

The scan is rendered by sampling the phantom at ``phi_t(w)`` for every voxel; a lesion whose
canonical center is ``c`` is therefore centered at ``phi_t^{-1}(c)`` in the scan, which
:meth:`WorldToCanonical.inverse` finds by Newton iteration to far below 0.01 mm.

All point arrays here are physical points of shape ``(..., 3)``, the vector (x, y, z) in mm (world:
``points_world``, canonical: ``points_canonical_mm``); the only voxel indices are the (z, y, x) index
grids of :meth:`WorldToCanonical.voxel_grid_to_canonical`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


def rotation_matrix(axis, angle_rad: float) -> np.ndarray:
    """3×3 rotation by ``angle_rad`` about the direction ``axis`` (a physical (x, y, z) vector; Rodrigues' formula)."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(angle_rad) * k + (1.0 - np.cos(angle_rad)) * (k @ k)


def random_unit_vector(rng: np.random.Generator) -> np.ndarray:
    """A direction drawn uniformly on the unit sphere, shape (3,)."""
    v = rng.normal(size=3)
    return v / max(np.linalg.norm(v), 1e-12)


def random_rotation(rng: np.random.Generator, max_angle_deg: float) -> np.ndarray:
    """Rotation about a uniformly random axis by an angle uniform in [0, ``max_angle_deg``]."""
    axis = random_unit_vector(rng)
    angle = np.deg2rad(rng.uniform(0.0, max_angle_deg))
    return rotation_matrix(axis, angle)


@dataclass(frozen=True)
class AffinePose:
    """Affine map world (mm) → canonical (mm): ``q = matrix @ w + offset_mm``.

    Attributes:
        matrix: (3, 3) linear part (scale ∘ rotation), acting on (x, y, z) column vectors.
        offset_mm: (3,) translation in mm.
    """

    matrix: np.ndarray
    offset_mm: np.ndarray

    @classmethod
    def identity(cls) -> "AffinePose":
        return cls(np.eye(3), np.zeros(3))

    @classmethod
    def random(cls, rng: np.random.Generator, max_rotation_deg: float, max_translation_mm: float,
               scale_range: tuple) -> "AffinePose":
        """Random pose: rotation ≤ ``max_rotation_deg`` about a random axis, per-axis scale drawn from
        ``scale_range``, translation of length ≤ ``max_translation_mm`` in a random direction.

        The draws consume the same number of random numbers whatever the magnitudes are, so two
        configurations differing only in magnitudes give comparable poses for the same seed.
        """
        rotation = random_rotation(rng, max_rotation_deg)
        axis_scales = rng.uniform(scale_range[0], scale_range[1], size=3)  # along the x, y, z axes
        translation = random_unit_vector(rng) * rng.uniform(0.0, max_translation_mm)
        return cls(np.diag(axis_scales) @ rotation, translation)

    @property
    def scale(self) -> float:
        """Isotropic scale of the linear part, ``|det(matrix)|^(1/3)`` (canonical mm per world mm)."""
        return float(abs(np.linalg.det(self.matrix)) ** (1.0 / 3.0))

    def apply(self, points_world) -> np.ndarray:
        """World point(s) ``(..., 3)`` (mm) → canonical point(s) ``(..., 3)`` (mm) under the affine part."""
        points_world = np.asarray(points_world, dtype=np.float64)
        return points_world @ self.matrix.T + self.offset_mm

    def invert(self, points_canonical_mm) -> np.ndarray:
        """Canonical point(s) ``(..., 3)`` (mm) → world point(s) (mm) under the affine part."""
        points_canonical_mm = np.asarray(points_canonical_mm, dtype=np.float64)
        return (points_canonical_mm - self.offset_mm) @ np.linalg.inv(self.matrix).T


@dataclass(frozen=True)
class FourierDisplacement:
    """Smooth displacement field ``d(q) = sum_k a_k sin(omega_k · q + phase_k)`` (mm), q in mm.

    Attributes:
        wave_vectors: (K, 3) angular wave vectors omega_k (rad/mm).
        phases: (K,) phases (rad).
        amplitudes_mm: (K, 3) displacement amplitude vectors a_k (mm).

    With random phases, the root-mean-square length of ``d`` is ``sqrt(sum_k |a_k|^2 / 2)``.
    """

    wave_vectors: np.ndarray
    phases: np.ndarray
    amplitudes_mm: np.ndarray

    @classmethod
    def zero(cls) -> "FourierDisplacement":
        return cls(np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3)))

    @classmethod
    def random(cls, rng: np.random.Generator, rms_mm: float, shortest_wavelength_mm: float,
               num_modes: int) -> "FourierDisplacement":
        """Random field whose RMS displacement length is ``rms_mm``.

        Wavelengths are uniform in [``shortest_wavelength_mm``, 2 × that]; directions and phases are
        uniform. The random draws do not depend on ``rms_mm`` (it only scales the amplitudes).
        """
        directions = np.stack([random_unit_vector(rng) for _ in range(num_modes)]) if num_modes else np.zeros((0, 3))
        wavelengths = rng.uniform(shortest_wavelength_mm, 2.0 * shortest_wavelength_mm, size=num_modes)
        phases = rng.uniform(0.0, 2.0 * np.pi, size=num_modes)
        amplitudes = rng.normal(size=(num_modes, 3))
        norm = np.sqrt(np.sum(amplitudes ** 2) / 2.0) if num_modes else 1.0
        amplitudes = amplitudes * (rms_mm / max(norm, 1e-12))
        wave_vectors = directions * (2.0 * np.pi / wavelengths)[:, None]
        return cls(wave_vectors, phases, amplitudes)

    @property
    def num_modes(self) -> int:
        return int(self.phases.shape[0])

    @property
    def rms_mm(self) -> float:
        """Root-mean-square displacement length (mm)."""
        return float(np.sqrt(np.sum(self.amplitudes_mm ** 2) / 2.0))

    @property
    def lipschitz_bound(self) -> float:
        """Upper bound of the spectral norm of the Jacobian of ``d`` (dimensionless)."""
        return float(np.sum(np.linalg.norm(self.amplitudes_mm, axis=1) * np.linalg.norm(self.wave_vectors, axis=1)))

    def __call__(self, points_mm) -> np.ndarray:
        """Displacement (mm) at point(s) ``(..., 3)`` (mm); same shape as the input."""
        points_mm = np.asarray(points_mm, dtype=np.float64)
        if self.num_modes == 0:
            return np.zeros_like(points_mm)
        angles = points_mm @ self.wave_vectors.T + self.phases  # (..., K)
        return np.sin(angles) @ self.amplitudes_mm

    def displace_components(self, x, y, z) -> tuple:
        """``(x + d_x, y + d_y, z + d_z)`` for coordinate arrays of any shape (float32 in, float32 out).

        The fast path used for rendering: one mode at a time, no ``(..., K)`` temporaries.
        """
        out_x, out_y, out_z = x.copy(), y.copy(), z.copy()
        for w, phase, a in zip(self.wave_vectors.astype(np.float32), self.phases.astype(np.float32),
                               self.amplitudes_mm.astype(np.float32)):
            s = np.sin(x * w[0] + y * w[1] + z * w[2] + phase)
            out_x += a[0] * s
            out_y += a[1] * s
            out_z += a[2] * s
        return out_x, out_y, out_z

    def jacobian(self, points_mm) -> np.ndarray:
        """Jacobian ``∂d_i/∂q_j`` at point(s) ``(..., 3)`` (mm) → ``(..., 3, 3)``."""
        points_mm = np.asarray(points_mm, dtype=np.float64)
        if self.num_modes == 0:
            return np.zeros(points_mm.shape + (3,))
        cosines = np.cos(points_mm @ self.wave_vectors.T + self.phases)  # (..., K)
        # J_ij = sum_k a_ki cos_k w_kj
        return np.einsum("...k,ki,kj->...ij", cosines, self.amplitudes_mm, self.wave_vectors)


@dataclass(frozen=True)
class WorldToCanonical:
    """The mapping ``phi_t``: world (mm) → canonical (mm), ``c = q + d(q)`` with ``q = pose(w)``."""

    pose: AffinePose
    displacement: FourierDisplacement

    @classmethod
    def identity(cls) -> "WorldToCanonical":
        return cls(AffinePose.identity(), FourierDisplacement.zero())

    def __call__(self, points_world) -> np.ndarray:
        """World point(s) ``(..., 3)`` → canonical point(s) ``(..., 3)``, mm."""
        q = self.pose.apply(points_world)
        return q + self.displacement(q)

    def jacobian(self, points_world) -> np.ndarray:
        """``∂c/∂w`` at world point(s) ``(..., 3)`` → ``(..., 3, 3)``: ``(I + ∂d/∂q) · M`` with ``q = pose(w)``."""
        q = self.pose.apply(points_world)
        return (self.displacement.jacobian(q) + np.eye(3)) @ self.pose.matrix

    def voxel_grid_to_canonical(self, geometry, index_z, index_y, index_x) -> tuple:
        """Canonical points ``(x, y, z)`` (three float32 arrays, mm) of voxel indices along z, y and x
        given as broadcastable arrays.

        The voxel → world affine is taken from ``geometry`` (``Geometry.voxel_to_world`` of the origin
        and the three unit voxel steps), composed with the affine part, then displaced.
        """
        basis = geometry.voxel_to_world(np.vstack([np.zeros(3), np.eye(3)]))
        world_origin, world_steps = basis[0], basis[1:] - basis[0]  # rows: world step per voxel step along z, y, x
        step_z, step_y, step_x = (self.pose.matrix @ world_steps.T).T  # canonical step per voxel step
        offset = self.pose.apply(world_origin)
        # float32 sums in the order x, y, z: another order rounds differently and changes the generated images
        q = [np.float32(offset[i]) + np.float32(step_x[i]) * index_x + np.float32(step_y[i]) * index_y
             + np.float32(step_z[i]) * index_z for i in range(3)]
        q = [np.asarray(v, dtype=np.float32) for v in np.broadcast_arrays(*q)]
        if self.displacement.num_modes == 0:
            return tuple(q)
        return self.displacement.displace_components(*q)

    def inverse(self, points_canonical_mm, tol_mm: float = 1e-6, max_iterations: int = 50) -> np.ndarray:
        """Canonical point(s) ``(..., 3)`` → world point(s) (mm), solving ``q + d(q) = c`` by Newton iteration.

        Raises ``RuntimeError`` when the iteration does not reach ``tol_mm`` (the displacement field is
        then too strong to be invertible; lower ``nonrigid_displacement_mm``).
        """
        target = np.asarray(points_canonical_mm, dtype=np.float64)
        q = target.copy()
        for _ in range(max_iterations):
            residual = q + self.displacement(q) - target
            if np.max(np.abs(residual), initial=0.0) < tol_mm:
                break
            jac = self.displacement.jacobian(q) + np.eye(3)
            q = q - np.linalg.solve(jac, residual[..., None])[..., 0]
        else:
            residual = q + self.displacement(q) - target
            if np.max(np.abs(residual), initial=0.0) >= tol_mm:
                raise RuntimeError(f"inverting the synthetic deformation did not converge (residual "
                                   f"{np.max(np.abs(residual)):.3g} mm); the non-rigid displacement is too "
                                   "strong for its wavelength.")
        return self.pose.invert(q)
