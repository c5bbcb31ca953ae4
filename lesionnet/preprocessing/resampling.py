"""Resampling scans and masks to a target spacing with SimpleITK, keeping world coordinates.

The resampled grid covers the same field of view as the original: its first and last voxel *edges*
coincide with the original's (shape ``round(n · s / t)``, origin shifted by half the spacing
difference along each index direction), and direction cosines are kept. Points therefore keep their
world position; convert indices between the grids with :func:`map_voxel` (world round trip).
Images use linear (default) or B-spline interpolation, masks nearest neighbour; samples that fall
just outside the original grid take the nearest voxel's value (no artificial air border).
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from lesionnet.datasets.geometry import Geometry, zyx_to_xyz
from lesionnet.datasets.image_io import to_sitk

INTERPOLATORS = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline, "nearest": sitk.sitkNearestNeighbor}


def target_geometry(geometry: Geometry, target_spacing_zyx) -> Geometry:
    """The resampled grid of ``geometry`` at ``target_spacing_zyx`` (``None`` keeps that axis)."""
    spacing_zyx = geometry.spacing_zyx
    new_spacing_zyx = [s if t is None else float(t) for s, t in zip(spacing_zyx, target_spacing_zyx)]
    new_shape_zyx = [n if t is None else max(1, int(round(n * s / t)))
                     for n, s, t in zip(geometry.shape_zyx, spacing_zyx, target_spacing_zyx)]
    # the first voxel's edge stays put: its center moves by half the spacing difference, in mm
    half_shift_zyx = (np.asarray(new_spacing_zyx, dtype=np.float64) - np.asarray(spacing_zyx, dtype=np.float64)) / 2.0
    origin = np.asarray(geometry.origin_xyz) + geometry.direction_matrix @ np.asarray(zyx_to_xyz(half_shift_zyx))
    return Geometry(zyx_to_xyz(new_spacing_zyx), tuple(origin), geometry.direction, tuple(new_shape_zyx))


def is_same_grid(geometry: Geometry, target: Geometry) -> bool:
    return geometry.same_grid(target)


def resample_array(array_zyx: np.ndarray, geometry: Geometry, target: Geometry, interpolation: str = "linear",
                   dtype=None) -> np.ndarray:
    """Resample a ``[z, y, x]`` array from ``geometry`` onto the grid ``target``.

    Args:
        interpolation: ``"linear"`` / ``"bspline"`` (images) or ``"nearest"`` (masks, labels).
        dtype: output dtype (default: float32 for images, the input dtype for ``"nearest"``).
    """
    if interpolation not in INTERPOLATORS:
        raise ValueError(f"interpolation must be one of {sorted(INTERPOLATORS)}, got {interpolation!r}")
    if dtype is None:
        dtype = array_zyx.dtype if interpolation == "nearest" else np.float32
    if geometry.same_grid(target):
        return np.ascontiguousarray(array_zyx, dtype=dtype)
    source = array_zyx if interpolation == "nearest" else array_zyx.astype(np.float32, copy=False)
    if interpolation == "nearest" and source.dtype not in (np.uint8, np.int16, np.uint16, np.int32, np.float32):
        source = source.astype(np.int32)
    image = to_sitk(source, geometry)
    reference = sitk.Image(*[int(v) for v in target.shape_xyz], image.GetPixelID())
    reference.SetSpacing(target.spacing_xyz)
    reference.SetOrigin(target.origin_xyz)
    reference.SetDirection(target.direction)
    resampler = sitk.ResampleImageFilter()
    resampler.SetReferenceImage(reference)
    resampler.SetInterpolator(INTERPOLATORS[interpolation])
    resampler.SetTransform(sitk.Transform())
    resampler.SetDefaultPixelValue(0)
    resampler.SetUseNearestNeighborExtrapolator(True)
    out = sitk.GetArrayFromImage(resampler.Execute(image))
    return np.ascontiguousarray(out, dtype=dtype)


def map_voxel(index_zyx, source: Geometry, target: Geometry) -> np.ndarray:
    """Continuous voxel index ``(z, y, x)`` in ``source`` → the ``(z, y, x)`` index of the same world point in
    ``target``."""
    return target.world_to_voxel(source.voxel_to_world(index_zyx))


__all__ = ["target_geometry", "resample_array", "map_voxel", "INTERPOLATORS"]
