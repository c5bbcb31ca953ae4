"""DLT's cross-correlation of template and search features (Sec. 3.3, Eq. 4–6), at one scale.

With ``F = ψ(I_t) ⊙ φ(G_t)`` and ``S = ψ(I_s) ⊙ φ(G_s)`` (``(B, C, D, H, W)`` feature maps, z, y, x):

* ``K = C(F, μ_t, (3, 3, 3))`` and ``K_g = C(F, μ_t, (7, 11, 11))`` are crops of the template features
  around the template lesion's feature cell (zero outside the template map);
* each kernel is correlated with ``S`` channel by channel (depthwise, SiamRPN++'s form, so the final
  1³ convolution ``W`` of Eq. 7 mixes the channels), with "same" padding: ``M`` has the shape of ``S``;
* ``M = K ⋆ S + K_g ⋆ S`` (Eq. 5, ``"full"``), or the fast form (Eq. 6, ``"decomposed"``): learned 3D
  convolutions flatten ``K_g`` to ``(1, kh, kw)``, ``(kd, 1, kw)`` and ``(kd, kh, 1)`` (each a
  convolution whose kernel spans the flattened axis, "valid"), and the three flat kernels are correlated
  instead. The paper does not say whether the flattening mixes channels: ``flattening="depthwise"``
  (lesionnet's default) learns one weighting per channel (``C · (kd + kh + kw)`` weights; its cost is
  independent of the search map and negligible beside the correlations), ``"dense"`` a ``C → C``
  convolution (``C² · (kd + kh + kw)`` weights, whose fixed ``3 C² kd kh kw`` multiply-adds outweigh the
  saving on small search maps); ``"middle_slice"`` takes the middle slices of ``K_g`` instead (the paper's
  weaker variant); ``"none"`` drops ``K_g`` (ablation).

lesionnet divides each correlation by its kernel's number of voxels (a mean rather than a sum), so
that kernels of 27 and 847 voxels enter Eq. 5 on the same scale at initialisation; the flattening
convolutions start as the mean along the flattened axis (then learn).

:func:`correlation_macs` counts the multiply-accumulates of each form analytically.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: how the learned flattening of the decomposed global kernel treats channels (see the module docstring)
FLATTENINGS = ("depthwise", "dense")


def template_cells(center_zyx: torch.Tensor, stride: int, shape_zyx) -> torch.Tensor:
    """Feature cell ``(B, 3)`` long of template centers ``(B, 3)`` (patch voxels, z, y, x) at ``stride``:
    ``floor(center / stride)``, clamped into a map of ``shape_zyx``."""
    cells = torch.div(center_zyx.detach().float(), float(stride), rounding_mode="floor").long()
    upper = torch.tensor([int(n) - 1 for n in shape_zyx], device=cells.device)
    return torch.minimum(cells.clamp(min=0), upper)


def crop_kernel(features: torch.Tensor, cells: torch.Tensor, size_zyx) -> torch.Tensor:
    """Per-sample crops ``(B, C, kd, kh, kw)`` of ``features (B, C, D, H, W)`` centred on ``cells (B, 3)``;
    zero outside the map (Eq. 4's ``C(F, μ_t, size)``). Sizes are odd."""
    half = [int(k) // 2 for k in size_zyx]
    padded = F.pad(features, [p for h in reversed(half) for p in (h, h)])
    crops = []
    for i in range(features.shape[0]):
        z, y, x = (int(v) for v in cells[i])
        crops.append(padded[i, :, z:z + size_zyx[0], y:y + size_zyx[1], x:x + size_zyx[2]])
    return torch.stack(crops)


def depthwise_xcorr(search: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Channel-wise cross-correlation of ``search (B, C, D, H, W)`` with a per-sample ``kernel (B, C, kd,
    kh, kw)`` (odd sizes), "same" padding, divided by ``kd kh kw``: ``(B, C, D, H, W)``."""
    b, c = search.shape[:2]
    size = kernel.shape[2:]
    out = F.conv3d(search.reshape(1, b * c, *search.shape[2:]), kernel.reshape(b * c, 1, *size),
                   padding=[int(k) // 2 for k in size], groups=b * c)
    return out.view(b, c, *search.shape[2:]) / float(size.numel())


class ScaleCorrelation(nn.Module):
    """``M = K ⋆ S + (global term)`` at one scale (see the module docstring).

    ``forward(template_features, search_features, cells)`` with ``cells (B, 3)`` the template lesion's
    feature cell returns ``M (B, C, D, H, W)`` in the search map's shape.
    """

    def __init__(self, channels: int, local_kernel: int = 3, global_kernel_zyx=(7, 11, 11),
                 mode: str = "decomposed", flattening: str = "depthwise"):
        super().__init__()
        if flattening not in FLATTENINGS:
            raise ValueError(f"flattening must be one of {FLATTENINGS}, got {flattening!r}")
        self.local_kernel = (int(local_kernel),) * 3
        self.global_kernel_zyx = tuple(int(k) for k in global_kernel_zyx)
        self.mode = mode
        self.flatten = None
        if mode == "decomposed":
            kd, kh, kw = self.global_kernel_zyx
            groups = channels if flattening == "depthwise" else 1
            self.flatten = nn.ModuleList(nn.Conv3d(channels, channels, k, groups=groups)
                                         for k in ((kd, 1, 1), (1, kh, 1), (1, 1, kw)))
            for conv in self.flatten:          # start as the mean along the flattened axis
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
                with torch.no_grad():
                    n = conv.weight[0, 0].numel()
                    for c in range(channels):
                        conv.weight[c, 0 if groups > 1 else c].fill_(1.0 / n)

    def global_kernels(self, global_kernel: torch.Tensor) -> list[torch.Tensor]:
        """The kernels the global term correlates: ``[K_g]`` (full), the three flat ones (decomposed,
        middle slices) or none."""
        if self.mode == "full":
            return [global_kernel]
        if self.mode == "decomposed":
            return [conv(global_kernel) for conv in self.flatten]
        if self.mode == "middle_slice":
            kd, kh, kw = self.global_kernel_zyx
            return [global_kernel[:, :, kd // 2:kd // 2 + 1], global_kernel[:, :, :, kh // 2:kh // 2 + 1],
                    global_kernel[..., kw // 2:kw // 2 + 1]]
        return []

    def forward(self, template_features: torch.Tensor, search_features: torch.Tensor,
                cells: torch.Tensor) -> torch.Tensor:
        out = depthwise_xcorr(search_features, crop_kernel(template_features, cells, self.local_kernel))
        if self.mode != "none":
            for kernel in self.global_kernels(crop_kernel(template_features, cells, self.global_kernel_zyx)):
                out = out + depthwise_xcorr(search_features, kernel)
        return out


def correlation_macs(channels: int, search_zyx, global_kernel_zyx=(7, 11, 11), local_kernel: int = 3,
                     mode: str = "decomposed", batch: int = 1, flattening: str = "depthwise") -> dict:
    """Multiply-accumulates of one :class:`ScaleCorrelation` forward pass (analytic count).

    ``local``: the 3³ kernel's correlation; ``global``: the global term's correlations; ``flatten``: the
    learned flattening convolutions (decomposed only); ``total``. A depthwise correlation with a kernel of
    ``n`` voxels costs ``C · n`` per search-map voxel.
    """
    voxels = int(torch.tensor([int(v) for v in search_zyx]).prod())
    kd, kh, kw = (int(k) for k in global_kernel_zyx)
    per_voxel = {"full": kd * kh * kw, "decomposed": kh * kw + kd * kw + kd * kh,
                 "middle_slice": kh * kw + kd * kw + kd * kh, "none": 0}[mode]
    flatten = 0
    if mode == "decomposed":     # three convolutions producing the flat kernels, each kernel spanning one axis
        flatten = channels * (channels if flattening == "dense" else 1) * (kd * kh * kw) * 3
    local = channels * local_kernel ** 3 * voxels
    glob = channels * per_voxel * voxels
    return {k: int(v) * batch for k, v in
            {"local": local, "global": glob, "flatten": flatten, "total": local + glob + flatten}.items()}


__all__ = ["FLATTENINGS", "template_cells", "crop_kernel", "depthwise_xcorr", "ScaleCorrelation", "correlation_macs"]
