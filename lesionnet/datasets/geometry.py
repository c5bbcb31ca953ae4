"""The one place that converts between array order and ITK order, and between voxels and mm.

Conventions (the only ones used anywhere in lesionnet):

* numpy arrays of images are indexed ``[z, y, x]`` (slice, row, column) — ``shape_zyx``;
* ITK indices, continuous voxel centers and physical points are ``(x, y, z)`` — ``center_xyz``;
* ``spacing_xyz``, ``origin_xyz`` are in mm, ``direction`` is ITK's row-major 3×3 matrix whose
  columns are the world directions of the x, y and z index axes;
* world (physical) point = ``origin_xyz + direction @ (index_xyz * spacing_xyz)``, in mm.

Everything else calls these helpers instead of reversing axes by hand.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


def xyz_to_zyx(values_xyz: Sequence[float]) -> tuple:
    """Reverse an (x, y, z) triple to (z, y, x) array order (works for indices, spacings, shapes)."""
    x, y, z = values_xyz
    return (z, y, x)


def zyx_to_xyz(values_zyx: Sequence[float]) -> tuple:
    """Reverse a (z, y, x) triple to (x, y, z) ITK order."""
    z, y, x = values_zyx
    return (x, y, z)


@dataclass(frozen=True)
class Geometry:
    """Physical geometry of a 3D image (all triples in ITK (x, y, z) order, mm).

    Attributes:
        spacing_xyz: voxel size along the x, y, z index axes (mm).
        origin_xyz: world position of voxel (0, 0, 0) (mm).
        direction: row-major 3×3 direction cosine matrix, 9 floats (ITK's ``GetDirection()``).
        shape_zyx: array shape ``(Z, Y, X)`` of the image data.
    """

    spacing_xyz: tuple
    origin_xyz: tuple = (0.0, 0.0, 0.0)
    direction: tuple = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    shape_zyx: tuple = field(default=(0, 0, 0))

    def __post_init__(self):
        object.__setattr__(self, "spacing_xyz", tuple(float(v) for v in self.spacing_xyz))
        object.__setattr__(self, "origin_xyz", tuple(float(v) for v in self.origin_xyz))
        object.__setattr__(self, "direction", tuple(float(v) for v in self.direction))
        object.__setattr__(self, "shape_zyx", tuple(int(v) for v in self.shape_zyx))

    @property
    def spacing_zyx(self) -> tuple:
        """Voxel size in array order ``(z, y, x)`` (mm)."""
        return xyz_to_zyx(self.spacing_xyz)

    @property
    def shape_xyz(self) -> tuple:
        """Image size in ITK order ``(X, Y, Z)`` (voxels)."""
        return zyx_to_xyz(self.shape_zyx)

    @property
    def direction_matrix(self) -> np.ndarray:
        """Direction cosines as a 3×3 array (columns = world directions of the index axes)."""
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    @property
    def extent_mm_xyz(self) -> tuple:
        """Physical size of the image along x, y, z (mm)."""
        return tuple(n * s for n, s in zip(self.shape_xyz, self.spacing_xyz))

    def index_to_world(self, index_xyz) -> np.ndarray:
        """Continuous voxel index/indices ``(..., 3)`` in (x, y, z) → world points (mm), same shape."""
        index_xyz = np.asarray(index_xyz, dtype=np.float64)
        scaled = index_xyz * np.asarray(self.spacing_xyz)
        return scaled @ self.direction_matrix.T + np.asarray(self.origin_xyz)

    def world_to_index(self, point_xyz) -> np.ndarray:
        """World point(s) ``(..., 3)`` in mm → continuous voxel index/indices (x, y, z)."""
        point_xyz = np.asarray(point_xyz, dtype=np.float64)
        rel = point_xyz - np.asarray(self.origin_xyz)
        # direction is orthonormal for valid images, but solve instead of transposing to be safe
        unscaled = np.linalg.solve(self.direction_matrix, rel.reshape(-1, 3).T).T.reshape(rel.shape)
        return unscaled / np.asarray(self.spacing_xyz)

    def contains_index(self, index_xyz, margin: float = 0.5) -> bool:
        """True when a continuous index lies inside the image (voxel centers ± ``margin``)."""
        index_xyz = np.asarray(index_xyz, dtype=np.float64)
        upper = np.asarray(self.shape_xyz, dtype=np.float64) - 1 + margin
        return bool(np.all(index_xyz >= -margin) and np.all(index_xyz <= upper))

    def to_dict(self) -> dict:
        """Plain-data form, for JSON and checkpoints."""
        return {
            "spacing_xyz": list(self.spacing_xyz),
            "origin_xyz": list(self.origin_xyz),
            "direction": list(self.direction),
            "shape_zyx": list(self.shape_zyx),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Geometry":
        return cls(d["spacing_xyz"], d["origin_xyz"], d["direction"], d["shape_zyx"])

    def same_grid(self, other: "Geometry", tol: float = 1e-4) -> bool:
        """True when two geometries describe the same voxel grid (shape, spacing, origin, direction)."""
        return (
            self.shape_zyx == other.shape_zyx
            and np.allclose(self.spacing_xyz, other.spacing_xyz, atol=tol)
            and np.allclose(self.origin_xyz, other.origin_xyz, atol=tol * 10)
            and np.allclose(self.direction, other.direction, atol=tol)
        )
