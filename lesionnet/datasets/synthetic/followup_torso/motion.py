"""The mapping ``phi_t`` of a Dataset503 scan: world (mm) → canonical (mm), and its exact inverse.

    q = R_t w + b_t                    rigid patient pose (rotation mostly about z, in-plane translation,
                                       table shift along z)
    c = q + d_t(q)                     d_t = breathing displacement + smooth non-rigid displacement

Breathing: ``d(q) = depth_mm * weight(q) * (0, ap_ratio, 1)`` (+z: the organs appear ``depth_mm``
lower, and ``ap_ratio * depth_mm`` more anterior, in the scan than in canonical space), with
``weight = g_z(z) * g_wall(x, y) * g_spine(x, y)`` in [0, 1]: 1 from 110 mm below to 10 mm above the
diaphragm apex, falling smoothly (raised cosine) to 0 over 80 mm below and 100 mm above; 1 inside 55 % of
the visceral cavity ellipse, 0 at its wall and beyond; 0 within ``spine_radius_mm`` of the vertebral body
axis, 1 beyond a further 45 mm. The Jacobian of ``c(q)`` is ``I + depth * direction ⊗ grad(weight)``, whose
determinant ``1 + depth * direction · grad(weight)`` is at least
``1 - depth * (pi / 160 + ap_ratio * (pi / (0.9 B) + pi / 90))`` (B: cavity semi-axis along y, mm), at
least 0.25 for a 20 mm depth, ``ap_ratio`` 0.2 and B ≥ 70 mm, so the breathing motion does not fold. The
smooth non-rigid part is a sum of Fourier modes (wavelengths ≥ 120 mm, RMS a few mm).

All points are physical ``(x, y, z)`` vectors in mm, arrays of shape ``(..., 3)``; the rendering fast
path :meth:`FollowUpMapping.voxel_grid_to_canonical` takes broadcastable voxel index arrays along z, y, x.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def rotation_about_axes(angles_rad) -> np.ndarray:
    """3×3 rotation ``R_z(γ) @ R_y(β) @ R_x(α)`` for ``angles_rad = (α, β, γ)`` about the x, y and z axes."""
    a, b, g = angles_rad
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(g), -np.sin(g), 0], [np.sin(g), np.cos(g), 0], [0, 0, 1]])
    return rz @ ry @ rx


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3×3 rotation (from a normalised Gaussian quaternion)."""
    w, x, y, z = rng.normal(size=4)
    n = np.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def raised_cosine_step(u):
    """0 for ``u <= 0``, 1 for ``u >= 1``, ``(1 - cos(pi u)) / 2`` between (continuous first derivative)."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(u, 0.0, 1.0))


@dataclass(frozen=True)
class RigidPose:
    """``q = rotation @ w + translation_mm`` (world mm → pre-deformation canonical mm)."""

    rotation: np.ndarray
    translation_mm: np.ndarray

    def apply(self, points_world) -> np.ndarray:
        return np.asarray(points_world, dtype=np.float64) @ self.rotation.T + self.translation_mm

    def invert(self, points_q) -> np.ndarray:
        return (np.asarray(points_q, dtype=np.float64) - self.translation_mm) @ self.rotation


@dataclass(frozen=True)
class BreathingField:
    """``d(q) = depth_mm * weight(q) * (0, ap_ratio, 1)`` (mm); see the module docstring for ``weight``.

    Attributes:
        depth_mm: breathing depth of this scan (mm).
        ap_ratio: anterior–posterior displacement per mm of z displacement (+y: posterior in canonical space).
        apex_z_mm: diaphragm apex (canonical z, mm).
        cavity_semi_axes_mm: (A, B) of the visceral cavity ellipse (mm), centered on the z axis.
        spine_center_xy: vertebral body axis (x, y) (mm); spine_radius_mm: no motion within this distance.
    """

    depth_mm: float
    ap_ratio: float
    apex_z_mm: float
    cavity_semi_axes_mm: tuple
    spine_center_xy: tuple
    spine_radius_mm: float

    def weight(self, x, y, z):
        """Weight in [0, 1] at canonical points (coordinate arrays of any shape, mm)."""
        low, high = self.apex_z_mm - 110.0, self.apex_z_mm + 10.0
        g_z = raised_cosine_step((z - (low - 80.0)) / 80.0) * (1.0 - raised_cosine_step((z - high) / 100.0))
        a, b = self.cavity_semi_axes_mm
        rho = np.sqrt((x / a) ** 2 + (y / b) ** 2)
        g_wall = 1.0 - raised_cosine_step((rho - 0.55) / 0.45)
        spine = np.sqrt((x - self.spine_center_xy[0]) ** 2 + (y - self.spine_center_xy[1]) ** 2)
        g_spine = raised_cosine_step((spine - self.spine_radius_mm) / 45.0)
        return g_z * g_wall * g_spine

    def displacement_components(self, x, y, z) -> tuple:
        """``(d_x, d_y, d_z)`` at canonical points (coordinate arrays, mm)."""
        magnitude = self.depth_mm * self.weight(x, y, z)
        return np.zeros_like(magnitude), self.ap_ratio * magnitude, magnitude


@dataclass(frozen=True)
class SmoothField:
    """``d(q) = sum_k amplitudes_mm[k] * sin(wave_vectors[k] · q + phases[k])`` (mm); RMS length
    ``sqrt(sum |a_k|^2 / 2)``.

    Attributes: wave_vectors (K, 3) rad/mm; phases (K,) rad; amplitudes_mm (K, 3).
    """

    wave_vectors: np.ndarray
    phases: np.ndarray
    amplitudes_mm: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, rms_mm: float, shortest_wavelength_mm: float,
               modes: int) -> "SmoothField":
        """Random field of RMS length ``rms_mm``; the draws do not depend on ``rms_mm``."""
        directions = rng.normal(size=(modes, 3))
        directions /= np.maximum(np.linalg.norm(directions, axis=1, keepdims=True), 1e-12)
        wavelengths = rng.uniform(shortest_wavelength_mm, 2.0 * shortest_wavelength_mm, size=modes)
        phases = rng.uniform(0.0, 2.0 * np.pi, size=modes)
        amplitudes = rng.normal(size=(modes, 3))
        norm = np.sqrt(np.sum(amplitudes ** 2) / 2.0) if modes else 1.0
        return cls(directions * (2.0 * np.pi / wavelengths)[:, None], phases, amplitudes * (rms_mm / max(norm, 1e-12)))

    def displacement_components(self, x, y, z) -> tuple:
        out = [np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)]
        for w, phase, amplitude in zip(self.wave_vectors, self.phases, self.amplitudes_mm):
            s = np.sin(x * w[0] + y * w[1] + z * w[2] + phase)
            for i in range(3):
                out[i] = out[i] + amplitude[i] * s
        return tuple(out)


@dataclass(frozen=True)
class FollowUpMapping:
    """``phi_t``: world (mm) → canonical (mm) of one scan: ``c = q + breathing(q) + smooth(q)``, ``q = pose(w)``."""

    pose: RigidPose
    breathing: BreathingField
    smooth: SmoothField

    @property
    def scale(self) -> float:
        """Scale of the affine part (canonical mm per world mm): 1, the pose is rigid."""
        return 1.0

    def displacement(self, points_q) -> np.ndarray:
        """``d(q)`` (mm) at points ``(..., 3)``."""
        q = np.asarray(points_q, dtype=np.float64)
        x, y, z = q[..., 0], q[..., 1], q[..., 2]
        parts = [self.breathing.displacement_components(x, y, z), self.smooth.displacement_components(x, y, z)]
        return np.stack([parts[0][i] + parts[1][i] for i in range(3)], axis=-1)

    def __call__(self, points_world) -> np.ndarray:
        """World point(s) ``(..., 3)`` → canonical point(s) ``(..., 3)`` (mm)."""
        q = self.pose.apply(points_world)
        return q + self.displacement(q)

    def voxel_grid_to_canonical(self, geometry, index_z, index_y, index_x) -> tuple:
        """Canonical ``(x, y, z)`` (three float32 arrays, mm) of the voxel indices ``index_z, index_y, index_x``
        (broadcastable arrays) of ``geometry``."""
        basis = geometry.voxel_to_world(np.vstack([np.zeros(3), np.eye(3)]))
        origin, steps = basis[0], basis[1:] - basis[0]  # world step per voxel step along z, y, x (rows)
        step_z, step_y, step_x = (self.pose.rotation @ steps.T).T
        offset = self.pose.apply(origin)
        q = [np.float32(offset[i]) + np.float32(step_x[i]) * index_x + np.float32(step_y[i]) * index_y
             + np.float32(step_z[i]) * index_z for i in range(3)]
        x, y, z = (np.asarray(v, dtype=np.float32) for v in np.broadcast_arrays(*q))
        breathing = self.breathing.displacement_components(x, y, z)
        smooth = self.smooth.displacement_components(x, y, z)
        return tuple((c + b + s).astype(np.float32) for c, b, s in zip((x, y, z), breathing, smooth))

    def inverse(self, points_canonical_mm, tol_mm: float = 1e-6, max_residual_mm: float = 1e-4,
                max_iterations: int = 30) -> np.ndarray:
        """Canonical point(s) ``(..., 3)`` → world point(s) (mm): solves ``q + d(q) = c`` by Newton iteration
        (Jacobian of ``d`` by central differences, 1e-3 mm) until the residual is below ``tol_mm``, then
        ``w = pose^{-1}(q)``. Raises ``RuntimeError`` if the residual stays above ``max_residual_mm``."""
        target = np.asarray(points_canonical_mm, dtype=np.float64)
        q = target - self.displacement(target)
        residual = q + self.displacement(q) - target
        for _ in range(max_iterations):
            if np.max(np.abs(residual), initial=0.0) < tol_mm:
                break
            q = q - np.linalg.solve(self._jacobian(q), residual[..., None])[..., 0]
            residual = q + self.displacement(q) - target
        worst = float(np.max(np.abs(residual), initial=0.0))
        if worst >= max_residual_mm:
            raise RuntimeError(f"inverting phi_t did not converge (residual {worst:.3g} mm); the breathing or "
                               "non-rigid displacement is too strong.")
        return self.pose.invert(q)

    def _jacobian(self, q: np.ndarray, step_mm: float = 1e-3) -> np.ndarray:
        """``I + dd/dq`` at points ``(..., 3)`` → ``(..., 3, 3)`` (central differences)."""
        columns = []
        for axis in range(3):
            offset = np.zeros(3)
            offset[axis] = step_mm
            columns.append((self.displacement(q + offset) - self.displacement(q - offset)) / (2.0 * step_mm))
        return np.eye(3) + np.stack(columns, axis=-1)


__all__ = ["FollowUpMapping", "RigidPose", "BreathingField", "SmoothField", "rotation_about_axes", "random_rotation",
           "raised_cosine_step"]
