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
from lesionnet.evaluation.tracking_metrics import (
    compare_predictions,
    evaluate_tracking_file,
)
from lesionnet.inference.predict_tracking import predict_tracking


def compare_trackers(dataset_folder: str | os.PathLike, output_folder: str | os.PathLike, methods: list,
                     split: str = "Ts", progress: bool = True, model_options=None) -> dict:
    """Predict and evaluate ``methods`` (method objects; the first is the reference) on ``split`` of a raw
    tracking dataset.

    Returns ``{"dataset", "split", "n_pairs", "methods": {name: {metrics..., "seconds_per_pair",
    "wall_seconds", "vs_reference": {...}}}}``; predictions go to ``output_folder/<method>/``.
    ``model_options`` (:class:`~lesionnet.inference.predict_tracking.LearnedModelOptions`) choose the
    trained model of learned trackers.
    """
    dataset = RawDataset(dataset_folder)
    output_folder = Path(output_folder)
    results: dict = {"dataset": dataset.name, "split": split, "methods": {}}
    evaluations = {}
    for method in methods:
        start = time.perf_counter()
        run = predict_tracking(dataset.images_dir(split), output_folder / method.name, method,
                               pairs_path=dataset.pairs_path(split), progress=progress,
                               model_options=model_options)
        if not run.ok:
            raise RuntimeError(f"{method.name}: {len(run.failed)} pair(s) could not be predicted: {run.failed}")
        path = run.predictions_path
        wall = time.perf_counter() - start
        evaluations[method.name] = evaluate_tracking_file(path)
        summary = evaluations[method.name].summary()
        seconds = [r["processing time"] for r in read_predictions(path)["results"]]
        results["methods"][method.name] = {**summary, "seconds_per_pair": float(np.mean(seconds)),
                                           "wall_seconds": wall}
    reference = methods[0].name
    for name in [m.name for m in methods[1:]]:
        comparison = compare_predictions(evaluations[name], evaluations[reference], label_a=name, label_b=reference)
        results["methods"][name]["vs_reference"] = {"reference": reference, **comparison.to_dict()}
    results["n_pairs"] = results["methods"][reference]["n"]
    return results


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
