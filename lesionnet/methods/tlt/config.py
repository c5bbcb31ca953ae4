"""TLT's hyper-parameters: :class:`TLTConfig` (the paper configuration by default).

A plan's ``network`` section holds exactly these fields (see :mod:`lesionnet.methods.tlt.planning`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from lesionnet.networks.blocks import NORMS
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
        correlation_head: lesionnet option, off in the paper configuration: a Siamese correlation term
            on the classification logits (DLT's and SiamFC's matching, on TLT's own extractor). The
            template lesion's feature vector is the mean of the template's extractor features weighted
            by ``G̃_t ** correlation_weight_power``; each search token's logit gets
            ``a · cos(f_s - m, z_t - m) + bias``, ``m`` the sample's mean search feature (so the
            similarity is zero-mean, as an NCC), ``a`` and ``bias`` learned, initialised to
            ``correlation_scale`` and ``-correlation_scale``. The focal loss then trains the extractor
            directly as a matching embedding.
        correlation_weight_power: the template weight is ``G̃_t ** p`` (12: ``exp(-d² / r²)``).
        correlation_scale: initial ``a``.
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
    correlation_head: bool = False
    correlation_weight_power: float = 12.0
    correlation_scale: float = 5.0

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
