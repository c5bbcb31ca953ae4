"""TLT's planning rules and its section of the plan.

* :func:`rule_sss_threshold` — the Sparse Selection Strategy threshold Tr from the lesion radii at the
  feature stride (smallest lesions keep a token, the largest stay in the token budget);
* :func:`rule_fine_matching` — the fine matching head, on when lesions are smaller than a feature cell;
* :func:`rule_capacity` — attention depth / heads / width and batch size from the memory budget, with
  :mod:`lesionnet.methods.tlt.memory`;
* :func:`plan` — the section: the tracking task's spacing and patches (shared with every tracker, see
  :class:`lesionnet.planning.planner.PlanningContext`), then the rules above, and the ``network``
  (the :class:`~lesionnet.methods.tlt.config.TLTConfig` fields), which holds every network size once.

Sizes and spacings are ``(z, y, x)``; patch sizes voxels at the target spacing; radii mm.
"""
from __future__ import annotations

import math

import numpy as np

from lesionnet.methods.tlt import memory
from lesionnet.methods.tlt.maps import keep_radius_mm
from lesionnet.planning.planner import PlanningContext
from lesionnet.planning.rules import (
    FEATURE_STRIDE,
    build_chain,
    decision,
    percentile,
    rule_max_batch,
    search_coverage,
    select_from_chain,
    template_search_reduction_levels,
)

#: paper configuration: the upper defaults of the memory-driven choices
PAPER = {"attention_depth": 3, "attention_heads": 8, "attention_width": 192, "batch_size": 4}
#: extractor widths before the token width (stem, then the stages), paper and CPU
STEM_CHANNELS = (32, 64, 128, 160)
CPU_STEM_CHANNELS = (16, 32, 48, 64)
#: on a CPU (compute budget): a 3³ stem instead of 7³ and no dropout — together about half the time of a
#: training step of the CPU-sized network, measured with the torch profiler (stem backward and dropout masks)
CPU_NETWORK = {"stem_kernel": 3, "dropout": 0.0}
#: the plan's keys that grow with the memory budget (checked to be monotone in the tests)
MEMORY_DRIVEN_KEYS = ("template_patch_size_zyx", "search_patch_size_zyx", "network.layers_per_line",
                      "network.num_heads", "network.channels", "batch_size")


def count_kept_tokens(radius_mm: float, threshold: float, feature_spacing_zyx, offset_zyx=(0.0, 0.0, 0.0),
                      grid_shape_zyx=None) -> int:
    """Template tokens SSS keeps for a lesion of ``radius_mm`` at threshold ``threshold``: feature-grid
    points within ``r · sqrt(-12 ln Tr)`` mm of the lesion center (TLT Gaussian > Tr).

    ``offset_zyx`` places the center between tokens (0.5 = half-way on that axis);
    ``grid_shape_zyx`` (the template's feature grid, centred on the lesion) clips the count.
    """
    keep = keep_radius_mm(radius_mm, threshold)
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
    r_lo = percentile(radii, low_quantile, default=10.0)
    r_hi = percentile(radii, high_quantile, default=10.0)
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
                    keep_radius_small_mm=keep_radius_mm(r_lo, value),
                    keep_radius_large_mm=keep_radius_mm(r_hi, value),
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
    r_med = percentile(radii_mm, 50.0, default=10.0)
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


def stem_channels(stages: int, device: str = "cuda") -> tuple:
    """Extractor widths before the token width: the stem and every downsampling stage but the last
    (the paper's 32, 64, 128 for 3 stages; half as wide on a CPU)."""
    widths = CPU_STEM_CHANNELS if device == "cpu" else STEM_CHANNELS
    return tuple(widths[:int(stages)])


def rule_capacity(template_patch_zyx, search_patch_zyx, spacing_zyx, usable_bytes: float, max_batch: int,
                  template_tokens: int, device: str = "cuda", stride: int = FEATURE_STRIDE) -> dict:
    """TLT attention depth / heads / width, batch size (and, as a last resort, a smaller search patch)
    from the memory budget.

    Chain, smallest first: the patches shrunk (search towards the template, then both; see
    :func:`template_search_reduction_levels`) at the minimal network (depth 1, 2 heads, width 64,
    batch 1); then the planned patches with the network growing to
    the paper's (width 96, depth 2, heads 4, width 128, depth 3, heads 8, width 192) — on a CPU only to
    depth 2 and 4 heads at width 64, with half-width stages (a compute budget: the paper's size trains
    several times slower there, and the demo has minutes); then the batch growing to ``max_batch``.
    The last element whose :func:`~lesionnet.methods.tlt.memory.training_step_memory`
    fits ``usable_bytes`` is chosen, so each of these sizes is monotone in the budget.
    """
    patches = template_search_reduction_levels(template_patch_zyx, search_patch_zyx, spacing_zyx, stride, 2 * stride)
    start = {"template_patch_size_zyx": patches[0][0], "search_patch_size_zyx": patches[0][1], "attention_depth": 1,
             "attention_heads": 2, "attention_width": 64, "batch_size": 1}
    steps = []
    for previous, (template, search) in zip(patches, patches[1:]):
        if template != previous[0]:
            steps.append(("template_patch_size_zyx", template))
        steps.append(("search_patch_size_zyx", search))
    network_steps = [("attention_width", 96), ("attention_depth", 2), ("attention_heads", 4), ("attention_width", 128),
                     ("attention_depth", 3), ("attention_heads", 8), ("attention_width", 192)]
    if device == "cpu":      # compute budget: the network stops at the CPU size (width 64, depth 2, 4 heads)
        network_steps = [("attention_depth", 2), ("attention_heads", 4)]
    steps += network_steps + [("batch_size", b) for b in range(2, max_batch + 1)]
    chain = build_chain(start, steps)
    stages = int(round(math.log2(stride)))

    def estimate(c):
        net = memory.network_config(c["attention_width"], c["attention_heads"], c["attention_depth"],
                                    stem_channels=stem_channels(stages, device))
        return memory.training_step_memory(c["template_patch_size_zyx"], c["search_patch_size_zyx"], c["batch_size"],
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


def plan(context: PlanningContext) -> dict:
    """TLT's section of the plan (see the module docstring)."""
    geometry = context.tracking_geometry
    spacing_rec, template_rec, search_rec = (geometry["target_spacing"], geometry["template_patch_size"],
                                             geometry["search_patch_size"])
    spacing, template = spacing_rec["value"], template_rec["value"]
    stride, stages = geometry["stride"], geometry["resolution"]["value"]["stages"]
    radii, token_budget = context.radii_mm, context.token_budget
    feature_spacing = [s * stride for s in spacing]
    template_features = [t // stride for t in template]
    tr_rec = rule_sss_threshold(radii, feature_spacing, template_features, token_budget=token_budget)
    template_tokens = min(token_budget, int(np.prod(template_features)))
    batch_rec = rule_max_batch(len(context.training_pairs), PAPER["batch_size"])
    cap_rec = rule_capacity(template, search_rec["value"], spacing, context.usable_bytes, batch_rec["value"],
                            template_tokens, context.device, stride)
    cap = cap_rec["value"]
    network = memory.network_config(cap["attention_width"], cap["attention_heads"], cap["attention_depth"],
                                    tr_rec["value"], stem_channels(stages, context.device))
    if context.device == "cpu":
        network.update(CPU_NETWORK)
    fine_rec = rule_fine_matching(radii, spacing, cap["template_patch_size_zyx"], stride)
    network.update(fine_matching=fine_rec["value"]["enabled"], fine_kernel_zyx=fine_rec["value"]["kernel_zyx"])
    data_id, data_config = context.data_configuration(spacing)
    return {
        "data_identifier": data_id,
        "data_configuration": data_config,
        "template_patch_size_zyx": cap["template_patch_size_zyx"],
        "search_patch_size_zyx": cap["search_patch_size_zyx"],
        "feature_stride": stride,
        "max_template_tokens": token_budget,
        "batch_size": cap["batch_size"],
        "network": network,
        "estimated_memory_bytes": cap_rec["inputs"]["estimate"]["total_bytes"],
        "fits_memory_budget": cap_rec["inputs"]["fits"],
        "search_coverage": search_coverage(context.prior_errors_mm_zyx, context.target_radii_mm,
                                           cap["search_patch_size_zyx"], spacing),
        "decisions": {"resolution": geometry["resolution"], "target_spacing": spacing_rec,
                      "template_patch_size": template_rec,
                      "search_patch_size": search_rec, "sss_threshold": tr_rec, "max_batch_size": batch_rec,
                      "capacity": cap_rec, "fine_matching": fine_rec},
    }


__all__ = ["PAPER", "STEM_CHANNELS", "CPU_STEM_CHANNELS", "CPU_NETWORK", "stem_channels", "MEMORY_DRIVEN_KEYS",
           "count_kept_tokens", "rule_sss_threshold", "rule_fine_matching",
           "rule_capacity", "plan"]
