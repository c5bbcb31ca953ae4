"""Gaussian importance map for blending overlapping sliding windows (as in nnU-Net).

The map is the outer product of three 1-D Gaussians, one per axis, with ``sigma = patch * 1/8``,
centred on the middle of the patch (``(p - 1) / 2``, so the map is symmetric under flips), each
normalised to a maximum of 1 (so the 3-D map has maximum 1). Zeros, should any appear through
underflow, are clamped to the smallest nonzero value so that every voxel of a window keeps a positive
weight (nnU-Net's rule). With ``sigma_scale = 1/8`` in float32 no value underflows: the smallest
1-D factor is ``exp(-8 (p - 1)^2 / p^2) > exp(-8)``, so the corner weight is above ``exp(-24)``,
and the map is exactly separable, which the engine uses to normalise without a 3-D weight buffer.

nnU-Net builds the same map by Gaussian-filtering a delta at ``p // 2`` (truncated at 4 sigma);
MONAI uses the analytic form centred at ``(p - 1) / 2`` like here but clamps values below 1e-3 up
to 1e-3. The differences only matter in the corners of windows, where the weights are tiny.

The maps are cached per (patch, sigma_scale, device, dtype): treat the returned tensors as read-only.
"""
from __future__ import annotations

import functools
from typing import Sequence

import torch

SIGMA_SCALE = 0.125  # sigma = patch / 8 per axis


@functools.lru_cache(maxsize=32)
def _factors(patch: tuple[int, ...], sigma_scale: float) -> tuple[torch.Tensor, ...]:
    factors = []
    with torch.inference_mode(False):
        for p in patch:
            sigma = p * sigma_scale
            x = torch.arange(p, dtype=torch.float64) - (p - 1) / 2.0
            g = torch.exp(-(x * x) / (2.0 * sigma * sigma))
            g = (g / g.max()).to(torch.float32)
            factors.append(g)
    return tuple(factors)


def gaussian_factors(patch_size: Sequence[int], sigma_scale: float = SIGMA_SCALE) -> tuple[torch.Tensor, ...]:
    """The 1-D float32 CPU factors (each max 1) whose outer product is the importance map."""
    return _factors(tuple(int(p) for p in patch_size), float(sigma_scale))


@functools.lru_cache(maxsize=32)
def _importance_map(patch: tuple[int, ...], sigma_scale: float, device: torch.device,
                    dtype: torch.dtype) -> torch.Tensor:
    with torch.inference_mode(False):
        gz, gy, gx = _factors(patch, sigma_scale)
        w = (gz[:, None, None] * gy[None, :, None]) * gx[None, None, :]
        positive = w > 0
        if not bool(positive.all()):
            w[~positive] = w[positive].min()
        w = w.to(device=device, dtype=dtype)
        if dtype.is_floating_point and not bool((w > 0).all()):  # underflow in a narrow dtype
            w = torch.where(w > 0, w, w[w > 0].min())
    return w


def gaussian_importance_map(patch_size: Sequence[int], sigma_scale: float = SIGMA_SCALE,
                            device: torch.device | str = "cpu",
                            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Cached (pz, py, px) Gaussian importance map, maximum 1, no zeros. Do not modify it in place."""
    patch = tuple(int(p) for p in patch_size)
    if len(patch) != 3 or any(p <= 0 for p in patch):
        raise ValueError(f"patch_size must be 3 positive ints, got {tuple(patch_size)}.")
    return _importance_map(patch, float(sigma_scale), torch.device(device), dtype)
