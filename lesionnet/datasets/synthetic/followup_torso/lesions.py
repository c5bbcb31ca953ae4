"""Lesions of a Dataset503 patient: :class:`LesionLook` (intensity) and :class:`FollowUpLesion` (shape, truth).

A lesion is an ellipsoid fixed in canonical space (it moves with its organ): center ``c`` (mm), semi-axes
``radius_t * axis_ratios`` along the columns of ``rotation``. Unit-ball coordinates ``u`` of a point
``p`` are ``rotation^T (p - c) / semi_axes`` (``|u| = 1`` on the surface). Its HU at time point ``t``:

    base_hu + contrast[t] * delta_hu * (1 - falloff * |u|^2) + rim_hu[t] * exp(-((|u| - 0.9) / 0.1)^2)

Canonical points are physical ``(x, y, z)`` in mm; radii in mm (the pose is rigid, so a canonical radius
is also the radius in every scan's world mm).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lesionnet.datasets.synthetic import shapes

#: 26 unit directions (faces, edges and corners of a cube), shape (26, 3): where lesion surfaces are probed
PROBE_DIRECTIONS = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)
                             if (i, j, k) != (0, 0, 0)], dtype=np.float64)
PROBE_DIRECTIONS /= np.linalg.norm(PROBE_DIRECTIONS, axis=1, keepdims=True)


@dataclass(frozen=True)
class LesionLook:
    """Intensity of a lesion; arrays of length T are indexed by time point (see the module formula).

    Attributes:
        base_hu: intensity of the surrounding organ (HU).
        delta_hu: lesion minus organ at contrast 1 (HU).
        contrast: (T,) factor on ``delta_hu`` per time point (1 at the baseline).
        falloff: fraction of the contrast lost towards the surface (0: flat, 0.4: brighter/darker core).
        rim_hu: (T,) enhancing rim amplitude (0: no rim).
    """

    base_hu: float
    delta_hu: float
    contrast: np.ndarray
    falloff: float
    rim_hu: np.ndarray

    def value(self, rho, t: int) -> np.ndarray:
        """HU at normalised radius ``rho = |u|`` (array), time point ``t``."""
        core = self.base_hu + self.contrast[t] * self.delta_hu * (1.0 - self.falloff * rho * rho)
        return (core + self.rim_hu[t] * np.exp(-((rho - 0.9) / 0.1) ** 2)).astype(np.float32)


@dataclass(frozen=True)
class FollowUpLesion:
    """One lesion followed through the T scans of a patient.

    Attributes:
        organ: ``liver``, ``lung``, ``kidney``, ``spleen`` or ``lymph_node``.
        center_canonical_mm: (3,) canonical center (x, y, z), the same at every time point (mm).
        radii_mm: (T,) equivalent-sphere radius per time point (mm; geometric mean of the semi-axes).
        axis_ratios: (3,) semi-axes / radius (geometric mean 1).
        rotation: (3, 3) columns are the ellipsoid's axes in canonical (x, y, z).
        look: :class:`LesionLook`.
        in_scan: (T,) whether the lesion lies inside scan ``t`` (with the scan margin); pairs are made
            only between scans that both contain it. Outside a scan it lies entirely outside.
        twin_of: index of the lesion this one imitates, or None.
    """

    organ: str
    center_canonical_mm: np.ndarray
    radii_mm: np.ndarray
    axis_ratios: np.ndarray
    rotation: np.ndarray
    look: LesionLook
    in_scan: np.ndarray
    twin_of: int | None = None

    def semi_axes_mm(self, t: int) -> np.ndarray:
        """Semi-axes (mm) at time point ``t``."""
        return self.radii_mm[t] * self.axis_ratios

    def reach_mm(self, t: int | None = None) -> float:
        """Largest semi-axis (mm) at time point ``t`` (default: over all time points)."""
        radius = np.max(self.radii_mm) if t is None else self.radii_mm[t]
        return float(radius * np.max(self.axis_ratios))

    def surface_points(self, t: int, fraction: float = 1.0) -> np.ndarray:
        """(26, 3) canonical points at ``fraction`` of the way from the center to the surface, time point ``t``."""
        local = PROBE_DIRECTIONS * (fraction * self.semi_axes_mm(t))
        return self.center_canonical_mm + local @ self.rotation.T

    def occupancy(self, x, y, z, t: int, edge_mm: float) -> tuple:
        """``(occupancy, index)``: occupancy (float32, 0..1) of the canonical points ``index`` near the lesion."""
        center = tuple(float(v) for v in self.center_canonical_mm)
        pad = self.reach_mm(t) + edge_mm
        near = ((np.abs(x - center[0]) <= pad) & (np.abs(y - center[1]) <= pad) & (np.abs(z - center[2]) <= pad))
        index = np.nonzero(near)
        if index[0].size == 0:
            return np.zeros(0, np.float32), index
        sd = shapes.ellipsoid_signed_distance(x[index], y[index], z[index], center, self.semi_axes_mm(t), self.rotation)
        return shapes.ramp(sd, edge_mm).astype(np.float32), index

    def normalised_radius(self, x, y, z, t: int) -> np.ndarray:
        """``|u|`` of canonical points (1 on the surface)."""
        d = np.stack([x - self.center_canonical_mm[0], y - self.center_canonical_mm[1],
                      z - self.center_canonical_mm[2]], axis=-1)
        return np.linalg.norm(d @ self.rotation / self.semi_axes_mm(t), axis=-1)


__all__ = ["FollowUpLesion", "LesionLook", "PROBE_DIRECTIONS"]
