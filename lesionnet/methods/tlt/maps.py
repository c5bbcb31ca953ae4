"""TLT's lesion Gaussian (Eq. 1) and what follows from it.

``G(c, r) = exp(-Σ_a (p_a - c_a)² / Σ_a (2 r)²) = exp(-|p - c|² / (12 r²))`` with an isotropic radius
``r`` (mm): a Gaussian of ``σ = sqrt(6) r``. Used for the SSS template mask, the RAAM prior and the
training label. Shapes, centers and spacings are ``(z, y, x)``; radii and distances mm.
"""
from __future__ import annotations

import numpy as np

from lesionnet.registration.anatomy_maps import squared_distance_mm


def lesion_gaussian(shape_zyx, center_zyx, radius_mm: float, spacing_zyx) -> np.ndarray:
    """TLT map ``exp(-|p - c|² / (12 r²))`` on a ``(Z, Y, X)`` grid, float32 in (0, 1] (radius mm, > 0)."""
    r = max(float(radius_mm), 1e-3)
    return np.exp(-squared_distance_mm(shape_zyx, center_zyx, spacing_zyx) / (12.0 * r * r)).astype(np.float32)


def keep_radius_mm(radius_mm: float, threshold: float) -> float:
    """Distance (mm) within which TLT's map exceeds ``threshold``: ``r · sqrt(-12 ln Tr)``."""
    return float(radius_mm) * float(np.sqrt(-12.0 * np.log(threshold)))


__all__ = ["lesion_gaussian", "keep_radius_mm"]
