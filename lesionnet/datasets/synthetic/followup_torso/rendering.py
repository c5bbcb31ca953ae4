"""Image formation of a Dataset503 scan: sampling through ``phi_t`` and the scanner's blur, bias and noise.

* :func:`sample_scan`: ``mean over sub-slices of evaluate(phi_t(world(voxel)))`` for every voxel, in chunks
  of whole slices (about ``chunk_points`` points at a time); sub-slices sit at
  ``(i + 0.5) / n - 0.5`` slice thicknesses from the slice center, ``i = 0 .. n-1`` (partial volume).
* :func:`form_image`: in-plane Gaussian blur of ``psf_fwhm_mm`` (σ = FWHM / 2.3548); plus a bias field
  ``b = c0 + c1 u + c2 v + c3 (3u² - 1)/2 + c4 (3v² - 1)/2 + c5 u v + c6 w`` (u, v, w in [-1, 1] across the
  grid along x, y, z) weighted by ``clip((HU + 700) / 400, 0, 1)`` (none in air and lung); plus noise:
  white Gaussian noise smoothed in-plane by the binomial kernel [1, 2, 1] / 4 along y and x (and divided
  by 3/8, its standard-deviation factor), scaled by
  ``noise_hu * (0.7 + 0.3 exp(-r² / (2 (120 mm)²)))`` with r the in-plane distance (mm) from the grid
  center (less noise at the periphery).

Arrays are ``[z, y, x]``, float32, in HU.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from lesionnet.datasets.synthetic import common
from lesionnet.datasets.synthetic.followup_torso.acquisition import FollowUpScan

_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
_BINOMIAL = np.array([0.25, 0.5, 0.25], dtype=np.float32)


def subslice_offsets(scan: FollowUpScan) -> np.ndarray:
    """Sub-slice positions in slice units relative to the slice center, shape ``(subslices,)``."""
    n = scan.subslices
    return (np.arange(n) + 0.5) / n - 0.5


def sample_scan(scan: FollowUpScan, evaluate, offsets=None, chunk_points: int = 250_000) -> np.ndarray:
    """Average ``evaluate(x, y, z)`` (canonical coordinates, 1D float32 arrays, mm → values per point) over the
    sub-slices ``offsets`` (default :func:`subslice_offsets`) of every voxel → float32 ``[z, y, x]``."""
    offsets = subslice_offsets(scan) if offsets is None else np.asarray(offsets, dtype=np.float64)
    return common.sample_subslices(scan.geometry, scan.mapping, evaluate, offsets, chunk_points)


def form_image(scan: FollowUpScan, ideal_zyx: np.ndarray) -> np.ndarray:
    """Blur, bias and noise applied to the sampled image ``ideal_zyx`` (float32 ``[z, y, x]``, HU)."""
    spacing_z, spacing_y, spacing_x = scan.geometry.spacing_zyx
    sigma_mm = scan.psf_fwhm_mm / _FWHM_PER_SIGMA
    image = ndimage.gaussian_filter(ideal_zyx, (0.0, sigma_mm / spacing_y, sigma_mm / spacing_x))
    tissue_weight = np.clip((image + 700.0) / 400.0, 0.0, 1.0)
    image += _bias_field(scan) * tissue_weight
    image += _noise(scan)
    return image.astype(np.float32)


def _bias_field(scan: FollowUpScan) -> np.ndarray:
    nz, ny, nx = scan.geometry.shape_zyx
    u = np.linspace(-1.0, 1.0, nx, dtype=np.float32)[None, None, :]
    v = np.linspace(-1.0, 1.0, ny, dtype=np.float32)[None, :, None]
    w = np.linspace(-1.0, 1.0, nz, dtype=np.float32)[:, None, None]
    c = scan.bias_coefficients_hu.astype(np.float32)
    field = (c[0] + c[1] * u + c[2] * v + c[3] * (1.5 * u * u - 0.5) + c[4] * (1.5 * v * v - 0.5) + c[5] * u * v
             + c[6] * w)
    return np.broadcast_to(field, (nz, ny, nx))


def _noise(scan: FollowUpScan) -> np.ndarray:
    shape = scan.geometry.shape_zyx
    noise = np.random.default_rng(scan.noise_seed).standard_normal(size=shape, dtype=np.float32)
    for axis in (1, 2):
        noise = ndimage.correlate1d(noise, _BINOMIAL, axis=axis, mode="reflect")
    _, spacing_y, spacing_x = scan.geometry.spacing_zyx
    r_y = (np.arange(shape[1], dtype=np.float32) - (shape[1] - 1) / 2.0) * spacing_y
    r_x = (np.arange(shape[2], dtype=np.float32) - (shape[2] - 1) / 2.0) * spacing_x
    radius2 = r_y[:, None] ** 2 + r_x[None, :] ** 2
    sigma = scan.noise_hu * (0.7 + 0.3 * np.exp(-radius2 / (2.0 * 120.0 ** 2)))
    return noise * (sigma / 0.375).astype(np.float32)[None]


__all__ = ["sample_scan", "form_image", "subslice_offsets"]
