"""Transformer Lesion Tracker (TLT, Tang et al., MICCAI 2022) — the network.

Pipeline (papers.md "TLT", the paper's Fig. 1 and Eq. 1-4; details in documentation/methods/tlt.md)::

    template (B,1,Dt,Ht,Wt) ──┐ shared 3D ResNet extractor (stride 8, C = 192)
    search   (B,1,Ds,Hs,Ws) ──┘        │
    template_gaussian ──trilinear──▶ SSS: keep template tokens with G̃_t > Tr (padded to the batch max)
    search_prior      ──trilinear──▶ RAAM: G̃_s added to the logits of template-line cross attention
                                       │
           CAT: N = 3 × [template line: Q template, K/V search | search line: Q search, K/V template]
                + 1 final CA on the search line
                                       │
           heads per search token: classification logit Ŷ, regression Ĉ (absolute position, voxels)
           global regression ĉ = Σ softmax(Ŷ) · Ĉ

    optional fine matching head (``fine_matching``, lesionnet): weighted NCC of the template lesion with
    the search patch at full resolution → extractor input + full-resolution logits
    upsample(Ŷ) + a · NCC + b · G_s + bias → local soft-arg-max (replaces the global regression)

Axis order and units of everything this module takes or returns:

* images and maps are ``(B, C, D, H, W)`` = array order ``(z, y, x)``;
* centers are ``center_zyx``: continuous voxel coordinates ``(z, y, x)`` of the **search patch at full
  resolution** (voxel centers at integers, the patch's first voxel is 0) — reverse with
  :func:`lesionnet.datasets.geometry.zyx_to_xyz` for ITK order;
* feature voxel ``k`` (stride ``s``) covers patch voxels ``s k .. s k + s - 1``; its center is patch
  coordinate ``s k + (s - 1) / 2`` — the same point trilinear resizing (``align_corners=False``) samples.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from lesionnet.networks.blocks import (
    MLP,
    NORMS,
    CrossAttentionLayer,
    ResNetEncoder3d,
    sine_positional_encoding_3d,
)
from lesionnet.networks.matching import weighted_ncc
from lesionnet.utils.dataclass_dict import dataclass_from_dict

# Paper configuration: parameters of build_tlt() (5.98 M in the paper; see documentation/methods/tlt.md).
PAPER_PARAMETER_COUNT = 5_980_000


@dataclass
class TLTConfig:
    """Hyper-parameters of :class:`TLT`. The defaults are the paper configuration (5.98 M parameters).

    Attributes:
        in_channels: image channels (1 for CT).
        channels: ``(stem, stage 1, stage 2, stage 3)`` widths; the last one is the token width C.
            One stride-2 stage per entry after the first, so the feature stride is
            ``2 ** (len(channels) - 1)`` (8 for the paper).
        blocks_per_stage: basic residual blocks per stage (1 in the paper configuration; 2 — ResNet18's
            layout — gives 5.66 M parameters in the extractor alone, which cannot fit the paper's
            5.98 M total with 7 cross-attention layers of width 192).
        stem_kernel: kernel of the first conv (7, stride 1).
        norm: ``"instance"`` (default; works with batch 1, keeps samples independent) or ``"batch"``.
        negative_slope: LeakyReLU slope of the extractor (0 gives ReLU).
        num_heads: attention heads (8).
        layers_per_line: N, cross-attention layers on each of the template and search lines (3);
            one more CA follows on the search line.
        ffn_dim: hidden width of each CA layer's feed-forward network (tuned so that the paper
            configuration has 5.98 M parameters).
        head_hidden, head_layers: width and depth of the classification and regression MLPs.
        dropout: dropout after attention and inside/after the FFN (0.1 as the public code).
        attention_dropout: dropout on the attention probabilities. 0 keeps the fused
            scaled-dot-product kernels (no stored attention matrix); > 0 makes most backends fall back
            to the unfused math path, which stores ``heads × Lq × Lk`` probabilities per layer.
        sss_threshold: Tr used in training mode (paper: 0.7).
        sss_threshold_test: Tr used in eval mode; None means ``sss_threshold`` (the public code tests
            with 0.9, the paper's ablation reports 0.7 as best).
        use_sss: False keeps every template token (ablation "without SSS").
        use_raam: False drops the registration prior from the attention (ablation "without RAAM").
        raam_on_search_line: public-code variant (off in the paper configuration): also add the
            template Gaussian values of the kept template tokens (keys) to the search-line logits.
        use_global_regression: False drops the regression head; the prediction is then the center of
            the arg-max feature voxel of the classification map (ablation "without global regression").
        positional_encoding: ``"sine"`` (fixed 3D sinusoidal, on feature-grid indices) or ``"none"``.
        gaussian_input_channels: lesionnet option, off in the paper configuration: also feed the
            template Gaussian and the search prior to the shared extractor as a second input channel
            (DLT's input format), so every search token sees the prior directly and not only through
            RAAM. It makes small networks trained briefly on a CPU learn the prior much faster.
        cls_prior: initial foreground probability of the classification bias (focal-loss prior init).
        checkpoint_extractor: activation checkpointing of the extractor in training: its activations
            (dominated by the full-resolution stem) are recomputed during backward instead of being
            stored, one image at a time. Same results, about one more extractor forward pass of
            compute, much less memory — and what is left is the attention, where SSS saves most.
        fine_matching: lesionnet option, off in the paper configuration, for feature cells much larger
            than the lesions (documentation/methods/tlt.md, "Fine matching"). The lesion's own
            appearance is matched at full resolution: a weighted normalised cross-correlation
            (:func:`lesionnet.networks.matching.weighted_ncc`) of the template's central
            ``fine_kernel_zyx`` voxels, weighted by ``G_t ** fine_weight_power``, with every search
            position (and with the template itself). The two maps are a third extractor input channel,
            and the output becomes full-resolution logits
            ``upsample(Ŷ) + a · NCC + b · G_s + bias`` (``a``, ``b``, ``bias`` learned, initialised to
            ``fine_ncc_scale``, ``fine_prior_scale`` and ``-(a + b)``) with a local soft-arg-max
            (``fine_window`` voxels around the peak) as the center; it replaces the global regression.
        fine_kernel_zyx: template voxels (odd) matched by the fine head; the planner sets it from the
            median lesion radius.
        fine_weight_power: the matching weight is ``G_t ** p``; 12 turns the TLT Gaussian
            ``exp(-d² / (12 r²))`` into ``exp(-d² / r²)``.
        fine_ncc_scale, fine_prior_scale: initial ``a`` and ``b``.
        fine_window: half-width (voxels) of the local soft-arg-max.
    """

    in_channels: int = 1
    channels: tuple = (32, 64, 128, 192)
    blocks_per_stage: int = 1
    stem_kernel: int = 7
    norm: str = "instance"
    negative_slope: float = 0.01
    num_heads: int = 8
    layers_per_line: int = 3
    ffn_dim: int = 832
    head_hidden: int = 192
    head_layers: int = 3
    dropout: float = 0.1
    attention_dropout: float = 0.0
    sss_threshold: float = 0.7
    sss_threshold_test: float | None = None
    use_sss: bool = True
    use_raam: bool = True
    raam_on_search_line: bool = False
    use_global_regression: bool = True
    positional_encoding: str = "sine"
    cls_prior: float = 0.01
    gaussian_input_channels: bool = False
    checkpoint_extractor: bool = False
    fine_matching: bool = False
    fine_kernel_zyx: tuple = (9, 13, 13)
    fine_weight_power: float = 12.0
    fine_ncc_scale: float = 8.0
    fine_prior_scale: float = 4.0
    fine_window: int = 2

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        self.fine_kernel_zyx = tuple(int(k) for k in self.fine_kernel_zyx)
        if len(self.fine_kernel_zyx) != 3 or any(k < 1 or k % 2 == 0 for k in self.fine_kernel_zyx):
            raise ValueError(f"fine_kernel_zyx must be three odd sizes, got {self.fine_kernel_zyx}")
        if self.fine_window < 1:
            raise ValueError(f"fine_window must be >= 1, got {self.fine_window}")
        if len(self.channels) < 2:
            raise ValueError(f"channels needs a stem width and at least one stage, got {self.channels}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.channels[-1] % self.num_heads:
            raise ValueError(f"token width {self.channels[-1]} is not divisible by {self.num_heads} heads")
        if self.positional_encoding not in ("sine", "none"):
            raise ValueError(f"positional_encoding must be 'sine' or 'none', got {self.positional_encoding!r}")
        for name in ("sss_threshold", "sss_threshold_test"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= float(value) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if not 0.0 < self.cls_prior < 1.0:
            raise ValueError(f"cls_prior must be in (0, 1), got {self.cls_prior}")

    @property
    def dim(self) -> int:
        """Token width C (the last extractor stage)."""
        return self.channels[-1]

    @property
    def stride(self) -> int:
        """Feature stride of the extractor (8 for the paper configuration)."""
        return 2 ** (len(self.channels) - 1)

    @property
    def output_stride(self) -> int:
        """Stride of the output logits: 1 with ``fine_matching`` (full resolution), else :attr:`stride`."""
        return 1 if self.fine_matching else self.stride

    @property
    def extractor_in_channels(self) -> int:
        """Image, plus the Gaussian map (``gaussian_input_channels``), plus the NCC map (``fine_matching``)."""
        return self.in_channels + int(self.gaussian_input_channels) + int(self.fine_matching)

    def to_dict(self) -> dict:
        """Plain JSON-able dict (for plans and checkpoints)."""
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TLTConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        return dataclass_from_dict(cls, d)

    @classmethod
    def tiny(cls, **overrides) -> "TLTConfig":
        """A ~70 k-parameter configuration for tests and CPU smoke runs (same structure, stride 8)."""
        base = {"channels": (8, 16, 16, 24), "num_heads": 4, "layers_per_line": 1, "ffn_dim": 48,
                "head_hidden": 24, "head_layers": 2, "dropout": 0.0, "stem_kernel": 3}
        base.update(overrides)
        return cls(**base)


class TokenSelection(NamedTuple):
    """Result of :func:`select_template_tokens` for a batch of B template feature grids of N tokens.

    Attributes:
        index: ``(B, L)`` long, flat (z, y, x row-major) indices of the kept tokens in ascending order,
            padded with 0 after ``counts[b]`` entries; ``L = counts.max()``.
        valid: ``(B, L)`` bool, False on padding.
        counts: ``(B,)`` long, tokens kept per sample (>= 1).
        keep_mask: ``(B, N)`` bool, the kept tokens on the flat grid.
        padding_bias: ``(B, 1, 1, L)`` float additive attention mask (0 valid, -inf padding) for
            attention with the kept tokens as keys, or None when no sample is padded.
    """

    index: torch.Tensor
    valid: torch.Tensor
    counts: torch.Tensor
    keep_mask: torch.Tensor
    padding_bias: torch.Tensor | None


def select_template_tokens(gaussian: torch.Tensor, threshold: float) -> TokenSelection:
    """Sparse Selection Strategy on a flattened resized template Gaussian ``gaussian (B, N)``.

    Keeps the tokens with ``gaussian > threshold`` (strict, as in the paper). A sample that keeps
    none (a lesion small against the stride, or a high threshold) keeps its arg-max token instead, so
    every sample has at least one key for the search-line attention. Samples keep different numbers
    of tokens; the sets are padded to the batch maximum and described by ``valid``/``padding_bias``.
    """
    if gaussian.dim() != 2:
        raise ValueError(f"gaussian must be (B, N), got shape {tuple(gaussian.shape)}")
    keep = gaussian > threshold
    empty = ~keep.any(dim=1)
    if bool(empty.any()):
        rows = torch.nonzero(empty, as_tuple=True)[0]
        keep[rows, gaussian[rows].argmax(dim=1)] = True
    counts = keep.sum(dim=1)
    length = int(counts.max())
    # Stable sort of (not kept) puts the kept indices first, in ascending order.
    order = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)
    index = order[:, :length]
    valid = torch.arange(length, device=gaussian.device)[None, :] < counts[:, None]
    index = torch.where(valid, index, torch.zeros_like(index))
    padding_bias = None
    if not bool(valid.all()):
        padding_bias = torch.zeros(valid.shape, dtype=gaussian.dtype, device=gaussian.device)
        padding_bias = padding_bias.masked_fill(~valid, float("-inf"))[:, None, None, :]
    return TokenSelection(index, valid, counts, keep, padding_bias)


def feature_voxel_centers_zyx(shape_zyx, stride: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Patch coordinates ``(z, y, x)`` of the centers of a feature grid's voxels, ``(D * H * W, 3)``.

    Feature voxel ``k`` has center ``stride * k + (stride - 1) / 2`` on each axis (row-major order).
    """
    axes = [torch.arange(int(n), device=device, dtype=dtype) * stride + (stride - 1) / 2.0
            for n in shape_zyx]
    grid = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grid], dim=1)


def argmax_center_zyx(logits: torch.Tensor, stride: int) -> torch.Tensor:
    """Center of the arg-max feature voxel of ``logits (B, 1, D, H, W)`` as patch coordinates ``(B, 3)``
    ``(z, y, x)`` at full resolution (``stride * k + (stride - 1) / 2``). Not differentiable."""
    b, _, _, h, w = logits.shape
    flat = logits.reshape(b, -1).argmax(dim=1)
    z = torch.div(flat, h * w, rounding_mode="floor")
    y = torch.div(flat % (h * w), w, rounding_mode="floor")
    x = flat % w
    k = torch.stack((z, y, x), dim=1).to(logits.dtype)
    return k * stride + (stride - 1) / 2.0


def gaussian_peak_zyx(gaussian: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest voxel and sub-voxel center of a Gaussian map ``(B, 1, D, H, W)``, e.g. the template's.

    Returns ``k0 (B, 3)`` long, the arg-max voxel (z, y, x), and ``offset (B, 3)`` float, the center
    minus ``k0`` in voxels: per axis, the vertex of the parabola through ``log G`` at ``k0 - 1, k0, k0 + 1``
    (exact for ``exp(-|p - c|² / s)``, whose logarithm is quadratic and separable); 0 on a border or a
    flat profile.
    """
    b, _, d, h, w = gaussian.shape
    flat = gaussian.reshape(b, -1).argmax(dim=1)
    k0 = torch.stack((torch.div(flat, h * w, rounding_mode="floor"),
                      torch.div(flat % (h * w), w, rounding_mode="floor"), flat % w), dim=1)
    log_g = torch.log(gaussian[:, 0].double().clamp(min=1e-300))
    offset = torch.zeros(b, 3, dtype=torch.float64, device=gaussian.device)
    for i in range(b):
        z, y, x = (int(v) for v in k0[i])
        for axis, (line, k) in enumerate(((log_g[i, :, y, x], z), (log_g[i, z, :, x], y), (log_g[i, z, y, :], x))):
            if 0 < k < line.shape[0] - 1:
                lo, mid, hi = line[k - 1], line[k], line[k + 1]
                curvature = lo - 2 * mid + hi
                if curvature < 0:
                    offset[i, axis] = (0.5 * (lo - hi) / curvature).clamp(-0.5, 0.5)
    return k0, offset.to(gaussian.dtype)


def crop_around_zyx(image: torch.Tensor, weight: torch.Tensor, center_zyx: torch.Tensor,
                    kernel_zyx) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample crops of ``kernel_zyx`` (odd) voxels centred on ``center_zyx (B, 3)`` (long) from
    ``image (B, C, D, H, W)`` and ``weight (B, 1, D, H, W)``; outside the volume the image is 0 and the
    weight 0. Returns ``(B, C, kd, kh, kw)`` and ``(B, 1, kd, kh, kw)``."""
    half = [int(k) // 2 for k in kernel_zyx]
    pad = [p for h in reversed(half) for p in (h, h)]
    image_p, weight_p = F.pad(image, pad), F.pad(weight, pad)
    crops, weights = [], []
    for i in range(image.shape[0]):
        z, y, x = (int(v) for v in center_zyx[i])
        region = (slice(z, z + kernel_zyx[0]), slice(y, y + kernel_zyx[1]), slice(x, x + kernel_zyx[2]))
        crops.append(image_p[(i, slice(None)) + region])
        weights.append(weight_p[(i, slice(None)) + region])
    return torch.stack(crops), torch.stack(weights)


def local_soft_argmax_zyx(logits: torch.Tensor, half_width: int) -> torch.Tensor:
    """Soft-arg-max of ``logits (B, 1, D, H, W)`` in the ``(2 half_width + 1)³`` window around its
    arg-max (moved inside the volume at a border): ``Σ softmax(window) · position``, voxels ``(B, 3)``
    (z, y, x). Differentiable in the logits of the window."""
    b, _, d, h, w = logits.shape
    size = [min(2 * half_width + 1, n) for n in (d, h, w)]
    peak = argmax_center_zyx(logits.detach(), 1).long()
    centers = []
    for i in range(b):
        start = [min(max(int(peak[i, a]) - half_width, 0), n - s) for a, (n, s) in enumerate(zip((d, h, w), size))]
        window = logits[i, 0, start[0]:start[0] + size[0], start[1]:start[1] + size[1], start[2]:start[2] + size[2]]
        p = torch.softmax(window.reshape(-1), dim=0).view(*size)
        grid = feature_voxel_centers_zyx(size, 1, device=logits.device, dtype=logits.dtype)  # (N, 3)
        centers.append(p.reshape(-1) @ grid + torch.tensor(start, device=logits.device, dtype=logits.dtype))
    return torch.stack(centers)


def resize_to_grid(volume: torch.Tensor, shape_zyx) -> torch.Tensor:
    """Trilinear resize (``align_corners=False``, no antialiasing) of ``(B, C, D, H, W)`` to ``shape_zyx``.

    Downsampling by a factor s samples the input at ``s k + (s - 1) / 2``, i.e. at the centers of the
    feature voxels (see :func:`feature_voxel_centers_zyx`).
    """
    return F.interpolate(volume.float(), size=tuple(int(v) for v in shape_zyx), mode="trilinear",
                         align_corners=False)


def heatmap_to_patch(heatmap: torch.Tensor, patch_shape_zyx) -> torch.Tensor:
    """Upsample a feature-resolution map ``(B, 1, d, h, w)`` to the search patch ``(B, 1, D, H, W)``
    (trilinear, ``align_corners=False``: feature voxel centers land on ``s k + (s - 1) / 2``)."""
    return resize_to_grid(heatmap, patch_shape_zyx)


class TLT(nn.Module):
    """Transformer Lesion Tracker. Build with :func:`build_tlt`.

    ``forward(template, template_gaussian, search, search_prior)`` → dict (see :meth:`forward`).
    """

    def __init__(self, config: TLTConfig | None = None):
        super().__init__()
        self.config = config = config if config is not None else TLTConfig()
        c = config.dim
        self.extractor = ResNetEncoder3d(config.extractor_in_channels, config.channels[0], config.channels[1:],
                                         config.blocks_per_stage, config.stem_kernel, config.norm,
                                         config.negative_slope)
        self.stride = self.extractor.stride
        self.output_stride = config.output_stride

        def ca():
            return CrossAttentionLayer(c, config.num_heads, config.ffn_dim, config.dropout,
                                       config.attention_dropout)

        self.template_layers = nn.ModuleList(ca() for _ in range(config.layers_per_line))
        self.search_layers = nn.ModuleList(ca() for _ in range(config.layers_per_line))
        self.final_layer = ca()
        self.cls_head = MLP(c, config.head_hidden, 1, config.head_layers)
        nn.init.constant_(self.cls_head.layers[-1].bias, -math.log((1 - config.cls_prior) / config.cls_prior))
        self.reg_head = None
        self.fine_scales = None
        if config.fine_matching:
            # a (NCC), b (prior), bias: a perfect match on the prior peak starts at the coarse logit
            a, b = float(config.fine_ncc_scale), float(config.fine_prior_scale)
            self.fine_scales = nn.Parameter(torch.tensor([a, b, -(a + b)]))
        elif config.use_global_regression:
            self.reg_head = MLP(c, config.head_hidden, 3, config.head_layers)
            # Start at the token centers: Ĉ = token center + stride * 0.
            nn.init.zeros_(self.reg_head.layers[-1].weight)
            nn.init.zeros_(self.reg_head.layers[-1].bias)

    # ------------------------------------------------------------------ helpers
    @property
    def sss_threshold(self) -> float:
        """Tr in effect: ``sss_threshold`` in training mode, ``sss_threshold_test`` (if set) in eval mode."""
        cfg = self.config
        if not self.training and cfg.sss_threshold_test is not None:
            return float(cfg.sss_threshold_test)
        return float(cfg.sss_threshold)

    def _check_inputs(self, template, template_gaussian, search, search_prior):
        cfg, s = self.config, self.stride
        for name, t, ch in (("template", template, cfg.in_channels), ("search", search, cfg.in_channels)):
            if t.dim() != 5 or t.shape[1] != ch:
                raise ValueError(f"{name} must be (B, {ch}, D, H, W), got shape {tuple(t.shape)}")
            if any(n % s for n in t.shape[2:]):
                raise ValueError(f"{name} spatial size {tuple(t.shape[2:])} must be a multiple of the "
                                 f"feature stride {s} on every axis; pad or crop the patch")
        if template.shape[0] != search.shape[0]:
            raise ValueError(f"batch sizes differ: template {template.shape[0]}, search {search.shape[0]}")
        b = template.shape[0]
        for name, m, ref, needed in (("template_gaussian", template_gaussian, template,
                                      cfg.use_sss or cfg.gaussian_input_channels or cfg.fine_matching),
                                     ("search_prior", search_prior, search,
                                      cfg.use_raam or cfg.gaussian_input_channels or cfg.fine_matching)):
            if m is None:
                if needed:
                    raise ValueError(f"{name} is required by this configuration (use_sss={cfg.use_sss}, "
                                     f"use_raam={cfg.use_raam})")
                continue
            if tuple(m.shape) != (b, 1) + tuple(ref.shape[2:]):
                raise ValueError(f"{name} must be (B, 1) + the image's spatial shape "
                                 f"{(b, 1) + tuple(ref.shape[2:])}, got {tuple(m.shape)}")

    def _extract(self, image: torch.Tensor) -> torch.Tensor:
        """Extractor features of ``image (B, C, D, H, W)``, recomputed in backward when
        ``checkpoint_extractor`` is on (training with gradients only)."""
        if self.config.checkpoint_extractor and self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(self.extractor, image, use_reentrant=False)
        return self.extractor(image)

    @torch.no_grad()
    def _fine_matching_maps(self, template: torch.Tensor, template_gaussian: torch.Tensor,
                            search: torch.Tensor) -> dict:
        """The fine head's fixed inputs (no gradients: they depend on the images only).

        Returns ``ncc_search (B, 1, Ds, Hs, Ws)`` and ``ncc_template (B, 1, Dt, Ht, Wt)`` (weighted NCC
        of the kernel centred on the template lesion's nearest voxel ``k0``) and
        ``center_offset_zyx (B, 3)``: lesion center minus ``k0`` (voxels), to add to a position found
        on the NCC maps.
        """
        cfg = self.config
        k0, offset = gaussian_peak_zyx(template_gaussian)
        kernel, weight = crop_around_zyx(template, template_gaussian, k0, cfg.fine_kernel_zyx)
        weight = weight.clamp(min=0.0) ** cfg.fine_weight_power
        return {"ncc_search": weighted_ncc(search.float(), kernel.float(), weight.float()).to(search.dtype),
                "ncc_template": weighted_ncc(template.float(), kernel.float(), weight.float()).to(template.dtype),
                "center_offset_zyx": offset.to(search.dtype)}

    def _pos(self, shape_zyx, like: torch.Tensor) -> torch.Tensor | None:
        if self.config.positional_encoding == "none":
            return None
        return sine_positional_encoding_3d(shape_zyx, self.config.dim, device=like.device,
                                           dtype=like.dtype)[None]

    # ------------------------------------------------------------------ forward
    def forward(self, template: torch.Tensor, template_gaussian: torch.Tensor | None, search: torch.Tensor,
                search_prior: torch.Tensor | None = None, sss_threshold: float | None = None) -> dict:
        """Track one lesion per sample.

        Args:
            template: ``(B, 1, Dt, Ht, Wt)`` template patch (baseline scan), intensity-normalised.
            template_gaussian: ``(B, 1, Dt, Ht, Wt)`` TLT Gaussian of the template lesion (Eq. 1, values
                in (0, 1], e.g. :func:`lesionnet.registration.anatomy_maps.tlt_gaussian`) on the
                template patch grid. Used by SSS; may be None when ``use_sss`` is off.
            search: ``(B, 1, Ds, Hs, Ws)`` search patch (follow-up scan).
            search_prior: ``(B, 1, Ds, Hs, Ws)`` registration prior ``G_s = T_aff(G_t)`` on the search
                patch grid (values in [0, 1]). Used by RAAM; may be None when ``use_raam`` is off.
            sss_threshold: overrides the configured Tr for this call.

            All spatial sizes must be multiples of the stride (8); template and search may differ.

        Returns:
            dict with (``d, h, w = Ds/8, Hs/8, Ws/8``; ``dt, ht, wt`` likewise for the template):

            * ``logits`` ``(B, 1, d, h, w)``: classification logits Ŷ on the search feature grid;
            * ``heatmap`` ``(B, 1, d, h, w)``: ``sigmoid(logits)`` at feature resolution
              (:func:`heatmap_to_patch` upsamples it to the patch);
            * ``center_zyx`` ``(B, 3)``: the predicted center, continuous voxel coordinates (z, y, x)
              of the search patch at full resolution — the global regression ``Σ softmax(Ŷ) Ĉ``
              (differentiable) or, with ``use_global_regression`` off, the arg-max voxel center;
            * ``token_centers_zyx`` ``(B, 3, d, h, w)`` (global regression only): Ĉ, each token's
              regressed absolute center (z, y, x) in search-patch voxels;
            * ``template_keep_mask`` ``(B, 1, dt, ht, wt)`` bool: template tokens used by the attention;
            * ``template_token_counts`` ``(B,)`` long: how many.

            With ``fine_matching``, ``logits`` and ``heatmap`` are ``(B, 1, Ds, Hs, Ws)`` (full
            resolution, :attr:`output_stride` 1), ``center_zyx`` is their local soft-arg-max plus the
            template's sub-voxel offset, ``coarse_logits`` ``(B, 1, d, h, w)`` holds Ŷ, and there is no
            ``token_centers_zyx``.
        """
        cfg = self.config
        self._check_inputs(template, template_gaussian, search, search_prior)
        t_inputs, s_inputs = [template], [search]
        if cfg.gaussian_input_channels:
            t_inputs.append(template_gaussian.to(template.dtype))
            s_inputs.append(search_prior.to(search.dtype))
        fine = None
        if cfg.fine_matching:
            fine = self._fine_matching_maps(template, template_gaussian, search)
            t_inputs.append(fine["ncc_template"])
            s_inputs.append(fine["ncc_search"])
        f_t = self._extract(torch.cat(t_inputs, dim=1))
        f_s = self._extract(torch.cat(s_inputs, dim=1))
        b, c, dt, ht, wt = f_t.shape
        _, _, ds, hs, ws = f_s.shape
        t = f_t.flatten(2).transpose(1, 2)          # (B, Nt, C)
        s = f_s.flatten(2).transpose(1, 2)          # (B, Ns, C)
        pos_t = self._pos((dt, ht, wt), t)          # (1, Nt, C) or None
        pos_s = self._pos((ds, hs, ws), s)

        # Sparse Selection Strategy: keep template tokens where the resized Gaussian exceeds Tr.
        search_line_bias = None
        g_t = None
        if cfg.use_sss or cfg.raam_on_search_line:
            g_t = resize_to_grid(template_gaussian, (dt, ht, wt)).flatten(1)    # (B, Nt)
        if cfg.use_sss:
            threshold = self.sss_threshold if sss_threshold is None else float(sss_threshold)
            sel = select_template_tokens(g_t, threshold)
            gather = sel.index[:, :, None].expand(-1, -1, c)
            t = torch.gather(t, 1, gather)
            if pos_t is not None:
                pos_t = torch.gather(pos_t.expand(b, -1, -1), 1, gather)
            if cfg.raam_on_search_line:
                g_t = torch.gather(g_t, 1, sel.index)
            search_line_bias = sel.padding_bias
            keep_mask, counts = sel.keep_mask, sel.counts
        else:
            keep_mask = torch.ones(b, dt * ht * wt, dtype=torch.bool, device=t.device)
            counts = torch.full((b,), dt * ht * wt, dtype=torch.long, device=t.device)
        if cfg.raam_on_search_line:
            extra = g_t[:, None, None, :].to(t.dtype)
            search_line_bias = extra if search_line_bias is None else search_line_bias + extra

        # RAAM (Eq. 2-3): M_A = O ⊗ G_s^T, O = ones(L): every template query adds G̃_s[key] to its
        # logit for search key `key`. Broadcast as (B, 1, 1, Ns) instead of materialising L × Ns.
        template_line_bias = None
        if cfg.use_raam:
            g_s = resize_to_grid(search_prior, (ds, hs, ws)).flatten(1)           # (B, Ns)
            template_line_bias = g_s[:, None, None, :].to(s.dtype)

        # Cross-Attention Transformer: both lines update from the previous layer's outputs.
        for template_layer, search_layer in zip(self.template_layers, self.search_layers):
            t, s = (template_layer(t, s, pos_t, pos_s, template_line_bias),
                    search_layer(s, t, pos_s, pos_t, search_line_bias))
        s = self.final_layer(s, t, pos_s, pos_t, search_line_bias)                 # (B, Ns, C)

        logits_flat = self.cls_head(s).squeeze(-1)                                  # (B, Ns)
        logits = logits_flat.view(b, 1, ds, hs, ws)
        out = {
            "logits": logits,
            "heatmap": torch.sigmoid(logits),
            "template_keep_mask": keep_mask.view(b, 1, dt, ht, wt),
            "template_token_counts": counts,
        }
        if fine is not None:
            a, b_prior, bias = self.fine_scales
            fine_logits = (heatmap_to_patch(logits, search.shape[2:]) + a * fine["ncc_search"]
                           + b_prior * search_prior.to(logits.dtype) + bias)
            out["coarse_logits"] = logits
            out["logits"] = fine_logits
            out["heatmap"] = torch.sigmoid(fine_logits)
            out["center_zyx"] = local_soft_argmax_zyx(fine_logits, cfg.fine_window) + fine["center_offset_zyx"]
        elif self.reg_head is not None:
            centers = feature_voxel_centers_zyx((ds, hs, ws), self.stride, device=s.device, dtype=s.dtype)
            c_hat = centers[None] + self.stride * self.reg_head(s)                 # (B, Ns, 3) voxels
            weights = torch.softmax(logits_flat, dim=1)                             # (B, Ns)
            out["center_zyx"] = torch.einsum("bn,bnk->bk", weights, c_hat)
            out["token_centers_zyx"] = c_hat.transpose(1, 2).reshape(b, 3, ds, hs, ws)
        else:
            out["center_zyx"] = argmax_center_zyx(logits.detach(), self.stride)
        return out

    def predict_center(self, outputs: dict, use_global_regression: bool | None = None) -> torch.Tensor:
        """Predicted centers ``(B, 3)`` (z, y, x), search-patch voxels, from :meth:`forward`'s output.

        ``use_global_regression`` (default: the configuration's) chooses the trained center — the
        global regression ``Σ softmax(Ŷ) Ĉ`` or, with ``fine_matching``, the local soft-arg-max; False
        gives the center of the arg-max voxel of the logits (at :attr:`output_stride`).
        """
        cfg = self.config
        default = cfg.use_global_regression or cfg.fine_matching
        return predict_center(outputs, self.output_stride, default if use_global_regression is None
                              else use_global_regression)


def predict_center(outputs: dict, stride: int = 8, use_global_regression: bool = True) -> torch.Tensor:
    """Center ``(B, 3)`` (z, y, x) in search-patch voxels from a TLT output dict (detached).

    The trained center (``center_zyx``) when requested and the network has one (``token_centers_zyx``
    of the global regression, or ``coarse_logits`` of the fine head, present), else the center of the
    arg-max voxel of ``logits`` (whose stride is ``stride``).
    """
    if use_global_regression and ("token_centers_zyx" in outputs or "coarse_logits" in outputs):
        return outputs["center_zyx"].detach()
    return argmax_center_zyx(outputs["logits"].detach(), stride)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """``sum(p.numel())`` over the model's parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def build_tlt(config: TLTConfig | dict | None = None, **overrides) -> TLT:
    """Build a :class:`TLT`. ``None`` gives the paper configuration; a dict goes through
    :meth:`TLTConfig.from_dict`; keyword overrides replace single fields (e.g. ``use_sss=False``)."""
    if config is None:
        config = TLTConfig(**overrides)
    else:
        if isinstance(config, dict):
            config = TLTConfig.from_dict(config)
        if overrides:
            config = TLTConfig(**{**config.to_dict(), **overrides})
    return TLT(config)
