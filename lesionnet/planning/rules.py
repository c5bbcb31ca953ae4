"""The planner's generic rules: one small pure function per decision, each returning a *decision record*.

A decision record is ``{"value": ..., "rule": "<what was done, in words>", "inputs": {...}}``: the
value, the rule that produced it and the fingerprint figures it used, so that
``lesionnet_plans.json`` explains itself. The rules here serve every method (target spacing, patch
sizes around lesions and the registration prior, capacity chains against the memory budget, batch
size, CT normalisation); each method's own rules live in ``lesionnet/methods/<method>/planning.py``
and are strung together by its ``plan``. See ``documentation/planning.md`` for each rule with a
worked example.

Axis order of every size and spacing here is ``(z, y, x)``; patch sizes are voxels at the target
spacing; radii and errors are mm.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from lesionnet.planning.memory import MemoryEstimate

#: default stride the patch sizes are multiples of (the trackers' feature stride)
FEATURE_STRIDE = 8


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


def percentile(values, q: float, default: float | None = None) -> float:
    """The ``q``-th percentile of ``values``; ``default`` when there are none (else an error)."""
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
    """Slice-by-slice methods: keep each scan's own slices (z = null, "native"), in-plane the median of y
    and x."""
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

    ``context_factor`` 2.5 keeps a region of 2.5 radii around the 95th-percentile lesion in the patch
    (TLT's token selection at its paper threshold keeps 2.07 radii).
    """
    r = percentile(radii_mm, radius_quantile, default=10.0)
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
    r_q = percentile(radii, radius_quantile, default=10.0)
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


# ================================================================================ memory-driven choices and batch
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


def select_from_chain(chain: list[dict], estimate: Callable[[dict], MemoryEstimate], usable_bytes: float) -> dict:
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


# ================================================================================ normalisation
def rule_ct_normalization(intensity: dict) -> dict:
    """nnU-Net's CT scheme: clip to the body's 0.5 / 99.5 percentiles, subtract the body mean, divide
    by the body std (all from the fingerprint's subsampled body voxels). A fixed window
    ``(HU + 800) / 1600`` (TLT's public code) is available as scheme ``"linear_hu"``."""
    if not intensity or intensity.get("num_samples", 0) == 0:
        value = {"scheme": "ct_zscore", "clip_hu": [-1000.0, 1000.0], "mean_hu": 0.0, "std_hu": 500.0}
        return decision(value, "no body voxels in the fingerprint: fixed CT window", intensity=intensity)
    std = max(float(intensity["std"]), 1e-3)
    value = {"scheme": "ct_zscore", "clip_hu": [float(intensity["p0.5"]), float(intensity["p99.5"])],
             "mean_hu": float(intensity["mean"]), "std_hu": std}
    return decision(value, "clip to body p0.5/p99.5, (HU - body mean) / body std (nnU-Net CT normalisation)",
                    p0_5=intensity["p0.5"], p99_5=intensity["p99.5"], mean=intensity["mean"], std=intensity["std"],
                    num_samples=intensity["num_samples"])


__all__ = ["decision", "round_up", "percentile", "FEATURE_STRIDE", "rule_target_spacing", "rule_native_z_spacing",
           "resampled_shape", "median_resampled_shape", "rule_template_patch", "search_coverage", "rule_search_patch",
           "build_chain", "select_from_chain", "patch_reduction_levels", "template_search_reduction_levels",
           "rule_max_batch", "rule_ct_normalization"]


#: the deformable prior must find this many more training lesions (CPM@10mm points) than the affine ...
PRIOR_MIN_GAIN_CPM_POINTS = 5.0
#: ... at no more than this multiple of the affine's time per scan pair. The limit catches a pathological cost
#: (a B-spline grid that explodes on large scans), not a preference: the same settings on the same data measured
#: 3.0x to 4.4x on a 2-core machine (the affine's median moves most), so a limit inside that range
#: made the plan, and with it every TLT result, depend on the machine's load at planning time.
PRIOR_MAX_TIME_RATIO = 10.0


def rule_registration_prior(candidates: dict) -> dict:
    """Which registration prior TLT and DLT start from, from the fingerprint's measured candidates.

    ``candidates``: ``{kind: {"CPM@10mm", "MED", "seconds_per_scan_pair_median", "num_pairs", ...}}`` on the
    same sampled training pairs. The deformable prior is chosen when it finds at least
    :data:`PRIOR_MIN_GAIN_CPM_POINTS` more lesions (CPM@10mm), has a lower MED and costs at most
    :data:`PRIOR_MAX_TIME_RATIO` × the affine's seconds per scan pair; otherwise the affine.
    """
    affine, deformable = candidates.get("affine"), candidates.get("deformable")
    figures = {kind: {k: c.get(k) for k in ("CPM@10mm", "MED", "seconds_per_scan_pair_median", "num_pairs")}
               for kind, c in candidates.items()}
    inputs = dict(candidates=figures, min_gain_cpm_points=PRIOR_MIN_GAIN_CPM_POINTS,
                  max_time_ratio=PRIOR_MAX_TIME_RATIO)
    if not affine or not deformable or not affine.get("num_pairs"):
        return decision("affine", "affine: the deformable prior was not measured on training pairs", **inputs)
    gain = deformable["CPM@10mm"] - affine["CPM@10mm"]
    ratio = deformable["seconds_per_scan_pair_median"] / max(affine["seconds_per_scan_pair_median"], 1e-6)
    facts = (f"deformable vs affine on {affine['num_pairs']} training pairs: CPM@10mm {gain:+.1f} points, "
             f"MED {deformable['MED'] - affine['MED']:+.2f} mm, {ratio:.1f}x the time per scan pair")
    if gain >= PRIOR_MIN_GAIN_CPM_POINTS and deformable["MED"] < affine["MED"] and ratio <= PRIOR_MAX_TIME_RATIO:
        return decision("deformable", f"deformable: {facts} (gain >= {PRIOR_MIN_GAIN_CPM_POINTS:g} points, lower "
                        f"MED, time <= {PRIOR_MAX_TIME_RATIO:g}x)", **inputs)
    return decision("affine", f"affine: {facts} (the deformable prior needs >= {PRIOR_MIN_GAIN_CPM_POINTS:g} "
                    f"points more, a lower MED and <= {PRIOR_MAX_TIME_RATIO:g}x the time)", **inputs)
