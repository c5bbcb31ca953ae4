"""Scores of the robustness protocol (:mod:`lesionnet.datasets.robustness_pairs`): a prediction file with each
pair tracked from its original template center and from shifted ones (ids ``<pair_id>#shift<k>``).

As in the DLT paper (Table 7), the metrics of the original pairs are compared with those of all pairs
(original + shifted, 10 per pair): the CPM drop and the MED increase. lesionnet adds the *spread*: per
pair, the mean distance (mm) of its predictions from their centroid — 0 for a tracker that does not
depend on where exactly the template was clicked. :func:`compare_drops` tests whether one tracker is more
robust than another on the same pairs: a paired t-test of the per-pair drops.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from lesionnet.datasets.robustness_pairs import base_pair_id, is_shifted
from lesionnet.evaluation.prediction_io import TrackingPredictions
from lesionnet.evaluation.tracking_metrics import TrackingEvaluation, evaluate_predictions, format_p, paired_ttest

ARRAYS = ("source_center_zyx", "predicted_center_zyx", "target_center_zyx", "target_spacing_zyx", "target_radius_mm")


def subset(predictions: TrackingPredictions, mask) -> TrackingPredictions:
    """The predictions where ``mask`` (``(n,)`` bool) is True."""
    mask = np.asarray(mask, dtype=bool)
    keep = [i for i, m in enumerate(mask) if m]
    lists = {k: [getattr(predictions, k)[i] for i in keep] for k in ("pair_ids", "sources", "targets")}
    return replace(predictions, **lists, **{k: getattr(predictions, k)[mask] for k in ARRAYS})


def original_pairs(predictions: TrackingPredictions) -> TrackingPredictions:
    """The predictions from the original template centers only (the shifted copies left out)."""
    return subset(predictions, [not is_shifted(str(i)) for i in predictions.pair_ids])


def _pair_groups(ids: list[str]) -> tuple[dict[str, list[int]], dict[str, int]]:
    """``(groups, originals)``: per original pair id, the indices of all its predictions (original and
    shifted), and the index of its original prediction (pairs whose original is there)."""
    groups: dict[str, list[int]] = {}
    originals = {}
    for index, pair_id in enumerate(ids):
        groups.setdefault(base_pair_id(pair_id), []).append(index)
        if not is_shifted(pair_id):
            originals[pair_id] = index
    return groups, originals


def _summary(predictions, mask: np.ndarray) -> dict:
    return evaluate_predictions(subset(predictions, mask)).summary()


def robustness_summary(evaluation: TrackingEvaluation) -> dict:
    """``{"original", "all"}`` (metric summaries), ``cpm_10mm_drop``, ``cpm_radius_drop``, ``med_increase_mm``,
    ``spread_mm`` (``median``, ``mean``, ``p90`` over pairs), ``n_pairs``, ``shifts_per_pair``. ``ValueError`` when
    the file holds no shifted predictions or a shifted prediction without its original."""
    predictions = evaluation.predictions
    ids = [str(i) for i in predictions.pair_ids]
    shifted = np.array([is_shifted(i) for i in ids])
    if not shifted.any():
        raise ValueError(f"{predictions.path}: no shifted predictions (ids <pair_id>#shift<k>); predict with "
                         "lesionnet_predict --robustness first.")
    groups, originals = _pair_groups(ids)
    orphans = sorted(set(groups) - set(originals))
    if orphans:
        raise ValueError(f"{predictions.path}: shifted predictions without their original pair: {orphans[:5]}")
    original = _summary(predictions, ~shifted)
    everything = _summary(predictions, np.ones(len(ids), dtype=bool))
    positions_mm = predictions.predicted_center_zyx * predictions.target_spacing_zyx
    spreads = np.array([np.linalg.norm(positions_mm[g] - positions_mm[g].mean(axis=0), axis=1).mean()
                        for g in groups.values()])
    return {"original": original, "all": everything, "n_pairs": len(groups),
            "shifts_per_pair": float(np.mean([len(g) - 1 for g in groups.values()])),
            "cpm_10mm_drop": original["CPM@10mm"] - everything["CPM@10mm"],
            "cpm_radius_drop": original["CPM@Radius"] - everything["CPM@Radius"],
            "med_increase_mm": everything["MED"] - original["MED"],
            "spread_mm": {"median": float(np.median(spreads)), "mean": float(spreads.mean()),
                          "p90": float(np.percentile(spreads, 90))}}


def per_pair_drops(evaluation: TrackingEvaluation) -> dict[str, tuple[float, float]]:
    """Per original pair id: ``(CPM@10mm drop in points, distance increase in mm)``, i.e. the pair's value from
    its original template center minus (plus, for the distance) the mean over all its template centers. Their
    means over pairs are the summary's ``cpm_10mm_drop`` and ``med_increase_mm`` when every pair has as many
    shifted centers."""
    groups, originals = _pair_groups([str(i) for i in evaluation.predictions.pair_ids])
    hits, distances = 100.0 * evaluation.hit_10mm.astype(np.float64), evaluation.distance_mm
    drops = {}
    for pair, group in groups.items():
        if pair in originals:
            first = originals[pair]
            drops[pair] = (float(hits[first] - hits[group].mean()), float(distances[group].mean() - distances[first]))
    return drops


def _runs(evaluations) -> list:
    """One evaluation or a list of them (training runs of one tracker), as a list."""
    return list(evaluations) if isinstance(evaluations, (list, tuple)) else [evaluations]


def _mean_drops(runs: list, label: str) -> dict[str, tuple[float, float]]:
    """Per original pair id, :func:`per_pair_drops` averaged over the evaluations ``runs`` (training runs of
    one tracker); ``ValueError`` when they cover different pairs."""
    drops = [per_pair_drops(e) for e in runs]
    if any(set(d) != set(drops[0]) for d in drops[1:]):
        raise ValueError(f"the runs of {label} were not tracked on the same pairs.")
    return {pair: tuple(float(np.mean([d[pair][k] for d in drops])) for k in (0, 1)) for pair in drops[0]}


def compare_drops(a, b, label_a: str = "a", label_b: str = "b") -> dict:
    """Is ``a`` more robust than ``b``? Paired t-tests over the pairs both tracked with the protocol, of the
    per-pair CPM@10mm drop (``CPM@10mm_drop``; a negative mean difference: ``a`` drops less) and the per-pair
    distance increase (``distance_increase_mm``). ``a`` and ``b`` are :class:`TrackingEvaluation` objects or
    lists of them (training runs of one tracker, e.g. with different seeds: each pair's drop is then averaged
    over the runs before the test, so the test is over pairs, with run-to-run noise averaged down; ``runs_a``
    and ``runs_b`` say how many). ``ValueError`` when they cover different pairs."""
    runs_a, runs_b = _runs(a), _runs(b)
    da, db = _mean_drops(runs_a, label_a), _mean_drops(runs_b, label_b)
    if set(da) != set(db):
        raise ValueError(f"{label_a} and {label_b} were not tracked on the same pairs "
                         f"({len(set(da) ^ set(db))} pair(s) in only one of them).")
    ids = sorted(da)
    return {"a": label_a, "b": label_b, "n": len(ids), "test": "paired t-test (scipy.stats.ttest_rel), two-sided",
            "runs_a": len(runs_a), "runs_b": len(runs_b),
            "CPM@10mm_drop": paired_ttest([da[i][0] for i in ids], [db[i][0] for i in ids], "CPM@10mm drop").to_dict(),
            "distance_increase_mm": paired_ttest([da[i][1] for i in ids], [db[i][1] for i in ids],
                                                 "distance increase (mm)").to_dict()}


def format_drop_comparison(comparison: dict) -> str:
    """One line of :func:`compare_drops`."""
    cpm, dist = comparison["CPM@10mm_drop"], comparison["distance_increase_mm"]
    runs = comparison.get("runs_a", 1), comparison.get("runs_b", 1)
    pooled = f", each pair's drop averaged over {runs[0]} and {runs[1]} runs" if max(runs) > 1 else ""
    return (f"{comparison['a']} vs {comparison['b']} ({comparison['n']} pairs{pooled}): "
            f"CPM@10mm drop {cpm['mean_a']:.2f} vs "
            f"{cpm['mean_b']:.2f} points (difference {cpm['mean_difference']:+.2f}, p = {format_p(cpm['p_value'])}), "
            f"distance increase {dist['mean_a']:.2f} vs {dist['mean_b']:.2f} mm (p = {format_p(dist['p_value'])}), "
            "paired t-test")


def format_robustness(result: dict) -> str:
    """A short text table of :func:`robustness_summary`."""
    o, a = result["original"], result["all"]
    return "\n".join([
        f"Robustness ({result['n_pairs']} pairs, {result['shifts_per_pair']:.0f} shifted template centers each):",
        "| | n | CPM@10mm | CPM@Radius | MED (mm) |", "| --- | --- | --- | --- | --- |",
        f"| original centers | {o['n']} | {o['CPM@10mm']:.2f} | {o['CPM@Radius']:.2f} | {o['MED']:.2f} |",
        f"| original + shifted | {a['n']} | {a['CPM@10mm']:.2f} | {a['CPM@Radius']:.2f} | {a['MED']:.2f} |",
        f"CPM@10mm drop {result['cpm_10mm_drop']:.2f} points, CPM@Radius drop {result['cpm_radius_drop']:.2f} points, "
        f"MED increase {result['med_increase_mm']:.2f} mm; spread of a pair's predictions (mean distance from "
        f"their centroid): median {result['spread_mm']['median']:.2f} mm, 90th percentile "
        f"{result['spread_mm']['p90']:.2f} mm."])


__all__ = ["subset", "original_pairs", "robustness_summary", "per_pair_drops", "compare_drops",
           "format_drop_comparison", "format_robustness"]
