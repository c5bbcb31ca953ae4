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

    optional correlation term (``correlation_head``, lesionnet): Ŷ += a · cos(search feature, template
    lesion feature) + bias, zero-mean over the search tokens (a Siamese matching signal for the extractor)

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

import torch
import torch.utils.checkpoint
from torch import nn

from lesionnet.methods.tlt.config import TLTConfig
from lesionnet.methods.tlt.ops import (
    argmax_center_zyx,
    feature_voxel_centers_zyx,
    heatmap_to_patch,
    local_soft_argmax_zyx,
    predict_center,
    resize_to_grid,
    select_template_tokens,
    template_ncc_maps,
)
from lesionnet.networks.blocks import (
    MLP,
    CrossAttentionLayer,
    ResNetEncoder3d,
    sine_positional_encoding_3d,
)


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
        self.correlation_scales = None
        if config.correlation_head:
            scale = float(config.correlation_scale)
            self.correlation_scales = nn.Parameter(torch.tensor([scale, -scale]))
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

    def _correlation(self, f_t: torch.Tensor, f_s: torch.Tensor, template_gaussian: torch.Tensor) -> torch.Tensor:
        """Zero-mean cosine similarity ``(B, Ns)`` of each search feature ``f_s (B, C, d, h, w)`` with the
        template lesion's feature: the mean of ``f_t (B, C, dt, ht, wt)`` weighted by
        ``G̃_t ** correlation_weight_power``; ``m``, the sample's mean search feature, is subtracted from both."""
        weights = resize_to_grid(template_gaussian, f_t.shape[2:]).flatten(1).clamp_min(0)  # (B, Nt)
        weights = weights ** self.config.correlation_weight_power
        weights = weights / weights.sum(1, keepdim=True).clamp_min(1e-12)
        template_vector = torch.einsum("bn,bcn->bc", weights.to(f_t.dtype), f_t.flatten(2))  # (B, C)
        search = f_s.flatten(2)                                                           # (B, C, Ns)
        mean = search.mean(2, keepdim=True)
        return torch.nn.functional.cosine_similarity(search - mean, (template_vector[:, :, None] - mean),
                                                     dim=1, eps=1e-6)

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
                in (0, 1], e.g. :func:`lesionnet.methods.tlt.maps.lesion_gaussian`) on the
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
            fine = template_ncc_maps(template, template_gaussian, search, cfg.fine_kernel_zyx, cfg.fine_weight_power)
            t_inputs.append(fine["ncc_template"])
            s_inputs.append(fine["ncc_search"])
        f_t = self._extract(torch.cat(t_inputs, dim=1))
        f_s = self._extract(torch.cat(s_inputs, dim=1))
        b, c, dt, ht, wt = f_t.shape
        _, _, ds, hs, ws = f_s.shape
        correlation = self._correlation(f_t, f_s, template_gaussian) if cfg.correlation_head else None
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
        if correlation is not None:
            scale, bias = self.correlation_scales
            logits_flat = logits_flat + scale * correlation + bias
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


__all__ = ["TLT", "TLTConfig", "build_tlt", "count_parameters"]
