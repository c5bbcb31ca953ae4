"""LN-Tracker's memory model: an **estimate** (not fitted to lesionnet's network, which is smaller: a 2D
ResNet backbone and two-stage queries; documentation/methods/ln_tracker.md) of one training step
on pairs of neighbouring slices — ResNet-50 2.5D backbone, deformable DETR encoder/decoder with
detection, track and denoising queries — from the paper's description. It must be checked against
measured peaks once the network exists. Patch sizes are pixels ``(y, x)``; the result is a
:class:`lesionnet.planning.memory.MemoryEstimate` in bytes.
"""
from __future__ import annotations

import math

from lesionnet.planning.memory import MemoryEstimate, estimate, prod

#: ResNet-50 stages: (blocks, bottleneck width, stride)
RESNET50_STAGES = ((3, 64, 4), (4, 128, 8), (6, 256, 16), (3, 512, 32))


def _resnet50_saved_per_pixel() -> float:
    """Floats saved per input pixel by a ResNet-50 (BN + ReLU) training forward pass."""
    saved = 3.0 + 3.0 * 64 / 4.0 + 64 / 16.0          # input, stem conv/bn/relu at 1/2, maxpool at 1/4
    for blocks, width, stride in RESNET50_STAGES:
        area = 1.0 / (stride * stride)
        for b in range(blocks):
            # conv1/bn1/relu1 (w), conv2/bn2/relu2 (w, possibly strided), conv3/bn3 (4w), sum/relu (4w)
            saved += area * (3.0 * width + 3.0 * width + 2.0 * 4 * width + 4 * width)
            if b == 0:
                saved += area * 2.0 * 4 * width   # projection shortcut conv + bn
    return saved


def parameter_count(hidden_dim: int = 256, encoder_layers: int = 6, decoder_layers: int = 9,
                    ffn_dim: int | None = None, num_queries: int = 300, **_ignored) -> int:
    """Estimated parameters: ResNet-50 (23.5 M) + 2.5D fusion + deformable encoder/decoder + heads."""
    d = int(hidden_dim)
    f = 8 * d if ffn_dim is None else int(ffn_dim)
    backbone = 23_500_000
    fusion = 3 * 1024 * d
    enc_layer = 4 * d * d + 2 * d * f + 8 * 3 * 4 * 4 * d  # attention proj + FFN + deformable offsets
    dec_layer = 2 * 4 * d * d + 2 * d * f + 8 * 3 * 4 * 4 * d
    heads = 2 * (d * d * 2 + 4 * d) + num_queries * d * 2 + d * d * 2   # cls/box heads, query embeddings, sim MLP
    return backbone + fusion + encoder_layers * enc_layer + decoder_layers * dec_layer + heads


def training_step_memory(patch_size_yx, batch_size: int = 8, slices_per_side: int = 1, num_queries: int = 300,
                         hidden_dim: int = 256, encoder_layers: int = 6, decoder_layers: int = 9,
                         ffn_dim: int | None = None, heads: int = 8, device: str = "cpu",
                         **_ignored) -> MemoryEstimate:
    """**Estimate** (of the paper's architecture, not of lesionnet's network) of one training step on
    ``batch_size`` pairs of neighbouring slices. The 2.5D input of ``2 * slices_per_side + 1`` slices goes
    through ResNet-50 in groups of 3 channels; multi-scale tokens (strides 8, 16, 32) feed the deformable encoder; the
    decoder runs on detection queries + as many track queries + denoising queries."""
    d = int(hidden_dim)
    f = 8 * d if ffn_dim is None else int(ffn_dim)
    pixels = prod(patch_size_yx)
    slices = 2 * int(slices_per_side) + 1
    groups = int(math.ceil(slices / 3.0))
    backbone = groups * _resnet50_saved_per_pixel() * pixels
    tokens = pixels * (1 / 64 + 1 / 256 + 1 / 1024)
    encoder = encoder_layers * tokens * (12.0 * d + 3.0 * f)
    queries = 2 * int(num_queries) + 100          # detection + track (padded) + denoising
    decoder = decoder_layers * (queries * (16.0 * d + 3.0 * f) + heads * queries * queries * 2.25
                                + queries * heads * 4 * 4 * 3)
    per_slice = backbone + encoder + decoder
    activations = batch_size * 2 * per_slice       # each sample is a pair of slices
    transient = batch_size * 2 * 3.0 * 64 * pixels / 4.0
    params = parameter_count(d, encoder_layers, decoder_layers, f, num_queries)
    return estimate(params, activations, transient, device,
                    {"estimate_only": True, "slices": slices, "backbone_groups": groups,
                     "encoder_tokens": int(tokens), "decoder_queries": queries})


__all__ = ["RESNET50_STAGES", "parameter_count", "training_step_memory"]
