"""LN-Tracker's planning rules and its section of the plan (sizes, slice context, queries, inference
thresholds; the detection data are preprocessed for it). The memory model behind the width and depth
(:mod:`lesionnet.methods.lntracker.memory`) counts the network as built and is checked against measured
CPU peaks of its training step (0.91–1.09 of the measured; documentation/methods/ln_tracker.md
"Memory"). On a CPU a compute budget stops the network at the size of the ``small`` preset
(:data:`CPU_NETWORK`, in :func:`rule_capacity`).

Slices keep their native thickness (detection runs slice by slice); the in-plane patch is the whole
median slice; queries come from the most lesions seen in one slice, the 2.5D slice context from the
slice thickness, and width, depth and batch from the memory budget through that memory model. Patch
sizes are pixels ``(y, x)``.
"""
from __future__ import annotations

import numpy as np

from lesionnet.methods.lntracker import memory
from lesionnet.planning.planner import PlanningContext
from lesionnet.planning.rules import (
    build_chain,
    decision,
    median_resampled_shape,
    patch_reduction_levels,
    round_up,
    rule_max_batch,
    rule_native_z_spacing,
    select_from_chain,
)

#: paper configuration: the upper defaults of the memory-driven choices
PAPER = {"num_queries": 300, "slices_per_side": 4, "hidden_dim": 256, "encoder_layers": 6, "decoder_layers": 9,
         "batch_size": 8}
HIDDEN_DIMS = (128, 192, 256)
ENCODER_LAYERS = (3, 6)
DECODER_LAYERS = (3, 6, 9)
QUERY_LEVELS = (25, 50, 100, 200, 300)
#: stride of the coarsest backbone level; the in-plane patch is a multiple of it
STRIDE = 32
#: inference thresholds: the paper's tau_det and tau_sim; tau_track; the 2D IoU above which a detection is a
#: live tracklet's node found again (Algorithm 1's "associate", not given in the paper); lesionnet's re-attach
#: IoU (a detection continues a tracklet closed on the same slice; None: Algorithm 1 as printed); and the
#: merging baseline's linking IoU and gap. All but the paper's two were chosen on Dataset502's fold-0
#: validation scans (documentation/methods/ln_tracker.md): tau_track 0.35 instead of the paper's 0.3, because
#: a CPU-trained network's track queries keep scores just above 0.3 for slices after their node ends.
#: 0.1 is also the IoU at which the benchmark counts a box as a node. ``duplicate_iou`` (None: off) would make
#: the association one-to-one (tracklets.py); it was checked on the same validation scans and not taken.
#: ``slice_score`` "detection" would rank tracklets by their detection queries' scores instead of the track
#: queries'; on an independent tuning set (benchmarks/detection_rules.py) it changed the demo's model by under
#: a point, so the plan keeps Algorithm 1's track scores.
THRESHOLDS = {"tau_det": 0.3, "tau_track": 0.35, "tau_sim": 0.5, "associate_iou": 0.1, "reattach_iou": 0.1,
              "duplicate_iou": None, "slice_score": "track", "merge_link_iou": 0.1, "merge_max_gap": 1}
#: Algorithm 1 as printed, with the paper's thresholds: the benchmark's row without lesionnet's additions
PAPER_THRESHOLDS = {"tau_det": 0.3, "tau_track": 0.3, "tau_sim": 0.5, "reattach_iou": None}
#: on a CPU (a compute budget, as TLT's): the network stops at the size of the demo's ``small`` preset, which
#: trains 40 × 130 steps of 4 three-slice chains in about 24 minutes on 2 cores
#: (documentation/methods/ln_tracker.md); a step of the paper's sizes is many times slower there
CPU_NETWORK = {"hidden_dim": 64, "encoder_layers": 1, "decoder_layers": 3, "num_queries": 30, "batch_size": 4,
               "ffn_dim": 128, "backbone_widths": [16, 32, 64]}
#: the plan's keys that grow with the memory budget
MEMORY_DRIVEN_KEYS = ("patch_size_yx", "num_queries", "slices_per_side", "hidden_dim", "encoder_layers",
                      "decoder_layers", "batch_size")
#: the memory model predicts the measured CPU step peak within ±30 % (0.91–1.09 on the documented cases;
#: checked by tests/test_memory_models.py); GPU peaks are not measured
MEMORY_MODEL_VERIFIED = True


def rule_queries(per_slice_max: int, factor: float = 10.0, minimum: int = 20,
                 paper: int = PAPER["num_queries"]) -> dict:
    """Detection queries: ``factor`` × the most lesions seen in one slice, rounded up to 10, between
    ``minimum`` and the paper's 300 (DETR keeps queries an order of magnitude above the objects)."""
    value = int(min(paper, max(minimum, round_up(factor * max(0, per_slice_max), 10))))
    return decision(value, f"clip(roundup10({factor:g} × max lesions per slice), {minimum}, {paper})",
                    per_slice_max=per_slice_max)


def rule_slice_context(median_thickness_mm: float, context_mm: float = 8.0,
                       max_per_side: int = PAPER["slices_per_side"]) -> dict:
    """2.5D context: slices on each side covering about ``context_mm`` (LN-DETR's 9 slices of 2 mm
    reach ±8 mm), at least 1, at most the paper's 4 per side."""
    per_side = int(min(max_per_side, max(1, round(context_mm / max(median_thickness_mm, 1e-6)))))
    return decision(per_side, f"round({context_mm:g} mm / median slice thickness), between 1 and {max_per_side}",
                    median_slice_thickness_mm=median_thickness_mm, num_slices=2 * per_side + 1)


def rule_capacity(patch_yx, spacing_yx, desired_queries: int, desired_slices_per_side: int,
                  usable_bytes: float, max_batch: int, device: str = "cuda") -> dict:
    """LN-Tracker queries, slice context, hidden width, encoder/decoder depth and batch from the memory
    budget (:mod:`~lesionnet.methods.lntracker.memory`). Chain: in-plane patch shrinking towards 128 at
    the minimal network; then queries up to the data-driven number, slices per side up to the data-driven
    context, hidden width 128 → 256, decoder 3 → 9 and encoder 3 → 6 layers (the paper's); then the batch. On a
    CPU (a compute budget) the network, the queries and the batch stop at :data:`CPU_NETWORK`."""
    cpu = device == "cpu"
    hidden_dims = (CPU_NETWORK["hidden_dim"],) if cpu else HIDDEN_DIMS
    encoder_layers = (CPU_NETWORK["encoder_layers"],) if cpu else ENCODER_LAYERS
    decoder_layers = (CPU_NETWORK["decoder_layers"],) if cpu else DECODER_LAYERS
    if cpu:
        desired_queries = min(desired_queries, CPU_NETWORK["num_queries"])
        max_batch = min(max_batch, CPU_NETWORK["batch_size"])
    patches = patch_reduction_levels(patch_yx, [min(p, 128) for p in patch_yx], spacing_yx, STRIDE)
    queries = sorted({q for q in QUERY_LEVELS if q < desired_queries} | {desired_queries})
    start = {"patch_size_yx": patches[0], "num_queries": queries[0], "slices_per_side": 1, "hidden_dim": hidden_dims[0],
             "encoder_layers": encoder_layers[0], "decoder_layers": decoder_layers[0], "batch_size": 1}
    steps = [("patch_size_yx", p) for p in patches[1:]]
    steps += [("num_queries", q) for q in queries[1:]]
    steps += [("slices_per_side", k) for k in range(2, desired_slices_per_side + 1)]
    steps += [("hidden_dim", h) for h in hidden_dims[1:]]
    steps += [("decoder_layers", d) for d in decoder_layers[1:]]
    steps += [("encoder_layers", e) for e in encoder_layers[1:]]
    steps += [("batch_size", b) for b in range(2, max_batch + 1)]
    chain = build_chain(start, steps)

    network_widths = {k: CPU_NETWORK[k] for k in ("ffn_dim", "backbone_widths")} if cpu else {}

    def estimate(c):
        return memory.training_step_memory(c["patch_size_yx"], c["batch_size"],
                                           **memory.network_sizes({**c, **network_widths}), device=device)

    chosen = select_from_chain(chain, estimate, usable_bytes)
    cap = (" (on a CPU the network, queries and batch stop at the demo's small size: a compute budget, about "
           "24 min for the demo's 40 x 130 steps on 2 cores)") if cpu else ""
    return decision(chosen["config"], "last element of the LN-Tracker capacity chain (patch -> queries -> slice "
                    "context -> width/depth up to the paper's -> batch) whose estimated training memory fits the "
                    "budget (LN-Tracker memory model of the network as built, checked against measured CPU "
                    "peaks)" + cap,
                    usable_bytes=usable_bytes, max_batch=max_batch, planned_patch_yx=patch_yx,
                    desired_queries=desired_queries, desired_slices_per_side=desired_slices_per_side, device=device,
                    chain_index=chosen["index"], chain_length=chosen["chain_length"], fits=chosen["fits"],
                    estimate=chosen["estimate"].to_dict())


def plan(context: PlanningContext) -> dict:
    """LN-Tracker's section of the plan (see the module docstring)."""
    fingerprint = context.fingerprint
    spacing_rec = rule_native_z_spacing(context.spacings_zyx)
    spacing = spacing_rec["value"]
    shapes = context.scan_shapes_zyx
    median_shape = median_resampled_shape(shapes, context.scan_spacings_zyx, spacing)
    patch_yx = [round_up(n, STRIDE) for n in median_shape[1:]]
    patch_rec = decision(patch_yx, f"whole median slice at the target in-plane spacing, rounded up to {STRIDE}",
                         median_shape_zyx=median_shape)
    per_slice_max = int(fingerprint.get("detection", {}).get("per_slice_instance_counts", {}).get("max", 0))
    queries_rec = rule_queries(per_slice_max)
    thickness = fingerprint.get("slice_thickness_mm", {}).get(
        "p50", float(np.median(np.asarray(context.spacings_zyx)[:, 0])))
    context_rec = rule_slice_context(thickness)
    batch_rec = rule_max_batch(int(sum(s[0] for s in shapes)), PAPER["batch_size"])
    cap_rec = rule_capacity(patch_yx, spacing[1:], queries_rec["value"], context_rec["value"], context.usable_bytes,
                            batch_rec["value"], context.device)
    cap = cap_rec["value"]
    data_id, data_config = context.data_configuration(spacing, native_z=True)
    # the CPU network's FFN and backbone widths (elsewhere the network's defaults: 4 x width, the paper's backbone)
    network_widths = {k: CPU_NETWORK[k] for k in ("ffn_dim", "backbone_widths")} if context.device == "cpu" else {}
    return {
        "data_identifier": data_id,
        "data_configuration": data_config,
        "patch_size_yx": cap["patch_size_yx"],
        "slices_per_side": cap["slices_per_side"],
        "num_input_slices": 2 * cap["slices_per_side"] + 1,
        "num_queries": cap["num_queries"],
        "hidden_dim": cap["hidden_dim"],
        "encoder_layers": cap["encoder_layers"],
        "decoder_layers": cap["decoder_layers"],
        "batch_size": cap["batch_size"],
        **network_widths,
        "thresholds": dict(THRESHOLDS),
        "estimated_memory_bytes": cap_rec["inputs"]["estimate"]["total_bytes"],
        "memory_model_verified": MEMORY_MODEL_VERIFIED,
        "fits_memory_budget": cap_rec["inputs"]["fits"],
        "decisions": {"target_spacing": spacing_rec, "patch_size_yx": patch_rec, "num_queries": queries_rec,
                      "slice_context": context_rec, "max_batch_size": batch_rec, "capacity": cap_rec},
    }


__all__ = ["PAPER", "STRIDE", "THRESHOLDS", "PAPER_THRESHOLDS", "CPU_NETWORK", "MEMORY_DRIVEN_KEYS",
           "MEMORY_MODEL_VERIFIED", "rule_queries", "rule_slice_context", "rule_capacity", "plan"]
