"""Detection methods side by side on a dataset's test scans: one run of ``lesionnet_predict`` per row,
scored with :func:`~lesionnet.evaluation.detection_metrics.evaluate_detection`, and paired comparisons of
rows on the same lesions (used by ``lesionnet_demo`` and ``benchmarks/detection.py``).

A row is ``(label, method, LearnedModelOptions, predictor options)``: a trained method, its untrained
network (``checkpoint="untrained"``), or one of its ``demo_variants``. The paired test compares which
lesions two rows find at the operating point of at most ``k`` false positives per scan (the score
threshold of their ``sens@k``): an exact McNemar test (binomial on the lesions only one row finds). The
differences in ``AS`` and ``AP@0.1``, which pool the whole score range of all scans, get a paired bootstrap
over scans instead (:func:`paired_bootstrap`): both rows are scored on the same resampled scans.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from lesionnet.evaluation.detection_io import load_ground_truth, load_predictions
from lesionnet.evaluation.detection_metrics import (
    IOU_THRESHOLD,
    average_precision,
    evaluate_detection,
    format_detection_table,
    froc,
    match_scan,
)
from lesionnet.inference.model_request import LearnedModelOptions
from lesionnet.inference.predict_detection import predict_detection
from lesionnet.utils.files import load_json


def detection_entries(method, dataset_name: str, fold: str = "0", plans_name: str = "lesionnet_plans",
                      folder: str | None = None) -> list[tuple]:
    """The rows of one trained detection method: its untrained network, the method, and its
    ``demo_variants`` (``<name>_<suffix>``). ``folder`` names another training folder than ``fold_<fold>``
    (e.g. a benchmark's own run) by its fold name."""
    options = LearnedModelOptions(dataset=dataset_name, folds=(folder or fold,), plans_name=plans_name)
    rows = [(f"{method.name}_untrained", method, dataclasses.replace(options, checkpoint="untrained"), {}),
            (method.name, method, options, {})]
    rows += [(f"{method.name}_{suffix}", method, options, dict(variant))
             for suffix, variant in method.demo_variants.items()]
    return rows


def lesion_hits(predictions: dict, truth: dict, max_fps_per_scan: float, froc_curve: dict | None = None) -> np.ndarray:
    """Per lesion (scans in name order, lesions in mask order), whether it is found at the lowest score
    threshold with at most ``max_fps_per_scan`` false positives per scan (``froc_curve``: the predictions'
    FROC curve from :func:`evaluate_detection`, computed when not given)."""
    curve = froc_curve if froc_curve is not None else evaluate_detection(predictions, truth)["froc_curve"]
    allowed = [t for t, f in zip(curve["thresholds"], curve["fps_per_scan"]) if f <= max_fps_per_scan]
    threshold = min(allowed) if allowed else np.inf
    hits = []
    for scan_id in sorted(truth):
        boxes, scores = predictions.get(scan_id, (np.zeros((0, 6)), np.zeros(0)))
        keep = np.asarray(scores) >= threshold
        match = match_scan(np.asarray(boxes).reshape(-1, 6)[keep], np.asarray(scores)[keep], truth[scan_id])
        found = np.zeros(len(truth[scan_id]), dtype=bool)
        found[match.matched_label[match.true_positive]] = True
        hits.append(found)
    return np.concatenate(hits) if hits else np.zeros(0, dtype=bool)


def mcnemar(hits_a: np.ndarray, hits_b: np.ndarray) -> dict:
    """Exact McNemar test of two rows' per-lesion hits: ``{"only_a", "only_b", "p_value"}``."""
    only_a, only_b = int((hits_a & ~hits_b).sum()), int((hits_b & ~hits_a).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"only_a": only_a, "only_b": only_b, "p_value": float(p)}


def paired_bootstrap(predictions_a: dict, predictions_b: dict, truth: dict, n_resamples: int = 2000, seed: int = 0,
                     iou_threshold: float = IOU_THRESHOLD) -> dict:
    """Paired bootstrap over scans of the differences ``a - b`` in ``AS`` and ``AP@0.1`` (points).

    Each resample draws ``len(truth)`` scans with replacement and scores both rows on the same draw (a scan
    drawn twice counts twice, as two scans). Returns ``{metric: {"difference", "ci95": [low, high],
    "p_value", "n_resamples"}}``: ``difference`` on the scans as given, the 2.5 / 97.5 percentiles of the
    resampled differences ``d``, and the two-sided p-value ``2 * min(#(d <= 0) + 1, #(d >= 0) + 1) / (n + 1)``
    (at most 1; the + 1 keeps a Monte-Carlo p-value above 0: at least ``2 / (n + 1)``) over the ``n`` resamples
    that hold a lesion. A scan missing from a row has no predictions there."""
    names = sorted(truth)
    empty = (np.zeros((0, 6)), np.zeros(0))
    matched = [{n: match_scan(*predictions.get(n, empty), truth[n], iou_threshold) for n in names}
               for predictions in (predictions_a, predictions_b)]

    def scores(draw) -> np.ndarray:
        """``[[AS, AP] of a, [AS, AP] of b]`` on the scans ``draw`` (indices into ``names``)."""
        out = []
        for matches in matched:
            sample = {f"{k:06d}": matches[names[i]] for k, i in enumerate(draw)}
            if not sum(m.n_ground_truth for m in sample.values()):
                return np.full((2, 2), np.nan)
            out.append([froc(sample)["AS"], average_precision(sample)])
        return np.asarray(out)

    observed = scores(np.arange(len(names)))
    rng = np.random.default_rng(seed)
    draws = [scores(rng.integers(0, len(names), len(names))) for _ in range(int(n_resamples))]
    differences = np.array([d[0] - d[1] for d in draws])
    differences = differences[np.isfinite(differences).all(axis=1)]
    result = {}
    for column, metric in enumerate(("AS", f"AP@{iou_threshold:g}")):
        d = differences[:, column]
        p = min(1.0, 2.0 * (min(int(np.sum(d <= 0)), int(np.sum(d >= 0))) + 1) / (len(d) + 1))
        result[metric] = {"difference": float(observed[0, column] - observed[1, column]),
                          "ci95": [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))],
                          "p_value": p, "n_resamples": int(len(d))}
    return result


def compare_detectors(dataset_folder, output_folder, entries: list, comparisons: list = (), max_fps: float = 4,
                      progress: bool = True) -> dict:
    """Predict the test scans (``imagesTs``) with every row and score them against ``labelsTs``.

    Returns ``{"rows": {label: metrics + "seconds_per_scan"}, "comparisons": [{"a", "b", "max_fps_per_scan",
    "sens_a", "sens_b", "only_a", "only_b", "p_value", "bootstrap"}], "n_scans", "n_lesions"}`` (``bootstrap``:
    :func:`paired_bootstrap`'s result); predictions are written
    to ``output_folder/<label>/`` (replacing an earlier run's)."""
    dataset_folder, output_folder = Path(dataset_folder), Path(output_folder)
    truth = load_ground_truth(dataset_folder / "labelsTs")
    rows, predictions = {}, {}
    for label, method, options, variant in entries:
        folder = output_folder / label
        predict_detection(dataset_folder / "imagesTs", folder, method, options, overwrite=True, progress=progress,
                          predictor_options=variant)
        predictions[label] = load_predictions(folder, truth)
        rows[label] = evaluate_detection(predictions[label], truth)
        seconds = [load_json(folder / f"{scan_id}.json")["seconds"] for scan_id in predictions[label]]
        rows[label]["seconds_per_scan"] = float(np.median(seconds))
    tests = []
    for a, b in comparisons:
        hits_a = lesion_hits(predictions[a], truth, max_fps, rows[a]["froc_curve"])
        hits_b = lesion_hits(predictions[b], truth, max_fps, rows[b]["froc_curve"])
        tests.append({"a": a, "b": b, "max_fps_per_scan": max_fps, "sens_a": 100 * float(hits_a.mean()),
                      "sens_b": 100 * float(hits_b.mean()), **mcnemar(hits_a, hits_b),
                      "bootstrap": paired_bootstrap(predictions[a], predictions[b], truth)})
    first = next(iter(rows.values()))
    return {"rows": rows, "comparisons": tests, "n_scans": first["n_scans"], "n_lesions": first["n_lesions"]}


def comparison_markdown(results: dict) -> str:
    """The rows' table (with seconds per scan) and one line per paired comparison."""
    table = format_detection_table(results["rows"])
    header, rule, *lines = table.split("\n")
    lines = [line + f" {results['rows'][label]['seconds_per_scan']:.2f} |"
             for line, label in zip(lines, results["rows"])]
    out = [header + " s / scan |", rule + " --- |", *lines]
    for t in results["comparisons"]:
        line = (f"\n{t['a']} vs {t['b']} at ≤ {t['max_fps_per_scan']:g} FP/scan: sensitivity {t['sens_a']:.1f} vs "
                f"{t['sens_b']:.1f} % ({t['only_a']} lesions found only by the first, {t['only_b']} only by the "
                f"second; exact McNemar p = {t['p_value']:.3g})")
        for metric, b in t.get("bootstrap", {}).items():
            line += (f"; {metric} {b['difference']:+.1f} points (95 % CI {b['ci95'][0]:+.1f} to {b['ci95'][1]:+.1f}, "
                     f"paired bootstrap over scans, p = {b['p_value']:.3g})")
        out.append(line)
    return "\n".join(out)


__all__ = ["detection_entries", "lesion_hits", "mcnemar", "paired_bootstrap", "compare_detectors",
           "comparison_markdown"]
