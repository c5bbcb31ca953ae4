"""LN-Tracker's memory model: exact parameter count and the memory of one training step (Adam) of the
network lesionnet builds (:mod:`lesionnet.methods.lntracker.network`), counted from its layers:

* **backbone**: per pass, the input copy (``S`` slices × pixels) and per stride-2 ``ResBlock2d`` of width
  ``c`` five ``c``-channel maps at its output resolution (conv1 out, norm1/activation out, conv2 out,
  shortcut conv out, the block's activation out);
* **encoder**: ``L = ceil(H/s) · ceil(W/s)`` tokens (``s = 2^len(backbone_widths)``), per self-attention
  ``CrossAttentionLayer`` ``10 C + F`` floats a token (q/k inputs, value input, q, k, v, attention output,
  norm1 in/out, norm2 in; ReLU output ``F``) plus the log-sum-exp per head and the norm statistics;
  fused scaled-dot-product attention stores no ``L × L`` matrix;
* **token heads**: the encoder output and the proposal MLP's hidden layer, ``2 C`` a token;
* **decoder**: ``Q = N + T`` queries (``N = min(num_queries, L)`` detection queries, ``T`` track queries
  on every pass but a chain's first), per layer a self-attention (``10 C + F`` a query, the ``Q × Q``
  mask once a pass) and a cross-attention (``6 C + F`` a query, ``3 C`` a token: key input, keys,
  values); query heads (positional MLP ``2 C``, box MLP ``3 C`` a query, similarity MLP ``4 C`` a track);
* a training sample is a **chain** of ``chain_length`` adjacent slices (the trainer's 3), each one pass.

The saved-activation count matches autograd's saved tensors of the real step; the step's peak adds the
parameter gradients, a backward transient (:data:`TRANSIENT_FRACTION` of the activations: gradient
buffers and freed blocks the allocator keeps) and LN-Tracker's CPU runtime overhead
(:data:`CPU_RUNTIME_OVERHEAD_BYTES`), both fitted on CPU measurements of
:mod:`lesionnet.methods.lntracker.memory_measure` (``benchmarks/lntracker_memory_model.py``,
documentation/methods/ln_tracker.md "Memory"). Patch sizes are pixels ``(y, x)``; the result is a
:class:`lesionnet.planning.memory.MemoryEstimate` in bytes.
"""
from __future__ import annotations

import dataclasses
import math

from lesionnet.methods.lntracker.network import LNTrackerConfig
from lesionnet.planning.memory import BYTES_PER_FLOAT, MIB, MemoryEstimate, estimate

#: backbone widths of a plan section that names none (the network's GPU default; stride 16)
DEFAULT_BACKBONE_WIDTHS = (32, 64, 128, 256)
#: slices per training chain (the trainer's; a plan section may set ``training_chain_length``)
TRAINING_CHAIN_LENGTH = 3
#: false-positive track queries added per sample in training (the network's default)
FALSE_TRACK_QUERIES = LNTrackerConfig.false_track_queries
#: similarity embedding width (the network's default)
SIMILARITY_DIM = LNTrackerConfig.similarity_dim
#: backward transient as a fraction of the saved activations: gradient buffers of the layer being
#: differentiated plus freed blocks the allocator has not returned. Fitted on the CPU measurements of
#: benchmarks/lntracker_memory_model.py (0 – 0.45 observed beyond activations, gradients and overhead;
#: 0.3 keeps every case within 10 %)
TRANSIENT_FRACTION = 0.3
#: CPU: memory the first training step needs beyond its tensors with one thread (oneDNN / allocator
#: initialisation, code pages of the kernels it runs): the step peak minus activations and gradients of
#: the smallest steps, 29–30 MiB
CPU_RUNTIME_OVERHEAD_BYTES = 30 * MIB


def default_ffn_dim(hidden_dim: int) -> int:
    """FFN width of a plan section that names none: four times the token width (DETR)."""
    return 4 * int(hidden_dim)


def default_num_heads(hidden_dim: int) -> int:
    """Attention heads of a plan section that names none: DETR's 8 at width 256 and above, else 4."""
    return 8 if int(hidden_dim) >= 256 else 4


def network_sizes(section: dict) -> dict:
    """The keyword arguments of :func:`training_step_memory` / :func:`parameter_count` (beyond the patch and
    batch) for a plan section: its sizes, the defaults above where it names none."""
    hidden = int(section["hidden_dim"])
    per_side = section.get("slices_per_side")
    per_side = (int(section["num_input_slices"]) - 1) // 2 if per_side is None else per_side
    return {"slices_per_side": int(per_side), "num_queries": int(section["num_queries"]),
            "hidden_dim": hidden, "encoder_layers": int(section["encoder_layers"]),
            "decoder_layers": int(section["decoder_layers"]),
            "ffn_dim": int(section.get("ffn_dim") or default_ffn_dim(hidden)),
            "backbone_widths": tuple(int(v) for v in section.get("backbone_widths") or DEFAULT_BACKBONE_WIDTHS),
            "num_heads": int(section.get("num_heads") or default_num_heads(hidden)),
            "chain_length": int(section.get("training_chain_length", TRAINING_CHAIN_LENGTH))}


def _linear(cin: int, cout: int) -> int:
    return cin * cout + cout


def _mlp(cin: int, hidden: int, cout: int, layers: int) -> int:
    dims = [cin] + [hidden] * (layers - 1) + [cout]
    return sum(_linear(a, b) for a, b in zip(dims[:-1], dims[1:]))


def _attention_layer_parameters(dim: int, ffn_dim: int) -> int:
    """One ``CrossAttentionLayer``: q/k/v/out projections, two LayerNorms, the FFN."""
    return 4 * _linear(dim, dim) + 2 * 2 * dim + _linear(dim, ffn_dim) + _linear(ffn_dim, dim)


def parameter_count(slices_per_side: int = 1, hidden_dim: int = 128, encoder_layers: int = 2,
                    decoder_layers: int = 3, ffn_dim: int | None = None, backbone_widths=DEFAULT_BACKBONE_WIDTHS,
                    similarity_dim: int = SIMILARITY_DIM) -> int:
    """Exact parameter count of :func:`lesionnet.methods.lntracker.network.build_lntracker` for these sizes
    (``2 · slices_per_side + 1`` input slices; ``ffn_dim`` defaults to four times the width)."""
    c = int(hidden_dim)
    f = default_ffn_dim(c) if ffn_dim is None else int(ffn_dim)
    n, previous = 0, 2 * int(slices_per_side) + 1
    for width in backbone_widths:           # conv3x3 (strided) + IN, conv3x3 + IN, conv1x1 shortcut + IN
        width = int(width)
        n += previous * width * 9 + width * width * 9 + previous * width + 3 * 2 * width
        previous = width
    n += _linear(previous, c)                                              # input_proj (1x1 conv)
    n += (int(encoder_layers) + 2 * int(decoder_layers)) * _attention_layer_parameters(c, f)
    n += _linear(c, 1) + _mlp(c, c, 4, 2)                                  # proposal score and box heads
    n += _mlp(c, c, c, 2) + _linear(c, 1) + _mlp(c, c, 4, 3)               # pos MLP, score and box heads
    return n + _mlp(c, c, int(similarity_dim), 2)                          # similarity head


def _self_attention_saved(tokens: int, dim: int, ffn_dim: int, heads: int) -> float:
    """Floats a self-attention ``CrossAttentionLayer`` saves over ``tokens`` tokens (its input counted)."""
    return tokens * (10.0 * dim + ffn_dim + heads + 4.0)


def _cross_attention_saved(queries: int, keys: int, dim: int, ffn_dim: int, heads: int) -> float:
    """Floats a cross-attention ``CrossAttentionLayer`` saves (its query input and key memory not counted)."""
    return queries * (6.0 * dim + ffn_dim + heads + 4.0) + keys * 3.0 * dim


def pass_saved_floats(patch_size_yx, num_input_slices: int, backbone_widths, hidden_dim: int, ffn_dim: int,
                      num_heads: int, encoder_layers: int, decoder_layers: int, num_queries: int,
                      track_queries: int, similarity_dim: int = SIMILARITY_DIM) -> dict:
    """Floats autograd saves for one sample's pass over one slice (``detect``), by part of the network.

    ``track_queries`` is 0 on a chain's first slice. Returns ``backbone``, ``encoder``, ``decoder``,
    ``heads`` and ``tokens`` (the encoder's ``L``) and ``queries`` (``N + T``)."""
    h, w = (int(v) for v in patch_size_yx)
    c, f, heads, t = int(hidden_dim), int(ffn_dim), int(num_heads), int(track_queries)
    backbone = float(num_input_slices * h * w)
    for width in backbone_widths:
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        backbone += 5.0 * int(width) * h * w
    tokens = h * w
    n = min(int(num_queries), tokens)
    q = n + t
    encoder = encoder_layers * _self_attention_saved(tokens, c, f, heads)
    decoder = decoder_layers * (_self_attention_saved(q, c, f, heads) + _cross_attention_saved(q, tokens, c, f, heads))
    decoder += q * q if t else 0.0                                        # the self-attention mask
    head = tokens * (2.0 * c + 4.0) + n * c + q * 5.0 * c                 # proposals; queries; pos + box MLPs
    head += t * (4.0 * c + 2.0 * similarity_dim) if t else 0.0           # similarity head
    return {"backbone": backbone, "encoder": encoder, "decoder": decoder, "heads": head, "tokens": tokens,
            "queries": q}


def training_step_memory(patch_size_yx, batch_size: int = 1, slices_per_side: int = 1, num_queries: int = 30,
                         hidden_dim: int = 128, encoder_layers: int = 2, decoder_layers: int = 3,
                         ffn_dim: int | None = None, backbone_widths=DEFAULT_BACKBONE_WIDTHS,
                         num_heads: int | None = None, chain_length: int = TRAINING_CHAIN_LENGTH,
                         track_queries: int | None = None, device: str = "cpu") -> MemoryEstimate:
    """Memory of one LN-Tracker training step (Adam) on ``batch_size`` chains of ``chain_length`` adjacent
    slices, each slice a 2.5D input of ``2 · slices_per_side + 1`` slices cropped to ``patch_size_yx`` pixels.

    Args:
        hidden_dim, encoder_layers, decoder_layers, ffn_dim, backbone_widths, num_heads: the network's
            sizes (``ffn_dim`` and ``num_heads`` default as the method builds the network).
        num_queries: detection queries (at most one per encoder token).
        track_queries: track queries per pass after a chain's first; default a tenth of the detection
            queries (the plan sets those to ten times the most nodes seen in a slice) plus the false-positive
            track queries of training.
        device: ``"cpu"`` adds LN-Tracker's measured CPU runtime overhead; ``"cuda"`` does not (its context
            is reserved by :func:`lesionnet.planning.memory.usable_memory_bytes`).
    """
    c = int(hidden_dim)
    f = default_ffn_dim(c) if ffn_dim is None else int(ffn_dim)
    heads = default_num_heads(c) if num_heads is None else int(num_heads)
    widths = tuple(int(v) for v in backbone_widths)
    t = math.ceil(int(num_queries) / 10) + FALSE_TRACK_QUERIES if track_queries is None else int(track_queries)
    parts = {"backbone": 0.0, "encoder": 0.0, "decoder": 0.0, "heads": 0.0}
    for step in range(int(chain_length)):
        one = pass_saved_floats(patch_size_yx, 2 * int(slices_per_side) + 1, widths, c, f, heads, int(encoder_layers),
                                int(decoder_layers), int(num_queries), t if step else 0)
        for key in parts:
            parts[key] += one[key]
    activations = int(batch_size) * sum(parts.values())
    params = parameter_count(slices_per_side, c, encoder_layers, decoder_layers, f, widths)
    result = estimate(params, activations, TRANSIENT_FRACTION * activations, device,
                      {"encoder_tokens": one["tokens"], "decoder_queries": one["queries"], "track_queries": t,
                       "chain_length": int(chain_length),
                       **{f"{k}_bytes": int(batch_size * v * BYTES_PER_FLOAT) for k, v in parts.items()}})
    return dataclasses.replace(result, overhead_bytes=CPU_RUNTIME_OVERHEAD_BYTES if device == "cpu" else 0)


__all__ = ["DEFAULT_BACKBONE_WIDTHS", "TRAINING_CHAIN_LENGTH", "FALSE_TRACK_QUERIES", "SIMILARITY_DIM",
           "TRANSIENT_FRACTION", "CPU_RUNTIME_OVERHEAD_BYTES", "default_ffn_dim", "default_num_heads",
           "network_sizes", "parameter_count", "pass_saved_floats", "training_step_memory"]
