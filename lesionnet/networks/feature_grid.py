"""Feature-grid geometry shared by the dense trackers (TLT, DLT, the matcher): where a feature voxel sits
in its patch, centers from logits (arg-max, local soft-arg-max), resizing maps between the feature grid
and the patch, and the Gaussian training label on the feature grid.

Axis order and units: maps are ``(B, C, D, H, W)`` = ``(z, y, x)``; centers are ``center_zyx`` continuous
voxel coordinates of the search patch at full resolution; feature voxel ``k`` (stride ``s``) covers patch
voxels ``s k .. s k + s - 1`` and its center is patch coordinate ``s k + (s - 1) / 2`` — the point
trilinear resizing (``align_corners=False``) samples. Spacings ``(z, y, x)`` mm; radii mm.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def as_batch(value, batch: int, width: int, device, dtype, name: str) -> torch.Tensor:
    """``value`` (scalar, ``(width,)`` or ``(batch, width)``) as a ``(batch, width)`` tensor (``(batch,)`` for
    ``width == 1``), else ``ValueError`` naming ``name``."""
    t = torch.as_tensor(value, device=device, dtype=dtype)
    if t.dim() == 0:
        t = t.expand(batch, width) if width > 1 else t.expand(batch)
    elif width > 1 and t.dim() == 1:
        t = t[None].expand(batch, width)
    if (width > 1 and tuple(t.shape) != (batch, width)) or (width == 1 and tuple(t.shape) != (batch,)):
        raise ValueError(f"{name} must be broadcastable to {(batch, width) if width > 1 else (batch,)}, "
                         f"got shape {tuple(t.shape)}")
    return t


def feature_voxel_centers_zyx(shape_zyx, stride: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Patch coordinates ``(z, y, x)`` of the centers of a feature grid's voxels, ``(D * H * W, 3)``.

    Feature voxel ``k`` has center ``stride * k + (stride - 1) / 2`` on each axis (row-major order).
    """
    axes = [torch.arange(int(n), device=device, dtype=dtype) * stride + (stride - 1) / 2.0
            for n in shape_zyx]
    grid = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grid], dim=1)


def argmax_center_zyx(logits: torch.Tensor, stride: int) -> torch.Tensor:
    """Center of the arg-max feature voxel of ``logits (B, 1, D, H, W)`` as patch coordinates ``(B, 3)``
    ``(z, y, x)`` at full resolution (``stride * k + (stride - 1) / 2``). Not differentiable."""
    b, _, _, h, w = logits.shape
    flat = logits.reshape(b, -1).argmax(dim=1)
    z = torch.div(flat, h * w, rounding_mode="floor")
    y = torch.div(flat % (h * w), w, rounding_mode="floor")
    x = flat % w
    k = torch.stack((z, y, x), dim=1).to(logits.dtype)
    return k * stride + (stride - 1) / 2.0


def local_soft_argmax_zyx(logits: torch.Tensor, half_width: int) -> torch.Tensor:
    """Soft-arg-max of ``logits (B, 1, D, H, W)`` in the ``(2 half_width + 1)³`` window around its
    arg-max (moved inside the volume at a border): ``Σ softmax(window) · position``, voxels ``(B, 3)``
    (z, y, x). Differentiable in the logits of the window."""
    b, _, d, h, w = logits.shape
    size = [min(2 * half_width + 1, n) for n in (d, h, w)]
    peak = argmax_center_zyx(logits.detach(), 1).long()
    centers = []
    for i in range(b):
        start = [min(max(int(peak[i, a]) - half_width, 0), n - s) for a, (n, s) in enumerate(zip((d, h, w), size))]
        window = logits[i, 0, start[0]:start[0] + size[0], start[1]:start[1] + size[1], start[2]:start[2] + size[2]]
        p = torch.softmax(window.reshape(-1), dim=0).view(*size)
        grid = feature_voxel_centers_zyx(size, 1, device=logits.device, dtype=logits.dtype)  # (N, 3)
        centers.append(p.reshape(-1) @ grid + torch.tensor(start, device=logits.device, dtype=logits.dtype))
    return torch.stack(centers)


def resize_to_grid(volume: torch.Tensor, shape_zyx) -> torch.Tensor:
    """Trilinear resize (``align_corners=False``, no antialiasing) of ``(B, C, D, H, W)`` to ``shape_zyx``.

    Downsampling by a factor s samples the input at ``s k + (s - 1) / 2``, i.e. at the centers of the
    feature voxels (see :func:`feature_voxel_centers_zyx`).
    """
    return F.interpolate(volume.float(), size=tuple(int(v) for v in shape_zyx), mode="trilinear",
                         align_corners=False)


def heatmap_to_patch(heatmap: torch.Tensor, patch_shape_zyx) -> torch.Tensor:
    """Upsample a feature-resolution map ``(B, 1, d, h, w)`` to the search patch ``(B, 1, D, H, W)``
    (trilinear, ``align_corners=False``: feature voxel centers land on ``s k + (s - 1) / 2``)."""
    return resize_to_grid(heatmap, patch_shape_zyx)

def gaussian_label(center_zyx, radius_mm, spacing_zyx, feature_shape_zyx, stride: int = 8,
                   device=None, width_factor: float = 12.0) -> torch.Tensor:
    """Training label ``Y`` of a tracker on the search feature grid, ``(B, 1, d, h, w)``, float32 in [0, 1].

    ``G_L = exp(-|p - c|² / (k r²))`` with ``k = width_factor``, distances in mm: TLT Eq. 1 with an isotropic
    radius (``k = 12``, :func:`lesionnet.methods.tlt.maps.lesion_gaussian`), DLT's ``G(μ_s, r_s)`` (``k = 2``),
    evaluated at the feature voxel centers
    ``p = s k + (s - 1) / 2`` of the search patch — exactly what trilinear downsampling of the
    full-resolution map samples — then min-max normalised ``Y = (G_L - min) / (max - min)``.
    The maximum (the feature voxel nearest the center, in mm) is set to exactly 1 so there is always
    one positive; a constant map (``max == min``) becomes one-hot at that voxel. A center outside the
    patch still gives a label whose maximum is the nearest border voxel.

    Args:
        center_zyx: ``(B, 3)`` target centers, search-patch voxel coordinates (z, y, x).
        radius_mm: ``(B,)`` or scalar target radius (mm, > 0).
        spacing_zyx: ``(B, 3)``, ``(3,)`` or scalar voxel spacing of the search patch (mm).
        feature_shape_zyx: ``(d, h, w)`` of the logits.
        stride: feature stride s.
    """
    center = torch.as_tensor(center_zyx, dtype=torch.float32, device=device)
    if center.dim() != 2 or center.shape[1] != 3:
        raise ValueError(f"center_zyx must be (B, 3), got shape {tuple(center.shape)}")
    device = center.device
    b = center.shape[0]
    radius = as_batch(radius_mm, b, 1, device, torch.float32, "radius_mm").clamp(min=1e-3)
    spacing = as_batch(spacing_zyx, b, 3, device, torch.float32, "spacing_zyx")
    axes = []
    for axis, n in enumerate(feature_shape_zyx):
        coord = torch.arange(int(n), device=device, dtype=torch.float32) * stride + (stride - 1) / 2.0
        diff_mm = (coord[None, :] - center[:, axis:axis + 1]) * spacing[:, axis:axis + 1]   # (B, n)
        axes.append(diff_mm * diff_mm)
    d2 = (axes[0][:, :, None, None] + axes[1][:, None, :, None] + axes[2][:, None, None, :])
    g = torch.exp(-d2 / (float(width_factor) * radius[:, None, None, None] ** 2)).reshape(b, -1)
    g_min = g.min(dim=1, keepdim=True).values
    g_max = g.max(dim=1, keepdim=True).values
    span = g_max - g_min
    y = torch.where(span > 0, (g - g_min) / span.clamp(min=torch.finfo(g.dtype).tiny), torch.zeros_like(g))
    # Exactly one guaranteed positive: the nearest voxel (smallest mm distance) is 1.
    nearest = d2.reshape(b, -1).argmin(dim=1)
    y = y.clamp(max=1.0).scatter(1, nearest[:, None], 1.0)
    return y.view(b, 1, *(int(n) for n in feature_shape_zyx))


__all__ = ["as_batch", "feature_voxel_centers_zyx", "argmax_center_zyx", "local_soft_argmax_zyx", "resize_to_grid",
           "heatmap_to_patch", "gaussian_label"]
