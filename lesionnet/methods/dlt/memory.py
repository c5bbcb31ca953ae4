"""DLT's memory model: an **estimate** (the DLT network is not implemented yet) of one training step of
a 3D DenseFPN with the anatomy signal encoder, from the paper's architecture description. It must be
checked against measured peaks once the network exists. Sizes are voxels ``(z, y, x)``; the result is a
:class:`lesionnet.planning.memory.MemoryEstimate` in bytes.
"""
from __future__ import annotations

from lesionnet.planning.memory import MemoryEstimate, estimate, prod

#: DenseNet-121's first three dense blocks, used for the 3D DenseFPN estimate
BLOCK_LAYERS = (6, 12, 24)


def parameter_count(growth_rate: int = 32, fpn_width: int = 64, block_layers=BLOCK_LAYERS,
                    bn_size: int = 4, **_ignored) -> int:
    """Estimated parameters of a 3D DenseFPN (DenseNet-121-like, first three blocks) + FPN + ASE."""
    k = int(growth_rate)
    c = 2 * k
    n = 7 * 7 * 7 * c + 2 * c
    widths = []
    for i, layers in enumerate(block_layers):
        for _ in range(layers):
            n += 2 * c + c * bn_size * k + 2 * bn_size * k + 27 * bn_size * k * k
            c += k
        widths.append(c)
        if i < len(block_layers) - 1:
            n += 2 * c + c * (c // 2)
            c //= 2
    n += sum(w * fpn_width + fpn_width + 27 * fpn_width * fpn_width for w in widths)   # lateral + smoothing
    n += 3 * (27 * fpn_width + 2 * 27 * fpn_width * fpn_width)                           # ASE, 3 scales
    n += 3 * (fpn_width * (121 + 77 + 77))                                               # FCC flattening convs
    return n


def training_step_memory(template_patch_zyx, search_patch_zyx, batch_size: int = 1, growth_rate: int = 32,
                         fpn_width: int = 64, block_layers=BLOCK_LAYERS, bn_size: int = 4, device: str = "cpu",
                         **_ignored) -> MemoryEstimate:
    """**Estimate** (DLT is not implemented yet) of one DLT training step.

    Structure assumed: stem conv 7³ (2k channels, stride 2), dense blocks at strides 2, 4, 8 with
    transitions halving the channels, each dense layer saving its concatenated input, BN/ReLU output,
    the bottleneck (4k, three tensors) and its k new channels; FPN and anatomy signal encoder at the
    three scales (``fpn_width`` channels, ~6 tensors each); template and search both go through the
    encoders; correlation maps are small. Memory-naive DenseNet (concatenations stored per layer).
    """
    k = int(growth_rate)
    saved_per_voxel = 0.0
    c = 2 * k
    scale = 1.0 / 8.0      # stem stride 2
    saved_per_voxel += 1.0 + 3.0 * c * scale
    for i, layers in enumerate(block_layers):
        for _ in range(layers):
            saved_per_voxel += scale * (2.0 * c + 3.0 * bn_size * k + k)
            c += k
        if i < len(block_layers) - 1:
            saved_per_voxel += scale * 2.0 * c
            c //= 2
            scale /= 8.0
    fpn_scales = (1.0 / 8.0, 1.0 / 64.0, 1.0 / 512.0)
    saved_per_voxel += sum(6.0 * fpn_width * s for s in fpn_scales)          # FPN
    saved_per_voxel += 1.0 + sum(6.0 * fpn_width * s for s in fpn_scales)    # ASE on the Gaussian map
    v_t, v_s = prod(template_patch_zyx), prod(search_patch_zyx)
    activations = batch_size * saved_per_voxel * (v_t + v_s)
    transient = batch_size * 3.0 * 2 * k * max(v_t, v_s) / 8.0
    params = parameter_count(growth_rate, fpn_width, block_layers, bn_size)
    return estimate(params, activations, transient, device,
                    {"estimate_only": True, "saved_floats_per_voxel": saved_per_voxel})


__all__ = ["BLOCK_LAYERS", "parameter_count", "training_step_memory"]
