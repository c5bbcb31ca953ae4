"""Gaussian anatomy maps of a lesion, and their transfer from the template to the search scan.

A lesion map is an isotropic Gaussian in physical units evaluated on a scan's voxel grid,
``G(p) = exp(-|p - c|² / (2 σ²))`` with distances in mm, shape ``(Z, Y, X)``. Each tracker chooses
``σ`` from the lesion radius (its own module says how: TLT's Eq. 1 is ``σ = sqrt(6) r``, DLT's
anatomy signal is ``σ = n r``).

The search-side map of a lesion is the template map carried through the prior: centre ``T(c)`` and
radius ``r · s`` where ``s = |det A|^(1/3)`` of the prior's affine (part) (the papers' ``T_aff(r_t)``,
:func:`project_lesion`). :func:`warp_to_target` resamples any template-grid map through the affine
instead, which is the literal ``T_aff(G_t)``; for a similarity transform both agree.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.image_io import to_sitk
from lesionnet.registration.affine import AffineRegistration


def squared_distance_mm(shape_zyx, center_zyx, spacing_zyx) -> np.ndarray:
    """``|p - c|²`` in mm² for every voxel of a ``(Z, Y, X)`` grid (axis-aligned voxel spacing), float64.

    Args:
        shape_zyx: grid shape.
        center_zyx: continuous voxel index of the center on that grid.
        spacing_zyx: voxel spacing (mm).
    """
    axes = [((np.arange(int(n)) - float(c)) * float(s)) ** 2 for n, c, s in zip(shape_zyx, center_zyx, spacing_zyx)]
    return axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :]


def gaussian_map(shape_zyx, center_zyx, sigma_mm: float, spacing_zyx) -> np.ndarray:
    """``exp(-|p - c|² / (2 σ²))`` on a ``(Z, Y, X)`` grid, float32 in (0, 1]; ``σ`` in mm (> 0)."""
    sigma = max(float(sigma_mm), 1e-3)
    return np.exp(-squared_distance_mm(shape_zyx, center_zyx, spacing_zyx) / (2.0 * sigma * sigma)).astype(np.float32)


def project_lesion(registration: AffineRegistration, center_zyx, radius_mm: float, source: Geometry,
                   target: Geometry) -> tuple[np.ndarray, float]:
    """Carry a lesion through the affine prior: ``(center index (z, y, x) in target, radius mm)``.

    The registration maps world points, so it applies to raw and resampled grids alike; pass the
    geometries of the grids the centers refer to.
    """
    center_target_zyx = registration.map_voxel(center_zyx, source, target)
    return center_target_zyx, float(radius_mm) * registration.isotropic_scale


def warp_to_target(map_zyx: np.ndarray, source: Geometry, target: Geometry,
                   registration: AffineRegistration, default: float = 0.0) -> np.ndarray:
    """Resample a map on the source grid onto the target grid through the affine (``T_aff(G)``).

    The affine maps source points to target points, so resampling (which needs target → source)
    uses its inverse.
    """
    inverse = registration.to_sitk().GetInverse()
    reference = to_sitk(np.zeros(target.shape_zyx, dtype=np.float32), target)
    warped = sitk.Resample(to_sitk(map_zyx.astype(np.float32), source), reference, inverse,
                           sitk.sitkLinear, float(default), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(warped)
