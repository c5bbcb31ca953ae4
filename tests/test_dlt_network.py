"""DLT's network pieces: the 3D DenseFPN, the cross-correlations (Eq. 4–6) and their cost, the anatomy signal
encoder's switch, the loss, and a tiny DLT that learns one batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from lesionnet.methods.dlt.config import DLTConfig
from lesionnet.methods.dlt.correlation import (
    ScaleCorrelation,
    correlation_macs,
    crop_kernel,
    depthwise_xcorr,
    template_cells,
)
from lesionnet.methods.dlt.loss import dlt_loss
from lesionnet.methods.dlt.network import build_dlt
from lesionnet.networks.densefpn import DenseFPN3d

TINY = dict(growth_rate=4, block_layers=(1, 1, 1), bn_size=2, fpn_width=8, stem_kernel=3)


def test_densefpn_gives_three_scales_of_fpn_width():
    net = DenseFPN3d(growth_rate=4, block_layers=(1, 2, 1), bn_size=2, fpn_width=6, stem_stride=2, stem_kernel=3)
    levels = net(torch.randn(2, 1, 16, 24, 32))
    assert [tuple(f.shape) for f in levels] == [(2, 6, 8, 12, 16), (2, 6, 4, 6, 8), (2, 6, 2, 3, 4)]
    assert net.strides == (2, 4, 8)
    with pytest.raises(ValueError, match="multiple of 8"):
        net(torch.randn(1, 1, 12, 16, 16))


def test_depthwise_xcorr_is_the_channelwise_correlation():
    rng = np.random.default_rng(0)
    search = rng.normal(size=(2, 3, 5, 6, 7))
    kernel = rng.normal(size=(2, 3, 3, 1, 5))
    out = depthwise_xcorr(torch.tensor(search), torch.tensor(kernel)).numpy()
    padded = np.pad(search, ((0, 0), (0, 0), (1, 1), (0, 0), (2, 2)))
    expected = np.zeros_like(search)
    for b in range(2):
        for c in range(3):
            for z in range(5):
                for y in range(6):
                    for x in range(7):
                        expected[b, c, z, y, x] = (padded[b, c, z:z + 3, y:y + 1, x:x + 5] * kernel[b, c]).sum() / 15
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)


def test_kernels_are_cut_at_the_template_cell_with_zeros_outside():
    features = torch.arange(2 * 1 * 4 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4, 4)
    cells = template_cells(torch.tensor([[5.0, 3.0, 0.5], [100.0, -3.0, 7.9]]), 2, (4, 4, 4))
    assert cells.tolist() == [[2, 1, 0], [3, 0, 3]]
    kernel = crop_kernel(features, cells, (3, 3, 3))
    assert kernel.shape == (2, 1, 3, 3, 3)
    assert torch.equal(kernel[0, 0, 1, 1, 1], features[0, 0, 2, 1, 0])
    assert torch.all(kernel[0, 0, :, :, 0] == 0)           # x = -1 lies outside the map
    assert torch.all(kernel[1, 0, 2] == 0) and torch.all(kernel[1, 0, :, 0] == 0)


@pytest.mark.parametrize("mode,flattening", [("full", "depthwise"), ("decomposed", "depthwise"),
                                             ("decomposed", "dense"), ("middle_slice", "depthwise"),
                                             ("none", "depthwise")])
def test_correlation_forms_and_their_counted_cost(mode, flattening):
    """Every form keeps the search map's shape; torch's FLOP counter agrees with the analytic count."""
    channels, search_zyx = 4, (6, 10, 12)
    corr = ScaleCorrelation(channels, 3, (7, 11, 11), mode, flattening)
    template, search = torch.randn(1, channels, 8, 12, 12), torch.randn(1, channels, *search_zyx)
    cells = torch.tensor([[4, 6, 6]])
    with FlopCounterMode(display=False) as counter:
        out = corr(template, search, cells)
    assert out.shape == search.shape
    macs = correlation_macs(channels, search_zyx, (7, 11, 11), 3, mode, flattening=flattening)
    assert counter.get_total_flops() == 2 * macs["total"]


@pytest.mark.parametrize("search_zyx", [(5, 5, 5), (10, 10, 10), (20, 20, 20), (16, 48, 48)])
def test_fast_correlation_saves_at_least_65_percent_of_the_global_kernel_flops(search_zyx):
    """The global-kernel term (with the learned, depthwise flattening) against Eq. 5's full 7x11x11
    correlation, on Dataset501's three planned map sizes and a larger one; the dense flattening's fixed cost
    loses the saving on small maps."""
    full = correlation_macs(64, search_zyx, mode="full")
    fast = correlation_macs(64, search_zyx, mode="decomposed")
    assert 1 - (fast["global"] + fast["flatten"]) / full["global"] >= 0.65
    dense = correlation_macs(64, (5, 5, 5), mode="decomposed", flattening="dense")
    assert dense["global"] + dense["flatten"] > correlation_macs(64, (5, 5, 5), mode="full")["global"]


def test_the_whole_layer_saves_at_least_65_percent_on_a_paper_sized_map():
    """The unchanged 3³ term included, on a map of the paper's size."""
    full, fast = (correlation_macs(64, (32, 96, 96), mode=m) for m in ("full", "decomposed"))
    assert 1 - fast["total"] / full["total"] >= 0.65


@pytest.mark.parametrize("flattening", ["depthwise", "dense"])
def test_decomposed_kernels_start_as_means_along_the_flattened_axis(flattening):
    corr = ScaleCorrelation(3, 3, (3, 5, 5), "decomposed", flattening)
    kernel = torch.randn(2, 3, 3, 5, 5)
    flat = corr.global_kernels(kernel)
    assert [tuple(k.shape[2:]) for k in flat] == [(1, 5, 5), (3, 1, 5), (3, 5, 1)]
    for axis, k in zip((2, 3, 4), flat):
        torch.testing.assert_close(k, kernel.mean(dim=axis, keepdim=True))
    with pytest.raises(ValueError, match="flattening"):
        ScaleCorrelation(3, 3, (3, 5, 5), "decomposed", "sparse")
    middle = ScaleCorrelation(3, 3, (3, 5, 5), "middle_slice").global_kernels(kernel)
    torch.testing.assert_close(middle[0], kernel[:, :, 1:2])
    torch.testing.assert_close(middle[2], kernel[..., 2:3])


def _inputs(batch=2, size=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    center = torch.full((batch, 3), size / 2.0)
    return (torch.randn(batch, 1, size, size, size, generator=g), torch.rand(batch, 1, size, size, size, generator=g),
            center, torch.randn(batch, 1, size, size, size, generator=g),
            torch.rand(batch, 1, size, size, size, generator=g))


def test_dlt_outputs_and_ablation_switches():
    torch.manual_seed(0)
    net = build_dlt(TINY).eval()
    inputs = _inputs()
    out = net(*inputs)
    assert out["logits"].shape == (2, 1, 12, 12, 12) and out["center_zyx"].shape == (2, 3)
    assert torch.all((out["center_zyx"] >= 0) & (out["center_zyx"] <= 23))
    assert torch.all((out["heatmap"] > 0) & (out["heatmap"] < 1))
    # the focal-loss prior: the untrained map starts near 0.01
    assert abs(float(out["heatmap"].detach().mean()) - 0.01) < 0.01
    # the search prior reaches the output through the anatomy encoder, and only through it
    changed = list(inputs)
    changed[4] = torch.rand_like(inputs[4])
    assert not torch.allclose(net(*changed)["logits"], out["logits"])
    torch.manual_seed(0)
    no_ase = build_dlt({**TINY, "anatomy_encoder": False}).eval()
    assert torch.equal(no_ase(*inputs)["logits"], no_ase(*changed)["logits"])
    counts = {mode: sum(p.numel() for p in build_dlt({**TINY, "global_kernel": mode}).parameters())
              for mode in ("decomposed", "full", "middle_slice", "none")}
    assert counts["full"] == counts["middle_slice"] == counts["none"] < counts["decomposed"]
    with pytest.raises(ValueError, match="global_kernel"):
        DLTConfig(global_kernel="sparse")


def test_dlt_label_and_loss():
    torch.manual_seed(0)
    net = build_dlt(TINY)
    out = net(*_inputs())
    target = torch.tensor([[9.5, 9.5, 9.5], [3.0, 20.0, 11.0]])
    losses = dlt_loss(out, target, torch.tensor([6.0, 6.0]), torch.tensor([2.0, 2.0, 2.0]), net.output_stride)
    assert torch.isfinite(losses["loss"]) and losses["loss"] > 0 and losses["distance_mm"] > 0
    losses["loss"].backward()
    assert net.head.weight.grad is not None and net.head.weight.grad.abs().sum() > 0


def test_tiny_dlt_learns_to_find_the_template_blob():
    """One fixed batch: a bright blob in the template, the same blob elsewhere in the search, uninformative
    priors. The tiny DLT must find it to under one feature cell after a few hundred steps."""
    torch.manual_seed(0)
    size, batch = 24, 2
    grid = torch.stack(torch.meshgrid(*[torch.arange(size, dtype=torch.float32)] * 3, indexing="ij"), -1)

    def blob(center):
        return torch.exp(-((grid - torch.tensor(center)) ** 2).sum(-1) / (2 * 2.0 ** 2))[None]

    template = torch.stack([blob([12.0, 12.0, 12.0]) + 0.05 * torch.randn(1, size, size, size) for _ in range(batch)])
    targets = torch.tensor([[7.5, 15.5, 9.5], [16.5, 8.5, 14.5]])
    search = torch.stack([blob(t.tolist()) + 0.05 * torch.randn(1, size, size, size) for t in targets])
    flat = torch.ones(batch, 1, size, size, size)
    inputs = (template, flat, torch.full((batch, 3), 12.0), search, flat)
    net = build_dlt(TINY)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(250):
        optimizer.zero_grad()
        dlt_loss(net(*inputs), targets, torch.tensor([4.0, 4.0]), torch.ones(3), net.output_stride)["loss"].backward()
        optimizer.step()
    with torch.no_grad():
        error = (net.eval()(*inputs)["center_zyx"] - targets).norm(dim=1).max()
    assert error < 2.0, f"center error {error:.2f} voxels"
