"""Soft-edged analytic shapes evaluated at point clouds (mm), shared by both synthetic datasets.

Every function takes the coordinates of N points as three 1D arrays ``x, y, z`` (mm, any float
dtype) and returns an *occupancy* in [0, 1] per point: 1 well inside the shape, 0 well outside,
with a linear ramp ``edge_mm`` wide across the surface (a cheap partial-volume model). Distances to
ellipsoid surfaces use the first-order estimate ``f / |grad f|`` with ``f = rho^2 - 1``.
"""
from __future__ import annotations

import numpy as np


def ramp(signed_distance_mm, edge_mm: float) -> np.ndarray:
    """Occupancy from a signed distance (negative inside): ``clip(0.5 - sd / edge_mm, 0, 1)``."""
    return np.clip(0.5 - signed_distance_mm / max(edge_mm, 1e-6), 0.0, 1.0)


def ellipsoid_signed_distance(x, y, z, center_mm, semi_axes_mm, rotation=None) -> np.ndarray:
    """Approximate signed distance (mm) to an ellipsoid.

    Args:
        x, y, z: point coordinates (mm), arrays of equal shape.
        center_mm: ellipsoid center, a point (x, y, z) in mm.
        semi_axes_mm: semi-axis lengths (mm) along the ellipsoid's own axes.
        rotation: optional 3×3 matrix whose columns are the ellipsoid axes in (x, y, z).
    """
    dx, dy, dz = x - center_mm[0], y - center_mm[1], z - center_mm[2]
    if rotation is not None:
        r = np.asarray(rotation)
        dx, dy, dz = (r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz,
                      r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz,
                      r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz)
    a, b, c = semi_axes_mm
    u, v, w = dx / a, dy / b, dz / c
    f = u * u + v * v + w * w - 1.0
    grad = 2.0 * np.sqrt((u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2)
    return f / np.maximum(grad, 1e-6)


def axial_half_long_axis(semi_axes_mm, rotation, jacobian) -> float:
    """Half the longest diameter (mm) of an ellipsoid's cross-section through its center in the world's
    axial plane (world z constant) — the DLS radius (half the long RECIST diameter), measured exactly.

    ``semi_axes_mm`` (3,) and ``rotation`` (3, 3, columns = the axes) give the ellipsoid in canonical
    (x, y, z) mm; ``jacobian`` (3, 3) is ``∂canonical/∂world`` at its center (the mapping is treated as
    affine across the lesion). A world direction ``v`` in the axial plane reaches the surface at
    ``|v| = 1 / sqrt(vᵀ Q v)`` with ``Q = Pᵀ Jᵀ R diag(1/a²) Rᵀ J P`` and ``P = [e_x, e_y]``; the long
    half-axis is ``1 / sqrt(λ_min(Q))``.
    """
    rotation = np.asarray(rotation, dtype=np.float64)
    metric = rotation @ np.diag(1.0 / np.asarray(semi_axes_mm, dtype=np.float64) ** 2) @ rotation.T
    jp = np.asarray(jacobian, dtype=np.float64)[:, :2]                 # canonical images of world e_x, e_y
    q = jp.T @ metric @ jp
    return float(1.0 / np.sqrt(np.linalg.eigvalsh(q)[0]))


def ellipsoid(x, y, z, center_mm, semi_axes_mm, edge_mm: float, rotation=None) -> np.ndarray:
    """Occupancy of an ellipsoid (see :func:`ellipsoid_signed_distance`)."""
    return ramp(ellipsoid_signed_distance(x, y, z, center_mm, semi_axes_mm, rotation), edge_mm)


def elliptic_cylinder(x, y, center_xy, semi_axes_mm, edge_mm: float) -> np.ndarray:
    """Occupancy of an infinite elliptic cylinder along z (axis-aligned cross-section)."""
    a, b = semi_axes_mm
    u, v = (x - center_xy[0]) / a, (y - center_xy[1]) / b
    f = u * u + v * v - 1.0
    grad = 2.0 * np.sqrt((u / a) ** 2 + (v / b) ** 2)
    return ramp(f / np.maximum(grad, 1e-6), edge_mm)


def slab(values, low: float, high: float, edge_mm: float) -> np.ndarray:
    """Occupancy of ``low <= values <= high`` along one coordinate (soft at both ends)."""
    return np.minimum(ramp(low - values, edge_mm), ramp(values - high, edge_mm))


def capsule_distance(x, y, z, start_mm, end_mm) -> np.ndarray:
    """Distance (mm) from points to the segment ``start_mm``–``end_mm`` (points (x, y, z) in mm)."""
    s = np.asarray(start_mm, dtype=np.float64)
    seg = np.asarray(end_mm, dtype=np.float64) - s
    length2 = max(float(seg @ seg), 1e-12)
    px, py, pz = x - s[0], y - s[1], z - s[2]
    t = np.clip((px * seg[0] + py * seg[1] + pz * seg[2]) / length2, 0.0, 1.0)
    qx, qy, qz = px - t * seg[0], py - t * seg[1], pz - t * seg[2]
    return np.sqrt(qx * qx + qy * qy + qz * qz)


def capsules(x, y, z, segments, edge_mm: float) -> np.ndarray:
    """Occupancy of a union of capsules; ``segments`` holds ``(start_mm, end_mm, radius_mm)``.

    Only points inside the bounding box of each capsule are evaluated, so many thin capsules are cheap.
    """
    occupancy = np.zeros(np.shape(x), dtype=np.float32)
    for start, end, radius in segments:
        pad = radius + edge_mm
        lo = np.minimum(start, end) - pad
        hi = np.maximum(start, end) + pad
        inside = ((x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1]) & (z >= lo[2]) & (z <= hi[2]))
        idx = np.nonzero(inside)
        if idx[0].size == 0:
            continue
        dist = capsule_distance(x[idx], y[idx], z[idx], start, end)
        occupancy[idx] = np.maximum(occupancy[idx], ramp(dist - radius, edge_mm))
    return occupancy


def paint(image, occupancy, value) -> np.ndarray:
    """Painter's algorithm: ``image * (1 - occupancy) + occupancy * value`` (in place when possible)."""
    image *= 1.0 - occupancy
    image += occupancy * value
    return image
