"""DLT inference on volumes of one grid spacing (the plan's target spacing).

1. the template patch is cut around the source lesion center with ``G_t = G(μ_t, 4 r_t)``; the kernel
   is cut at the center (``template_center_zyx``);
2. the *search region* (by default the planned search patch; larger regions are allowed) is cut around
   the prior with ``G_s = G(T(μ_t), 4 T(r_t))``;
3. one patch: the network's center (arg-max of ``Ŷ``, sub-voxel refined) is the prediction; a larger
   region: :func:`lesionnet.inference.sliding_window.predict_sliding_window_paired` blends the windows'
   heatmaps (Gaussian importance) and the arg-max voxel of the blended map is the prediction — DLT is
   fully convolutional, so the windows agree where they overlap up to their borders.

Coordinates: ``center_zyx`` continuous voxel indices (z, y, x) of the respective volume; arrays
``[z, y, x]``; spacings ``(z, y, x)`` mm; radii mm.
"""
from __future__ import annotations

import numpy as np
import torch

from lesionnet.inference.patch_case_tracker import TrackedLesion
from lesionnet.inference.sliding_window import predict_sliding_window_paired
from lesionnet.methods.dlt.maps import lesion_gaussian
from lesionnet.methods.dlt.network import DLT
from lesionnet.networks.feature_grid import heatmap_to_patch
from lesionnet.preprocessing.loading import centered_start_zyx, crop_zyx, map_on_crop


class DLTHeatmapNetwork(torch.nn.Module):
    """Adapter for the sliding-window engine: ``(template + G_t, search, G_s) -> heatmap`` on the patch, with
    the template center fixed for the lesion being tracked."""

    def __init__(self, network: DLT, template_center_zyx: torch.Tensor):
        super().__init__()
        self.network = network
        self.template_center_zyx = template_center_zyx

    def forward(self, template: torch.Tensor, search: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        center = self.template_center_zyx.reshape(1, 3).expand(template.shape[0], 3)
        out = self.network(template[:, :1], template[:, 1:2], center, search, prior)
        return heatmap_to_patch(out["heatmap"], search.shape[2:])


def _tensor(array: np.ndarray, device) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array, dtype=np.float32), device=device)


@torch.inference_mode()
def track_lesion(network: DLT, source_image_zyx, source_center_zyx, source_radius_mm: float, source_spacing_zyx,
                 target_image_zyx, prior_center_zyx, prior_radius_mm: float, target_spacing_zyx, template_size_zyx,
                 search_size_zyx, search_region_zyx=None, step_size: float = 0.5, device=None) -> TrackedLesion:
    """Track one lesion with DLT (see the module docstring; the arguments are those of
    :data:`lesionnet.inference.patch_case_tracker.TrackFunction`). The network must be in eval mode."""
    device = device or next(network.parameters()).device
    template_size = [int(v) for v in template_size_zyx]
    search_size = [int(v) for v in search_size_zyx]
    region = [max(int(r), s) for r, s in zip(search_region_zyx or search_size, search_size)]
    t_start = centered_start_zyx(source_center_zyx, template_size)
    template = _tensor(np.stack([crop_zyx(source_image_zyx, t_start, template_size),
                                 map_on_crop(lesion_gaussian, source_center_zyx, source_radius_mm, t_start,
                                             template_size, source_spacing_zyx)]), device)
    template_center = _tensor(np.asarray(source_center_zyx, dtype=np.float64) - np.asarray(t_start), device)
    r_start = np.asarray(centered_start_zyx(prior_center_zyx, region))
    search = _tensor(crop_zyx(target_image_zyx, r_start, region)[None], device)
    prior = _tensor(map_on_crop(lesion_gaussian, prior_center_zyx, prior_radius_mm, r_start, region,
                                target_spacing_zyx)[None], device)
    if region == search_size:
        out = network(template[None, :1], template[None, 1:2], template_center[None], search[None], prior[None])
        heatmap = heatmap_to_patch(out["heatmap"], search_size)[0, 0].float().cpu().numpy()
        center_zyx = r_start + out["center_zyx"][0].double().cpu().numpy()
    else:
        adapter = DLTHeatmapNetwork(network, template_center).train(network.training)
        heatmap = predict_sliding_window_paired(adapter, template, search, search_size, prior=prior,
                                                step_size=step_size, device=device)[0].numpy()
        center_zyx = r_start + np.array(np.unravel_index(int(np.argmax(heatmap)), heatmap.shape), dtype=np.float64)
    return TrackedLesion(center_zyx, heatmap.astype(np.float32), r_start, float(heatmap.max()))


__all__ = ["DLTHeatmapNetwork", "track_lesion"]
