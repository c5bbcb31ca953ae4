"""TLT's memory model: exact parameter count and the memory of one training step (Adam), counted from the
network's layers (``ResNetEncoder3d`` + ``CrossAttentionLayer`` with fused scaled-dot-product attention,
which stores no attention matrix unless ``attention_dropout > 0``).

Checked against measured peaks in a fresh process (:mod:`lesionnet.methods.tlt.memory_measure`,
``tests/test_memory_models.py``, ``benchmarks/tlt_memory_model.py``): within 0.90-1.06 of the measured
step peak on CPU. Sizes are voxels ``(z, y, x)``; the result is a
:class:`lesionnet.planning.memory.MemoryEstimate` in bytes.
"""
from __future__ import annotations

import math

from lesionnet.planning.memory import BYTES_PER_FLOAT, MemoryEstimate, estimate, prod

#: Backward transient, in full-resolution stem-sized (c0 × voxels) buffers alive at the peak of the
#: backward pass (gradient in/out of the stem convs and norm temporaries). Fitted on the CPU
#: measurements of benchmarks/tlt_memory_model.py (3.1 – 4.6 observed; 4 keeps every case within 10 %).
TRANSIENT_STEM_BUFFERS = 4.0


def _conv_params(cin: int, cout: int, k: int) -> int:
    return cin * cout * k ** 3


def ffn_dim_for_width(width: int) -> int:
    """FFN width for token width ``width``: the paper configuration's ratio 832 / 192, multiple of 16."""
    return max(16, int(round(width * 832.0 / 192.0 / 16.0)) * 16)


def network_config(width: int = 192, num_heads: int = 8, layers_per_line: int = 3,
                       sss_threshold: float = 0.7, stem_channels=(32, 64, 128)) -> dict:
    """``TLTConfig`` fields for a planned width / heads / depth (the rest keeps the paper values)."""
    return {"channels": [int(c) for c in stem_channels] + [int(width)], "num_heads": int(num_heads),
            "layers_per_line": int(layers_per_line), "ffn_dim": ffn_dim_for_width(width), "head_hidden": int(width),
            "sss_threshold": float(sss_threshold)}


def parameter_count(channels=(32, 64, 128, 192), num_heads: int = 8, layers_per_line: int = 3,
                    ffn_dim: int = 832, head_hidden: int = 192, head_layers: int = 3,
                    blocks_per_stage: int = 1, stem_kernel: int = 7, in_channels: int = 1,
                    use_global_regression: bool = True, gaussian_input_channels: bool = False,
                    fine_matching: bool = False, correlation_head: bool = False, **_ignored) -> int:
    """Exact parameter count of :func:`lesionnet.methods.tlt.network.build_tlt` for these settings
    (5,999,716 for the paper's)."""
    in_channels = in_channels + int(gaussian_input_channels) + int(fine_matching)
    c0 = channels[0]
    n = _conv_params(in_channels, c0, stem_kernel) + 2 * c0 + _conv_params(c0, c0, 3) + 2 * c0
    previous = c0
    for c in channels[1:]:
        n += _conv_params(previous, c, 3) + 2 * c + _conv_params(c, c, 3) + 2 * c + previous * c + 2 * c
        n += (blocks_per_stage - 1) * 2 * (_conv_params(c, c, 3) + 2 * c)
        previous = c
    dim = channels[-1]
    ca = 4 * (dim * dim + dim) + 4 * dim + dim * ffn_dim + ffn_dim + ffn_dim * dim + dim
    n += (2 * layers_per_line + 1) * ca

    def mlp(out_dim: int) -> int:
        dims = [dim] + [head_hidden] * (head_layers - 1) + [out_dim]
        return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))

    n += 2 if correlation_head else 0    # the correlation term's scale and bias
    if fine_matching:          # the fine head's three scalars replace the regression MLP
        return n + mlp(1) + 3
    return n + mlp(1) + (mlp(3) if use_global_regression else 0)


def _extractor_saved_per_voxel(channels, blocks_per_stage: int = 1) -> float:
    """Floats saved for backward per input voxel by ``ResNetEncoder3d`` (structure of blocks.py):
    the input (1), each stem ConvNormAct its conv output and its norm/activation output (2 c0 each),
    each strided BasicResBlock conv1 out, act1 out, conv2 out, shortcut conv out and act2 out
    (5 c at 1/8 the voxels per stage), each further block 4 c (identity shortcut)."""
    c0 = channels[0]
    per_voxel = 1.0 + 4.0 * c0
    scale = 1.0
    for c in channels[1:]:
        scale /= 8.0
        per_voxel += scale * (5.0 * c + (blocks_per_stage - 1) * 4.0 * c)
    return per_voxel


def _ca_layer_saved(num_queries: int, num_keys: int, dim: int, ffn_dim: int, heads: int,
                    attention_dropout: float) -> float:
    """Floats saved by one ``CrossAttentionLayer``: per query ~8 C (q input, q, attention output and
    its re-layout, norm inputs/outputs, dropout masks) + 3 FFN widths; per key 4 C (k input, k, v,
    memory); the attention matrix only on the unfused path (``attention_dropout > 0``)."""
    saved = num_queries * (8.0 * dim + 3.0 * ffn_dim) + num_keys * 4.0 * dim
    if attention_dropout > 0:
        saved += heads * num_queries * num_keys * 2.25
    return saved


def training_step_memory(template_patch_zyx, search_patch_zyx, batch_size: int = 1, channels=(32, 64, 128, 192),
                         num_heads: int = 8, layers_per_line: int = 3, ffn_dim: int | None = None,
                         head_hidden: int | None = None, head_layers: int = 3, template_tokens: int | None = None,
                         blocks_per_stage: int = 1, attention_dropout: float = 0.0, device: str = "cpu",
                         **_ignored) -> MemoryEstimate:
    """Memory of one TLT training step (Adam) for patches ``(z, y, x)`` voxels at batch ``batch_size``.

    Args:
        template_patch_zyx, search_patch_zyx: patch sizes (multiples of the stride).
        channels, num_heads, layers_per_line, ffn_dim, head_hidden, head_layers, blocks_per_stage,
            attention_dropout: the ``TLTConfig`` fields (ffn_dim / head_hidden default from the width).
        template_tokens: template tokens kept by SSS (padded batch maximum); default all tokens.
        device: ``"cpu"`` adds the measured CPU runtime overhead; ``"cuda"`` does not (its context is
            reserved by :func:`lesionnet.planning.memory.usable_memory_bytes`).
    """
    channels = tuple(int(c) for c in channels)
    dim = channels[-1]
    ffn_dim = ffn_dim_for_width(dim) if ffn_dim is None else int(ffn_dim)
    head_hidden = dim if head_hidden is None else int(head_hidden)
    stride = 2 ** (len(channels) - 1)
    v_t, v_s = prod(template_patch_zyx), prod(search_patch_zyx)
    n_t_all = prod(int(math.ceil(v / stride)) for v in template_patch_zyx)
    n_s = prod(int(math.ceil(v / stride)) for v in search_patch_zyx)
    n_t = n_t_all if template_tokens is None else max(1, min(int(template_tokens), n_t_all))
    params = parameter_count(channels, num_heads, layers_per_line, ffn_dim, head_hidden, head_layers,
                             blocks_per_stage)
    per_voxel = _extractor_saved_per_voxel(channels, blocks_per_stage)
    extractor = per_voxel * (v_t + v_s)
    attention = layers_per_line * (_ca_layer_saved(n_t, n_s, dim, ffn_dim, num_heads, attention_dropout)
                                   + _ca_layer_saved(n_s, n_t, dim, ffn_dim, num_heads, attention_dropout))
    attention += _ca_layer_saved(n_s, n_t, dim, ffn_dim, num_heads, attention_dropout)
    heads = 2 * head_layers * n_s * head_hidden
    activations = batch_size * (extractor + attention + heads)
    transient = batch_size * TRANSIENT_STEM_BUFFERS * channels[0] * max(v_t, v_s)
    return estimate(params, activations, transient, device,
                    {"template_tokens": n_t, "search_tokens": n_s,
                     "extractor_bytes": int(batch_size * extractor * BYTES_PER_FLOAT),
                     "attention_bytes": int(batch_size * attention * BYTES_PER_FLOAT)})


__all__ = ["ffn_dim_for_width", "network_config", "parameter_count", "training_step_memory", "TRANSIENT_STEM_BUFFERS"]
