"""Sliding-window inference engine: exactness on pointwise networks, blending, mirroring, the paired
variant, window geometry, input validation and the CPU fallback of the accumulator."""
from __future__ import annotations

import itertools
import logging
import math

import pytest
import torch

from lesionnet.inference import sliding_window as sw
from lesionnet.inference.gaussian import gaussian_factors, gaussian_importance_map
from lesionnet.inference.sliding_window import (
    auto_batch_size,
    compute_steps,
    predict_sliding_window,
    predict_sliding_window_paired,
    window_slices,
)

PATCH = (8, 16, 12)
SHAPES = {
    "smaller": (5, 7, 9),           # smaller than the patch on every axis (padded)
    "equal": PATCH,
    "not_multiple": (23, 37, 19),
    "mixed": (6, 40, 12),           # smaller on z, larger on y, equal on x
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: a single intra-op thread avoids thread-pool contention on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pointwise_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv3d(2, 3, 1), torch.nn.ReLU(), torch.nn.Conv3d(3, 2, 1)).eval()


def _whole(net, volume):
    with torch.no_grad():
        return net(volume[None])[0]


# ----------------------------------------------------------------------------------------------
# Exactness for pointwise networks
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize("gaussian", [True, False])
@pytest.mark.parametrize("step_size", [0.25, 0.5, 1.0])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_pointwise_network_equals_whole_volume(pointwise_net, shape_name, gaussian, step_size, batch_size):
    volume = torch.randn(2, *SHAPES[shape_name], generator=torch.Generator().manual_seed(1))
    out = predict_sliding_window(pointwise_net, volume, PATCH, step_size=step_size, batch_size=batch_size,
                                 gaussian=gaussian)
    assert out.shape == (2, *SHAPES[shape_name]) and out.dtype == torch.float32 and out.device.type == "cpu"
    torch.testing.assert_close(out, _whole(pointwise_net, volume), atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize("mirror_axes", [(0,), (1, 2), (0, 1, 2)])
@pytest.mark.parametrize("gaussian", [True, False])
def test_pointwise_network_with_mirroring(pointwise_net, shape_name, mirror_axes, gaussian):
    volume = torch.randn(2, *SHAPES[shape_name], generator=torch.Generator().manual_seed(2))
    out = predict_sliding_window(pointwise_net, volume, PATCH, step_size=0.5, batch_size=3, gaussian=gaussian,
                                 mirror_axes=mirror_axes)
    torch.testing.assert_close(out, _whole(pointwise_net, volume), atol=1e-5, rtol=0)


def test_automatic_batch_size_and_result_is_a_normal_tensor(pointwise_net):
    volume = torch.randn(2, 23, 37, 19)
    out = predict_sliding_window(pointwise_net, volume, PATCH)
    torch.testing.assert_close(out, _whole(pointwise_net, volume), atol=1e-5, rtol=0)
    assert not out.is_inference()
    out.clamp_(0, 1)  # in-place use outside inference mode must work


# ----------------------------------------------------------------------------------------------
# Blending and mirroring against a naive reference (non-pointwise networks)
# ----------------------------------------------------------------------------------------------
def _reference(net, volume, patch, step_size, gaussian, mirror_axes=()):
    """Naive float64 nnU-Net-style loop: pad, per window sum w*p and w, divide, crop."""
    shape = volume.shape[1:]
    pad = [max(p - s, 0) for s, p in zip(shape, patch)]
    lo = [d // 2 for d in pad]
    padded = torch.nn.functional.pad(volume, [v for d, low in zip(pad[::-1], lo[::-1]) for v in (low, d - low)])
    w = gaussian_importance_map(patch).double() if gaussian else torch.ones(patch, dtype=torch.float64)
    num = den = None
    flips = [c for r in range(len(mirror_axes) + 1) for c in itertools.combinations(mirror_axes, r)]
    for sl in window_slices(padded.shape[1:], patch, step_size):
        x = padded[(slice(None),) + sl][None]
        with torch.no_grad():
            p = sum(torch.flip(net(torch.flip(x, [a + 2 for a in c])), [a + 2 for a in c]) for c in flips)
        p = p[0].double() / len(flips)
        if num is None:
            num = torch.zeros((p.shape[0], *padded.shape[1:]), dtype=torch.float64)
            den = torch.zeros(padded.shape[1:], dtype=torch.float64)
        num[(slice(None),) + sl] += w * p
        den[sl] += w
    out = num / den
    return out[(slice(None),) + tuple(slice(low, low + s) for low, s in zip(lo, shape))].float()


@pytest.mark.parametrize("gaussian", [True, False])
@pytest.mark.parametrize("mirror_axes", [None, (0, 2)])
@pytest.mark.parametrize("shape", [(23, 37, 19), (6, 40, 12)])
def test_blending_matches_naive_reference(gaussian, mirror_axes, shape):
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv3d(4, 2, 3, padding=1)).eval()
    volume = torch.randn(1, *shape)
    out = predict_sliding_window(net, volume, PATCH, step_size=0.5, batch_size=2, gaussian=gaussian,
                                 mirror_axes=mirror_axes)
    ref = _reference(net, volume, PATCH, 0.5, gaussian, mirror_axes or ())
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # a convolution with zero padding at window borders is not pointwise: blending matters
    assert (out - _whole(net, volume)).abs().max() > 1e-3


def test_mirroring_averages_flips_of_a_non_equivariant_network():
    ramp = torch.linspace(0, 1, PATCH[2])

    def net(x):  # adds an x-ramp in window coordinates: flipping along x changes the result
        return x + ramp

    volume = torch.randn(1, *PATCH)
    out = predict_sliding_window(net, volume, PATCH, mirror_axes=(2,))
    torch.testing.assert_close(out, volume + 0.5, atol=1e-6, rtol=0)  # (ramp + flipped ramp) / 2 = 0.5


def test_network_runs_in_inference_mode_and_sees_batches():
    seen = []

    def net(x):
        assert torch.is_inference_mode_enabled()
        seen.append(x.shape[0])
        return x * 2

    volume = torch.randn(1, 23, 37, 19)
    out = predict_sliding_window(net, volume, PATCH, batch_size=4)
    n = len(window_slices((23, 37, 19), PATCH, 0.5))
    assert sum(seen) == n and max(seen) == 4 and len(seen) == math.ceil(n / 4)
    torch.testing.assert_close(out, volume * 2, atol=1e-5, rtol=0)


def test_float64_volume_gives_float32_cpu_result():
    volume = torch.randn(1, 9, 17, 13, dtype=torch.float64)
    out = predict_sliding_window(lambda x: x * 3, volume, PATCH)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, (volume * 3).float(), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------
# Paired variant (template, search, prior)
# ----------------------------------------------------------------------------------------------
class _PairedNet(torch.nn.Module):
    """search * template mean + prior sum over channels (+ 1): pointwise in the search grid."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, template, search, prior=None):
        self.calls.append((tuple(template.shape), template.stride(0), prior is None))
        out = search * template.mean(dim=(1, 2, 3, 4), keepdim=True) + 1
        if prior is not None:
            out = out + prior.sum(dim=1, keepdim=True)
        return torch.cat([out, -out], dim=1)


@pytest.mark.parametrize("with_prior", [True, False])
@pytest.mark.parametrize("mirror_axes", [None, (0, 1)])
@pytest.mark.parametrize("shape", [(5, 7, 9), (23, 37, 19)])
def test_paired_equals_whole_volume(with_prior, mirror_axes, shape):
    g = torch.Generator().manual_seed(4)
    template = torch.rand(1, 4, 6, 6, generator=g) + 0.5
    search = torch.randn(1, *shape, generator=g)
    prior = torch.rand(2, *shape, generator=g) if with_prior else None
    net = _PairedNet().eval()
    out = predict_sliding_window_paired(net, template, search, PATCH, prior=prior, batch_size=3,
                                        mirror_axes=mirror_axes)
    expected = search * template.mean() + 1
    if with_prior:
        expected = expected + prior.sum(dim=0, keepdim=True)
    torch.testing.assert_close(out, torch.cat([expected, -expected]), atol=1e-5, rtol=0)
    for template_shape, batch_stride, prior_missing in net.calls:
        assert template_shape[1:] == (1, 4, 6, 6)
        assert prior_missing == (not with_prior)
        if mirror_axes is None and template_shape[0] > 1:
            assert batch_stride == 0  # expanded, not copied


def test_paired_prior_must_share_the_search_grid():
    with pytest.raises(ValueError, match="prior"):
        predict_sliding_window_paired(_PairedNet(), torch.rand(1, 4, 4, 4), torch.rand(1, 10, 20, 20), PATCH,
                                      prior=torch.rand(1, 10, 20, 21))


# ----------------------------------------------------------------------------------------------
# Window geometry
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(8, 16, 12), (9, 17, 13), (64, 96, 72), (23, 100, 37), (200, 33, 12)])
@pytest.mark.parametrize("step_size", [0.1, 0.25, 0.5, 0.7, 1.0])
def test_window_slices_cover_the_volume(shape, step_size):
    steps = compute_steps(shape, PATCH, step_size)
    slices = window_slices(shape, PATCH, step_size)
    assert len(slices) == math.prod(len(s) for s in steps)
    for size, p, starts in zip(shape, PATCH, steps):
        assert len(starts) == min(math.ceil((size - p) / (p * step_size)) + 1, size - p + 1)
        assert starts[0] == 0 and starts[-1] + p == size
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        assert all(0 < gap <= p for gap in gaps)
        assert not gaps or max(gaps) - min(gaps) <= 1  # evenly spaced
    assert slices == list(itertools.product(*[[slice(s, s + p) for s in starts]
                                              for starts, p in zip(steps, PATCH)]))
    if len(slices) <= 500:  # the windows are a Cartesian product: check every voxel on small grids
        covered = torch.zeros(shape, dtype=torch.int32)
        for sl in slices:
            covered[sl] += 1
        assert covered.min() >= 1


def test_compute_steps_known_values():
    assert compute_steps((64, 192, 192), (32, 96, 96), 0.5) == [[0, 16, 32], [0, 48, 96], [0, 48, 96]]
    assert compute_steps((100, 96, 97), (96, 96, 96), 0.5) == [[0, 4], [0], [0, 1]]
    assert compute_steps((50, 50, 50), (20, 20, 20), 1.0) == [[0, 15, 30]] * 3


# ----------------------------------------------------------------------------------------------
# Gaussian map and normalisation
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("patch", [(8, 16, 12), (1, 5, 7), (32, 96, 96), (128, 128, 128)])
def test_gaussian_map(patch):
    w = gaussian_importance_map(patch)
    assert w.shape == patch and w.dtype == torch.float32
    assert w.max().item() == pytest.approx(1.0) and w.min() > 0
    for axis in range(3):
        torch.testing.assert_close(w, torch.flip(w, [axis]))
    assert gaussian_importance_map(patch) is w  # cached
    # sigma = patch / 8 along each axis
    for axis, (g, p) in enumerate(zip(gaussian_factors(patch), patch)):
        x = torch.arange(p, dtype=torch.float64) - (p - 1) / 2
        expected = torch.exp(-x ** 2 / (2 * (p / 8) ** 2))
        torch.testing.assert_close(g.double(), expected / expected.max(), atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("gaussian", [True, False])
def test_separable_weight_sums_equal_windowwise_sums(gaussian):
    shape = (23, 37, 19)
    steps = compute_steps(shape, PATCH, 0.3)
    sz, sy, sx = sw._axis_weight_sums(steps, shape, PATCH, gaussian, torch.device("cpu"))
    w = gaussian_importance_map(PATCH) if gaussian else torch.ones(PATCH)
    brute = torch.zeros(shape, dtype=torch.float64)
    for sl in window_slices(shape, PATCH, 0.3):
        brute[sl] += w.double()
    separable = sz.double()[:, None, None] * sy.double()[None, :, None] * sx.double()[None, None, :]
    torch.testing.assert_close(separable, brute, rtol=1e-6, atol=0)


# ----------------------------------------------------------------------------------------------
# Input validation
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(volume=torch.rand(10, 20, 20)), ValueError, "4 dimensions"),
    (dict(volume=torch.rand(1, 1, 10, 20, 20)), ValueError, "4 dimensions"),
    (dict(volume=torch.ones(1, 10, 20, 20, dtype=torch.int64)), TypeError, "floating-point"),
    (dict(volume=[[1.0]]), TypeError, "torch.Tensor"),
    (dict(volume=torch.rand(1, 0, 20, 20)), ValueError, "empty"),
    (dict(patch_size=(8, 16)), ValueError, "3 positive ints"),
    (dict(patch_size=(8, 0, 16)), ValueError, "3 positive ints"),
    (dict(patch_size=(8, -1, 16)), ValueError, "3 positive ints"),
    (dict(patch_size=(8, 16.5, 16)), ValueError, "3 positive ints"),
    (dict(patch_size=8), ValueError, "3 positive ints"),
    (dict(step_size=0), ValueError, r"\(0, 1\]"),
    (dict(step_size=1.5), ValueError, r"\(0, 1\]"),
    (dict(step_size=-0.5), ValueError, r"\(0, 1\]"),
    (dict(step_size="0.5"), ValueError, r"\(0, 1\]"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=2.0), ValueError, "batch_size"),
    (dict(mirror_axes=(3,)), ValueError, "mirror_axes"),
    (dict(mirror_axes=(0, 0)), ValueError, "mirror_axes"),
    (dict(mirror_axes=1), ValueError, "mirror_axes"),
])
def test_input_validation(kwargs, error, match):
    args = dict(network=lambda x: x, volume=torch.rand(1, 10, 20, 20), patch_size=(8, 16, 16))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        predict_sliding_window(**args)


def test_bad_network_output_is_reported():
    with pytest.raises(ValueError, match="must return a tensor"):
        predict_sliding_window(lambda x: x[:, :, :4], torch.rand(1, 10, 20, 20), (8, 16, 16))
    with pytest.raises(ValueError, match="must return a tensor"):
        predict_sliding_window(lambda x: x[0], torch.rand(1, 10, 20, 20), (8, 16, 16))


def test_geometry_helpers_validate():
    with pytest.raises(ValueError, match="smaller than patch_size"):
        compute_steps((4, 20, 20), (8, 16, 16), 0.5)
    with pytest.raises(ValueError, match="shape_zyx"):
        window_slices((4, 20), (8, 16, 16), 0.5)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        window_slices((40, 20, 20), (8, 16, 16), 0.0)


def test_auto_batch_size_rule():
    assert auto_batch_size(27, (32, 96, 96), 1, "cpu") == 3  # 2**20 // 294912
    assert auto_batch_size(27, (128, 128, 128), 1, "cpu") == 1
    assert auto_batch_size(5, (8, 8, 8), 1, "cpu") == 5
    assert auto_batch_size(1000, (8, 8, 8), 1, "cpu") == sw.MAX_AUTO_BATCH
    assert auto_batch_size(27, (32, 96, 96), 1, "cuda") == 27


def test_training_mode_is_warned(caplog):
    net = torch.nn.Conv3d(1, 1, 1)  # training mode by default
    with caplog.at_level(logging.WARNING, logger=sw.__name__):
        predict_sliding_window(net, torch.rand(1, 8, 16, 12), PATCH)
    assert "training mode" in caplog.text


# ----------------------------------------------------------------------------------------------
# Accumulator fallback to the CPU
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("message", ["CUDA out of memory. Tried to allocate 2.00 GiB", None])
def test_out_of_memory_falls_back_to_cpu_accumulation(monkeypatch, caplog, pointwise_net, message):
    original = sw._allocate_accumulator
    calls = []

    def flaky(num_channels, shape_zyx, device):
        calls.append(device)
        if len(calls) == 1:
            if message is None:
                raise torch.OutOfMemoryError()
            raise RuntimeError(message)
        return original(num_channels, shape_zyx, device)

    monkeypatch.setattr(sw, "_allocate_accumulator", flaky)
    volume = torch.randn(2, 23, 37, 19)
    with caplog.at_level(logging.WARNING, logger=sw.__name__):
        out = predict_sliding_window(pointwise_net, volume, PATCH, batch_size=2)
    assert len(calls) == 2 and calls[1] == torch.device("cpu")
    assert "accumulating on the CPU" in caplog.text
    torch.testing.assert_close(out, _whole(pointwise_net, volume), atol=1e-5, rtol=0)


def test_other_allocation_errors_are_not_swallowed(monkeypatch):
    def broken(num_channels, shape_zyx, device):
        raise RuntimeError("something else")

    monkeypatch.setattr(sw, "_allocate_accumulator", broken)
    with pytest.raises(RuntimeError, match="something else"):
        predict_sliding_window(lambda x: x, torch.rand(1, 8, 16, 12), PATCH)
