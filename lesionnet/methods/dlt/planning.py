"""DLT's planning rules and its section of the plan.

* Resolution: the tracking task's planned target spacing; the finest of DLT's three scales has the
  tracking resolution's feature stride ``s`` (chosen so that a median lesion spans about as many
  feature cells as on DLS), the others ``2 s`` and ``4 s``.
* Template and search crops have the same size (as in the DLT paper), covering the tracking task's
  planned template and search patches, rounded up to a multiple of ``4 s``.
* Growth rate, FPN width and batch size come from the memory budget through the memory model
  (:mod:`lesionnet.methods.dlt.memory`, checked against measured peaks on CPU).

The section's ``network`` is a :class:`lesionnet.methods.dlt.config.DLTConfig`. Sizes are ``(z, y, x)``
voxels at the target spacing.
"""
from __future__ import annotations

from lesionnet.methods.dlt import memory
from lesionnet.methods.dlt.config import DLTConfig
from lesionnet.methods.dlt.maps import ANATOMY_N
from lesionnet.planning.planner import PlanningContext
from lesionnet.planning.rules import (
    build_chain,
    decision,
    patch_reduction_levels,
    round_up,
    rule_max_batch,
    search_coverage,
    select_from_chain,
)

#: paper configuration: the upper defaults of the memory-driven choices
PAPER = {"growth_rate": 32, "fpn_width": 64, "batch_size": 4}
GROWTH_RATES = (8, 12, 16, 24, 32)
FPN_WIDTHS = (32, 48, 64)
#: the plan's keys that grow with the memory budget
MEMORY_DRIVEN_KEYS = ("search_patch_size_zyx", "template_patch_size_zyx", "network.growth_rate", "network.fpn_width",
                      "batch_size")


def rule_capacity(patch_zyx, spacing_zyx, usable_bytes: float, max_batch: int, device: str = "cuda",
                  stride: int = 8) -> dict:
    """DLT DenseFPN growth rate / FPN width and batch size from the memory budget (estimate-only
    memory model). Template and search crops have the same size (as in the DLT paper); the chain
    shrinks them first (towards 4 strides), then grows growth rate 8 → 32 and FPN width 32 → 64
    (DenseNet-121's growth 32 is the upper default), then the batch."""
    patches = patch_reduction_levels(patch_zyx, [min(p, 4 * stride) for p in patch_zyx], spacing_zyx, stride)
    start = {"patch_size_zyx": patches[0], "growth_rate": GROWTH_RATES[0], "fpn_width": FPN_WIDTHS[0],
             "batch_size": 1}
    steps = [("patch_size_zyx", p) for p in patches[1:]]
    steps += [("fpn_width", 48), ("growth_rate", 12), ("growth_rate", 16), ("fpn_width", 64), ("growth_rate", 24),
              ("growth_rate", 32)]
    steps += [("batch_size", b) for b in range(2, max_batch + 1)]
    chain = build_chain(start, steps)

    def estimate(c):
        return memory.training_step_memory(c["patch_size_zyx"], c["patch_size_zyx"], c["batch_size"],
                                           c["growth_rate"], c["fpn_width"], stem_stride=stride // 4, device=device)

    chosen = select_from_chain(chain, estimate, usable_bytes)
    return decision(chosen["config"], "last element of the DLT capacity chain (patch -> FPN width/growth rate up to "
                    "32/64 -> batch) whose estimated training memory fits the budget", usable_bytes=usable_bytes,
                    max_batch=max_batch, planned_patch_zyx=patch_zyx,
                    device=device, chain_index=chosen["index"], chain_length=chosen["chain_length"],
                    fits=chosen["fits"], estimate=chosen["estimate"].to_dict())


def plan(context: PlanningContext) -> dict:
    """DLT's section of the plan (see the module docstring)."""
    geometry = context.tracking_geometry
    spacing_rec = geometry["target_spacing"]
    spacing = spacing_rec["value"]
    template, search = geometry["template_patch_size"]["value"], geometry["search_patch_size"]["value"]
    stem_stride = int(geometry["stride"])
    coarsest = 4 * stem_stride            # DLT's three scales: s, 2 s, 4 s
    patch = [round_up(max(a, b), coarsest) for a, b in zip(search, template)]
    batch_rec = rule_max_batch(len(context.training_pairs), PAPER["batch_size"])
    cap_rec = rule_capacity(patch, spacing, context.usable_bytes, batch_rec["value"], context.device, coarsest)
    cap = cap_rec["value"]
    network = DLTConfig(growth_rate=cap["growth_rate"], fpn_width=cap["fpn_width"], stem_stride=stem_stride)
    data_id, data_config = context.data_configuration(spacing)
    return {
        "data_identifier": data_id,
        "data_configuration": data_config,
        "template_patch_size_zyx": cap["patch_size_zyx"],
        "search_patch_size_zyx": cap["patch_size_zyx"],
        "feature_stride": network.output_stride,
        "anatomy_gaussian_n": ANATOMY_N,
        "network": network.to_dict(),
        "batch_size": cap["batch_size"],
        "estimated_memory_bytes": cap_rec["inputs"]["estimate"]["total_bytes"],
        "memory_model_verified": True,
        "fits_memory_budget": cap_rec["inputs"]["fits"],
        "search_coverage": search_coverage(context.prior_errors_mm_zyx, context.target_radii_mm, cap["patch_size_zyx"],
                                           spacing),
        "decisions": {"target_spacing": spacing_rec, "scales": decision(
            [stem_stride, 2 * stem_stride, 4 * stem_stride], "the finest scale at the tracking resolution's feature "
            "stride (see the tracking geometry's resolution decision), then 2x and 4x",
            resolution=geometry["resolution"]),
            "patch_size": decision(
            patch, "template and search crops of the same size (DLT paper), covering the planned search and "
            "template patches, multiples of the coarsest scale's stride", search_patch_zyx=search,
            template_patch_zyx=template),
            "max_batch_size": batch_rec, "capacity": cap_rec},
    }


__all__ = ["PAPER", "GROWTH_RATES", "FPN_WIDTHS", "MEMORY_DRIVEN_KEYS", "rule_capacity", "plan"]
