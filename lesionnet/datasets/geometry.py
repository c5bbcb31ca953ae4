"""The one place that converts between array order and ITK order, and between voxels and mm.

Conventions (the only ones used anywhere in lesionnet):

* inside lesionnet, arrays are indexed ``[z, y, x]`` (slice, row, column) and every voxel coordinate,
  size and spacing is a ``(z, y, x)`` triple: ``center_zyx``, ``shape_zyx``, ``spacing_zyx``;
* world (physical) points are ITK's LPS points in mm, a vector ``(x, y, z)`` by nature:
  ``point_world``. Only :class:`Geometry` and the affine registration produce or consume them;
* ``(x, y, z)`` voxel order exists only at the boundaries: ITK / SimpleITK objects (this module's
  :class:`Geometry` fields ``spacing_xyz``, ``origin_xyz``, ``direction``) and the files whose formats
  say so (raw pairs, DLS records, prediction files), converted with :func:`xyz_to_zyx`,
  :func:`zyx_to_xyz` and :func:`points_xyz_to_zyx` / :func:`points_zyx_to_xyz` when read or written;
* world point = ``origin_xyz + direction @ (index_xyz * spacing_xyz)`` (mm), with ``direction`` ITK's
  row-major 3×3 matrix whose columns are the world directions of the x, y and z index axes.

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


def points_xyz_to_zyx(points_xyz) -> np.ndarray:
    """Reverse the last axis of an ``(..., 3)`` array of (x, y, z) voxel coordinates to (z, y, x), float64."""
    points = np.asarray(points_xyz, dtype=np.float64)
    if points.shape[-1:] != (3,):
        raise ValueError(f"expected (..., 3) coordinates, got shape {points.shape}")
    return np.ascontiguousarray(points[..., ::-1])


def points_zyx_to_xyz(points_zyx) -> np.ndarray:
    """Reverse the last axis of an ``(..., 3)`` array of (z, y, x) voxel coordinates to (x, y, z), float64."""
    return points_xyz_to_zyx(points_zyx)


@dataclass(frozen=True)
class Geometry:
    """Physical geometry of a 3D image: the ITK boundary. Its fields are what SimpleITK reads and writes,
    in ITK (x, y, z) order (mm); lesionnet reads it through the (z, y, x) side: :attr:`spacing_zyx`,
    :attr:`shape_zyx`, :meth:`voxel_to_world`, :meth:`world_to_voxel`, :meth:`contains_voxel`.

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

    def voxel_to_world(self, index_zyx) -> np.ndarray:
        """Continuous voxel index/indices ``(..., 3)`` in (z, y, x) → world points ``(..., 3)`` (mm, LPS)."""
        scaled_xyz = points_zyx_to_xyz(index_zyx) * np.asarray(self.spacing_xyz)
        return scaled_xyz @ self.direction_matrix.T + np.asarray(self.origin_xyz)

    def world_to_voxel(self, point_world) -> np.ndarray:
        """World point(s) ``(..., 3)`` (mm, LPS) → continuous voxel index/indices ``(..., 3)`` in (z, y, x)."""
        point_world = np.asarray(point_world, dtype=np.float64)
        rel = point_world - np.asarray(self.origin_xyz)
        # direction is orthonormal for valid images, but solve instead of transposing to be safe
        unscaled = np.linalg.solve(self.direction_matrix, rel.reshape(-1, 3).T).T.reshape(rel.shape)
        return points_xyz_to_zyx(unscaled / np.asarray(self.spacing_xyz))

    def contains_voxel(self, index_zyx, margin: float = 0.5) -> bool:
        """True when a continuous (z, y, x) index lies inside the image (voxel centers ± ``margin``)."""
        index_zyx = np.asarray(index_zyx, dtype=np.float64)
        upper = np.asarray(self.shape_zyx, dtype=np.float64) - 1 + margin
        return bool(np.all(index_zyx >= -margin) and np.all(index_zyx <= upper))

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


def box_corners_world(boxes_xyz, geometry: Geometry) -> np.ndarray:
    """``(N, 2, 3)`` world points (mm, LPS) of the two opposite corners of half-open voxel boxes
    ``[x1, y1, z1, x2, y2, z2]`` ``(N, 6)``: the voxel edges, continuous indices ``(x1, y1, z1) - 0.5`` and
    ``(x2, y2, z2) - 0.5`` (voxel centers lie on integer indices)."""
    corners_xyz = np.asarray(boxes_xyz, dtype=np.float64).reshape(-1, 2, 3) - 0.5
    return np.asarray(geometry.voxel_to_world(points_xyz_to_zyx(corners_xyz.reshape(-1, 3)))).reshape(-1, 2, 3)


def boxes_between_grids(boxes_xyz, source: Geometry, target: Geometry) -> np.ndarray:
    """``(N, 6)`` half-open voxel boxes on the ``source`` grid → the boxes of the same regions on the
    ``target`` grid (through the world points of their corners; low and high sorted per axis, for flipped
    directions). Indices may be fractional when the spacings differ."""
    world = box_corners_world(boxes_xyz, source).reshape(-1, 3)
    moved = points_zyx_to_xyz(target.world_to_voxel(world)).reshape(-1, 2, 3) + 0.5
    return np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1)
