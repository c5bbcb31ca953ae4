"""LN-Tracker's network: a 2.5D slice detector with track queries (papers.md "LN-Tracker").

Pipeline of one slice (``detect``)::

    2k+1 adjacent slices as channels (B, S, H, W) ── small 2D ResNet (stride 2^len(widths)) ── 1x1 conv → C
        ── transformer encoder (self-attention over the H/s × W/s tokens, 2D sine positions)
    queries = [track queries (T, from slice z-1) | detection queries (N: the encoder's best box proposals)]
        ── decoder layers: self-attention with the mask M (detection queries do not see track queries;
           track queries see everything), cross-attention to the encoder tokens
        ── heads: score logit, box (sigmoid [cx, cy, w, h] of the patch), embedding for the similarity φ

Training (``forward``) runs a chain of L adjacent slices bottom up: the first with detection queries
only; the boxes of each slice are assigned to its queries (Hungarian, :mod:`~lesionnet.methods.lntracker.matcher`),
and the matched queries' outputs become track queries of the next slice that keep their instance
identity (tracks whose node continues, plus the newly matched detections; some dropped and unmatched
queries added as false positives, as augmentation). The criterion (:mod:`~lesionnet.methods.lntracker.criterion`)
scores every pass. Shapes: one slice's input ``(B, S, H, W)`` (``S = 2k+1`` slices, ``H, W`` multiples
of the stride), boxes ``[x1, y1, x2, y2]`` pixels of the patch, half open (:mod:`~lesionnet.methods.lntracker.boxes`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from lesionnet.methods.lntracker.boxes import xyxy_to_cxcywh
from lesionnet.methods.lntracker.matcher import MatchCosts, hungarian_match
from lesionnet.networks.blocks import MLP, CrossAttentionLayer

#: identity of a false-positive track query, and of a padded (absent) one
FALSE_POSITIVE, PADDING = -1, -2


@dataclass
class LNTrackerConfig:
    """Sizes (the plan's) and switches (the paper's ablations) of :class:`LNTracker`."""
    num_input_slices: int = 3
    hidden_dim: int = 128
    encoder_layers: int = 2
    decoder_layers: int = 3
    num_heads: int = 4
    ffn_dim: int = 256
    num_queries: int = 30
    backbone_widths: tuple = (32, 64, 128, 128)
    similarity_dim: int = 64
    dropout: float = 0.0
    attention_mask: bool = True          # ablation "without the attention mask": False
    track_drop_probability: float = 0.1  # training augmentation of the track queries
    false_track_queries: int = 2         # unmatched queries added as false-positive track queries
    match_costs: dict = field(default_factory=lambda: asdict(MatchCosts()))

    @property
    def stride(self) -> int:
        return 2 ** len(self.backbone_widths)

    @classmethod
    def from_dict(cls, values: dict) -> "LNTrackerConfig":
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        if "backbone_widths" in known:
            known["backbone_widths"] = tuple(int(v) for v in known["backbone_widths"])
        return cls(**known)


def sine_positional_encoding_2d(height: int, width: int, channels: int, temperature: float = 10000.0,
                                device=None) -> torch.Tensor:
    """``(H * W, channels)`` sinusoidal encoding of a 2D grid, rows in (y, x) row-major order; half the
    channels encode y, half x (DETR's layout)."""
    per_axis = channels // 2 // 2 * 2
    freq = temperature ** (torch.arange(per_axis // 2, device=device, dtype=torch.float32) * 2.0 / per_axis)
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32),
                            torch.arange(width, device=device, dtype=torch.float32), indexing="ij")
    parts = [torch.stack(((g.reshape(-1, 1) / freq).sin(), (g.reshape(-1, 1) / freq).cos()), -1).reshape(-1, per_axis)
             for g in (ys, xs)]
    pos = torch.cat(parts, dim=1)
    return torch.cat((pos, pos.new_zeros(pos.shape[0], channels - pos.shape[1])), dim=1)


def sine_encoding_of_points(points_xy: torch.Tensor, channels: int, temperature: float = 10000.0) -> torch.Tensor:
    """``(..., channels)`` encoding of continuous points ``(..., 2)`` given as ``(x, y)`` in token-grid units,
    in the layout of :func:`sine_positional_encoding_2d` (y half first), so that a query placed at a
    token's center gets that token's encoding."""
    per_axis = channels // 2 // 2 * 2
    freq = temperature ** (torch.arange(per_axis // 2, device=points_xy.device, dtype=torch.float32) * 2.0 / per_axis)
    parts = []
    for coordinate in (points_xy[..., 1], points_xy[..., 0]):
        angle = coordinate.float()[..., None] / freq
        parts.append(torch.stack((angle.sin(), angle.cos()), -1).flatten(-2))
    pos = torch.cat(parts, dim=-1)
    return torch.cat((pos, pos.new_zeros(*pos.shape[:-1], channels - pos.shape[-1])), dim=-1)


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


class ResBlock2d(nn.Module):
    """Two 3x3 convolutions with instance norm and a (strided) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            nn.InstanceNorm2d(out_channels, affine=True), nn.LeakyReLU(0.01, inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False), nn.InstanceNorm2d(out_channels, affine=True))
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                      nn.InstanceNorm2d(out_channels, affine=True))
        self.act = nn.LeakyReLU(0.01, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class DecoderLayer(nn.Module):
    """Query self-attention (with the additive mask) then cross-attention to the encoder tokens."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.self_attention = CrossAttentionLayer(dim, heads, ffn_dim, dropout)
        self.cross_attention = CrossAttentionLayer(dim, heads, ffn_dim, dropout)

    def forward(self, queries, query_pos, memory, memory_pos, mask):
        queries = self.self_attention(queries, queries, query_pos, query_pos, mask)
        return self.cross_attention(queries, memory, query_pos, memory_pos)


class LNTracker(nn.Module):
    """See the module docstring. Build with :func:`build_lntracker`."""

    def __init__(self, config: LNTrackerConfig):
        super().__init__()
        self.config = cfg = config
        widths = list(cfg.backbone_widths)
        self.backbone = nn.Sequential(*[ResBlock2d(a, b, 2) for a, b in zip([cfg.num_input_slices] + widths[:-1],
                                                                              widths)])
        self.input_proj = nn.Conv2d(widths[-1], cfg.hidden_dim, 1)
        self.encoder = nn.ModuleList(CrossAttentionLayer(cfg.hidden_dim, cfg.num_heads, cfg.ffn_dim, cfg.dropout)
                                     for _ in range(cfg.encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(cfg.hidden_dim, cfg.num_heads, cfg.ffn_dim, cfg.dropout)
                                     for _ in range(cfg.decoder_layers))
        # two-stage queries (Deformable DETR): every encoder token proposes a box around its own center; the
        # num_queries best proposals become the detection queries of the decoder
        self.proposal_score_head = nn.Linear(cfg.hidden_dim, 1)
        self.proposal_box_head = MLP(cfg.hidden_dim, cfg.hidden_dim, 4, 2)
        self.pos_mlp = MLP(cfg.hidden_dim, cfg.hidden_dim, cfg.hidden_dim, 2)
        self.score_head = nn.Linear(cfg.hidden_dim, 1)
        self.box_head = MLP(cfg.hidden_dim, cfg.hidden_dim, 4, 3)
        self.similarity_head = MLP(cfg.hidden_dim, cfg.hidden_dim, cfg.similarity_dim, 2)
        prior = -math.log((1 - 0.01) / 0.01)                               # focal-loss prior π = 0.01
        for score, box in ((self.score_head, self.box_head), (self.proposal_score_head, self.proposal_box_head)):
            nn.init.constant_(score.bias, prior)
            nn.init.zeros_(box.layers[-1].weight)
            with torch.no_grad():                  # boxes start at their reference, 8 % of the patch wide
                box.layers[-1].bias.copy_(torch.tensor([0.0, 0.0, -2.4, -2.4]))

    # ------------------------------------------------------------------ one slice
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder tokens ``(B, L, C)`` and their positions ``(1, L, C)`` of ``images (B, S, H, W)``."""
        stride = self.config.stride
        if images.ndim != 4 or images.shape[1] != self.config.num_input_slices or \
                images.shape[2] % stride or images.shape[3] % stride:
            raise ValueError(f"images must be (B, {self.config.num_input_slices}, H, W) with H, W multiples of "
                             f"{stride}, got {tuple(images.shape)}")
        features = self.input_proj(self.backbone(images))
        b, c, h, w = features.shape
        tokens = features.flatten(2).transpose(1, 2)
        pos = sine_positional_encoding_2d(h, w, c, device=images.device).to(tokens.dtype)[None]
        for layer in self.encoder:
            tokens = layer(tokens, tokens, pos, pos)
        return tokens, pos

    @staticmethod
    def _boxes(reference: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Normalised ``[cx, cy, w, h]``: the center moved from ``reference (…, 2)`` in logit space, the size
        a sigmoid."""
        center = (inverse_sigmoid(reference) + delta[..., :2]).sigmoid()
        return torch.cat((center, delta[..., 2:].sigmoid()), dim=-1)

    def detect(self, images: torch.Tensor, track_queries: torch.Tensor | None = None,
               track_valid: torch.Tensor | None = None) -> dict:
        """One slice: ``images (B, S, H, W)`` and track queries ``(B, T, C + 2)`` (each one's embedding and
        its reference point ``(cx, cy)``, the normalised center of its box on the slice before), with
        ``track_valid (B, T)`` bool (False for padding).

        Returns ``logits (B, T+N)``, ``boxes (B, T+N, 4)`` normalised ``[cx, cy, w, h]``, ``queries
        (B, T+N, C + 2)`` (embeddings and box centers, what a track query of the next slice is made of),
        ``embeddings (B, T+N, C)``, ``num_track`` T (the first T rows are the track queries), and the
        encoder's proposals ``proposal_logits (B, L)`` / ``proposal_boxes (B, L, 4)``, one per token. The
        ``N = min(num_queries, L)`` detection queries are the best proposals (content: the token; reference:
        its proposed center). Every query looks around its reference point (its positional encoding is the
        tokens' sine encoding there) and predicts its box center relative to it."""
        cfg = self.config
        memory, memory_pos = self.encode(images)
        b, length, _ = memory.shape
        grid_h, grid_w = images.shape[2] // cfg.stride, images.shape[3] // cfg.stride
        ys, xs = torch.meshgrid(torch.arange(grid_h, device=images.device), torch.arange(grid_w, device=images.device),
                                indexing="ij")
        token_centers = torch.stack(((xs.flatten() + 0.5) / grid_w, (ys.flatten() + 0.5) / grid_h), -1)
        proposal_logits = self.proposal_score_head(memory).squeeze(-1)
        proposal_boxes = self._boxes(token_centers[None].to(memory.dtype), self.proposal_box_head(memory))
        n = min(cfg.num_queries, length)
        best = proposal_logits.detach().topk(n, dim=1).indices                             # (B, N)
        queries = torch.gather(memory, 1, best[..., None].expand(-1, -1, memory.shape[-1]))
        reference = torch.gather(proposal_boxes[..., :2].detach(), 1, best[..., None].expand(-1, -1, 2))
        t = 0 if track_queries is None else track_queries.shape[1]
        mask = None
        if t:
            queries = torch.cat((track_queries[..., :-2], queries), dim=1)
            reference = torch.cat((track_queries[..., -2:].detach(), reference), dim=1)
            valid = torch.ones(b, t, dtype=torch.bool, device=images.device) if track_valid is None else track_valid
            blocked = torch.zeros(b, t + n, t + n, dtype=torch.bool, device=images.device)
            blocked[:, :, :t] = ~valid[:, None, :]                  # padded track queries are no keys
            if cfg.attention_mask:
                blocked[:, t:, :t] = True                          # detection queries do not see track queries
            mask = torch.zeros(blocked.shape, dtype=memory.dtype, device=images.device)
            mask = mask.masked_fill(blocked, float("-inf"))[:, None]
        scale = torch.tensor([grid_w, grid_h], dtype=reference.dtype, device=reference.device)
        query_pos = self.pos_mlp(sine_encoding_of_points(reference * scale - 0.5, cfg.hidden_dim).to(memory.dtype))
        for layer in self.decoder:
            queries = layer(queries, query_pos, memory, memory_pos, mask)
        boxes = self._boxes(reference, self.box_head(queries))
        return {"logits": self.score_head(queries).squeeze(-1), "boxes": boxes, "embeddings": queries,
                "queries": torch.cat((queries, boxes[..., :2]), dim=-1), "num_track": t,
                "proposal_logits": proposal_logits, "proposal_boxes": proposal_boxes}

    def similarity_logits(self, previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """``φ(Q_{z-1}) φ(Q_z)ᵀ / sqrt(d)``: ``(B, T, C)`` and ``(B, T', C)`` → ``(B, T, T')`` logits."""
        a, b = self.similarity_head(previous), self.similarity_head(current)
        return a @ b.transpose(1, 2) / math.sqrt(a.shape[-1])

    # ------------------------------------------------------------------ training: the next track queries
    def _next_tracks(self, out: dict, ids: torch.Tensor, boxes: torch.Tensor, patch,
                     tracks: tuple | None) -> tuple[torch.Tensor, torch.Tensor, list]:
        """The track queries after one pass: ``(queries (B, T, C + 2), track_ids (B, T), match)``.

        A track query of the pass whose instance is on its slice continues (its output row); the slice's
        other instances are born from the detection queries Hungarian-matched to them (``match``: per
        sample ``(query row, box index)``, rows counted from the first detection query). In training, each
        query is dropped with ``track_drop_probability`` and the best-scoring unmatched detection queries
        are added as false positives (``FALSE_POSITIVE``)."""
        cfg = self.config
        t = out["num_track"]
        costs = MatchCosts(**cfg.match_costs)
        rows, identities, matches = [], [], []
        for i in range(ids.shape[0]):
            keep = ids[i] >= 0
            present = ids[i][keep]
            row = torch.zeros(0, dtype=torch.long, device=ids.device)
            identity = torch.zeros(0, dtype=torch.long, device=ids.device)
            if tracks is not None:
                continuing = torch.nonzero((tracks[1][i][:, None] == present[None, :]).any(1)
                                           & (tracks[1][i] >= 0)).flatten()
                row, identity = continuing, tracks[1][i][continuing]
            newborn = ~(present[:, None] == identity[None, :]).any(1) if len(identity) else \
                torch.ones(len(present), dtype=torch.bool, device=ids.device)
            target = xyxy_to_cxcywh(boxes[i][keep][newborn].float(), patch)
            query, box = hungarian_match(out["logits"][i, t:], out["boxes"][i, t:], target, costs)
            matches.append((query, box))
            query = torch.as_tensor(query, dtype=torch.long, device=ids.device)
            row = torch.cat((row, query + t))
            identity = torch.cat((identity, present[newborn][torch.as_tensor(box, dtype=torch.long)]))
            if self.training and len(row):
                kept = torch.rand(len(row)) >= cfg.track_drop_probability
                row, identity = row[kept.to(row.device)], identity[kept.to(row.device)]
            if self.training and cfg.false_track_queries:
                free = torch.ones(out["logits"].shape[1] - t, dtype=torch.bool, device=ids.device)
                free[query] = False
                candidates = torch.nonzero(free).flatten()
                ranked = candidates[out["logits"][i, t:].detach()[candidates].argsort(descending=True)]
                extra = ranked[:cfg.false_track_queries] + t
                row = torch.cat((row, extra))
                identity = torch.cat((identity, torch.full((len(extra),), FALSE_POSITIVE, dtype=torch.long,
                                                           device=ids.device)))
            rows.append(row)
            identities.append(identity)
        size = max(1, max(len(r) for r in rows))
        queries = out["queries"].new_zeros(ids.shape[0], size, out["queries"].shape[-1])
        queries[..., -2:] = 0.5                                   # padding: a reference at the patch center
        track_ids = torch.full((ids.shape[0], size), PADDING, dtype=torch.long, device=ids.device)
        for i, (row, identity) in enumerate(zip(rows, identities)):
            queries[i, :len(row)] = out["queries"][i, row]
            track_ids[i, :len(row)] = identity
        return queries, track_ids, matches

    # ------------------------------------------------------------------ training: a chain of slices
    def forward(self, images: torch.Tensor, boxes: torch.Tensor, ids: torch.Tensor) -> dict:
        """Slices ``z - L + 1 .. z`` of each sample, bottom first: ``images (B, L, S, H, W)``, their boxes
        ``(B, L, M, 4)`` (xyxy pixels of the patch) and instance ids ``(B, L, M)`` (-1 padding).

        The first slice runs with detection queries only; each later one with the track queries of the
        slice before (:meth:`_next_tracks`), so tracks are trained over ``L - 1`` steps as they run at
        inference. Returns ``passes``: per slice ``{"out": detect(...) output, "track_ids": (B, T) instance
        id of each track query (``FALSE_POSITIVE``, ``PADDING``), "similarity": (B, T, T) logits of
        φ(input track queries) · φ(their outputs)}`` (the first pass without tracks) and ``match``: the first
        slice's Hungarian assignment (per sample ``(query row, box index)``)."""
        if images.ndim != 5:
            raise ValueError(f"images must be (B, L, S, H, W), a chain of L >= 2 slices, got {tuple(images.shape)}")
        patch = images.shape[-2:]
        tracks, passes, first_match = None, [], None
        for step in range(images.shape[1]):
            if tracks is None:
                out = self.detect(images[:, step])
                passes.append({"out": out})
            else:
                valid = tracks[1] != PADDING
                out = self.detect(images[:, step], tracks[0], valid)
                similarity = self.similarity_logits(tracks[0][..., :-2], out["embeddings"][:, :out["num_track"]])
                passes.append({"out": out, "track_ids": tracks[1], "similarity": similarity})
            if step < images.shape[1] - 1:
                queries, track_ids, match = self._next_tracks(out, ids[:, step], boxes[:, step], patch,
                                                              None if tracks is None else tracks)
                first_match = match if first_match is None else first_match
                tracks = (queries, track_ids)
        return {"passes": passes, "match": first_match}


def build_lntracker(section_or_config=None) -> LNTracker:
    """An :class:`LNTracker` from an :class:`LNTrackerConfig` or a plan section / dict of its fields."""
    if isinstance(section_or_config, LNTrackerConfig):
        return LNTracker(section_or_config)
    return LNTracker(LNTrackerConfig.from_dict(dict(section_or_config or {})))


__all__ = ["FALSE_POSITIVE", "PADDING", "LNTrackerConfig", "LNTracker", "build_lntracker",
           "sine_positional_encoding_2d", "sine_encoding_of_points", "inverse_sigmoid"]
