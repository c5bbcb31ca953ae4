"""Analytic memory models of one training step of each network (forward + loss + backward + Adam).

Each model counts, in float32 values, what a training step holds at its peak:

* **parameters**, their **gradients** and Adam's two moment buffers (4 × parameters);
* **saved activations**: the tensors autograd keeps for the backward pass, counted layer by layer
  from the network's structure (which tensors each operation saves);
* **backward transient**: the gradient buffers alive together while the largest layers are
  differentiated (about four full-resolution stem-sized tensors for TLT, a fitted constant);
* **runtime overhead**: allocator/oneDNN/threadpool memory that a CPU step needs beyond its tensors
  (measured ≈ 130 MiB with torch 2.x on CPU), or on a GPU the CUDA context and cuDNN workspace
  (``GPU_RESERVE_BYTES``, accounted for in :func:`usable_memory_bytes`).

TLT (``lesionnet.networks.tlt``) is modelled from its actual layers (``ResNetEncoder3d`` +
``CrossAttentionLayer`` with fused scaled-dot-product attention, which stores no attention matrix
unless ``attention_dropout > 0``) and checked against measured peak memory (tests/test_planner.py,
benchmarks). **DLT and LN-Tracker networks do not exist yet**: their models below are estimates
from the papers' architecture descriptions (3D DenseFPN + anatomy encoder; ResNet-50 2.5D backbone +
DETR encoder/decoder) and must be checked against measurements once the networks are written.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

BYTES_PER_FLOAT = 4
MIB = 2 ** 20
GIB = 2 ** 30
#: CPU: memory a training step needs beyond its tensors (oneDNN scratch, allocator, threads), measured
CPU_RUNTIME_OVERHEAD_BYTES = 128 * MIB
#: GPU: CUDA context + cuDNN workspace, subtracted from the budget before anything is planned
GPU_RESERVE_BYTES = int(0.75 * GIB)
#: CPU: interpreter + torch libraries + data loading, subtracted from a CPU budget
CPU_RESERVE_BYTES = int(0.5 * GIB)
#: Adam keeps two moments per parameter
OPTIMIZER_STATES = 2
#: TLT backward transient, in full-resolution stem-sized (c0 × voxels) buffers alive at the peak of the
#: backward pass (gradient in/out of the stem convs and norm temporaries). Fitted on the CPU
#: measurements of benchmarks/tlt_memory_model.py (3.1 – 4.6 observed; 4 keeps every case within 10 %).
TLT_TRANSIENT_STEM_BUFFERS = 4.0


@dataclass
class MemoryEstimate:
    """Bytes of one training step, by component. ``total_bytes`` is what the budget must hold."""

    parameters: int
    parameter_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    activation_bytes: int
    transient_bytes: int
    overhead_bytes: int
    details: dict = field(default_factory=dict)

    @property
    def step_peak_bytes(self) -> int:
        """Peak memory added by forward + backward once the model and inputs exist (no optimizer
        state): saved activations + gradients + backward transient + runtime overhead. This is what
        ``lesionnet.networks.memory_measure`` measures (``step_peak_mib``)."""
        return self.activation_bytes + self.gradient_bytes + self.transient_bytes + self.overhead_bytes

    @property
    def total_bytes(self) -> int:
        return self.parameter_bytes + self.optimizer_bytes + self.step_peak_bytes

    def to_dict(self) -> dict:
        d = asdict(self)
        d["step_peak_bytes"] = self.step_peak_bytes
        d["total_bytes"] = self.total_bytes
        d["total_gib"] = round(self.total_bytes / GIB, 3)
        return d


def usable_memory_bytes(budget_bytes: float, device: str = "cuda") -> int:
    """The part of a memory budget a training step may use: the budget minus the fixed reserve of the
    device (CUDA context on a GPU, interpreter and libraries on CPU). Monotone in the budget."""
    reserve = GPU_RESERVE_BYTES if device == "cuda" else CPU_RESERVE_BYTES
    return int(max(0.0, float(budget_bytes) - reserve))


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


# ================================================================================================ TLT
def tlt_ffn_dim(width: int) -> int:
    """FFN width for token width ``width``: the paper configuration's ratio 832 / 192, multiple of 16."""
    return max(16, int(round(width * 832.0 / 192.0 / 16.0)) * 16)


def tlt_network_config(width: int = 192, num_heads: int = 8, layers_per_line: int = 3,
                       sss_threshold: float = 0.7, stem_channels=(32, 64, 128)) -> dict:
    """``TLTConfig`` fields for a planned width / heads / depth (the rest keeps the paper values)."""
    return {"channels": [int(c) for c in stem_channels] + [int(width)], "num_heads": int(num_heads),
            "layers_per_line": int(layers_per_line), "ffn_dim": tlt_ffn_dim(width), "head_hidden": int(width),
            "sss_threshold": float(sss_threshold)}


def _conv_params(cin: int, cout: int, k: int) -> int:
    return cin * cout * k ** 3


def tlt_parameter_count(channels=(32, 64, 128, 192), num_heads: int = 8, layers_per_line: int = 3,
                        ffn_dim: int = 832, head_hidden: int = 192, head_layers: int = 3,
                        blocks_per_stage: int = 1, stem_kernel: int = 7, in_channels: int = 1,
                        use_global_regression: bool = True, gaussian_input_channels: bool = False,
                        fine_matching: bool = False, **_ignored) -> int:
    """Exact parameter count of ``build_tlt`` for these settings (5,999,716 for the paper's)."""
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

    if fine_matching:          # the fine head's three scalars replace the regression MLP
        return n + mlp(1) + 3
    return n + mlp(1) + (mlp(3) if use_global_regression else 0)


def _tlt_extractor_saved_per_voxel(channels, blocks_per_stage: int = 1) -> float:
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


def tlt_memory(template_patch_zyx, search_patch_zyx, batch_size: int = 1, channels=(32, 64, 128, 192),
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
            reserved by :func:`usable_memory_bytes`).
    """
    channels = tuple(int(c) for c in channels)
    dim = channels[-1]
    ffn_dim = tlt_ffn_dim(dim) if ffn_dim is None else int(ffn_dim)
    head_hidden = dim if head_hidden is None else int(head_hidden)
    stride = 2 ** (len(channels) - 1)
    v_t, v_s = _prod(template_patch_zyx), _prod(search_patch_zyx)
    n_t_all = _prod(int(math.ceil(v / stride)) for v in template_patch_zyx)
    n_s = _prod(int(math.ceil(v / stride)) for v in search_patch_zyx)
    n_t = n_t_all if template_tokens is None else max(1, min(int(template_tokens), n_t_all))
    params = tlt_parameter_count(channels, num_heads, layers_per_line, ffn_dim, head_hidden, head_layers,
                                 blocks_per_stage)
    per_voxel = _tlt_extractor_saved_per_voxel(channels, blocks_per_stage)
    extractor = per_voxel * (v_t + v_s)
    attention = layers_per_line * (_ca_layer_saved(n_t, n_s, dim, ffn_dim, num_heads, attention_dropout)
                                   + _ca_layer_saved(n_s, n_t, dim, ffn_dim, num_heads, attention_dropout))
    attention += _ca_layer_saved(n_s, n_t, dim, ffn_dim, num_heads, attention_dropout)
    heads = 2 * head_layers * n_s * head_hidden
    activations = batch_size * (extractor + attention + heads)
    transient = batch_size * TLT_TRANSIENT_STEM_BUFFERS * channels[0] * max(v_t, v_s)
    return MemoryEstimate(
        parameters=params,
        parameter_bytes=params * BYTES_PER_FLOAT,
        gradient_bytes=params * BYTES_PER_FLOAT,
        optimizer_bytes=OPTIMIZER_STATES * params * BYTES_PER_FLOAT,
        activation_bytes=int(activations * BYTES_PER_FLOAT),
        transient_bytes=int(transient * BYTES_PER_FLOAT),
        overhead_bytes=CPU_RUNTIME_OVERHEAD_BYTES if device == "cpu" else 0,
        details={"template_tokens": n_t, "search_tokens": n_s,
                 "extractor_bytes": int(batch_size * extractor * BYTES_PER_FLOAT),
                 "attention_bytes": int(batch_size * attention * BYTES_PER_FLOAT)},
    )


# ================================================================================================ DLT
#: DenseNet-121's first three dense blocks, used for the 3D DenseFPN estimate
DLT_BLOCK_LAYERS = (6, 12, 24)


def dlt_parameter_count(growth_rate: int = 32, fpn_width: int = 64, block_layers=DLT_BLOCK_LAYERS,
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


def dlt_memory(template_patch_zyx, search_patch_zyx, batch_size: int = 1, growth_rate: int = 32,
               fpn_width: int = 64, block_layers=DLT_BLOCK_LAYERS, bn_size: int = 4, device: str = "cpu",
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
    v_t, v_s = _prod(template_patch_zyx), _prod(search_patch_zyx)
    activations = batch_size * saved_per_voxel * (v_t + v_s)
    transient = batch_size * 3.0 * 2 * k * max(v_t, v_s) / 8.0
    params = dlt_parameter_count(growth_rate, fpn_width, block_layers, bn_size)
    return MemoryEstimate(params, params * BYTES_PER_FLOAT, params * BYTES_PER_FLOAT,
                          OPTIMIZER_STATES * params * BYTES_PER_FLOAT, int(activations * BYTES_PER_FLOAT),
                          int(transient * BYTES_PER_FLOAT), CPU_RUNTIME_OVERHEAD_BYTES if device == "cpu" else 0,
                          {"estimate_only": True, "saved_floats_per_voxel": saved_per_voxel})


# ========================================================================================= LN-Tracker
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


def lntracker_parameter_count(hidden_dim: int = 256, encoder_layers: int = 6, decoder_layers: int = 9,
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


def lntracker_memory(patch_size_yx, batch_size: int = 8, slices_per_side: int = 1, num_queries: int = 300,
                     hidden_dim: int = 256, encoder_layers: int = 6, decoder_layers: int = 9,
                     ffn_dim: int | None = None, heads: int = 8, device: str = "cpu", **_ignored) -> MemoryEstimate:
    """**Estimate** (LN-Tracker is not implemented yet) of one training step on ``batch_size`` pairs of
    neighbouring slices. The 2.5D input of ``2 * slices_per_side + 1`` slices goes through ResNet-50
    in groups of 3 channels; multi-scale tokens (strides 8, 16, 32) feed the deformable encoder; the
    decoder runs on detection queries + as many track queries + denoising queries."""
    d = int(hidden_dim)
    f = 8 * d if ffn_dim is None else int(ffn_dim)
    pixels = _prod(patch_size_yx)
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
    params = lntracker_parameter_count(d, encoder_layers, decoder_layers, f, num_queries)
    return MemoryEstimate(params, params * BYTES_PER_FLOAT, params * BYTES_PER_FLOAT,
                          OPTIMIZER_STATES * params * BYTES_PER_FLOAT, int(activations * BYTES_PER_FLOAT),
                          int(transient * BYTES_PER_FLOAT), CPU_RUNTIME_OVERHEAD_BYTES if device == "cpu" else 0,
                          {"estimate_only": True, "slices": slices, "backbone_groups": groups,
                           "encoder_tokens": int(tokens), "decoder_queries": queries})


__all__ = ["MemoryEstimate", "usable_memory_bytes", "tlt_memory", "tlt_parameter_count", "tlt_network_config",
           "tlt_ffn_dim", "dlt_memory", "dlt_parameter_count", "lntracker_memory", "lntracker_parameter_count",
           "GIB", "MIB", "GPU_RESERVE_BYTES", "CPU_RESERVE_BYTES", "CPU_RUNTIME_OVERHEAD_BYTES"]
