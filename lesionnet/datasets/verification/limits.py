"""The smallest scan the pipeline can work on, and the check of one scan's size against it.

The binding limit is ITK's recursive Gaussian (``SmoothingRecursiveGaussianImageFilter``), which the
affine registration runs on its working images (anti-aliasing and each level of the multi-resolution
pyramid): it refuses an image with fewer than 4 pixels along any axis ("The number of pixels along
dimension 2 is less than 4. This filter requires a minimum of four pixels along the dimension to be
processed"). The networks do not add a limit of their own: their patches are cropped from the
preprocessed arrays and padded where the scan ends.

The registration works on an isotropic grid of ``working_spacing_mm`` (4 mm by default, never finer
than the scans' finest native spacing), so for a tracking scan the limit is also one of physical
extent: ``round(extent_mm / working_spacing_mm)`` must be at least 4, i.e. ``extent_mm >= 3.5 ×
working_spacing_mm`` (14 mm at 4 mm; a 12-slice scan of 1 mm slices fails). Shapes are ``(z, y, x)``
voxel counts, spacings ITK ``(x, y, z)`` triples in mm.
"""
from __future__ import annotations

import numpy as np

#: fewest voxels a scan may have along each axis (ITK's recursive Gaussian needs 4 pixels per axis)
MIN_SCAN_SIZE_VOXELS = 4
#: default working spacing of the affine registration in mm
#: (``lesionnet.registration.affine.RegistrationSettings.working_spacing_mm``)
REGISTRATION_WORKING_SPACING_MM = 4.0
#: fewest mm a tracking scan must span along each axis so that its working image keeps
#: :data:`MIN_SCAN_SIZE_VOXELS` voxels (``round(extent / 4 mm) >= 4``)
MIN_TRACKING_EXTENT_MM = (MIN_SCAN_SIZE_VOXELS - 0.5) * REGISTRATION_WORKING_SPACING_MM

_AXES_XYZ = ("x", "y", "z")


def scan_size_problem(shape_zyx, spacing_xyz, min_extent_mm: float | None) -> str | None:
    """What is too small about a scan (None when it is large enough).

    Args:
        shape_zyx: voxels per axis ``(z, y, x)`` (0 for an empty axis).
        spacing_xyz: voxel size in mm ``(x, y, z)``.
        min_extent_mm: smallest extent per axis in mm (tracking: :data:`MIN_TRACKING_EXTENT_MM`), or
            None to check the voxel count only.
    """
    shape_xyz = tuple(int(n) for n in reversed(tuple(shape_zyx)))
    size = "×".join(str(n) for n in shape_xyz)
    if min(shape_xyz) < 1:
        return f"image is empty (size x×y×z = {size} voxels)"
    few = [f"{a}={n}" for a, n in zip(_AXES_XYZ, shape_xyz) if n < MIN_SCAN_SIZE_VOXELS]
    if few:
        return (f"image is too small: {', '.join(few)} voxels (size x×y×z = {size}); registration and "
                f"preprocessing need at least {MIN_SCAN_SIZE_VOXELS} voxels along each axis")
    if min_extent_mm is None:
        return None
    spacing = np.asarray(spacing_xyz, dtype=np.float64)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        return None  # reported as a spacing problem
    extent = spacing * np.asarray(shape_xyz)
    short = [f"{a}={e:g} mm" for a, e in zip(_AXES_XYZ, extent) if e < min_extent_mm]
    if short:
        return (f"image spans too little for the registration: {', '.join(short)}; the affine registration "
                f"resamples to {REGISTRATION_WORKING_SPACING_MM:g} mm and needs {MIN_SCAN_SIZE_VOXELS} voxels "
                f"there, i.e. at least {min_extent_mm:g} mm along each axis")
    return None


__all__ = ["MIN_SCAN_SIZE_VOXELS", "MIN_TRACKING_EXTENT_MM", "REGISTRATION_WORKING_SPACING_MM",
           "scan_size_problem"]
