"""The tracking resolution: the target spacing and the feature stride, chosen together (pure rule).

A tracker's tokens (TLT) or correlation cells (DLT) are feature cells of ``stride × spacing`` mm. What
decides whether a lesion can be placed is how many cells its radius spans: on DLS, the benchmark the
paper configurations were built for, the median lesion radius (10.6 mm, half the long RECIST
diameter) spans 10.6 / (8 × 1 mm) = 1.33 cells at 1 mm and stride 8. Taking the dataset's median
spacing and the paper's stride 8 regardless of the lesions gives, on a 2.5 mm grid with 10 mm lesions,
half a cell per radius: the lesion is a sub-cell detail of its token.

:func:`rule_tracking_resolution` therefore picks, among strides ``2 ** n`` (``n`` downsampling stages),
the spacing at which the median radius spans :data:`PAPER_RADIUS_CELLS` cells, never finer than the
dataset's own target spacing (upsampling adds voxels, not information); then it keeps the candidates
whose cells-per-radius is within :data:`RADIUS_CELLS_TOLERANCE` of the paper's, and of those the
finest spacing that fits the compute budget (patch voxels per training sample, set on a CPU; on a GPU
the memory rules of each method size the network instead). Sizes and spacings are ``(z, y, x)``; radii
mm.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from lesionnet.planning.rules import decision, percentile

#: median lesion radius in feature cells in the paper's DLS regime: 10.6 mm / (stride 8 × 1 mm)
PAPER_RADIUS_CELLS = 10.6 / 8.0
#: accepted ratio between a candidate's cells per radius and the paper's (either way)
RADIUS_CELLS_TOLERANCE = 1.25
#: downsampling stages tried (strides 2, 4, 8, 16)
STAGES = (1, 2, 3, 4)
#: template + search voxels of one training sample allowed when there is no GPU: the CPU-sized TLT (width 64)
#: takes about 2 s per step of 4 samples of 78,608 voxels on 2 CPU cores (documentation/planning.md)
CPU_PATCH_VOXEL_BUDGET = 100_000


def radius_cells(radius_mm: float, spacing_zyx, stride: int) -> float:
    """Feature cells spanned by ``radius_mm``: radius / (stride × geometric-mean spacing)."""
    geometric = float(np.prod(np.asarray(spacing_zyx, dtype=np.float64)) ** (1.0 / 3.0))
    return float(radius_mm) / (stride * geometric)


def rule_tracking_resolution(radii_mm, native_spacing_zyx, patch_voxels: Callable[[list, int], int],
                             voxel_budget: int | None, stages=STAGES, target_cells: float = PAPER_RADIUS_CELLS,
                             tolerance: float = RADIUS_CELLS_TOLERANCE) -> dict:
    """``{"spacing_zyx", "stride", "stages", "radius_cells"}`` for a tracking dataset.

    Args:
        radii_mm: the dataset's lesion radii (mm).
        native_spacing_zyx: the dataset's target spacing (median rule); no axis goes finer than it.
        patch_voxels: ``(spacing_zyx, stride) -> template + search voxels`` of one training sample at
            that resolution (the planner's patch rules).
        voxel_budget: most patch voxels per sample (a CPU budget); None: no compute limit.

    Per candidate stride ``s = 2 ** n``: spacing ``r_med / (target_cells × s)`` on every axis, raised
    to the native spacing where that is coarser. Chosen: among the candidates within the budget whose
    cells per radius is within ``tolerance`` of ``target_cells``, the finest spacing (most image detail);
    if none is close enough, the one closest to ``target_cells`` within the budget; if none fits, the
    cheapest.
    """
    r_med = percentile(radii_mm, 50.0, default=10.0)
    native = [float(v) for v in native_spacing_zyx]
    candidates = []
    for n in stages:
        stride = 2 ** int(n)
        ideal = r_med / (target_cells * stride)
        spacing = [round(max(ideal, s), 4) for s in native]
        cells = radius_cells(r_med, spacing, stride)
        voxels = int(patch_voxels(spacing, stride))
        candidates.append({"stages": int(n), "stride": stride, "spacing_zyx": spacing, "radius_cells": cells,
                           "radius_voxels": r_med / float(np.prod(spacing)) ** (1.0 / 3.0),
                           "patch_voxels": voxels, "within_budget": voxel_budget is None or voxels <= voxel_budget,
                           "log_ratio": abs(math.log(cells / target_cells))})
    affordable = [c for c in candidates if c["within_budget"]]
    close = [c for c in affordable if c["log_ratio"] <= math.log(tolerance) + 1e-9]
    if close:
        chosen = min(close, key=lambda c: (float(np.prod(c["spacing_zyx"])), c["stride"]))
        how = "the finest spacing among the candidates within the tolerance and the budget"
    elif affordable:
        chosen = min(affordable, key=lambda c: (c["log_ratio"], c["patch_voxels"]))
        how = "no candidate within the tolerance: the one closest to the target within the budget"
    else:
        chosen = min(candidates, key=lambda c: c["patch_voxels"])
        how = "no candidate within the budget: the cheapest"
    value = {k: chosen[k] for k in ("spacing_zyx", "stride", "stages", "radius_cells")}
    budget = "no compute budget" if voxel_budget is None else f"<= {voxel_budget} patch voxels per sample"
    rule = (f"per stride 2^n: spacing = median radius / ({target_cells:.3g} cells × stride), never finer than the "
            f"native target spacing; cells per radius within ×{tolerance:g} of the paper's DLS regime; {budget}; "
            f"{how}")
    return decision(value, rule, median_radius_mm=r_med, native_spacing_zyx=native, target_radius_cells=target_cells,
                    tolerance=tolerance, voxel_budget=voxel_budget, candidates=candidates)


__all__ = ["PAPER_RADIUS_CELLS", "RADIUS_CELLS_TOLERANCE", "STAGES", "CPU_PATCH_VOXEL_BUDGET", "radius_cells",
           "rule_tracking_resolution"]
