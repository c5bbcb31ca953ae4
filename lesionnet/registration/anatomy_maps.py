"""Gaussian anatomy maps of a lesion, and their transfer from the template to the search scan.

Two forms, both evaluated in physical units (mm) on a scan's voxel grid, shape ``(Z, Y, X)``:

* TLT (Eq. 1): ``G(c, r) = exp(-Σ_a (p_a - c_a)² / Σ_a (2 r)²) = exp(-|p - c|² / (12 r²))`` with an
  isotropic radius r (mm). Used for the SSS template mask, the RAAM prior and the TLT label.
* DLT (Eq. 2): ``G(μ, n r) = exp(-|p - μ|² / (2 (n r)²))``, n = 4 for the anatomy signal maps and
  n = 1 for the training target.

The search-side map of a lesion is the template map carried through the affine prior: centre
``T_aff(c)`` and radius ``r · s`` where ``s = |det A|^(1/3)`` (the paper's ``T_aff(r_t)``).
:func:`warp_to_target` resamples any template-grid map through the affine instead, which is the
literal ``T_aff(G_t)``; for a similarity transform both agree.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.image_io import to_sitk
from lesionnet.registration.affine import AffineRegistration

DLT_ANATOMY_N = 4.0


def _squared_distance_mm(shape_zyx, center_xyz, spacing_xyz) -> np.ndarray:
    """``|p - c|²`` in mm² for every voxel of a ``(Z, Y, X)`` grid (axis-aligned voxel spacing)."""
    cx, cy, cz = (float(v) for v in center_xyz)
    sx, sy, sz = (float(v) for v in spacing_xyz)
    z = ((np.arange(shape_zyx[0]) - cz) * sz) ** 2
    y = ((np.arange(shape_zyx[1]) - cy) * sy) ** 2
    x = ((np.arange(shape_zyx[2]) - cx) * sx) ** 2
    return z[:, None, None] + y[None, :, None] + x[None, None, :]


def tlt_gaussian(shape_zyx, center_xyz, radius_mm: float, spacing_xyz) -> np.ndarray:
    """TLT map ``exp(-|p - c|² / (12 r²))`` on a ``(Z, Y, X)`` grid, float32 in (0, 1].

    Args:
        shape_zyx: grid shape (Z, Y, X).
        center_xyz: lesion centre as a continuous voxel index (x, y, z) of that grid.
        radius_mm: lesion radius (mm), > 0.
        spacing_xyz: voxel spacing (x, y, z) in mm.
    """
    r = max(float(radius_mm), 1e-3)
    return np.exp(-_squared_distance_mm(shape_zyx, center_xyz, spacing_xyz) / (12.0 * r * r)).astype(np.float32)


def dlt_gaussian(shape_zyx, center_xyz, radius_mm: float, spacing_xyz, n: float = DLT_ANATOMY_N) -> np.ndarray:
    """DLT map ``exp(-|p - μ|² / (2 (n r)²))`` on a ``(Z, Y, X)`` grid, float32 in (0, 1]."""
    nr = max(float(n) * float(radius_mm), 1e-3)
    return np.exp(-_squared_distance_mm(shape_zyx, center_xyz, spacing_xyz) / (2.0 * nr * nr)).astype(np.float32)


def tlt_keep_radius(radius_mm: float, threshold: float) -> float:
    """Distance (mm) within which the TLT map exceeds ``threshold``: ``r · sqrt(-12 ln Tr)``."""
    return float(radius_mm) * float(np.sqrt(-12.0 * np.log(threshold)))


def project_lesion(registration: AffineRegistration, center_xyz, radius_mm: float, source: Geometry,
                   target: Geometry) -> tuple[np.ndarray, float]:
    """Carry a lesion through the affine prior: ``(center index (x, y, z) in target, radius mm)``."""
    center_target_xyz = registration.map_index(center_xyz, source, target)
    return center_target_xyz, float(radius_mm) * registration.isotropic_scale


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
