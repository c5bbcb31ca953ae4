"""Weighted normalised cross-correlation of a template patch with a search volume, per sample, in torch.

Used by TLT's optional fine matching head (``TLTConfig.fine_stride``). For sample ``b``, a template
``T (C, kd, kh, kw)`` with non-negative weights ``w (kd, kh, kw)`` (``Σ w = 1`` after normalisation) is
compared with every window ``S_u`` of the search features ``S (C, D, H, W)`` ("same" padding, window
centred on ``u``)::

    ncc(u) = Σ_c Σ_x w(x) T'_c(x) S_c(x + u)  /  sqrt( Σ_c Σ_x w T'_c² · Σ_c [Σ_x w S_c(x + u)² - S̄_c(u)²] )

with ``T' = T - Σ w T`` (weighted zero mean per channel) and ``S̄_c(u) = Σ_x w S_c(x + u)``. The
result is in [-1, 1] (up to ``eps``): 1 where the window equals an affine copy of the template.
Windows reaching outside the volume see zeros there.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_ncc(search: torch.Tensor, template: torch.Tensor, weight: torch.Tensor,
                 eps: float = 1e-5) -> torch.Tensor:
    """Weighted NCC map (see the module docstring).

    Args:
        search: ``(B, C, D, H, W)`` search features.
        template: ``(B, C, kd, kh, kw)`` template features; kernel sizes must be odd.
        weight: ``(B, 1, kd, kh, kw)`` non-negative weights (any scale; normalised here).
        eps: added to the variances.

    Returns:
        ``(B, 1, D, H, W)`` correlation, aligned with ``search`` (window centred on each voxel).
    """
    if search.dim() != 5 or template.dim() != 5 or weight.dim() != 5:
        raise ValueError("search, template and weight must be 5-D (B, C, D, H, W) tensors")
    b, c = search.shape[:2]
    if template.shape[:2] != (b, c) or tuple(weight.shape) != (b, 1) + tuple(template.shape[2:]):
        raise ValueError(f"shapes do not match: search {tuple(search.shape)}, template "
                         f"{tuple(template.shape)}, weight {tuple(weight.shape)}")
    kernel = tuple(int(k) for k in template.shape[2:])
    if any(k % 2 == 0 for k in kernel):
        raise ValueError(f"template kernel {kernel} must be odd on every axis")
    padding = tuple(k // 2 for k in kernel)
    w = weight / weight.sum(dim=(2, 3, 4), keepdim=True).clamp(min=1e-12)        # (B, 1, k...)
    t_centered = template - (w * template).sum(dim=(2, 3, 4), keepdim=True)     # (B, C, k...)
    t_var = (w * t_centered * t_centered).sum(dim=(1, 2, 3, 4))                  # (B,)
    grouped = search.reshape(1, b * c, *search.shape[2:])                        # one group per sample
    numerator = F.conv3d(grouped, (w * t_centered), padding=padding, groups=b)   # (1, B, D, H, W)
    w_channels = w.repeat_interleave(c, dim=0)                                   # (B*C, 1, k...)
    mean = F.conv3d(grouped, w_channels, padding=padding, groups=b * c)          # (1, B*C, D, H, W)
    second = F.conv3d(grouped * grouped, w_channels, padding=padding, groups=b * c)
    s_var = (second - mean * mean).clamp(min=0.0).reshape(b, c, *search.shape[2:]).sum(dim=1)
    numerator = numerator.reshape(b, *search.shape[2:])
    ncc = numerator / torch.sqrt((t_var[:, None, None, None] + eps) * (s_var + eps))
    return ncc[:, None]
