"""TLT's fine matching head: weighted NCC, the template's sub-voxel center, the local soft-arg-max, and
the head inside the network (shapes, an untrained network finding a blob, the loss, the ablation)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lesionnet.methods.tlt import memory as tlt_memory
from lesionnet.methods.tlt.config import TLTConfig
from lesionnet.methods.tlt.loss import TLTLoss
from lesionnet.methods.tlt.maps import lesion_gaussian
from lesionnet.methods.tlt.network import build_tlt, count_parameters
from lesionnet.methods.tlt.ops import crop_around_zyx, gaussian_peak_zyx, local_soft_argmax_zyx
from lesionnet.networks.matching import weighted_ncc

TEMPLATE = (16, 24, 24)
SEARCH = (24, 32, 32)


def gaussian(shape_zyx, center_zyx, radius_mm, spacing_zyx=(1.0, 1.0, 1.0)) -> torch.Tensor:
    """(1, 1, D, H, W) TLT Gaussian ``exp(-d² / (12 r²))`` (center and spacing in (z, y, x))."""
    g = lesion_gaussian(shape_zyx, center_zyx, radius_mm, spacing_zyx)
    return torch.from_numpy(np.ascontiguousarray(g))[None, None]


def blob(shape_zyx, center_zyx, sigma, amplitude=1.0) -> torch.Tensor:
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape_zyx], indexing="ij")
    d2 = sum((g - c) ** 2 for g, c in zip(grids, center_zyx))
    return torch.from_numpy((amplitude * np.exp(-d2 / (2 * sigma ** 2))).astype(np.float32))[None, None]


def brute_force_ncc(search, template, weight, u_zyx):
    """The module docstring's formula at one search voxel ``u`` (windows inside the volume)."""
    k = np.array(template.shape[2:])
    start = np.array(u_zyx) - k // 2
    window = search[0, :, start[0]:start[0] + k[0], start[1]:start[1] + k[1], start[2]:start[2] + k[2]].double()
    t, w = template[0].double(), weight[0, 0].double() / weight.double().sum()
    t = t - (w * t).sum(dim=(1, 2, 3), keepdim=True)
    s_mean = (w * window).sum(dim=(1, 2, 3), keepdim=True)
    num = (w * t * window).sum()
    var_t = (w * t * t).sum()
    var_s = (w * (window - s_mean) ** 2).sum()
    return float(num / torch.sqrt(var_t * var_s))


def test_weighted_ncc_matches_the_formula_and_finds_an_affine_copy():
    gen = torch.Generator().manual_seed(0)
    search = torch.randn(2, 2, 12, 14, 16, generator=gen)
    template = torch.randn(2, 2, 3, 5, 5, generator=gen)
    weight = torch.rand(2, 1, 3, 5, 5, generator=gen) + 0.1
    # sample 1 holds 3 T + 2 at u = (6, 7, 9): an affine copy, NCC = 1 there
    search[1, :, 5:8, 5:10, 7:12] = 3.0 * template[1] + 2.0
    ncc = weighted_ncc(search, template, weight)
    assert ncc.shape == (2, 1, 12, 14, 16)
    for b, u in ((0, (4, 6, 8)), (0, (8, 3, 10)), (1, (6, 7, 9)), (1, (3, 9, 4))):
        assert ncc[b, 0][u].item() == pytest.approx(brute_force_ncc(search[b:b + 1], template[b:b + 1],
                                                                    weight[b:b + 1], u), abs=1e-4)
    assert ncc[1, 0, 6, 7, 9].item() == pytest.approx(1.0, abs=1e-4)
    assert tuple(np.unravel_index(int(ncc[1, 0].argmax()), ncc.shape[2:])) == (6, 7, 9)
    assert float(ncc.abs().max()) <= 1.0 + 1e-4


def test_weighted_ncc_rejects_even_kernels_and_mismatched_shapes():
    with pytest.raises(ValueError, match="odd"):
        weighted_ncc(torch.zeros(1, 1, 8, 8, 8), torch.zeros(1, 1, 2, 3, 3), torch.ones(1, 1, 2, 3, 3))
    with pytest.raises(ValueError, match="do not match"):
        weighted_ncc(torch.zeros(1, 2, 8, 8, 8), torch.zeros(1, 1, 3, 3, 3), torch.ones(1, 1, 3, 3, 3))


def test_gaussian_peak_recovers_the_sub_voxel_center_with_anisotropic_spacing():
    center = (7.3, 10.8, 12.5)
    g = gaussian(TEMPLATE, center, 4.0, spacing_zyx=(3.0, 0.8, 0.8))
    k0, offset = gaussian_peak_zyx(torch.cat([g, gaussian(TEMPLATE, (0.2, 3.0, 4.0), 2.0)]))
    assert k0[0].tolist() == [7, 11, 12] or k0[0].tolist() == [7, 11, 13]
    torch.testing.assert_close((k0[0].double() + offset[0].double()), torch.tensor(center, dtype=torch.float64),
                               atol=1e-4, rtol=0)
    # a peak on the border keeps offset 0 on that axis
    assert k0[1, 0].item() == 0 and offset[1, 0].item() == 0.0


def test_crop_around_pads_outside_the_volume_with_zero_weight():
    image = torch.arange(5 * 6 * 7, dtype=torch.float32).view(1, 1, 5, 6, 7)
    weight = torch.ones(1, 1, 5, 6, 7)
    crop, w = crop_around_zyx(image, weight, torch.tensor([[0, 3, 6]]), (3, 3, 5))
    assert crop.shape == (1, 1, 3, 3, 5) and w.shape == (1, 1, 3, 3, 5)
    assert w[0, 0, 0].sum() == 0 and w[0, 0, :, :, 3:].sum() == 0          # z = -1 and x = 7, 8 are outside
    assert crop[0, 0, 1, 1, 2].item() == image[0, 0, 0, 3, 6].item()


def test_local_soft_argmax_is_sub_voxel_and_differentiable():
    logits = torch.full((2, 1, 9, 10, 11), -10.0)
    logits[0, 0, 4, 5, 6] = logits[0, 0, 4, 5, 7] = 5.0                      # tie between x = 6 and 7
    logits[1, 0, 0, 0, 0] = 5.0                                                # peak in a corner
    logits.requires_grad_(True)
    center = local_soft_argmax_zyx(logits, 2)
    torch.testing.assert_close(center[0], torch.tensor([4.0, 5.0, 6.5]), atol=1e-3, rtol=0)
    torch.testing.assert_close(center[1], torch.tensor([0.0, 0.0, 0.0]), atol=1e-3, rtol=0)
    center.sum().backward()
    assert logits.grad[0, 0, 4, 5, 7] > 0 and logits.grad[0, 0, 0, 0, 0] == 0


def fine_config(**overrides) -> TLTConfig:
    return TLTConfig.tiny(fine_matching=True, fine_kernel_zyx=(7, 9, 9), **overrides)


def test_fine_head_shapes_parameters_and_the_untrained_network_finds_the_blob():
    """The head starts as NCC + prior: an untrained network finds a blob 5 voxels off the prior (at the
    same sub-voxel position as in the template), and ignores a dark blob on the prior."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    t_center, s_center, prior_center = (7.6, 11.7, 12.2), (11.6, 13.7, 19.2), (12.0, 15.0, 14.0)
    template = blob(TEMPLATE, t_center, 1.5) + 0.05 * torch.randn(1, 1, *TEMPLATE, generator=gen)
    search = (blob(SEARCH, s_center, 1.5) + blob(SEARCH, prior_center, 2.0, -1.0)
              + 0.05 * torch.randn(1, 1, *SEARCH, generator=gen))
    tg, sp = gaussian(TEMPLATE, t_center, 2.5), gaussian(SEARCH, prior_center, 2.5)
    config = fine_config()
    model = build_tlt(config).eval()
    assert model.output_stride == 1 and config.extractor_in_channels == 2
    assert count_parameters(model) == tlt_memory.parameter_count(**config.to_dict())
    with torch.no_grad():
        out = model(template, tg, search, sp)
    assert out["logits"].shape == (1, 1, *SEARCH) and out["heatmap"].shape == (1, 1, *SEARCH)
    assert out["coarse_logits"].shape == (1, 1, 3, 4, 4) and "token_centers_zyx" not in out
    assert (out["center_zyx"][0] - torch.tensor(s_center)).norm().item() < 0.5
    torch.testing.assert_close(model.predict_center(out), out["center_zyx"])
    assert model.predict_center(out, use_global_regression=False)[0].tolist() == [12.0, 14.0, 19.0]


def test_fine_head_trains_the_scales_the_coarse_tlt_and_the_extractor():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    template, search = torch.randn(2, 1, *TEMPLATE, generator=gen), torch.randn(2, 1, *SEARCH, generator=gen)
    tg = torch.cat([gaussian(TEMPLATE, (7.5, 11.5, 11.5), r) for r in (2.0, 4.0)])
    sp = torch.cat([gaussian(SEARCH, (12.0, 16.0, 16.0), r) for r in (2.0, 4.0)])
    model = build_tlt(fine_config())
    out = model(template, tg, search, sp)
    losses = TLTLoss(stride=model.output_stride)(out, torch.tensor([[11.0, 15.0, 17.0]] * 2), 3.0, 1.0)
    assert losses["l1_mm"].item() > 0
    losses["loss"].backward()
    assert model.fine_scales.grad is not None and model.fine_scales.grad.abs().sum() > 0
    assert next(model.extractor.stem[0].parameters()).grad.abs().sum() > 0
    assert model.cls_head.layers[-1].weight.grad.abs().sum() > 0


def test_fine_head_needs_both_gaussian_maps():
    model = build_tlt(fine_config(use_sss=False, use_raam=False))
    template, search = torch.zeros(1, 1, *TEMPLATE), torch.zeros(1, 1, *SEARCH)
    with pytest.raises(ValueError, match="search_prior is required"):
        model(template, gaussian(TEMPLATE, (7.5, 11.5, 11.5), 2.0), search, None)


@pytest.mark.parametrize("kernel", [(4, 5, 5), (3, 5), (0, 3, 3)])
def test_fine_kernel_must_be_three_odd_sizes(kernel):
    with pytest.raises(ValueError, match="fine_kernel_zyx"):
        TLTConfig(fine_kernel_zyx=kernel)


def test_parameter_free_matcher_finds_the_lesion_away_from_the_prior():
    """The matcher (NCC + prior, no weights) moves from a prior 5 voxels off to the lesion, sub-voxel, and its
    logits are the shared NCC maps of TLT's fine head scored with the prior."""
    from lesionnet.methods.matcher.network import MatcherConfig, NCCPriorMatcher
    from lesionnet.methods.tlt.ops import template_ncc_maps

    shape, truth = (24, 24, 24), (12.3, 11.0, 12.6)
    template = blob(shape, (12.0, 12.0, 12.0), 2.0)
    search = blob(shape, truth, 2.0) + 0.02 * torch.randn(1, 1, *shape, generator=torch.Generator().manual_seed(0))
    t_gauss = gaussian(shape, (12.0, 12.0, 12.0), 3.0)
    prior = gaussian(shape, (12.3, 16.0, 12.6), 3.0)
    matcher = NCCPriorMatcher(MatcherConfig(kernel_zyx=(9, 9, 9)))
    out = matcher(template, t_gauss, search, prior)
    assert out["logits"].shape == (1, 1) + shape and out["logits"].max() <= 0.0 + 1e-5
    np.testing.assert_allclose(matcher.predict_center(out)[0].numpy(), truth, atol=0.5)
    maps = template_ncc_maps(template, t_gauss, search, (9, 9, 9), 12.0)
    expected = 8.0 * maps["ncc_search"] + 4.0 * prior - 12.0
    torch.testing.assert_close(out["logits"], expected)
    assert list(MatcherConfig.from_dict(MatcherConfig().to_dict()).kernel_zyx) == [9, 13, 13]
    with pytest.raises(ValueError, match="odd"):
        MatcherConfig(kernel_zyx=(8, 9, 9))
