"""TLT's tensor operations: Sparse Selection Strategy token selection, feature-grid geometry, centers
from logits (arg-max, global regression, local soft-arg-max), the fine head's crops, resizing.

Axis order and units: maps are ``(B, C, D, H, W)`` = ``(z, y, x)``; centers are ``center_zyx``
continuous voxel coordinates of the search patch at full resolution; feature voxel ``k`` (stride
``s``) covers patch voxels ``s k .. s k + s - 1`` and its center is patch coordinate
``s k + (s - 1) / 2`` — the point trilinear resizing (``align_corners=False``) samples.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from lesionnet.networks.feature_grid import (  # noqa: F401  (re-exported: TLT's operations)
    argmax_center_zyx,
    feature_voxel_centers_zyx,
    heatmap_to_patch,
    local_soft_argmax_zyx,
    resize_to_grid,
)
from lesionnet.networks.matching import weighted_ncc


class TokenSelection(NamedTuple):
    """Result of :func:`select_template_tokens` for a batch of B template feature grids of N tokens.

    Attributes:
        index: ``(B, L)`` long, flat (z, y, x row-major) indices of the kept tokens in ascending order,
            padded with 0 after ``counts[b]`` entries; ``L = counts.max()``.
        valid: ``(B, L)`` bool, False on padding.
        counts: ``(B,)`` long, tokens kept per sample (>= 1).
        keep_mask: ``(B, N)`` bool, the kept tokens on the flat grid.
        padding_bias: ``(B, 1, 1, L)`` float additive attention mask (0 valid, -inf padding) for
            attention with the kept tokens as keys, or None when no sample is padded.
    """

    index: torch.Tensor
    valid: torch.Tensor
    counts: torch.Tensor
    keep_mask: torch.Tensor
    padding_bias: torch.Tensor | None


def select_template_tokens(gaussian: torch.Tensor, threshold: float) -> TokenSelection:
    """Sparse Selection Strategy on a flattened resized template Gaussian ``gaussian (B, N)``.

    Keeps the tokens with ``gaussian > threshold`` (strict, as in the paper). A sample that keeps
    none (a lesion small against the stride, or a high threshold) keeps its arg-max token instead, so
    every sample has at least one key for the search-line attention. Samples keep different numbers
    of tokens; the sets are padded to the batch maximum and described by ``valid``/``padding_bias``.
    """
    if gaussian.dim() != 2:
        raise ValueError(f"gaussian must be (B, N), got shape {tuple(gaussian.shape)}")
    keep = gaussian > threshold
    empty = ~keep.any(dim=1)
    if bool(empty.any()):
        rows = torch.nonzero(empty, as_tuple=True)[0]
        keep[rows, gaussian[rows].argmax(dim=1)] = True
    counts = keep.sum(dim=1)
    length = int(counts.max())
    # Stable sort of (not kept) puts the kept indices first, in ascending order.
    order = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)
    index = order[:, :length]
    valid = torch.arange(length, device=gaussian.device)[None, :] < counts[:, None]
    index = torch.where(valid, index, torch.zeros_like(index))
    padding_bias = None
    if not bool(valid.all()):
        padding_bias = torch.zeros(valid.shape, dtype=gaussian.dtype, device=gaussian.device)
        padding_bias = padding_bias.masked_fill(~valid, float("-inf"))[:, None, None, :]
    return TokenSelection(index, valid, counts, keep, padding_bias)


def gaussian_peak_zyx(gaussian: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest voxel and sub-voxel center of a Gaussian map ``(B, 1, D, H, W)``, e.g. the template's.

    Returns ``k0 (B, 3)`` long, the arg-max voxel (z, y, x), and ``offset (B, 3)`` float, the center
    minus ``k0`` in voxels: per axis, the vertex of the parabola through ``log G`` at ``k0 - 1, k0, k0 + 1``
    (exact for ``exp(-|p - c|² / s)``, whose logarithm is quadratic and separable); 0 on a border or a
    flat profile.
    """
    b, _, d, h, w = gaussian.shape
    flat = gaussian.reshape(b, -1).argmax(dim=1)
    k0 = torch.stack((torch.div(flat, h * w, rounding_mode="floor"),
                      torch.div(flat % (h * w), w, rounding_mode="floor"), flat % w), dim=1)
    log_g = torch.log(gaussian[:, 0].double().clamp(min=1e-300))
    offset = torch.zeros(b, 3, dtype=torch.float64, device=gaussian.device)
    for i in range(b):
        z, y, x = (int(v) for v in k0[i])
        for axis, (line, k) in enumerate(((log_g[i, :, y, x], z), (log_g[i, z, :, x], y), (log_g[i, z, y, :], x))):
            if 0 < k < line.shape[0] - 1:
                lo, mid, hi = line[k - 1], line[k], line[k + 1]
                curvature = lo - 2 * mid + hi
                if curvature < 0:
                    offset[i, axis] = (0.5 * (lo - hi) / curvature).clamp(-0.5, 0.5)
    return k0, offset.to(gaussian.dtype)


def crop_around_zyx(image: torch.Tensor, weight: torch.Tensor, center_zyx: torch.Tensor,
                    kernel_zyx) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample crops of ``kernel_zyx`` (odd) voxels centred on ``center_zyx (B, 3)`` (long) from
    ``image (B, C, D, H, W)`` and ``weight (B, 1, D, H, W)``; outside the volume the image is 0 and the
    weight 0. Returns ``(B, C, kd, kh, kw)`` and ``(B, 1, kd, kh, kw)``."""
    half = [int(k) // 2 for k in kernel_zyx]
    pad = [p for h in reversed(half) for p in (h, h)]
    image_p, weight_p = F.pad(image, pad), F.pad(weight, pad)
    crops, weights = [], []
    for i in range(image.shape[0]):
        z, y, x = (int(v) for v in center_zyx[i])
        region = (slice(z, z + kernel_zyx[0]), slice(y, y + kernel_zyx[1]), slice(x, x + kernel_zyx[2]))
        crops.append(image_p[(i, slice(None)) + region])
        weights.append(weight_p[(i, slice(None)) + region])
    return torch.stack(crops), torch.stack(weights)


@torch.no_grad()
def template_ncc_maps(template: torch.Tensor, template_gaussian: torch.Tensor, search: torch.Tensor, kernel_zyx,
                      weight_power: float) -> dict:
    """Weighted NCC of the template lesion with the search patch and with the template itself (no gradients).

    The kernel is the template's central ``kernel_zyx`` voxels around the lesion's nearest voxel ``k0``,
    weighted by ``template_gaussian ** weight_power``. Returns ``ncc_search (B, 1, Ds, Hs, Ws)``,
    ``ncc_template (B, 1, Dt, Ht, Wt)`` and ``center_offset_zyx (B, 3)``: the lesion center minus ``k0``
    (voxels), to add to a position found on the maps.
    """
    k0, offset = gaussian_peak_zyx(template_gaussian)
    kernel, weight = crop_around_zyx(template, template_gaussian, k0, kernel_zyx)
    weight = weight.clamp(min=0.0) ** weight_power
    return {"ncc_search": weighted_ncc(search.float(), kernel.float(), weight.float()).to(search.dtype),
            "ncc_template": weighted_ncc(template.float(), kernel.float(), weight.float()).to(template.dtype),
            "center_offset_zyx": offset.to(search.dtype)}


def predict_center(outputs: dict, stride: int = 8, use_global_regression: bool = True) -> torch.Tensor:
    """Center ``(B, 3)`` (z, y, x) in search-patch voxels from a TLT output dict (detached).

    The trained center (``center_zyx``) when requested and the network has one (``token_centers_zyx``
    of the global regression, or ``coarse_logits`` of the fine head, present), else the center of the
    arg-max voxel of ``logits`` (whose stride is ``stride``).
    """
    if use_global_regression and ("token_centers_zyx" in outputs or "coarse_logits" in outputs):
        return outputs["center_zyx"].detach()
    return argmax_center_zyx(outputs["logits"].detach(), stride)
