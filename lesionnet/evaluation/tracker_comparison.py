"""Run several trackers on one dataset split and compare them side by side, in one run.

Used by ``lesionnet_demo`` and ``benchmarks/tracking.py``: each method (a tracking method object,
e.g. from ``lesionnet.methods.REGISTRY``) predicts the split's pairs through the same entry point as
``lesionnet_predict`` and is scored with the DLS conventions; the result holds, per method, the
metrics, the mean seconds per pair, the wall time, and a paired t-test of each method against the
first one (the reference).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from lesionnet.datasets.prediction_format import read_predictions
from lesionnet.datasets.raw_format import RawDataset
from lesionnet.evaluation.robustness import compare_drops, original_pairs, robustness_summary
from lesionnet.evaluation.tracking_metrics import (
    compare_predictions,
    evaluate_predictions,
    evaluate_tracking_file,
    format_p,
)
from lesionnet.inference.predict_tracking import predict_tracking


def compare_trackers(dataset_folder: str | os.PathLike, output_folder: str | os.PathLike, methods: list,
                     split: str = "Ts", progress: bool = True, model_options=None, comparisons=(),
                     robustness: bool = False) -> dict:
    """Predict and evaluate ``methods`` (the first is the reference) on ``split`` of a raw tracking dataset.

    An entry of ``methods`` is a method object (its row is named after it and uses ``model_options``) or a
    ``(label, method, model_options)`` tuple — e.g. a trained method's untrained network as its own row.

    Returns ``{"dataset", "split", "n_pairs", "methods": {name: {metrics..., "seconds_per_pair",
    "wall_seconds", "vs_reference": {...}}}, "comparisons": [...]}`` — ``comparisons`` holds a paired
    test for each ``(label_a, label_b)`` asked for in ``comparisons``; predictions go to ``output_folder/<label>/``.
    ``model_options`` (:class:`~lesionnet.inference.model_request.LearnedModelOptions`) choose the
    trained model of learned trackers. With ``robustness`` every pair is also tracked from 9 shifted template
    centers (:mod:`lesionnet.datasets.robustness_pairs`); the metrics and tests above use the original pairs,
    and each method gets ``"robustness"`` (:func:`lesionnet.evaluation.robustness.robustness_summary`), and
    ``"robustness_comparisons"`` holds, for each pair of ``comparisons``, the paired test of the per-pair drops
    (:func:`lesionnet.evaluation.robustness.compare_drops`).
    """
    dataset = RawDataset(dataset_folder)
    output_folder = Path(output_folder)
    results: dict = {"dataset": dataset.name, "split": split, "methods": {}}
    evaluations, protocol_evaluations = {}, {}
    entries = [entry if isinstance(entry, tuple) else (entry.name, entry, model_options) for entry in methods]
    for label, method, options in entries:
        start = time.perf_counter()
        run = predict_tracking(dataset.images_dir(split), output_folder / label, method,
                               pairs_path=dataset.pairs_path(split), progress=progress, model_options=options,
                               overwrite=True, robustness=robustness)
        if not run.ok:
            raise RuntimeError(f"{label}: {len(run.failed)} pair(s) could not be predicted: {run.failed}")
        path = run.predictions_path
        wall = time.perf_counter() - start
        evaluation = evaluate_tracking_file(path)
        evaluations[label] = evaluate_predictions(original_pairs(evaluation.predictions)) if robustness else evaluation
        summary = evaluations[label].summary()
        seconds = [r["processing time"] for r in read_predictions(path)["results"]]
        results["methods"][label] = {**summary, "seconds_per_pair": float(np.mean(seconds)), "wall_seconds": wall}
        if robustness:
            results["methods"][label]["robustness"] = robustness_summary(evaluation)
            protocol_evaluations[label] = evaluation
    reference = entries[0][0]
    for name in [label for label, _, _ in entries[1:]]:
        comparison = compare_predictions(evaluations[name], evaluations[reference], label_a=name, label_b=reference)
        results["methods"][name]["vs_reference"] = {"reference": reference, **comparison.to_dict()}
    results["comparisons"] = [compare_predictions(evaluations[a], evaluations[b], label_a=a, label_b=b).to_dict()
                              for a, b in comparisons if a in evaluations and b in evaluations]
    if robustness:
        results["robustness_comparisons"] = [compare_drops(protocol_evaluations[a], protocol_evaluations[b], a, b)
                                             for a, b in comparisons if a in evaluations and b in evaluations]
    results["n_pairs"] = results["methods"][reference]["n"]
    return results


def comparison_lines(results: dict) -> list[str]:
    """One line per extra paired comparison: differences of CPM@10mm and MED with their p-values."""
    lines = []
    for c in results.get("comparisons", []):
        cpm, dist = c["CPM@10mm"], c["distance_mm"]
        lines.append(f"{c['a']} vs {c['b']} ({c['n']} pairs): CPM@10mm {cpm['mean_difference']:+.1f} points "
                     f"(p = {format_p(cpm['p_value'])}), mean distance {dist['mean_difference']:+.2f} mm "
                     f"(p = {format_p(dist['p_value'])}), paired t-test")
    return lines


def markdown_table(results: dict) -> str:
    """The comparison as a Markdown table (one row per method)."""
    lines = [f"Dataset `{results['dataset']}`, split `{results['split']}`, {results['n_pairs']} directed pairs.",
             "",
             "| method | CPM@10mm | CPM@Radius | MED (mm) | MED_X | MED_Y | MED_Z | s / pair |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, m in results["methods"].items():
        lines.append(f"| {name} | {m['CPM@10mm']:.2f} | {m['CPM@Radius']:.2f} | {m['MED']:.2f} ± {m['MED_std']:.2f} "
                     f"| {m['MED_X']:.2f} | {m['MED_Y']:.2f} | {m['MED_Z']:.2f} | {m['seconds_per_pair']:.3f} |")
    return "\n".join(lines)
