"""Lesion tracking metrics with the conventions of the DLS benchmark (DLT paper and its public evaluator).

For a directed pair with predicted center ``p`` and true center ``g`` (voxel indices of the target scan,
held ``(z, y, x)`` like every voxel triple in lesionnet), target spacing ``s`` (mm) and lesion radius
``r`` (mm):

* ``d_a = |p_a - g_a| * s_a`` for ``a`` in x, y, z, and ``d = sqrt(d_x² + d_y² + d_z²)`` (mm);
* ``r`` = ``target radius mm`` when given, else ``max(target recist diameter) / 2 * s_x`` — half
  the long RECIST diameter in pixels times the in-plane spacing, not a 3D radius;
* CPM@Radius: hit when ``d / max(r, 1e-3) < 1`` (strict);
* CPM@10mm: hit when ``d <= min(r, 10 mm)`` (not strict);
* MED = mean ``d`` and MED_std its population standard deviation (ddof = 0, as numpy's default in
  the DLS evaluator); MED_X/Y/Z = mean ``d_x`` / ``d_y`` / ``d_z``.

Percentages are 0–100, distances mm. :func:`evaluate_tracking` works on arrays,
:func:`evaluate_predictions` on loaded predictions, :func:`evaluate_tracking_file` on a file, and
:func:`compare_predictions` runs paired t-tests between two prediction sets on the same pairs.
"""
from __future__ import annotations

import csv
import io
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from lesionnet.datasets.geometry import points_zyx_to_xyz, zyx_to_xyz
from lesionnet.datasets.prediction_format import PredictionFormatError
from lesionnet.evaluation.pair_matching import DEFAULT_MATCH_TOLERANCE_VOX, describe_pairs, match_pairs
from lesionnet.evaluation.prediction_io import TrackingPredictions, load_tracking_predictions

CPM_RADIUS_EPS_MM = 1e-3
CPM_CAP_MM = 10.0
SUMMARY_KEYS = ("CPM@10mm", "CPM@Radius", "MED", "MED_std", "MED_X", "MED_Y", "MED_Z", "n")


def dls_radius_mm(recist_diameter_px, target_spacing_zyx) -> np.ndarray:
    """DLS lesion radius: ``max(recist diameter) / 2 * spacing_x``; inputs ``(n, k)`` pixels and ``(n, 3)`` mm
    ``(z, y, x)`` — the x (column) spacing is used."""
    diameters = np.atleast_2d(np.asarray(recist_diameter_px, dtype=np.float64))
    _, _, spacing_x = np.atleast_2d(np.asarray(target_spacing_zyx, dtype=np.float64)).T
    return diameters.max(axis=1) / 2.0 * spacing_x


@dataclass(frozen=True)
class TrackingEvaluation:
    """Per-pair results (arrays of length ``n``) and their DLS summary (:meth:`summary`)."""

    pair_ids: tuple
    distance_zyx_mm: np.ndarray     # (n, 3): |p_a - g_a| * s_a for a = z, y, x
    distance_mm: np.ndarray         # (n,): Euclidean distance
    radius_mm: np.ndarray           # (n,)
    hit_10mm: np.ndarray            # (n,) bool: d <= min(r, 10)
    hit_radius: np.ndarray          # (n,) bool: d / max(r, 1e-3) < 1
    predictions: TrackingPredictions | None = field(default=None, repr=False, compare=False)

    @property
    def n(self) -> int:
        return int(self.distance_mm.shape[0])

    def summary(self) -> dict:
        """``CPM@10mm``, ``CPM@Radius`` (percent), ``MED``, ``MED_std`` (population), ``MED_X/Y/Z`` (mm), ``n``."""
        med_x, med_y, med_z = zyx_to_xyz(self.distance_zyx_mm.mean(axis=0))
        return {
            "CPM@10mm": float(100.0 * self.hit_10mm.mean()),
            "CPM@Radius": float(100.0 * self.hit_radius.mean()),
            "MED": float(self.distance_mm.mean()),
            "MED_std": float(self.distance_mm.std(ddof=0)),
            "MED_X": float(med_x),
            "MED_Y": float(med_y),
            "MED_Z": float(med_z),
            "n": self.n,
        }

    def per_pair_rows(self) -> list[dict]:
        """One dict per pair: identity, prediction, truth (when known) and the per-pair results."""
        p = self.predictions
        rows = []
        for i in range(self.n):
            row: dict = {"pair_id": self.pair_ids[i]}
            if p is not None:
                row.update({"source": p.sources[i], "target": p.targets[i]})
                for name, arr_zyx in (("pred", p.predicted_center_zyx), ("true", p.target_center_zyx),
                                      ("spacing", p.target_spacing_zyx)):
                    for axis, value in zip("xyz", zyx_to_xyz(arr_zyx[i])):
                        row[f"{name}_{axis}"] = float(value)
            d_x, d_y, d_z = zyx_to_xyz(self.distance_zyx_mm[i])
            row.update({
                "radius_mm": float(self.radius_mm[i]),
                "d_x_mm": float(d_x),
                "d_y_mm": float(d_y),
                "d_z_mm": float(d_z),
                "distance_mm": float(self.distance_mm[i]),
                "hit_10mm": int(self.hit_10mm[i]),
                "hit_radius": int(self.hit_radius[i]),
            })
            rows.append(row)
        return rows

    def per_pair_csv(self) -> str:
        """:meth:`per_pair_rows` as CSV text (header + one line per pair)."""
        rows = self.per_pair_rows()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["pair_id"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()


def evaluate_tracking(predicted_center_zyx, target_center_zyx, target_spacing_zyx, target_radius_mm,
                      pair_ids: Sequence | None = None) -> TrackingEvaluation:
    """DLS metrics from arrays: centers ``(n, 3)`` voxel ``(z, y, x)`` of the target scan, spacing ``(n, 3)``
    mm ``(z, y, x)`` (or one ``(3,)`` for all), radius ``(n,)`` mm (or a scalar)."""
    pred = np.asarray(predicted_center_zyx, dtype=np.float64)
    true = np.asarray(target_center_zyx, dtype=np.float64)
    if pred.ndim != 2 or pred.shape[1] != 3 or pred.shape != true.shape:
        raise ValueError(f"centers must be (n, 3) arrays of equal shape, got {pred.shape} and {true.shape}.")
    n = pred.shape[0]
    if n == 0:
        raise ValueError("no pairs to evaluate.")
    spacing = np.broadcast_to(np.asarray(target_spacing_zyx, dtype=np.float64), (n, 3))
    radius = np.broadcast_to(np.asarray(target_radius_mm, dtype=np.float64), (n,))
    for name, arr in (("predicted centers", pred), ("target centers", true), ("spacings", spacing),
                      ("radii", radius)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} hold non-finite values.")
    if np.any(spacing <= 0):
        raise ValueError("spacings must be positive.")
    if np.any(radius < 0):
        raise ValueError("radii must be >= 0.")

    distance_zyx = np.abs(pred - true) * spacing
    # d_x² + d_y² + d_z², summed in this order as on the DLS files' [x, y, z]: the sum's rounding depends on
    # the order, and this one keeps every distance bit-identical to the DLS evaluation of the same records
    distance = np.sqrt(np.sum(points_zyx_to_xyz(distance_zyx) ** 2, axis=1))
    hit_radius = distance / np.maximum(radius, CPM_RADIUS_EPS_MM) < 1.0
    hit_10mm = distance <= np.minimum(radius, CPM_CAP_MM)
    ids = tuple(pair_ids) if pair_ids is not None else tuple(f"#{i}" for i in range(n))
    if len(ids) != n:
        raise ValueError(f"{len(ids)} pair ids for {n} pairs.")
    return TrackingEvaluation(pair_ids=ids, distance_zyx_mm=distance_zyx, distance_mm=distance,
                              radius_mm=np.array(radius), hit_10mm=hit_10mm, hit_radius=hit_radius)


def evaluate_predictions(predictions: TrackingPredictions) -> TrackingEvaluation:
    """DLS metrics of loaded predictions (see :func:`~lesionnet.evaluation.prediction_io.load_tracking_predictions`)."""
    result = evaluate_tracking(predictions.predicted_center_zyx, predictions.target_center_zyx,
                               predictions.target_spacing_zyx, predictions.target_radius_mm,
                               pair_ids=predictions.labels)
    return TrackingEvaluation(result.pair_ids, result.distance_zyx_mm, result.distance_mm, result.radius_mm,
                              result.hit_10mm, result.hit_radius, predictions=predictions)


def evaluate_tracking_file(path: str | os.PathLike, reference: str | os.PathLike | None = None, *,
                           allow_missing: bool = False, match: str = "auto",
                           match_tolerance_vox: float = DEFAULT_MATCH_TOLERANCE_VOX) -> TrackingEvaluation:
    """Load a predictions file (any of the three forms) and evaluate it; ``.summary()`` gives the metrics."""
    return evaluate_predictions(load_tracking_predictions(path, reference, allow_missing=allow_missing, match=match,
                                                          match_tolerance_vox=match_tolerance_vox))


# --------------------------------------------------------------------------------------------------
# Paired comparison
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairedTest:
    """A paired t-test of one per-pair quantity between two prediction sets."""

    metric: str
    mean_a: float
    mean_b: float
    mean_difference: float          # mean(a - b)
    statistic: float | None
    p_value: float | None
    note: str | None = None

    def to_dict(self) -> dict:
        return {"mean_a": self.mean_a, "mean_b": self.mean_b, "mean_difference": self.mean_difference,
                "t_statistic": self.statistic, "p_value": self.p_value, "note": self.note}


@dataclass(frozen=True)
class PairedComparison:
    """Paired comparison of predictions A and B on the same ``n`` pairs (``tests`` keyed by metric)."""

    n: int
    label_a: str
    label_b: str
    match_rule: str
    tests: dict

    def to_dict(self) -> dict:
        return {"n": self.n, "a": self.label_a, "b": self.label_b, "matched_by": self.match_rule,
                "test": "paired t-test (scipy.stats.ttest_rel), two-sided",
                **{name: t.to_dict() for name, t in self.tests.items()}}


def format_p(value) -> str:
    """A p-value to two significant digits (``"n/a"`` for None)."""
    return "n/a" if value is None else f"{value:.2g}"


def paired_ttest(a, b, metric: str = "value") -> PairedTest:
    """Two-sided paired t-test of ``a`` vs ``b`` that never returns NaN for degenerate input.

    Identical values on every pair: no difference to test, ``p = 1.0`` (with a note). The same
    nonzero difference on every pair: the t statistic is infinite, ``p = 0.0`` (with a note).
    Fewer than two pairs: ``p = None`` (with a note).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    diff = a - b
    mean_a = float(a.mean()) if a.size else math.nan
    mean_b = float(b.mean()) if b.size else math.nan
    mean_diff = float(diff.mean()) if diff.size else math.nan
    if diff.size < 2:
        return PairedTest(metric, mean_a, mean_b, mean_diff, None, None,
                          f"{diff.size} pair(s): a paired t-test needs at least 2; no p-value.")
    if np.all(diff == 0):
        return PairedTest(metric, mean_a, mean_b, 0.0, 0.0, 1.0,
                          "identical on every pair: nothing to test (t = 0/0), p reported as 1.0.")
    if np.all(diff == diff[0]):
        return PairedTest(metric, mean_a, mean_b, mean_diff, math.copysign(math.inf, diff[0]), 0.0,
                          "the same nonzero difference on every pair (zero variance): t is infinite, "
                          "p reported as 0.0.")
    from scipy import (
        stats,  # imported here: scipy.stats is slow to import and only needed for comparisons
    )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_rel(a, b)
    statistic, p_value = float(result.statistic), float(result.pvalue)
    note = None
    if not math.isfinite(p_value):  # not expected after the checks above; never hand out NaN
        note = f"scipy returned p = {p_value}; reported as None."
        p_value = None
    return PairedTest(metric, mean_a, mean_b, mean_diff, statistic if math.isfinite(statistic) else None,
                      p_value, note)


def _as_evaluation(x) -> TrackingEvaluation:
    if isinstance(x, TrackingEvaluation):
        if x.predictions is None:
            raise ValueError("compare_predictions needs evaluations made by evaluate_predictions() "
                             "(they carry the pair identities used for matching).")
        return x
    if isinstance(x, TrackingPredictions):
        return evaluate_predictions(x)
    raise TypeError(f"expected TrackingPredictions or TrackingEvaluation, got {type(x).__name__}")


def compare_predictions(a, b, *, label_a: str | None = None, label_b: str | None = None, match: str = "auto",
                        match_tolerance_vox: float = DEFAULT_MATCH_TOLERANCE_VOX) -> PairedComparison:
    """Paired t-tests of two prediction sets (``TrackingPredictions`` or ``TrackingEvaluation``) on the same pairs.

    Pairs are matched by pair id when both sets have ids, otherwise by (source, target, lesion
    centers) — see :func:`~lesionnet.evaluation.pair_matching.match_pairs`. Every pair must be in
    both sets; otherwise the error names the pairs that are not. Tested per pair: the distance
    (mm), and the CPM@10mm and CPM@Radius hits (as 0 / 100, so means are percentages and the mean
    difference is in percentage points). Each set keeps its own ground truth.
    """
    ea, eb = _as_evaluation(a), _as_evaluation(b)
    pa, pb = ea.predictions, eb.predictions
    label_a = label_a or pa.path
    label_b = label_b or pb.path
    keys_a, keys_b = pa.keys(), pb.keys()
    mapping, rule = match_pairs(keys_a, keys_b, match=match, tolerance_vox=match_tolerance_vox,
                                query_name=f"predictions A ({label_a})", pool_name=f"predictions B ({label_b})")
    only_a = [keys_a[i] for i, j in enumerate(mapping) if j is None]
    matched_b = {j for j in mapping if j is not None}
    only_b = [k for j, k in enumerate(keys_b) if j not in matched_b]
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"only in A ({label_a}): {describe_pairs(only_a)}")
        if only_b:
            parts.append(f"only in B ({label_b}): {describe_pairs(only_b)}")
        raise PredictionFormatError("the two prediction sets do not cover the same pairs; " + " | ".join(parts))
    idx_b = np.asarray(mapping, dtype=int)
    tests = {
        "distance_mm": paired_ttest(ea.distance_mm, eb.distance_mm[idx_b], "distance_mm"),
        "CPM@10mm": paired_ttest(100.0 * ea.hit_10mm, 100.0 * eb.hit_10mm[idx_b], "CPM@10mm"),
        "CPM@Radius": paired_ttest(100.0 * ea.hit_radius, 100.0 * eb.hit_radius[idx_b], "CPM@Radius"),
    }
    return PairedComparison(n=ea.n, label_a=label_a, label_b=label_b, match_rule=rule, tests=tests)


# --------------------------------------------------------------------------------------------------
# Text output
# --------------------------------------------------------------------------------------------------

_COLUMNS = (("n", 6), ("CPM@10mm", 10), ("CPM@Radius", 12), ("MED (mm)", 16), ("MED_X", 7), ("MED_Y", 7),
            ("MED_Z", 7))


def format_summary_table(summaries: Sequence[dict], labels: Sequence[str] | None = None) -> str:
    """The metrics as a text table, values to 2 decimals; ``labels`` add a last column naming each row."""
    def line(cells):
        text = "".join(c.ljust(w) for c, (_, w) in zip(cells, _COLUMNS))
        return text

    header = [name for name, _ in _COLUMNS]
    lines = []
    rows = []
    for s in summaries:
        rows.append([str(s["n"]), f"{s['CPM@10mm']:.2f}", f"{s['CPM@Radius']:.2f}",
                     f"{s['MED']:.2f} ± {s['MED_std']:.2f}", f"{s['MED_X']:.2f}", f"{s['MED_Y']:.2f}",
                     f"{s['MED_Z']:.2f}"])
    if labels is not None:
        lines.append(line(header) + "predictions")
        lines.extend(line(r) + label for r, label in zip(rows, labels))
    else:
        lines.append(line(header).rstrip())
        lines.extend(line(r).rstrip() for r in rows)
    return "\n".join(lines)


def format_comparison(comparison: PairedComparison) -> str:
    """The paired tests as a text table, with notes for degenerate cases."""
    names = {"distance_mm": "MED (mm)", "CPM@10mm": "CPM@10mm", "CPM@Radius": "CPM@Radius"}
    lines = [f"paired t-test on {comparison.n} pairs (matched by {comparison.match_rule}): "
             f"A = {comparison.label_a}, B = {comparison.label_b}",
             f"{'metric':<12}{'A':<9}{'B':<9}{'A - B':<10}p"]
    notes = []
    for key, test in comparison.tests.items():
        p = "n/a" if test.p_value is None else f"{test.p_value:.3g}"
        lines.append(f"{names.get(key, key):<12}{test.mean_a:<9.2f}{test.mean_b:<9.2f}"
                     f"{test.mean_difference:<+10.2f}{p}")
        if test.note:
            notes.append(f"  note ({names.get(key, key)}): {test.note}")
    return "\n".join(lines + notes)
