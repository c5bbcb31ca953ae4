"""DLT's memory model: one training step of the network as built (:mod:`lesionnet.methods.dlt.network`),
counted from its structure and checked against measured peaks (:mod:`lesionnet.methods.dlt.memory_measure`,
``tests/test_memory_models.py``, ``benchmarks/dlt_memory_model.py``).

* **Parameters**: exact (:func:`parameter_count` equals the built network's count).
* **Saved activations** (what autograd keeps, per sample; template and search both go through the
  encoders): the stem's input and its convolution and ReLU outputs; in every dense layer its concatenated
  input, the ReLU of it, the bottleneck and its ReLU (DenseNet without memory-efficient checkpointing keeps
  each layer's concatenation); each block's last concatenation; the transitions' ReLU and convolution
  outputs; the FPN's smoothing input and output; the anatomy encoder's stem, blocks and outputs; the
  search's fused features (the correlation's input) and the head's input. The template's fused features
  only yield small kernels and are not kept.
* **Backward transient**: 0.25 × the saved activations (fitted to the measured step peaks on CPU).

Sizes are voxels ``(z, y, x)``; the result is a :class:`lesionnet.planning.memory.MemoryEstimate` in bytes.
"""
from __future__ import annotations

from lesionnet.planning.memory import MemoryEstimate, estimate, prod

#: DenseNet-121's first three dense blocks
BLOCK_LAYERS = (6, 12, 24)
#: backward transient as a fraction of the saved activations (fitted, CPU)
TRANSIENT_FRACTION = 0.25


def anatomy_width(fpn_width: int) -> int:
    """Hidden width of the anatomy signal encoder (as built)."""
    return max(8, int(fpn_width) // 4)


def parameter_count(growth_rate: int = 32, fpn_width: int = 64, block_layers=BLOCK_LAYERS, bn_size: int = 4,
                    stem_kernel: int = 7, in_channels: int = 1, anatomy_encoder: bool = True,
                    global_kernel: str = "decomposed", global_kernel_zyx=(7, 11, 11), flattening: str = "depthwise",
                    **_ignored) -> int:
    """Parameters of :class:`~lesionnet.methods.dlt.network.DLT` built with these settings (exact)."""
    k, f = int(growth_rate), int(fpn_width)
    c = 2 * k
    n = in_channels * c * stem_kernel ** 3 + 2 * c                      # stem conv (no bias) + norm
    widths = []
    for i, layers in enumerate(block_layers):
        for _ in range(int(layers)):
            n += 2 * c + c * bn_size * k + 2 * bn_size * k + 27 * bn_size * k * k
            c += k
        widths.append(c)
        if i < len(block_layers) - 1:
            n += 2 * c + c * (c // 2)
            c //= 2
    n += sum(w * f + f + 27 * f * f + f for w in widths)               # FPN lateral + smoothing (with bias)
    if anatomy_encoder:
        a = anatomy_width(f)
        n += 27 * a + 2 * a + 3 * (27 * a * a + 2 * a) + 3 * (27 * a * f + f)
    if global_kernel == "decomposed":
        per_out = f if flattening == "dense" else 1                     # input channels each output reads
        n += 3 * (f * per_out * sum(int(v) for v in global_kernel_zyx) + 3 * f)
    return n + f + 1                                                    # head


def saved_floats_per_sample(patch_zyx, growth_rate: int = 32, fpn_width: int = 64, block_layers=BLOCK_LAYERS,
                            bn_size: int = 4, stem_stride: int = 2, anatomy_encoder: bool = True) -> float:
    """Float32 values autograd keeps for one (template, search) pair (see the module docstring)."""
    k, f = int(growth_rate), int(fpn_width)
    v0 = float(prod(patch_zyx))
    levels = [v0 / float(stem_stride) ** 3 / 8.0 ** i for i in range(3)]
    encoder = v0 + 2 * (2 * k) * v0 / 8.0
    c = 2 * k
    for i, layers in enumerate(block_layers):
        for _ in range(int(layers)):
            encoder += (2 * c + 2 * bn_size * k) * levels[i]
            c += k
        encoder += c * levels[i]
        if i < len(block_layers) - 1:
            encoder += (c + c // 2) * levels[i]
            c //= 2
    encoder += sum(2 * f * v for v in levels)
    anatomy = 0.0
    if anatomy_encoder:
        a = anatomy_width(f)
        anatomy = v0 + 2 * a * v0 / 8.0 + 2 * a * sum(levels) + f * sum(levels)
    return 2 * (encoder + anatomy) + f * sum(levels) + f * levels[0]


def training_step_memory(template_patch_zyx, search_patch_zyx, batch_size: int = 1, growth_rate: int = 32,
                         fpn_width: int = 64, block_layers=BLOCK_LAYERS, bn_size: int = 4, device: str = "cpu",
                         stem_stride: int = 2, **network) -> MemoryEstimate:
    """One DLT training step (template and search patches of the same size in DLT's plan; the larger is
    counted for both)."""
    patch = max(template_patch_zyx, search_patch_zyx, key=prod)
    activations = batch_size * saved_floats_per_sample(patch, growth_rate, fpn_width, block_layers, bn_size,
                                                       stem_stride, network.get("anatomy_encoder", True))
    params = parameter_count(growth_rate, fpn_width, block_layers, bn_size, **network)
    return estimate(params, activations, TRANSIENT_FRACTION * activations, device,
                    {"saved_floats": activations, "patch_zyx": list(patch)})


__all__ = ["BLOCK_LAYERS", "TRANSIENT_FRACTION", "anatomy_width", "parameter_count", "saved_floats_per_sample",
           "training_step_memory"]
