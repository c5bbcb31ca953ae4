"""One sliding-window inference engine for every lesionnet method (nnU-Net style).

A volume ``(C, Z, Y, X)`` is cut into overlapping windows of ``patch_size`` (see
:func:`compute_steps`), the windows are batched and run through the network, and the window
predictions are blended back with a Gaussian importance map ``w`` (:mod:`lesionnet.inference.gaussian`)::

    out(v) = sum_windows w(v - start) * p_window(v - start) / sum_windows w(v - start)

so the weights at every voxel sum to one. The result is always a float32 tensor ``(K, Z, Y, X)`` on
the **CPU**, whatever the compute device, and is a normal tensor (not an inference tensor), so it can
be modified in place.

Two entry points share one loop (:func:`_sliding_window`):

* :func:`predict_sliding_window` -- ``network(window_batch)``;
* :func:`predict_sliding_window_paired` -- ``network(template_batch, search_batch[, prior_batch])``:
  a fixed template patch is given to every window (expanded, not copied) and the search volume and
  an optional prior map in the search grid are tiled with the same windows (TLT/DLT-style trackers).

See ``documentation/inference.md`` for the parameters, the batch-size rule and benchmark figures.
"""
from __future__ import annotations

import itertools
import logging
import math
import numbers
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lesionnet.inference.gaussian import (
    SIGMA_SCALE,
    gaussian_factors,
    gaussian_importance_map,
)

logger = logging.getLogger(__name__)

#: Automatic batch size: as many windows as fit in this many input elements (channels x voxels) ...
CPU_BATCH_ELEMENTS = 2 ** 20
DEVICE_BATCH_ELEMENTS = 2 ** 24
#: ... but never more than this many windows per batch.
MAX_AUTO_BATCH = 64

__all__ = [
    "predict_sliding_window",
    "predict_sliding_window_paired",
    "compute_steps",
    "window_slices",
    "auto_batch_size",
]


# ----------------------------------------------------------------------------------------------
# Input validation
# ----------------------------------------------------------------------------------------------
def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _positive_int_triple(value, name: str) -> tuple[int, int, int]:
    """``value`` as 3 positive ints (z, y, x), else ValueError naming ``name``."""
    message = f"{name} must be a sequence of 3 positive ints (z, y, x), got {value!r}."
    try:
        triple = tuple(value)
    except TypeError:
        raise ValueError(message) from None
    if len(triple) != 3 or not all(_is_int(v) and v > 0 for v in triple):
        raise ValueError(message)
    return tuple(int(v) for v in triple)  # type: ignore[return-value]


def _check_patch(patch_size) -> tuple[int, int, int]:
    return _positive_int_triple(patch_size, "patch_size")


def _check_step(step_size) -> float:
    if isinstance(step_size, bool) or not isinstance(step_size, numbers.Real) or not 0 < step_size <= 1:
        raise ValueError(f"step_size must be a number in (0, 1] (fraction of the patch), got {step_size!r}.")
    return float(step_size)


def _check_shape(shape_zyx) -> tuple[int, int, int]:
    return _positive_int_triple(shape_zyx, "shape_zyx")


def _check_volume(name: str, volume) -> torch.Tensor:
    if isinstance(volume, np.ndarray):
        volume = torch.from_numpy(volume)
    if not isinstance(volume, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (C, Z, Y, X), got {type(volume).__name__}.")
    if volume.ndim != 4:
        raise ValueError(f"{name} must have 4 dimensions (C, Z, Y, X), got shape {tuple(volume.shape)}; "
                         "add a channel axis with volume[None] or drop the batch axis.")
    if not volume.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {volume.dtype}; convert it with .float().")
    if min(volume.shape) == 0:
        raise ValueError(f"{name} is empty: shape {tuple(volume.shape)}.")
    return volume


def _check_batch_size(batch_size) -> int | None:
    if batch_size is None:
        return None
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int or None (automatic), got {batch_size!r}.")
    return int(batch_size)


def _check_mirror_axes(mirror_axes) -> tuple[int, ...]:
    if mirror_axes is None:
        return ()
    try:
        axes = tuple(mirror_axes)
    except TypeError:
        raise ValueError(f"mirror_axes must be None or a tuple of spatial axes in 0..2, got {mirror_axes!r}.") from None
    if not all(_is_int(a) and 0 <= a <= 2 for a in axes) or len(set(axes)) != len(axes):
        raise ValueError(f"mirror_axes must be None or a tuple of distinct spatial axes in 0..2 (z, y, x), "
                         f"got {mirror_axes!r}.")
    return tuple(sorted(int(a) for a in axes))


def _resolve_device(device, network, volume: torch.Tensor) -> torch.device:
    if device is not None:
        return torch.device(device)
    if isinstance(network, torch.nn.Module):
        tensor = next(itertools.chain(network.parameters(), network.buffers()), None)
        if tensor is not None:
            return tensor.device
    return volume.device


# ----------------------------------------------------------------------------------------------
# Window geometry
# ----------------------------------------------------------------------------------------------
def compute_steps(shape_zyx: Sequence[int], patch_size: Sequence[int], step_size: float = 0.5) -> list[list[int]]:
    """Window start indices per axis (nnU-Net's rule).

    Per axis: ``n = ceil((size - patch) / (patch * step_size)) + 1`` windows, evenly spaced (rounded to
    integers) so that the first starts at 0 and the last ends exactly at the border; if the step is
    below one voxel (``n > size - patch + 1``) repeated starts are dropped, leaving every start from 0
    to ``size - patch`` once. ``shape_zyx`` must
    be at least ``patch_size`` on every axis (the engine pads smaller volumes itself).
    """
    shape, patch, step = _check_shape(shape_zyx), _check_patch(patch_size), _check_step(step_size)
    if any(s < p for s, p in zip(shape, patch)):
        raise ValueError(f"shape_zyx {shape} is smaller than patch_size {patch} on some axis; pad the volume "
                         "to at least the patch size first (predict_sliding_window does this itself).")
    steps = []
    for size, p in zip(shape, patch):
        n = math.ceil((size - p) / (p * step)) + 1
        if n == 1:
            steps.append([0])
            continue
        actual = (size - p) / (n - 1)
        # sorted and distinct: a step below one voxel would otherwise repeat starts (wasted windows)
        steps.append(sorted({int(round(actual * i)) for i in range(n)}))
    return steps


def _slices_from_steps(steps: list[list[int]], patch: tuple[int, int, int]) -> list[tuple[slice, slice, slice]]:
    return [tuple(slice(s, s + p) for s, p in zip(starts, patch))  # type: ignore[misc]
            for starts in itertools.product(*steps)]


def window_slices(shape_zyx: Sequence[int], patch_size: Sequence[int],
                  step_size: float = 0.5) -> list[tuple[slice, slice, slice]]:
    """All windows as ``(slice_z, slice_y, slice_x)`` in C order (z slowest), from :func:`compute_steps`.

    ``window.start`` of each slice is the window's start; every voxel of ``shape_zyx`` is covered.
    """
    patch = _check_patch(patch_size)
    return _slices_from_steps(compute_steps(shape_zyx, patch, step_size), patch)


def auto_batch_size(num_windows: int, patch_size: Sequence[int], channels: int,
                    device: torch.device | str = "cpu") -> int:
    """Windows per batch when ``batch_size=None``.

    As many windows as fit in a budget of input elements (``channels * prod(patch)`` each):
    ``CPU_BATCH_ELEMENTS`` (2**20, 4 MiB of float32) on the CPU, ``DEVICE_BATCH_ELEMENTS`` (2**24) on an
    accelerator; at least 1, at most ``MAX_AUTO_BATCH`` and at most the number of windows.
    """
    budget = CPU_BATCH_ELEMENTS if torch.device(device).type == "cpu" else DEVICE_BATCH_ELEMENTS
    per_window = max(1, int(channels)) * math.prod(_check_patch(patch_size))
    return max(1, min(int(num_windows), MAX_AUTO_BATCH, budget // per_window))


# ----------------------------------------------------------------------------------------------
# Accumulators
# ----------------------------------------------------------------------------------------------
def _is_oom(error: BaseException) -> bool:
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if t is not None)
    return isinstance(error, oom_types) or (isinstance(error, RuntimeError) and "out of memory" in str(error))


def _allocate_accumulator(num_channels: int, shape_zyx: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    """Zeroed float32 ``(K, Z, Y, X)`` prediction accumulator (a normal tensor, not an inference tensor)."""
    with torch.inference_mode(False):
        return torch.zeros((num_channels, *shape_zyx), dtype=torch.float32, device=device)


def _allocate_with_fallback(num_channels: int, shape_zyx: tuple[int, int, int],
                            device: torch.device) -> torch.Tensor:
    try:
        return _allocate_accumulator(num_channels, shape_zyx, device)
    except Exception as error:  # noqa: BLE001 - only out-of-memory errors are handled
        if not _is_oom(error):
            raise
        size_mib = num_channels * math.prod(shape_zyx) * 4 / 2 ** 20
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        logger.warning("Out of memory allocating the %.1f MiB sliding-window accumulator on %s (%s); "
                       "accumulating on the CPU instead (slower).", size_mib, device, reason)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return _allocate_accumulator(num_channels, shape_zyx, torch.device("cpu"))


def _axis_weight_sums(steps: list[list[int]], shape_zyx: tuple[int, ...], patch: tuple[int, ...],
                      gaussian: bool, device: torch.device) -> list[torch.Tensor]:
    """Per-axis sums of the 1-D weight factors over the window starts.

    The importance map is the outer product ``gz x gy x gx`` and the windows are the Cartesian product
    of the per-axis starts, so ``sum_windows w = Sz x Sy x Sx`` with ``Sa = sum_starts shift(ga)``:
    no 3-D weight buffer is needed.
    """
    factors = gaussian_factors(patch, SIGMA_SCALE) if gaussian else [torch.ones(p) for p in patch]
    sums = []
    for starts, size, p, g in zip(steps, shape_zyx, patch, factors):
        s = torch.zeros(size, dtype=torch.float32)
        for start in starts:
            s[start:start + p] += g
        sums.append(s.to(device))
    return sums


# ----------------------------------------------------------------------------------------------
# The shared loop
# ----------------------------------------------------------------------------------------------
def _flip_combinations(mirror_axes: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Batch-tensor dims to flip for every mirroring combination; the identity ``()`` comes last."""
    dims = [a + 2 for a in mirror_axes]
    combos = [c for r in range(len(dims), 0, -1) for c in itertools.combinations(dims, r)]
    return combos + [()]


def _check_prediction(pred, batch: int, patch: tuple[int, int, int]) -> None:
    if not isinstance(pred, torch.Tensor) or pred.ndim != 5 or pred.shape[0] != batch \
            or tuple(pred.shape[2:]) != patch:
        got = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
        raise ValueError(f"the network must return a tensor (B, K, {', '.join(map(str, patch))}) for a batch of "
                         f"B={batch} windows of size {patch}, got {got}.")


def _predict_batch(call, fixed_per_combo, inputs, combos, batch: int, patch) -> torch.Tensor:
    """Sum of the network's predictions over the mirroring combinations (identity last, so that a
    network modifying its input in place cannot corrupt the inputs of the other combinations)."""
    acc = None
    for dims in combos:
        fixed = [f.expand(batch, *f.shape[1:]) for f in fixed_per_combo[dims]]
        if dims:
            pred = call(fixed, [torch.flip(x, dims) for x in inputs])
            _check_prediction(pred, batch, patch)
            pred = torch.flip(pred, dims)  # a fresh tensor: safe to accumulate into
            if acc is None:
                acc = pred.float()
            else:
                acc.add_(pred)
        else:
            pred = call(fixed, inputs)
            _check_prediction(pred, batch, patch)
            acc = pred if acc is None else acc.add_(pred)  # ``pred`` may alias the input: read only
    return acc


def _sliding_window(call: Callable[[list[torch.Tensor], list[torch.Tensor]], torch.Tensor],
                    tiled: list[torch.Tensor], fixed: list[torch.Tensor], patch: tuple[int, int, int],
                    step_size: float, batch_size: int | None, gaussian: bool, device: torch.device,
                    mirror_axes: tuple[int, ...], progress: bool) -> torch.Tensor:
    """Tile every tensor of ``tiled`` (same spatial shape) with the same windows and blend
    ``call(fixed_batches, tiled_batches) -> (B, K, *patch)`` back into a (K, Z, Y, X) CPU tensor.
    ``fixed`` tensors get a leading batch axis by expansion."""
    shape = tuple(tiled[0].shape[1:])
    # Pad (constant 0, split evenly before/after as nnU-Net does) where the volume is smaller than the patch.
    pad = [max(p - s, 0) for s, p in zip(shape, patch)]
    lo = [d // 2 for d in pad]
    if any(pad):
        pad_arg = [v for d, low in zip(reversed(pad), reversed(lo)) for v in (low, d - low)]
        tiled = [F.pad(t, pad_arg, mode="constant", value=0.0) for t in tiled]
    padded_shape = tuple(tiled[0].shape[1:])

    steps = compute_steps(padded_shape, patch, step_size)
    windows = [(slice(None),) + sl for sl in _slices_from_steps(steps, patch)]
    num_windows = len(windows)
    if batch_size is None:
        batch_size = auto_batch_size(num_windows, patch, sum(t.shape[0] for t in tiled), device)
    batch_size = min(batch_size, num_windows)
    combos = _flip_combinations(mirror_axes)

    with torch.inference_mode():
        fixed = [f.to(device).unsqueeze(0) for f in fixed]
        fixed_per_combo = {dims: [torch.flip(f, dims) if dims else f for f in fixed] for dims in combos}
        buffers = [torch.empty((batch_size, t.shape[0], *patch), dtype=t.dtype, device=t.device) for t in tiled]
        out = weight = None
        bar = tqdm(total=num_windows, desc="sliding window", unit="window", disable=not progress, leave=False)
        for first in range(0, num_windows, batch_size):
            batch = windows[first:first + batch_size]
            m = len(batch)
            inputs = [torch.stack([t[w] for w in batch], out=buf[:m]).to(device, non_blocking=True)
                      for t, buf in zip(tiled, buffers)]
            pred = _predict_batch(call, fixed_per_combo, inputs, combos, m, patch)
            if out is None:  # output channels K known from the first batch
                out = _allocate_with_fallback(pred.shape[1], padded_shape, device)
                if gaussian:
                    weight = gaussian_importance_map(patch, SIGMA_SCALE, out.device, torch.float32)
            elif pred.shape[1] != out.shape[0]:
                raise ValueError(f"the network returned {pred.shape[1]} channels for a batch after returning "
                                 f"{out.shape[0]} for the first one.")
            if pred.device != out.device:
                pred = pred.to(out.device)
            for i, w in enumerate(batch):
                if weight is None:
                    out[w].add_(pred[i])
                else:
                    out[w].addcmul_(pred[i], weight)
            bar.update(m)
        bar.close()

        # Normalise: divide by the summed weights (times the number of mirrorings), from 1-D sums.
        sz, sy, sx = _axis_weight_sums(steps, padded_shape, patch, gaussian, out.device)
        sz.mul_(len(combos))
        crop = tuple(slice(low, low + s) for low, s in zip(lo, shape))
        result = out[(slice(None),) + crop]
        result.div_(torch.outer(sy[crop[1]], sx[crop[2]])).div_(sz[crop[0], None, None])

    with torch.no_grad():  # outside inference mode: the result is a normal tensor
        if any(pad):
            result = result.contiguous()
        return result.cpu()


# ----------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------
def _warn_if_training(network) -> None:
    if isinstance(network, torch.nn.Module) and network.training:
        logger.warning("The network is in training mode (dropout / batch norm behave differently); "
                       "call network.eval() before sliding-window inference.")


def predict_sliding_window(network: Callable[[torch.Tensor], torch.Tensor], volume: torch.Tensor,
                           patch_size: Sequence[int], step_size: float = 0.5, batch_size: int | None = None,
                           gaussian: bool = True, device: torch.device | str | None = None,
                           mirror_axes: Sequence[int] | None = None, progress: bool = False) -> torch.Tensor:
    """Sliding-window prediction of ``network`` over ``volume``.

    Args:
        network: callable ``(B, C, pz, py, px) -> (B, K, pz, py, px)``, already on ``device`` and in
            eval mode (the engine changes neither).
        volume: float tensor ``(C, Z, Y, X)`` on any device (a numpy array is accepted).
        patch_size: window size ``(pz, py, px)``; axes where the volume is smaller are zero-padded
            (evenly before/after) and the padding is cropped off the result.
        step_size: step between windows as a fraction of the patch, in (0, 1]; 0.5 = 50 % overlap.
        batch_size: windows per network call; None -> :func:`auto_batch_size`.
        gaussian: blend with the Gaussian importance map (sigma = patch / 8); False -> uniform weights.
        device: compute device; None -> the device of the network's parameters (the volume's device
            for a network without parameters). Accumulation happens there, falling back to the CPU
            (with a logged warning) when the accumulator does not fit.
        mirror_axes: spatial axes (0 = z, 1 = y, 2 = x) for mirroring test-time augmentation: the
            prediction is averaged over all ``2**len(mirror_axes)`` flip combinations.
        progress: show a tqdm progress bar over the windows.

    Returns:
        float32 tensor ``(K, Z, Y, X)`` on the CPU.
    """
    volume = _check_volume("volume", volume)
    patch = _check_patch(patch_size)
    step = _check_step(step_size)
    batch_size = _check_batch_size(batch_size)
    axes = _check_mirror_axes(mirror_axes)
    device = _resolve_device(device, network, volume)
    _warn_if_training(network)
    return _sliding_window(lambda fixed, tiled: network(tiled[0]), [volume], [], patch, step, batch_size,
                           bool(gaussian), device, axes, progress)


def predict_sliding_window_paired(network: Callable[..., torch.Tensor], template: torch.Tensor,
                                  search: torch.Tensor, patch_size: Sequence[int],
                                  prior: torch.Tensor | None = None, step_size: float = 0.5,
                                  batch_size: int | None = None, gaussian: bool = True,
                                  device: torch.device | str | None = None,
                                  mirror_axes: Sequence[int] | None = None, progress: bool = False) -> torch.Tensor:
    """Sliding-window prediction of a template/search network (TLT, DLT) over ``search``.

    The network is called as ``network(template_batch, search_batch, prior_batch)`` -- or
    ``network(template_batch, search_batch)`` when ``prior`` is None -- with ``template_batch``
    ``(B, C, Zt, Yt, Xt)`` (the same ``template`` for every window, expanded without copying: do
    not modify it in place), ``search_batch`` ``(B, C, pz, py, px)`` and ``prior_batch``
    ``(B, P, pz, py, px)`` cut with the same windows, and returns ``(B, K, pz, py, px)``.
    With ``mirror_axes`` the template is flipped together with the search and prior windows.
    The other arguments and the result are as in :func:`predict_sliding_window`.
    """
    template = _check_volume("template", template)
    search = _check_volume("search", search)
    tiled = [search]
    if prior is not None:
        prior = _check_volume("prior", prior)
        if tuple(prior.shape[1:]) != tuple(search.shape[1:]):
            raise ValueError(f"prior must be in the search volume's grid: spatial shape {tuple(prior.shape[1:])} "
                             f"!= search {tuple(search.shape[1:])}.")
        tiled.append(prior)
    patch = _check_patch(patch_size)
    step = _check_step(step_size)
    batch_size = _check_batch_size(batch_size)
    axes = _check_mirror_axes(mirror_axes)
    device = _resolve_device(device, network, search)
    _warn_if_training(network)
    return _sliding_window(lambda fixed, tiled_batches: network(fixed[0], *tiled_batches), tiled, [template],
                           patch, step, batch_size, bool(gaussian), device, axes, progress)
