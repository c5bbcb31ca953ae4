"""DLT's lesion Gaussian (Eq. 2): ``G(μ, n r) = exp(-|p - μ|² / (2 (n r)²))``, a Gaussian of ``σ = n r``.

``n = 4`` for the anatomy signal maps of template and search, ``n = 1`` for the training target.
Shapes, centers and spacings are ``(z, y, x)``; radii mm.
"""
from __future__ import annotations

import numpy as np

from lesionnet.registration.anatomy_maps import gaussian_map

#: n of the anatomy signal maps G(μ, n r)
ANATOMY_N = 4.0


def lesion_gaussian(shape_zyx, center_zyx, radius_mm: float, spacing_zyx, n: float = ANATOMY_N) -> np.ndarray:
    """DLT map ``exp(-|p - μ|² / (2 (n r)²))`` on a ``(Z, Y, X)`` grid, float32 in (0, 1]."""
    return gaussian_map(shape_zyx, center_zyx, float(n) * float(radius_mm), spacing_zyx)


__all__ = ["ANATOMY_N", "lesion_gaussian"]
