"""Reading tracking predictions back, each with its ground truth, for evaluation.

:func:`load_tracking_predictions` reads a predictions file in any of its three forms — a lesionnet
predictions file, a DLS results file or a DLS annotation file, told apart and parsed by
:mod:`lesionnet.evaluation.prediction_forms` — and takes the truth from the file itself or from a
reference (a DLS annotation file, a lesionnet raw ``pairs*.json`` or any of the three forms), whose
pairs are matched to the predictions by :mod:`lesionnet.evaluation.pair_matching`. It returns a
:class:`TrackingPredictions`: per-pair numpy arrays with the prediction and its ground truth.

Centers are continuous voxel indices of the scan they refer to: ``[x, y, z]`` (x = column, y = row,
z = slice; the ITK order of the DLS files) in the files, ``(z, y, x)`` from parsing on, like the
spacings (mm); radii are in mm.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from lesionnet.datasets.prediction_format import PredictionFormatError
from lesionnet.evaluation.pair_matching import (
    DEFAULT_MATCH_TOLERANCE_VOX,
    SHOW_FIRST,
    PairKey,
    describe_pairs,
    match_pairs,
)
from lesionnet.evaluation.prediction_forms import FORM_DESCRIPTIONS, ParsedEntry, fmt_center, parse_file


def _key_of(entry: ParsedEntry) -> PairKey:
    return PairKey(entry.pair_id, entry.source, entry.target, entry.source_center_zyx, entry.target_center_zyx,
                   entry.describe())


# --------------------------------------------------------------------------------------------------
# Loading predictions with their ground truth
# --------------------------------------------------------------------------------------------------

@dataclass
class TrackingPredictions:
    """Predictions for ``n`` directed pairs, each with its ground truth, as numpy arrays.

    Arrays of centers are ``(n, 3)`` voxel indices ``(z, y, x)`` of the target scan (``source_center_zyx``:
    of the source scan, NaN where unknown); ``target_spacing_zyx`` is ``(n, 3)`` ``(z, y, x)`` mm;
    ``target_radius_mm`` is ``(n,)`` (the DLS radius). ``pair_ids`` are None for DLS results records
    matched to no reference. ``missing`` lists reference pairs that have no prediction (only with
    ``allow_missing``).
    """

    path: str
    form: str
    pair_ids: list
    sources: list
    targets: list
    source_center_zyx: np.ndarray
    predicted_center_zyx: np.ndarray
    target_center_zyx: np.ndarray
    target_spacing_zyx: np.ndarray
    target_radius_mm: np.ndarray
    reference: str | None = None
    missing: list = field(default_factory=list)
    match_rule: str | None = None

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def labels(self) -> list[str]:
        """A printable name per pair: its id, else ``#index`` in the file."""
        return [pid if pid is not None else f"#{i}" for i, pid in enumerate(self.pair_ids)]

    @property
    def form_description(self) -> str:
        return FORM_DESCRIPTIONS.get(self.form, self.form)

    def keys(self) -> list[PairKey]:
        """Identity of every pair, for matching against other predictions."""
        out = []
        for i in range(len(self)):
            sc = self.source_center_zyx[i]
            source_center_zyx = None if np.isnan(sc).any() else tuple(float(v) for v in sc)
            target_center_zyx = tuple(float(v) for v in self.target_center_zyx[i])
            ident = f"pair {self.pair_ids[i]}" if self.pair_ids[i] is not None else f"record #{i}"
            desc = (f"{ident} (source {self.sources[i]} -> target {self.targets[i]}, "
                    f"target center {fmt_center(target_center_zyx)}) of {self.path}")
            out.append(PairKey(self.pair_ids[i], self.sources[i], self.targets[i], source_center_zyx,
                               target_center_zyx, desc))
        return out

    def subset(self, index: Sequence[int]) -> "TrackingPredictions":
        """The pairs at ``index``, in that order."""
        idx = np.asarray(index, dtype=int)
        return TrackingPredictions(
            path=self.path, form=self.form, pair_ids=[self.pair_ids[i] for i in idx],
            sources=[self.sources[i] for i in idx], targets=[self.targets[i] for i in idx],
            source_center_zyx=self.source_center_zyx[idx], predicted_center_zyx=self.predicted_center_zyx[idx],
            target_center_zyx=self.target_center_zyx[idx], target_spacing_zyx=self.target_spacing_zyx[idx],
            target_radius_mm=self.target_radius_mm[idx], reference=self.reference, missing=list(self.missing),
            match_rule=self.match_rule)


def load_tracking_predictions(path: str | os.PathLike, reference: str | os.PathLike | None = None, *,
                              allow_missing: bool = False, match: str = "auto",
                              match_tolerance_vox: float = DEFAULT_MATCH_TOLERANCE_VOX) -> TrackingPredictions:
    """Read predictions in any of the three forms (auto-detected) together with their ground truth.

    Without ``reference`` the truth is the file's own ``target center``, ``target spacing`` and
    radius (``target radius mm``, else ``max(target recist diameter) / 2 * target spacing[0]``).
    With ``reference`` — a DLS annotation file, a lesionnet raw ``pairs*.json`` or any file of the three
    forms — the truth comes from the reference (the target spacing too when it has one; a raw pairs
    file has none, so the prediction's own ``target spacing`` is used). Pairs are matched as in
    :func:`match_pairs`. A prediction the reference lacks is an error naming it; reference pairs
    without a prediction are an error unless ``allow_missing`` (then listed in ``.missing``).
    """
    path = Path(path)
    form, entries = parse_file(path, need_prediction=True)
    if not entries:
        raise PredictionFormatError(f"{path}: holds no prediction records.")
    _check_unique_ids(entries, str(path))
    if reference is None:
        return _build(path, form, entries, [_truth_from_self(e) for e in entries], None, [], None)

    reference = Path(reference)
    ref_form, ref_entries = parse_file(reference, need_prediction=False)
    if not ref_entries:
        raise PredictionFormatError(f"{reference}: the reference holds no pairs.")
    _check_unique_ids(ref_entries, str(reference))
    mapping, rule = match_pairs([_key_of(e) for e in entries], [_key_of(e) for e in ref_entries], match=match,
                                tolerance_vox=match_tolerance_vox, query_name=f"predictions {path}",
                                pool_name=f"reference {reference}")
    unmatched = [entries[i] for i, j in enumerate(mapping) if j is None]
    if unmatched:
        first = unmatched[0]
        raise PredictionFormatError(
            f"{path}: {len(unmatched)} prediction(s) for pairs that the reference {reference} lacks, first: "
            f"{first.describe()}" + ("" if len(unmatched) == 1 else
                                     "; others: " + "; ".join(e.describe() for e in unmatched[1:SHOW_FIRST])) +
            ". Use the reference the predictions were made for.")
    used = set(mapping)
    missing_entries = [e for j, e in enumerate(ref_entries) if j not in used]
    if missing_entries and not allow_missing:
        raise PredictionFormatError(
            f"{path}: no prediction for {describe_pairs([_key_of(e) for e in missing_entries])} of the reference "
            f"{reference}. Predict every pair, or pass --allow_missing (allow_missing=True) to evaluate the "
            "others only.")
    truths = [_truth_from_reference(e, ref_entries[j], reference) for e, j in zip(entries, mapping)]
    for e, j in zip(entries, mapping):
        if e.pair_id is None:
            e.pair_id = ref_entries[j].pair_id
    missing = [e.pair_id if e.pair_id is not None else e.describe() for e in missing_entries]
    return _build(path, form, entries, truths, str(reference), missing, rule)


def _check_unique_ids(entries: list[ParsedEntry], where: str) -> None:
    seen: dict[str, ParsedEntry] = {}
    for e in entries:
        if e.pair_id is None:
            continue
        if e.pair_id in seen:
            raise PredictionFormatError(f"{where}: pair id {e.pair_id!r} appears more than once "
                                        f"({seen[e.pair_id].where} and {e.where}).")
        seen[e.pair_id] = e


def _truth_from_self(e: ParsedEntry) -> tuple[tuple, tuple, float]:
    """``(target_center_zyx, target_spacing_zyx, radius_mm)`` of a record that holds its own truth."""
    hint = "; or evaluate against a reference (--reference) that holds the truth"
    if e.target_center_zyx is None:
        raise PredictionFormatError(f"{e.where}: record lacks the ground truth key 'target center'{hint}.")
    if e.target_spacing_zyx is None:
        raise PredictionFormatError(f"{e.where}: record lacks the key 'target spacing'.")
    radius = e.radius_with(e.target_spacing_zyx)
    if radius is None:
        raise PredictionFormatError(f"{e.where}: record has neither 'target radius mm' nor "
                                    f"'target recist diameter'{hint}.")
    return e.target_center_zyx, e.target_spacing_zyx, radius


def _truth_from_reference(pred: ParsedEntry, ref: ParsedEntry, reference: Path) -> tuple[tuple, tuple, float]:
    """``(target_center_zyx, target_spacing_zyx, radius_mm)`` of a prediction from its reference pair."""
    if ref.target_center_zyx is None:
        raise PredictionFormatError(f"reference {reference}: {ref.describe()} has no target center (no truth).")
    spacing_zyx = ref.target_spacing_zyx if ref.target_spacing_zyx is not None else pred.target_spacing_zyx
    if spacing_zyx is None:
        raise PredictionFormatError(f"{pred.where}: record lacks 'target spacing', and the reference {reference} "
                                    "gives none for this pair.")
    radius = ref.radius_with(spacing_zyx)
    if radius is None:
        raise PredictionFormatError(f"reference {reference}: {ref.describe()} has no target radius "
                                    "('target radius mm', 'target_radius_mm' or 'target recist diameter').")
    return ref.target_center_zyx, spacing_zyx, radius


def _build(path: Path, form: str, entries: list[ParsedEntry], truths: list, reference: str | None, missing: list,
           rule: str | None) -> TrackingPredictions:
    nan3 = (math.nan,) * 3
    return TrackingPredictions(
        path=str(path), form=form, pair_ids=[e.pair_id for e in entries], sources=[e.source for e in entries],
        targets=[e.target for e in entries],
        source_center_zyx=np.array([e.source_center_zyx or nan3 for e in entries], dtype=np.float64).reshape(-1, 3),
        predicted_center_zyx=np.array([e.predicted_center_zyx for e in entries], dtype=np.float64).reshape(-1, 3),
        target_center_zyx=np.array([t[0] for t in truths], dtype=np.float64).reshape(-1, 3),
        target_spacing_zyx=np.array([t[1] for t in truths], dtype=np.float64).reshape(-1, 3),
        target_radius_mm=np.array([t[2] for t in truths], dtype=np.float64),
        reference=reference, missing=missing, match_rule=rule)
