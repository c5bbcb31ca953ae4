"""The lesionnet tracking predictions file: what every tracker writes, one record per lesion pair.

::

    {"format": "lesionnet_tracking_predictions", "version": 1, "method": ..., "dataset": ...,
     "results": [{"pair_id", "source", "target", "source center", "source radius mm",
                  "target spacing", "predict target center", "predict target center world",
                  "predict confidence", "processing time",
                  # when the truth is known:
                  "target center", "target radius mm", "target recist diameter"}, ...]}

It is deliberately a DLS results file with extra keys, so the DLS benchmark's evaluator reads it as
is. This is a file boundary: centers are continuous voxel indices ``[x, y, z]`` (ITK order) of the
scan named, spacings and radii mm, world points mm (LPS). Records are built from ``(z, y, x)``
values with :func:`prediction_record_from_pair`; :mod:`lesionnet.evaluation.prediction_io` reads
this and the DLS forms back for evaluation.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from lesionnet.datasets.geometry import xyz_to_zyx, zyx_to_xyz
from lesionnet.utils.files import load_json, write_json
from lesionnet.utils.validation import finite_numbers

PREDICTIONS_FORMAT = "lesionnet_tracking_predictions"
PREDICTIONS_VERSION = 1

#: Keys every record of a lesionnet predictions file must have.
REQUIRED_LESIONNET_KEYS = ("pair_id", "source", "target", "source center", "source radius mm",
                           "target spacing", "predict target center")


class PredictionFormatError(ValueError):
    """A predictions or reference file cannot be used; the message names the file and the record."""


def make_prediction_record(*, pair_id: str, source: str, target: str, source_center_zyx: Sequence[float],
                           source_radius_mm: float, target_spacing_zyx: Sequence[float],
                           predicted_center_zyx: Sequence[float],
                           predicted_center_world: Sequence[float] | None = None,
                           confidence: float | None = None, processing_time_s: float | None = None,
                           target_center_zyx: Sequence[float] | None = None,
                           target_radius_mm: float | None = None) -> dict:
    """One record of a lesionnet predictions file (keys as in the DLS results files).

    ``*_zyx`` are voxel indices ``(z, y, x)`` of the scan named (``source`` / ``target``) and the
    target spacing (mm); the record stores them in the file's ``(x, y, z)`` order.
    ``predicted_center_world`` is the physical point (mm, LPS). The truth (``target_center_zyx``,
    ``target_radius_mm``) is written when known; the record then also gets
    ``"target recist diameter" = [2 r / sx, 2 r / sx]`` (pixels), so that the DLS evaluator's rule
    ``max(diameter) / 2 * spacing[0]`` gives back ``r``.
    """
    where = f"prediction record for pair {pair_id!r}"
    spacing = zyx_to_xyz(number_triple(target_spacing_zyx, "target spacing", where, positive=True))
    record: dict[str, Any] = {
        "pair_id": str(pair_id),
        "source": str(source),
        "target": str(target),
        "source center": list(zyx_to_xyz(number_triple(source_center_zyx, "source center", where))),
        "source radius mm": nonnegative_number(source_radius_mm, "source radius mm", where),
        "target spacing": list(spacing),
        "predict target center": list(zyx_to_xyz(number_triple(predicted_center_zyx, "predict target center",
                                                                where))),
        "predict target center world": (None if predicted_center_world is None else
                                        list(number_triple(predicted_center_world, "predict target center world",
                                                           where))),
        "predict confidence": None if confidence is None else float(confidence),
        "processing time": None if processing_time_s is None else float(processing_time_s),
    }
    if (target_center_zyx is None) != (target_radius_mm is None):
        raise ValueError(f"{where}: give both target_center_zyx and target_radius_mm (the truth) or neither.")
    if target_center_zyx is not None:
        radius = nonnegative_number(target_radius_mm, "target radius mm", where)
        record["target center"] = list(zyx_to_xyz(number_triple(target_center_zyx, "target center", where)))
        record["target radius mm"] = radius
        record["target recist diameter"] = [2.0 * radius / spacing[0]] * 2
    return record


def prediction_record_from_pair(pair, predicted_center_zyx: Sequence[float], target_spacing_zyx: Sequence[float],
                                predicted_center_world: Sequence[float] | None = None,
                                confidence: float | None = None, processing_time_s: float | None = None) -> dict:
    """:func:`make_prediction_record` for a :class:`lesionnet.datasets.raw_format.TrackingPair`.

    The pair's truth (``target_center_zyx``, ``target_radius_mm``) is copied when it has one.
    """
    has_truth = pair.target_center_zyx is not None and pair.target_radius_mm is not None
    return make_prediction_record(
        pair_id=pair.pair_id, source=pair.source, target=pair.target,
        source_center_zyx=pair.source_center_zyx, source_radius_mm=pair.source_radius_mm,
        target_spacing_zyx=target_spacing_zyx, predicted_center_zyx=predicted_center_zyx,
        predicted_center_world=predicted_center_world, confidence=confidence,
        processing_time_s=processing_time_s,
        target_center_zyx=pair.target_center_zyx if has_truth else None,
        target_radius_mm=pair.target_radius_mm if has_truth else None,
    )


def predicted_center_zyx(record: dict) -> tuple:
    """A record's ``"predict target center"`` as a ``(z, y, x)`` voxel index of its target scan."""
    return xyz_to_zyx(record["predict target center"])


def write_predictions(path: str | os.PathLike, records: Iterable[dict], method: str, dataset: str | None,
                      **extra: Any) -> Path:
    """Write a lesionnet predictions file atomically; returns its path.

    ``records`` come from :func:`make_prediction_record`; they are checked (required keys, unique
    pair ids) before anything is written. ``extra`` keys (e.g. ``plans``, ``fold``) are added to the
    top level.
    """
    path = Path(path)
    records = list(records)
    validate_lesionnet_records(records, str(path))
    doc: dict[str, Any] = {"format": PREDICTIONS_FORMAT, "version": PREDICTIONS_VERSION,
                           "method": str(method), "dataset": dataset}
    for key, value in extra.items():
        if key in doc or key == "results":
            raise ValueError(f"write_predictions: extra key {key!r} would overwrite a reserved key.")
        doc[key] = value
    doc["results"] = records
    write_json(path, doc)
    return path


def read_predictions(path: str | os.PathLike) -> dict:
    """Read and check a lesionnet predictions file; returns the whole document (``doc["results"]``)."""
    path = Path(path)
    doc = load_json(path)
    if not isinstance(doc, dict) or doc.get("format") != PREDICTIONS_FORMAT or not isinstance(doc.get("results"), list):
        raise PredictionFormatError(f"{path}: not a lesionnet predictions file (no \"format\": "
                                    f"\"{PREDICTIONS_FORMAT}\"). Use load_tracking_predictions() to read "
                                    "DLS results or annotation files.")
    validate_lesionnet_records(doc["results"], str(path))
    return doc


def validate_lesionnet_records(records: list, where: str) -> None:
    """Every record is an object with the required keys, and pair ids are unique; else an error naming ``where``."""
    seen: dict[str, int] = {}
    for i, record in enumerate(records):
        rec_where = f"{where}: results[{i}]"
        if not isinstance(record, dict):
            raise PredictionFormatError(f"{rec_where} must be a JSON object, got {type(record).__name__}.")
        missing = [k for k in REQUIRED_LESIONNET_KEYS if k not in record]
        if missing:
            raise PredictionFormatError(f"{rec_where} (pair {record.get('pair_id', '?')}) lacks the key(s) "
                                        f"{', '.join(repr(k) for k in missing)}; build records with "
                                        "make_prediction_record().")
        pair_id = str(record["pair_id"])
        if pair_id in seen:
            raise PredictionFormatError(f"{rec_where}: pair id {pair_id!r} already used by results[{seen[pair_id]}];"
                                        " pair ids must be unique.")
        seen[pair_id] = i


def number_triple(value: Any, what: str, where: str, positive: bool = False) -> tuple:
    return finite_numbers(value, 3, what, where, PredictionFormatError, positive=positive)


def nonnegative_number(value: Any, what: str, where: str) -> float:
    """``value`` as a finite float >= 0, else :class:`PredictionFormatError` naming ``where``."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise PredictionFormatError(f"{where}: {what!r} must be a number, got {value!r}.") from None
    if not math.isfinite(out) or out < 0:
        raise PredictionFormatError(f"{where}: {what!r} must be a finite number >= 0, got {value!r}.")
    return out
