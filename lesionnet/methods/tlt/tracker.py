"""TLT inference on volumes of one grid spacing: template crop → sliding window over the search region →
refined center.

Given a normalised source volume with the lesion (center, radius) and a normalised target volume with
the affine prior (center, radius), both on the network's grid (the plan's target spacing):

1. the template patch is cut around the source center, with its Gaussian ``G_t``;
2. the *search region* (by default the planned search patch; larger regions are allowed) is cut
   around the prior, with the prior Gaussian ``T_aff(G_t)``;
3. :func:`lesionnet.inference.sliding_window.predict_sliding_window_paired` runs TLT over the region
   with the network's heatmap (sigmoid of the classification logits, upsampled to the patch) and
   Gaussian blending;
4. the arg-max of the blended heatmap seeds one more window centred on it, whose global regression
   (``Σ softmax(Ŷ) Ĉ``, or the arg-max voxel for the ablation without it) is the prediction.

When the search region is the search patch (the default), steps 3–4 are one window centred on the prior —
the crop the network was trained on — and its center prediction is the result (as in the paper); a
heatmap arg-max that moved the window first would make an undecided heatmap decide for the regression.

Coordinates: centers are ``center_zyx`` continuous voxel indices (z, y, x) of the respective volume;
arrays are ``[z, y, x]``; spacings ``(z, y, x)`` mm; radii mm.
"""
from __future__ import annotations

import numpy as np
import torch

from lesionnet.inference.patch_case_tracker import TrackedLesion
from lesionnet.inference.sliding_window import predict_sliding_window_paired
from lesionnet.methods.tlt.maps import lesion_gaussian
from lesionnet.methods.tlt.network import TLT
from lesionnet.methods.tlt.ops import heatmap_to_patch
from lesionnet.preprocessing.loading import centered_start_zyx, crop_zyx, map_on_crop


class HeatmapNetwork(torch.nn.Module):
    """Adapter for the sliding-window engine: ``(template+G_t, search, prior) -> heatmap`` on the patch."""

    def __init__(self, network: TLT):
        super().__init__()
        self.network = network

    def forward(self, template: torch.Tensor, search: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        out = self.network(template[:, :1], template[:, 1:2], search, prior)
        return heatmap_to_patch(out["heatmap"], search.shape[2:])


def _to_tensor(array: np.ndarray, device) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array, dtype=np.float32), device=device)


@torch.inference_mode()
def track_lesion(network: TLT, source_image_zyx, source_center_zyx, source_radius_mm: float, source_spacing_zyx,
                 target_image_zyx, prior_center_zyx, prior_radius_mm: float, target_spacing_zyx,
                 template_size_zyx, search_size_zyx, search_region_zyx=None, step_size: float = 0.5,
                 device=None) -> TrackedLesion:
    """Track one lesion with TLT (see the module docstring). The network must be in eval mode.

    Args:
        source_image_zyx, target_image_zyx: normalised volumes ``[z, y, x]`` (numpy or blosc2) on the
            network's grid.
        source_center_zyx, prior_center_zyx: voxel indices (z, y, x) in the source / target volume.
        source_radius_mm, prior_radius_mm: radii (mm) of the template Gaussian and the prior.
        source_spacing_zyx, target_spacing_zyx: voxel spacings (mm).
        template_size_zyx, search_size_zyx: the planned patch sizes.
        search_region_zyx: region scanned by the sliding window (default: the search patch).
        step_size: window step as a fraction of the patch.
        device: compute device (default: the network's).
    """
    device = device or next(network.parameters()).device
    template_size = [int(v) for v in template_size_zyx]
    search_size = [int(v) for v in search_size_zyx]
    region = [max(int(r), s) for r, s in zip(search_region_zyx or search_size, search_size)]
    t_start = centered_start_zyx(source_center_zyx, template_size)
    template = np.stack([crop_zyx(source_image_zyx, t_start, template_size),
                         map_on_crop(lesion_gaussian, source_center_zyx, source_radius_mm, t_start, template_size,
                                     source_spacing_zyx)])
    template_t = _to_tensor(template, device)
    r_start = np.asarray(centered_start_zyx(prior_center_zyx, region))
    heatmap = None
    if region == search_size:
        # one window centred on the prior, as in training: its center prediction is the result
        w_start = r_start
    else:
        search = crop_zyx(target_image_zyx, r_start, region)[None]
        prior = map_on_crop(lesion_gaussian, prior_center_zyx, prior_radius_mm, r_start, region,
                            target_spacing_zyx)[None]
        heatmap_network = HeatmapNetwork(network).train(network.training)
        heatmap = predict_sliding_window_paired(heatmap_network, template_t, _to_tensor(search, device), search_size,
                                                prior=_to_tensor(prior, device), step_size=step_size,
                                                device=device)[0].numpy()
        peak_zyx = r_start + np.array(np.unravel_index(int(np.argmax(heatmap)), heatmap.shape), dtype=np.float64)
        # refine: one window centred on the peak; its global regression is the prediction
        w_start = np.asarray(centered_start_zyx(peak_zyx, search_size))
    window = crop_zyx(target_image_zyx, w_start, search_size)[None, None]
    window_prior = map_on_crop(lesion_gaussian, prior_center_zyx, prior_radius_mm, w_start, search_size,
                               target_spacing_zyx)[None, None]
    out = network(template_t[None, :1], template_t[None, 1:2], _to_tensor(window, device),
                  _to_tensor(window_prior, device))
    if heatmap is None:
        heatmap = heatmap_to_patch(out["heatmap"], search_size)[0, 0].float().cpu().numpy()
    center_zyx = network.predict_center(out)[0].double().cpu().numpy()
    return TrackedLesion(w_start + center_zyx, heatmap.astype(np.float32), r_start, float(heatmap.max()))

__all__ = ["TrackedLesion", "HeatmapNetwork", "track_lesion"]
