"""The planner's rules: one small pure function per decision, each returning a *decision record*.

A decision record is ``{"value": ..., "rule": "<what was done, in words>", "inputs": {...}}``: the
value, the rule that produced it and the fingerprint figures it used, so that
``lesionnet_plans.json`` explains itself. :func:`plan_from_fingerprint` strings the rules together
(pure: fingerprint + budget in, plans dict out); :func:`lesionnet.planning.plans_io.plan_experiment`
adds the I/O. See ``documentation/planning.md`` for each rule with a worked example.

Axis order of every size and spacing here is ``(z, y, x)``; patch sizes are voxels at the target
spacing; radii and errors are mm.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from lesionnet.planning import memory_model as mm
from lesionnet.registration.anatomy_maps import tlt_keep_radius

PLANS_VERSION = 1
FEATURE_STRIDE = 8

# Paper configurations: the upper defaults of the memory-driven choices.
TLT_PAPER = {"attention_depth": 3, "attention_heads": 8, "attention_width": 192, "batch_size": 4}
TLT_DEPTHS = (1, 2, 3)
TLT_HEADS = (2, 4, 8)
TLT_WIDTHS = (64, 96, 128, 192)
DLT_PAPER = {"growth_rate": 32, "fpn_width": 64, "batch_size": 4}
DLT_GROWTH = (8, 12, 16, 24, 32)
DLT_FPN_WIDTHS = (32, 48, 64)
LNT_PAPER = {"num_queries": 300, "slices_per_side": 4, "hidden_dim": 256, "encoder_layers": 6,
             "decoder_layers": 9, "batch_size": 8}
LNT_HIDDEN = (128, 192, 256)
LNT_ENCODER_LAYERS = (3, 6)
LNT_DECODER_LAYERS = (3, 6, 9)
LNT_QUERY_LEVELS = (25, 50, 100, 200, 300)
LNT_STRIDE = 32


def decision(value, rule: str, **inputs) -> dict:
    """A decision record ``{"value", "rule", "inputs"}`` (inputs converted to plain JSON types)."""
    return {"value": _plain(value), "rule": rule, "inputs": {k: _plain(v) for k, v in inputs.items()}}


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return round(v, 6) if math.isfinite(v) else v
    return value


def round_up(value: float, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``value`` (at least ``multiple``)."""
    return int(max(multiple, math.ceil(float(value) / multiple - 1e-9) * multiple))


def _percentile(values, q: float, default: float | None = None) -> float:
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        if default is None:
            raise ValueError("no values to take a percentile of")
        return float(default)
    return float(np.percentile(v, q))


# ================================================================================ target spacing
def rule_target_spacing(spacings_zyx, anisotropy_threshold: float = 3.0, thick_axis_percentile: float = 10.0) -> dict:
    """Median spacing per axis; with thick slices, the thick axis gets a finer spacing (nnU-Net).

    If the median spacing of the coarsest axis is more than ``anisotropy_threshold`` times the finest,
    that axis takes the ``thick_axis_percentile``-th percentile of its spacings instead of the median
    (so that thin-slice scans are not thrown away by downsampling), but never finer than the
    coarsest other axis.
    """
    s = np.asarray(spacings_zyx, dtype=np.float64).reshape(-1, 3)
    if s.size == 0:
        raise ValueError("no scan spacings: the fingerprint has no scans")
    median = np.median(s, axis=0)
    ratio = float(median.max() / median.min())
    target = median.copy()
    if ratio > anisotropy_threshold:
        axis = int(np.argmax(median))
        others = [a for a in range(3) if a != axis]
        thick = float(np.percentile(s[:, axis], thick_axis_percentile))
        target[axis] = max(thick, float(median[others].max()))
        return decision(target.tolist(), f"anisotropic (median max/min {ratio:.2f} > {anisotropy_threshold:g}): "
                        f"median spacing, axis {'zyx'[axis]} = max(p{thick_axis_percentile:g} of its spacings, "
                        "coarsest other axis)",
                        median_spacing_zyx=median, anisotropy_ratio=ratio, thick_axis="zyx"[axis],
                        thick_axis_percentile_spacing=thick, num_scans=len(s))
    return decision(target.tolist(), "median spacing per axis", median_spacing_zyx=median,
                    anisotropy_ratio=ratio, anisotropy_threshold=anisotropy_threshold, num_scans=len(s))


def rule_native_z_spacing(spacings_zyx) -> dict:
    """LN-Tracker: keep each scan's own slices (z = null, "native"), in-plane the median of y and x."""
    s = np.asarray(spacings_zyx, dtype=np.float64).reshape(-1, 3)
    inplane = float(np.median(s[:, 1:]))
    return decision([None, inplane, inplane], "z native (slice-by-slice detection); y, x = median in-plane spacing",
                    median_spacing_zyx=np.median(s, axis=0), num_scans=len(s))


def resampled_shape(shape_zyx, spacing_zyx, target_spacing_zyx) -> list:
    """Shape after resampling (None in the target keeps that axis)."""
    return [int(n) if t is None else max(1, int(round(n * s / t)))
            for n, s, t in zip(shape_zyx, spacing_zyx, target_spacing_zyx)]


def median_resampled_shape(shapes_zyx, spacings_zyx, target_spacing_zyx) -> list:
    shapes = [resampled_shape(n, s, target_spacing_zyx) for n, s in zip(shapes_zyx, spacings_zyx)]
    return [int(v) for v in np.median(np.asarray(shapes, dtype=np.float64), axis=0)]


# ================================================================================ patches
def rule_template_patch(radii_mm, spacing_zyx, radius_quantile: float = 95.0, context_factor: float = 2.5,
                        stride: int = FEATURE_STRIDE, min_size: int = 2 * FEATURE_STRIDE,
                        max_size_zyx=None) -> dict:
    """Template patch: ``2 × p95(radius) × context_factor`` mm per axis, in voxels, rounded up to a
    multiple of the stride, at least ``min_size``, at most ``max_size_zyx`` (the median image).

    ``context_factor`` 2.5 > ``sqrt(-12 ln 0.7)`` = 2.07 keeps SSS's kept region (Tr = 0.7) of the
    95th-percentile lesion inside the patch.
    """
    r = _percentile(radii_mm, radius_quantile, default=10.0)
    size_mm = 2.0 * r * context_factor
    sizes = [max(min_size, round_up(size_mm / s, stride)) for s in spacing_zyx]
    capped = False
    if max_size_zyx is not None:
        limit = [max(min_size, round_up(m, stride)) for m in max_size_zyx]
        capped = any(a > b for a, b in zip(sizes, limit))
        sizes = [min(a, b) for a, b in zip(sizes, limit)]
    return decision(sizes, f"2 × p{radius_quantile:g}(radius) × {context_factor:g} mm per axis, / spacing, "
                    f"rounded up to a multiple of {stride}, >= {min_size}"
                    + (", capped at the median image" if capped else ""),
                    radius_quantile_mm=r, num_radii=len(np.ravel(radii_mm)), context_factor=context_factor,
                    size_mm=size_mm, spacing_zyx=spacing_zyx, max_size_zyx=max_size_zyx,
                    used_default_radius=len(np.ravel(radii_mm)) == 0)


def search_coverage(abs_error_mm_zyx, target_radii_mm, patch_zyx, spacing_zyx) -> float:
    """Fraction of pairs whose target lesion (center ± radius) lies inside a patch of ``patch_zyx``
    voxels centred on the affine prior: ``|error_a| + r <= patch_a × spacing_a / 2`` on every axis."""
    err = np.asarray(abs_error_mm_zyx, dtype=np.float64).reshape(-1, 3)
    if err.shape[0] == 0:
        return 1.0
    r = np.asarray(target_radii_mm, dtype=np.float64).reshape(-1, 1)
    half = np.asarray(patch_zyx, dtype=np.float64) * np.asarray(spacing_zyx, dtype=np.float64) / 2.0
    return float(np.mean(np.all(err + r <= half[None, :] + 1e-9, axis=1)))


def rule_search_patch(abs_error_mm_zyx, target_radii_mm, spacing_zyx, template_patch_zyx, coverage: float = 0.99,
                      error_quantile: float = 99.0, radius_quantile: float = 95.0, margin_voxels: int = FEATURE_STRIDE,
                      stride: int = FEATURE_STRIDE, max_size_zyx=None, default_error_mm: float = 20.0) -> dict:
    """Search patch centred on the affine prior that contains the target for >= ``coverage`` of pairs.

    Per axis ``a``: ``2 × (p99(|error_a|) + p95(radius)) / spacing_a + 2 × margin`` voxels, rounded up
    to a multiple of the stride and at least the template patch. Then the joint coverage (all three
    axes, each pair with its own radius, see :func:`search_coverage`) is checked and the axis with the
    most misses grows by one stride until ``coverage`` is reached or the patch reaches
    ``max_size_zyx`` (the median image, rounded up to the stride). Without training pairs the error
    is assumed to be ``default_error_mm`` on every axis.
    """
    err = np.asarray(abs_error_mm_zyx, dtype=np.float64).reshape(-1, 3)
    radii = np.asarray(target_radii_mm, dtype=np.float64).ravel()
    no_pairs = err.shape[0] == 0
    e_q = [default_error_mm] * 3 if no_pairs else [float(np.percentile(err[:, a], error_quantile)) for a in range(3)]
    r_q = _percentile(radii, radius_quantile, default=10.0)
    sizes = [max(int(t), round_up(2.0 * (e + r_q) / s + 2 * margin_voxels, stride))
             for e, s, t in zip(e_q, spacing_zyx, template_patch_zyx)]
    limit = None if max_size_zyx is None else [max(int(t), round_up(m, stride))
                                               for m, t in zip(max_size_zyx, template_patch_zyx)]
    if limit is not None:
        sizes = [min(a, b) for a, b in zip(sizes, limit)]
    formula_sizes = list(sizes)
    achieved = search_coverage(err, radii, sizes, spacing_zyx)
    grown = 0
    while not no_pairs and achieved < coverage:
        half = np.asarray(sizes, dtype=np.float64) * np.asarray(spacing_zyx) / 2.0
        misses = np.sum(err + radii[:, None] > half[None, :] + 1e-9, axis=0)
        order = [a for a in np.argsort(-misses) if misses[a] > 0 and (limit is None or sizes[a] + stride <= limit[a])]
        if not order:
            break
        sizes[order[0]] += stride
        grown += 1
        achieved = search_coverage(err, radii, sizes, spacing_zyx)
    rule = (f"2 × (p{error_quantile:g}(|prior error|) + p{radius_quantile:g}(radius)) / spacing + 2 × {margin_voxels} "
            f"voxels per axis, multiple of {stride}, >= template; grown until >= {coverage:.0%} of pairs contain "
            "the target lesion")
    if no_pairs:
        rule += f"; no training pairs: prior error assumed {default_error_mm:g} mm"
    return decision(sizes, rule, prior_error_quantile_mm_zyx=e_q, radius_quantile_mm=r_q, num_pairs=int(err.shape[0]),
                    spacing_zyx=spacing_zyx, template_patch_zyx=template_patch_zyx, formula_size_zyx=formula_sizes,
                    grown_by_strides=grown, coverage_target=coverage, coverage_achieved=achieved,
                    max_size_zyx=limit)


# ================================================================================ SSS threshold
def count_kept_tokens(radius_mm: float, threshold: float, feature_spacing_zyx, offset_zyx=(0.0, 0.0, 0.0),
                      grid_shape_zyx=None) -> int:
    """Template tokens SSS keeps for a lesion of ``radius_mm`` at threshold ``threshold``: feature-grid
    points within ``r · sqrt(-12 ln Tr)`` mm of the lesion center (TLT Gaussian > Tr).

    ``offset_zyx`` places the center between tokens (0.5 = half-way on that axis);
    ``grid_shape_zyx`` (the template's feature grid, centred on the lesion) clips the count.
    """
    keep = tlt_keep_radius(radius_mm, threshold)
    fs = np.asarray(feature_spacing_zyx, dtype=np.float64)
    reach = np.floor(keep / fs).astype(int) + 1
    axes = []
    for a in range(3):
        k = np.arange(-reach[a], reach[a] + 2)
        pos = (k - offset_zyx[a]) * fs[a]
        if grid_shape_zyx is not None:  # the template's feature grid, the lesion in its middle cell
            n = int(grid_shape_zyx[a])
            lo = -(n // 2)
            pos = pos[(k >= lo) & (k < lo + n)]
        axes.append(pos ** 2)
    d2 = axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :]
    return int(np.count_nonzero(d2 < keep ** 2))


def rule_sss_threshold(radii_mm, feature_spacing_zyx, template_feature_shape_zyx=None, token_budget: int = 1024,
                       preferred: float = 0.7, low_quantile: float = 5.0, high_quantile: float = 95.0,
                       bounds=(0.05, 0.99)) -> dict:
    """Tr such that the smallest lesion keeps >= 1 template token and the largest stays in the budget.

    * upper bound: the ``low_quantile`` lesion keeps a token wherever its center falls, i.e. its keep
      radius ``r · sqrt(-12 ln Tr)`` reaches the farthest point of a feature cell (half its diagonal);
    * lower bound: the ``high_quantile`` lesion keeps at most ``token_budget`` tokens (counted on the
      feature grid, center on a token, clipped to the template's feature grid);
    * Tr = ``preferred`` (0.7, the paper's) clipped into [lower, upper] (2 decimals). When the bounds
      conflict, the upper bound wins (an empty template is worse than a long one; the trainer keeps
      the ``token_budget`` highest tokens).
    """
    radii = np.asarray(radii_mm, dtype=np.float64).ravel()
    r_lo = _percentile(radii, low_quantile, default=10.0)
    r_hi = _percentile(radii, high_quantile, default=10.0)
    fs = np.asarray(feature_spacing_zyx, dtype=np.float64)
    half_diagonal = 0.5 * float(np.sqrt(np.sum(fs ** 2)))
    upper_exact = math.exp(-((half_diagonal / max(r_lo, 1e-6)) ** 2) / 12.0)
    small_always_kept = upper_exact >= bounds[0]
    upper = min(bounds[1], max(bounds[0], math.floor(upper_exact * 100) / 100))
    lower, budget_reachable = bounds[1], False
    for tr in np.round(np.arange(bounds[0], bounds[1] + 1e-9, 0.01), 2):
        if count_kept_tokens(r_hi, tr, fs, grid_shape_zyx=template_feature_shape_zyx) <= token_budget:
            lower, budget_reachable = float(tr), True
            break
    conflict = lower > upper
    value = upper if conflict else float(min(max(preferred, lower), upper))
    value = round(value, 2)
    rule = f"Tr = {preferred:g} clipped to [lower, upper]: upper keeps >= 1 token for the p{low_quantile:g} lesion, " \
           f"lower keeps <= {token_budget} tokens for the p{high_quantile:g} lesion"
    if not small_always_kept:
        rule += (f"; the p{low_quantile:g} lesion is small against the feature cell and keeps no token at some "
                 f"positions even at Tr = {bounds[0]:g} (TLT then keeps its arg-max token)")
    if not budget_reachable:
        rule += f"; the p{high_quantile:g} lesion exceeds the token budget even at Tr = {bounds[1]:g}"
    if conflict:
        rule += "; bounds conflict: upper bound used (token budget enforced by keeping the highest tokens)"
    return decision(value, rule, radius_low_mm=r_lo, radius_high_mm=r_hi, feature_spacing_zyx=fs,
                    half_cell_diagonal_mm=half_diagonal, upper_bound=upper, upper_bound_exact=upper_exact,
                    lower_bound=lower, small_lesion_always_keeps_a_token=small_always_kept,
                    token_budget_reachable=budget_reachable,
                    token_budget=token_budget, template_feature_shape_zyx=template_feature_shape_zyx,
                    min_tokens_small_lesion=count_kept_tokens(r_lo, value, fs, offset_zyx=(0.5, 0.5, 0.5)),
                    tokens_large_lesion=count_kept_tokens(r_hi, value, fs, grid_shape_zyx=template_feature_shape_zyx),
                    keep_radius_small_mm=tlt_keep_radius(r_lo, value),
                    keep_radius_large_mm=tlt_keep_radius(r_hi, value),
                    conflict=conflict)


def rule_fine_matching(radii_mm, spacing_zyx, template_patch_zyx, stride: int = FEATURE_STRIDE,
                       kernel_radius_factor: float = 2.5) -> dict:
    """TLT's fine matching head (``TLTConfig.fine_matching``): on when the median lesion is smaller
    than a feature cell.

    * enabled when the median lesion diameter ``2 r_med`` is below the geometric mean edge of a
      feature cell (``stride × spacing``): most lesions then sit inside one token, and the stride-8
      tokens cannot place them (the paper's data, ~0.8 mm in-plane, has cells of ~7 mm);
    * kernel per axis: ``2 ceil(kernel_radius_factor × r_med / spacing) + 1`` voxels, at most the
      template patch (made odd) — the matching weight ``exp(-d² / r²)`` is ~0 beyond 2.5 radii.
    """
    r_med = _percentile(radii_mm, 50.0, default=10.0)
    spacing = np.asarray(spacing_zyx, dtype=np.float64)
    cell_mm = float(np.prod(stride * spacing) ** (1.0 / 3.0))
    enabled = bool(2.0 * r_med < cell_mm)
    kernel = []
    for s, t in zip(spacing, template_patch_zyx):
        k = 2 * math.ceil(kernel_radius_factor * r_med / s) + 1
        largest = int(t) if int(t) % 2 else int(t) - 1
        kernel.append(int(min(k, largest)))
    rule = (f"on when 2 × median radius < the feature cell's geometric mean edge ({stride} × spacing); "
            f"kernel 2 ceil({kernel_radius_factor:g} × median radius / spacing) + 1 voxels, at most the template")
    return decision({"enabled": enabled, "kernel_zyx": kernel}, rule, median_radius_mm=r_med,
                    feature_cell_mm=cell_mm)


# ================================================================================ memory-driven choices
def build_chain(start: dict, steps: Sequence[tuple]) -> list[dict]:
    """A chain of configurations: ``start``, then one change per step (``(key, value)``), each applied
    to the previous one. Planning picks the last element that fits the memory budget, so every key
    whose steps only increase is monotone in the budget."""
    chain = [dict(start)]
    for key, value in steps:
        nxt = dict(chain[-1])
        nxt[key] = value
        chain.append(nxt)
    return chain


def select_from_chain(chain: list[dict], estimate: Callable[[dict], mm.MemoryEstimate], usable_bytes: float) -> dict:
    """The last chain element whose estimated memory fits ``usable_bytes`` (memory grows along the
    chain); the first one, flagged ``fits = False``, when none fits. Returns ``{"config", "index",
    "estimate", "fits", "chain_length"}``."""
    best = None
    for index, config in enumerate(chain):
        est = estimate(config)
        if est.total_bytes <= usable_bytes:
            best = (index, config, est)
        else:
            break
    fits = best is not None
    if best is None:
        best = (0, chain[0], estimate(chain[0]))
    return {"config": best[1], "index": best[0], "estimate": best[2], "fits": fits, "chain_length": len(chain)}


def patch_reduction_levels(full_zyx, minimum_zyx, spacing_zyx, stride: int) -> list:
    """Patches from ``minimum_zyx`` up to ``full_zyx`` (ascending): repeatedly take one stride off the
    physically longest axis that can still shrink; reversed so the list grows."""
    levels = [list(full_zyx)]
    current = list(full_zyx)
    while True:
        candidates = [a for a in range(len(current)) if current[a] - stride >= minimum_zyx[a]]
        if not candidates:
            break
        axis = max(candidates, key=lambda a: (current[a] * spacing_zyx[a], -a))
        current = list(current)
        current[axis] -= stride
        levels.append(current)
    return levels[::-1]


def template_search_reduction_levels(template_zyx, search_zyx, spacing_zyx, stride: int,
                                    minimum: int = 2 * FEATURE_STRIDE) -> list:
    """``(template, search)`` patch pairs from the smallest to the planned one, one stride apart: going
    down, the search patch first loses a stride on its physically longest axis that is still larger
    than the template's; once it equals the template, both lose a stride together (never below
    ``minimum``). Reversed so the list grows."""
    template, search = list(template_zyx), list(search_zyx)
    levels = [(list(template), list(search))]
    while True:
        shrink_search = [a for a in range(3) if search[a] - stride >= template[a]]
        if shrink_search:
            axis = max(shrink_search, key=lambda a: (search[a] * spacing_zyx[a], -a))
            search = list(search)
            search[axis] -= stride
        else:
            shrink_both = [a for a in range(3) if template[a] - stride >= minimum]
            if not shrink_both:
                break
            axis = max(shrink_both, key=lambda a: (template[a] * spacing_zyx[a], -a))
            template, search = list(template), list(search)
            template[axis] -= stride
            search[axis] -= stride
        levels.append((list(template), list(search)))
    return levels[::-1]


def rule_max_batch(num_samples: int, paper_batch: int, fraction: float = 0.05, minimum: int = 2) -> dict:
    """Largest batch worth using: the paper's batch, but no more than ``fraction`` of the training
    samples (nnU-Net's 5 % rule), and at least ``minimum``."""
    data_cap = max(minimum, int(math.floor(fraction * max(0, num_samples))))
    value = max(1, min(paper_batch, data_cap))
    return decision(value, f"min(paper batch {paper_batch}, max({minimum}, floor({fraction:g} × samples)))",
                    num_samples=num_samples, paper_batch=paper_batch)


def rule_tlt_capacity(template_patch_zyx, search_patch_zyx, spacing_zyx, usable_bytes: float, max_batch: int,
                      template_tokens: int, device: str = "cuda", stride: int = FEATURE_STRIDE) -> dict:
    """TLT attention depth / heads / width, batch size (and, as a last resort, a smaller search patch)
    from the memory budget.

    Chain, smallest first: the patches shrunk (search towards the template, then both; see
    :func:`template_search_reduction_levels`) at the minimal network (depth 1, 2 heads, width 64,
    batch 1); then the planned patches with the network growing to
    the paper's (width 96, depth 2, heads 4, width 128, depth 3, heads 8, width 192); then the batch
    growing to ``max_batch``. The last element whose :func:`~lesionnet.planning.memory_model.tlt_memory`
    fits ``usable_bytes`` is chosen, so each of these sizes is monotone in the budget.
    """
    patches = template_search_reduction_levels(template_patch_zyx, search_patch_zyx, spacing_zyx, stride)
    start = {"template_patch_size_zyx": patches[0][0], "search_patch_size_zyx": patches[0][1], "attention_depth": 1,
             "attention_heads": 2, "attention_width": 64, "batch_size": 1}
    steps = []
    for previous, (template, search) in zip(patches, patches[1:]):
        if template != previous[0]:
            steps.append(("template_patch_size_zyx", template))
        steps.append(("search_patch_size_zyx", search))
    steps += [("attention_width", 96), ("attention_depth", 2), ("attention_heads", 4), ("attention_width", 128),
              ("attention_depth", 3), ("attention_heads", 8), ("attention_width", 192)]
    steps += [("batch_size", b) for b in range(2, max_batch + 1)]
    chain = build_chain(start, steps)

    def estimate(c):
        net = mm.tlt_network_config(c["attention_width"], c["attention_heads"], c["attention_depth"])
        return mm.tlt_memory(c["template_patch_size_zyx"], c["search_patch_size_zyx"], c["batch_size"],
                             channels=net["channels"], num_heads=net["num_heads"],
                             layers_per_line=net["layers_per_line"], ffn_dim=net["ffn_dim"],
                             head_hidden=net["head_hidden"], template_tokens=template_tokens, device=device)

    chosen = select_from_chain(chain, estimate, usable_bytes)
    return decision(chosen["config"], "last element of the TLT capacity chain (patch -> width/depth/heads up to "
                    "the paper's 192/3/8 -> batch) whose estimated training memory fits the budget",
                    usable_bytes=usable_bytes, max_batch=max_batch, planned_template_patch_zyx=template_patch_zyx,
                    planned_search_patch_zyx=search_patch_zyx, template_tokens=template_tokens, device=device,
                    chain_index=chosen["index"], chain_length=chosen["chain_length"], fits=chosen["fits"],
                    estimate=chosen["estimate"].to_dict())


def rule_dlt_capacity(patch_zyx, spacing_zyx, usable_bytes: float, max_batch: int, device: str = "cuda",
                      stride: int = FEATURE_STRIDE) -> dict:
    """DLT DenseFPN growth rate / FPN width and batch size from the memory budget (estimate-only
    memory model). Template and search crops have the same size (as in the DLT paper); the chain
    shrinks them first (towards 4 strides), then grows growth rate 8 → 32 and FPN width 32 → 64
    (DenseNet-121's growth 32 is the upper default), then the batch."""
    patches = patch_reduction_levels(patch_zyx, [min(p, 4 * stride) for p in patch_zyx], spacing_zyx, stride)
    start = {"patch_size_zyx": patches[0], "growth_rate": DLT_GROWTH[0], "fpn_width": DLT_FPN_WIDTHS[0],
             "batch_size": 1}
    steps = [("patch_size_zyx", p) for p in patches[1:]]
    steps += [("fpn_width", 48), ("growth_rate", 12), ("growth_rate", 16), ("fpn_width", 64), ("growth_rate", 24),
              ("growth_rate", 32)]
    steps += [("batch_size", b) for b in range(2, max_batch + 1)]
    chain = build_chain(start, steps)

    def estimate(c):
        return mm.dlt_memory(c["patch_size_zyx"], c["patch_size_zyx"], c["batch_size"], c["growth_rate"],
                             c["fpn_width"], device=device)

    chosen = select_from_chain(chain, estimate, usable_bytes)
    return decision(chosen["config"], "last element of the DLT capacity chain (patch -> FPN width/growth rate up to "
                    "32/64 -> batch) whose estimated training memory fits the budget (DLT memory model is an "
                    "unverified estimate)", usable_bytes=usable_bytes, max_batch=max_batch, planned_patch_zyx=patch_zyx,
                    device=device, chain_index=chosen["index"], chain_length=chosen["chain_length"],
                    fits=chosen["fits"], estimate=chosen["estimate"].to_dict())


def rule_lntracker_queries(per_slice_max: int, factor: float = 10.0, minimum: int = 20,
                           paper: int = LNT_PAPER["num_queries"]) -> dict:
    """Detection queries: ``factor`` × the most lesions seen in one slice, rounded up to 10, between
    ``minimum`` and the paper's 300 (DETR keeps queries an order of magnitude above the objects)."""
    value = int(min(paper, max(minimum, round_up(factor * max(0, per_slice_max), 10))))
    return decision(value, f"clip(roundup10({factor:g} × max lesions per slice), {minimum}, {paper})",
                    per_slice_max=per_slice_max)


def rule_lntracker_slice_context(median_thickness_mm: float, context_mm: float = 8.0,
                                 max_per_side: int = LNT_PAPER["slices_per_side"]) -> dict:
    """2.5D context: slices on each side covering about ``context_mm`` (LN-DETR's 9 slices of 2 mm
    reach ±8 mm), at least 1, at most the paper's 4 per side."""
    per_side = int(min(max_per_side, max(1, round(context_mm / max(median_thickness_mm, 1e-6)))))
    return decision(per_side, f"round({context_mm:g} mm / median slice thickness), between 1 and {max_per_side}",
                    median_slice_thickness_mm=median_thickness_mm, num_slices=2 * per_side + 1)


def rule_lntracker_capacity(patch_yx, spacing_yx, desired_queries: int, desired_slices_per_side: int,
                            usable_bytes: float, max_batch: int, device: str = "cuda") -> dict:
    """LN-Tracker queries, slice context, hidden width, encoder/decoder depth and batch from the memory
    budget (estimate-only memory model). Chain: in-plane patch shrinking towards 128 at the minimal
    network; then queries up to the data-driven number, slices per side up to the data-driven context,
    hidden width 128 → 256, decoder 3 → 9 and encoder 3 → 6 layers (the paper's); then the batch."""
    patches = patch_reduction_levels(patch_yx, [min(p, 128) for p in patch_yx], spacing_yx, LNT_STRIDE)
    queries = sorted({q for q in LNT_QUERY_LEVELS if q < desired_queries} | {desired_queries})
    start = {"patch_size_yx": patches[0], "num_queries": queries[0], "slices_per_side": 1, "hidden_dim": LNT_HIDDEN[0],
             "encoder_layers": LNT_ENCODER_LAYERS[0], "decoder_layers": LNT_DECODER_LAYERS[0], "batch_size": 1}
    steps = [("patch_size_yx", p) for p in patches[1:]]
    steps += [("num_queries", q) for q in queries[1:]]
    steps += [("slices_per_side", k) for k in range(2, desired_slices_per_side + 1)]
    steps += [("hidden_dim", h) for h in LNT_HIDDEN[1:]]
    steps += [("decoder_layers", d) for d in LNT_DECODER_LAYERS[1:]]
    steps += [("encoder_layers", e) for e in LNT_ENCODER_LAYERS[1:]]
    steps += [("batch_size", b) for b in range(2, max_batch + 1)]
    chain = build_chain(start, steps)

    def estimate(c):
        return mm.lntracker_memory(c["patch_size_yx"], c["batch_size"], c["slices_per_side"], c["num_queries"],
                                   c["hidden_dim"], c["encoder_layers"], c["decoder_layers"], device=device)

    chosen = select_from_chain(chain, estimate, usable_bytes)
    return decision(chosen["config"], "last element of the LN-Tracker capacity chain (patch -> queries -> slice "
                    "context -> width/depth up to the paper's -> batch) whose estimated training memory fits the "
                    "budget (LN-Tracker memory model is an unverified estimate)",
                    usable_bytes=usable_bytes, max_batch=max_batch, planned_patch_yx=patch_yx,
                    desired_queries=desired_queries, desired_slices_per_side=desired_slices_per_side, device=device,
                    chain_index=chosen["index"], chain_length=chosen["chain_length"], fits=chosen["fits"],
                    estimate=chosen["estimate"].to_dict())


# ================================================================================ normalisation
def rule_ct_normalization(intensity: dict) -> dict:
    """nnU-Net's CT scheme: clip to the body's 0.5 / 99.5 percentiles, subtract the body mean, divide
    by the body std (all from the fingerprint's subsampled body voxels). TLT's public code uses
    ``(HU + 800) / 1600`` instead (available as scheme ``"tlt_linear"``)."""
    if not intensity or intensity.get("num_samples", 0) == 0:
        value = {"scheme": "ct_zscore", "clip_hu": [-1000.0, 1000.0], "mean_hu": 0.0, "std_hu": 500.0}
        return decision(value, "no body voxels in the fingerprint: fixed CT window", intensity=intensity)
    std = max(float(intensity["std"]), 1e-3)
    value = {"scheme": "ct_zscore", "clip_hu": [float(intensity["p0.5"]), float(intensity["p99.5"])],
             "mean_hu": float(intensity["mean"]), "std_hu": std}
    return decision(value, "clip to body p0.5/p99.5, (HU - body mean) / body std (nnU-Net CT normalisation)",
                    p0_5=intensity["p0.5"], p99_5=intensity["p99.5"], mean=intensity["mean"], std=intensity["std"],
                    num_samples=intensity["num_samples"])


# ================================================================================ the whole plan
def _values(record: dict) -> object:
    return record["value"]


def plan_from_fingerprint(fingerprint: dict, budget: dict, token_budget: int = 1024,
                          search_coverage_target: float = 0.99) -> dict:
    """The plans dict for a fingerprint and a memory budget (pure).

    Args:
        fingerprint: as written by :func:`lesionnet.planning.fingerprint.extract_fingerprint`.
        budget: decision record whose value is the budget in bytes and whose inputs hold ``device``
            (``"cuda"`` or ``"cpu"``), see :func:`lesionnet.planning.plans_io.detect_memory_budget`.
        token_budget: most template tokens SSS may keep for the large lesions.
        search_coverage_target: fraction of training pairs whose target the search patch must contain.
    """
    device = budget["inputs"].get("device", "cuda")
    usable = mm.usable_memory_bytes(budget["value"], device)
    spacings = fingerprint["spacing_zyx"]["all"]
    shapes = [s["shape_zyx"] for s in fingerprint["scans"].values()]
    scan_spacings = [s["spacing_zyx"] for s in fingerprint["scans"].values()]
    radii = fingerprint.get("lesions", {}).get("radii_mm", [])
    normalization = rule_ct_normalization(fingerprint.get("intensity", {}))
    plans = {
        "plans_version": PLANS_VERSION,
        "dataset": fingerprint["dataset"],
        "task": fingerprint["task"],
        "fingerprint_signature": fingerprint.get("inputs_signature"),
        "memory_budget": budget,
        "usable_memory_bytes": usable,
        "normalization": normalization,
        "data_configurations": {},
        "configurations": {},
        "not_planned": {},
    }
    common = {"normalization": _values(normalization), "image_interpolation": "linear",
              "label_interpolation": "nearest", "storage": "blosc2"}
    if fingerprint["task"] == "tracking":
        _plan_tracking(plans, fingerprint, spacings, shapes, scan_spacings, radii, usable, device, common,
                       token_budget, search_coverage_target)
        plans["not_planned"]["lntracker"] = ("LN-Tracker detects lesions in instance masks; this is a tracking "
                                             "dataset (task 'tracking').")
    else:
        _plan_detection(plans, fingerprint, spacings, shapes, scan_spacings, usable, device, common)
        for method in ("affine", "tlt", "dlt"):
            plans["not_planned"][method] = ("tracking methods need lesion pairs (task 'tracking'); this is a "
                                            "detection dataset.")
    return plans


def _plan_tracking(plans, fingerprint, spacings, shapes, scan_spacings, radii, usable, device, common,
                   token_budget, coverage_target):
    tracking = fingerprint.get("tracking", {})
    pairs = tracking.get("pairs", [])
    errors = [p["abs_error_mm_zyx"] for p in pairs]
    target_radii = [p["target_radius_mm"] for p in pairs]
    spacing_rec = rule_target_spacing(spacings)
    spacing = spacing_rec["value"]
    median_shape = median_resampled_shape(shapes, scan_spacings, spacing)
    template_rec = rule_template_patch(radii, spacing, max_size_zyx=median_shape)
    template = template_rec["value"]
    search_rec = rule_search_patch(errors, target_radii, spacing, template, coverage=coverage_target,
                                   max_size_zyx=median_shape)
    search = search_rec["value"]
    feature_spacing = [s * FEATURE_STRIDE for s in spacing]
    template_features = [t // FEATURE_STRIDE for t in template]
    tr_rec = rule_sss_threshold(radii, feature_spacing, template_features, token_budget=token_budget)
    template_tokens = min(token_budget, int(np.prod(template_features)))
    tlt_batch_rec = rule_max_batch(len(pairs), TLT_PAPER["batch_size"])
    tlt_cap = rule_tlt_capacity(template, search, spacing, usable, tlt_batch_rec["value"], template_tokens, device)
    cap = tlt_cap["value"]
    data_id = "lesionnetPlans_3d"
    registration = tracking.get("registration", {})
    plans["data_configurations"][data_id] = dict(common, target_spacing_zyx=spacing, native_z=False,
                                                 registration=registration)
    network = mm.tlt_network_config(cap["attention_width"], cap["attention_heads"], cap["attention_depth"],
                                    tr_rec["value"])
    fine_rec = rule_fine_matching(radii, spacing, cap["template_patch_size_zyx"])
    network.update(fine_matching=fine_rec["value"]["enabled"], fine_kernel_zyx=fine_rec["value"]["kernel_zyx"])
    plans["configurations"]["tlt"] = {
        "method": "tlt",
        "data_identifier": data_id,
        "target_spacing_zyx": spacing,
        "template_patch_size_zyx": cap["template_patch_size_zyx"],
        "search_patch_size_zyx": cap["search_patch_size_zyx"],
        "feature_stride": FEATURE_STRIDE,
        "sss_threshold": tr_rec["value"],
        "max_template_tokens": token_budget,
        "attention_depth": cap["attention_depth"],
        "attention_heads": cap["attention_heads"],
        "attention_width": cap["attention_width"],
        "batch_size": cap["batch_size"],
        "network": network,
        "estimated_memory_bytes": tlt_cap["inputs"]["estimate"]["total_bytes"],
        "fits_memory_budget": tlt_cap["inputs"]["fits"],
        "search_coverage": search_coverage(errors, target_radii, cap["search_patch_size_zyx"], spacing),
        "normalization": common["normalization"],
        "decisions": {"target_spacing": spacing_rec, "template_patch_size": template_rec,
                      "search_patch_size": search_rec, "sss_threshold": tr_rec, "max_batch_size": tlt_batch_rec,
                      "capacity": tlt_cap, "fine_matching": fine_rec},
    }
    dlt_patch = [max(a, b) for a, b in zip(search, template)]
    dlt_batch_rec = rule_max_batch(len(pairs), DLT_PAPER["batch_size"])
    dlt_cap = rule_dlt_capacity(dlt_patch, spacing, usable, dlt_batch_rec["value"], device)
    dcap = dlt_cap["value"]
    plans["configurations"]["dlt"] = {
        "method": "dlt",
        "data_identifier": data_id,
        "target_spacing_zyx": spacing,
        "template_patch_size_zyx": dcap["patch_size_zyx"],
        "search_patch_size_zyx": dcap["patch_size_zyx"],
        "feature_stride": FEATURE_STRIDE,
        "anatomy_gaussian_n": 4.0,
        "growth_rate": dcap["growth_rate"],
        "fpn_width": dcap["fpn_width"],
        "batch_size": dcap["batch_size"],
        "estimated_memory_bytes": dlt_cap["inputs"]["estimate"]["total_bytes"],
        "memory_model_verified": False,
        "fits_memory_budget": dlt_cap["inputs"]["fits"],
        "search_coverage": search_coverage(errors, target_radii, dcap["patch_size_zyx"], spacing),
        "normalization": common["normalization"],
        "decisions": {"target_spacing": spacing_rec, "patch_size": decision(
            dlt_patch, "template and search crops of the same size (DLT paper), covering TLT's search and "
            "template patches", search_patch_zyx=search, template_patch_zyx=template),
            "max_batch_size": dlt_batch_rec, "capacity": dlt_cap},
    }
    plans["configurations"]["affine"] = {
        "method": "affine",
        "data_identifier": None,
        "uses_raw_data": True,
        "registration": registration,
        "prior_error_mm": tracking.get("prior_error_mm", {}),
        "prior_error_registration": tracking.get("prior_error_registration", {}),
        "decisions": {"registration": decision(registration, "affine registration as planned for the priors "
                                               "(lesionnet.registration.affine defaults, single-threaded)")},
    }


def _plan_detection(plans, fingerprint, spacings, shapes, scan_spacings, usable, device, common):
    detection = fingerprint.get("detection", {})
    spacing_rec = rule_native_z_spacing(spacings)
    spacing = spacing_rec["value"]
    median_shape = median_resampled_shape(shapes, scan_spacings, spacing)
    patch_yx = [round_up(n, LNT_STRIDE) for n in median_shape[1:]]
    patch_rec = decision(patch_yx, f"whole median slice at the target in-plane spacing, rounded up to {LNT_STRIDE}",
                         median_shape_zyx=median_shape)
    per_slice_max = int(detection.get("per_slice_instance_counts", {}).get("max", 0))
    queries_rec = rule_lntracker_queries(per_slice_max)
    thickness = fingerprint.get("slice_thickness_mm", {}).get("p50", float(np.median(np.asarray(spacings)[:, 0])))
    context_rec = rule_lntracker_slice_context(thickness)
    num_slices = int(sum(s[0] for s in shapes))
    batch_rec = rule_max_batch(num_slices, LNT_PAPER["batch_size"])
    cap_rec = rule_lntracker_capacity(patch_yx, spacing[1:], queries_rec["value"], context_rec["value"], usable,
                                      batch_rec["value"], device)
    cap = cap_rec["value"]
    data_id = "lesionnetPlans_2.5d_nativez"
    plans["data_configurations"][data_id] = dict(common, target_spacing_zyx=spacing, native_z=True)
    plans["configurations"]["lntracker"] = {
        "method": "lntracker",
        "data_identifier": data_id,
        "target_spacing_zyx": spacing,
        "native_z": True,
        "patch_size_yx": cap["patch_size_yx"],
        "slices_per_side": cap["slices_per_side"],
        "num_input_slices": 2 * cap["slices_per_side"] + 1,
        "num_queries": cap["num_queries"],
        "hidden_dim": cap["hidden_dim"],
        "encoder_layers": cap["encoder_layers"],
        "decoder_layers": cap["decoder_layers"],
        "batch_size": cap["batch_size"],
        "thresholds": {"tau_det": 0.3, "tau_track": 0.3, "tau_sim": 0.5},
        "estimated_memory_bytes": cap_rec["inputs"]["estimate"]["total_bytes"],
        "memory_model_verified": False,
        "fits_memory_budget": cap_rec["inputs"]["fits"],
        "normalization": common["normalization"],
        "decisions": {"target_spacing": spacing_rec, "patch_size_yx": patch_rec, "num_queries": queries_rec,
                      "slice_context": context_rec, "max_batch_size": batch_rec, "capacity": cap_rec},
    }


#: the memory-driven sizes of each configuration (for monotonicity checks and documentation)
MEMORY_DRIVEN_KEYS = {
    "tlt": ("template_patch_size_zyx", "search_patch_size_zyx", "attention_depth", "attention_heads",
            "attention_width", "batch_size"),
    "dlt": ("search_patch_size_zyx", "template_patch_size_zyx", "growth_rate", "fpn_width", "batch_size"),
    "lntracker": ("patch_size_yx", "num_queries", "slices_per_side", "hidden_dim", "encoder_layers",
                  "decoder_layers", "batch_size"),
}


__all__ = ["decision", "round_up", "rule_target_spacing", "rule_native_z_spacing", "rule_template_patch",
           "rule_search_patch", "search_coverage", "count_kept_tokens", "rule_sss_threshold", "build_chain",
           "select_from_chain", "patch_reduction_levels", "template_search_reduction_levels", "rule_max_batch",
           "rule_tlt_capacity",
           "rule_dlt_capacity", "rule_lntracker_queries", "rule_lntracker_slice_context",
           "rule_lntracker_capacity", "rule_ct_normalization", "plan_from_fingerprint", "MEMORY_DRIVEN_KEYS",
           "resampled_shape", "median_resampled_shape", "PLANS_VERSION", "FEATURE_STRIDE"]
