"""The input forms of tracking predictions, how they are told apart, and how their records are parsed.

Three forms of predictions are read, and told apart automatically by :func:`detect_form`:

(a) ``"lesionnet"`` — what lesionnet's trackers write (:func:`write_predictions`)::

        {"format": "lesionnet_tracking_predictions", "version": 1, "method": ..., "dataset": ...,
         "results": [{"pair_id", "source", "target", "source center", "source radius mm",
                      "target spacing", "predict target center", "predict target center world",
                      "predict confidence", "processing time",
                      # when the truth is known:
                      "target center", "target radius mm", "target recist diameter"}, ...]}

    It is deliberately a DLS results file with extra keys, so the DLS evaluator reads it as is.
(b) ``"dls_results"`` — a DLS results file ``{"results": [...]}`` such as the DLT authors'
    ``DLTMix.json``; its records carry no pair id.
(c) ``"dls_annotation"`` — a DLS annotation file, a dict keyed by pair id (``"0001"``, ...), whose
    ``predict target center`` (the affine prior in the public files) is taken as the prediction.

A lesionnet raw ``pairs*.json`` (a list of pairs, see ``lesionnet.datasets.raw_format``) holds no
predictions; it is accepted as a *reference* (ground truth) only (form ``"raw_pairs"``).

:func:`parse_file` turns any of these files into :class:`ParsedEntry` records, one per directed
pair. Centers are continuous voxel indices of the scan they refer to, ``[x, y, z]`` (x = column,
y = row, z = slice; the ITK order of the DLS files) in the files and converted to lesionnet's
``(z, y, x)`` when parsed, like the spacings (mm); radii are in mm, RECIST diameters in pixels.
The writing side is :mod:`lesionnet.datasets.prediction_format`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from lesionnet.datasets.geometry import xyz_to_zyx, zyx_to_xyz
from lesionnet.datasets.prediction_format import (
    PREDICTIONS_FORMAT,
    PREDICTIONS_VERSION,
    PredictionFormatError,
    nonnegative_number,
    number_triple,
    validate_lesionnet_records,
)
from lesionnet.utils.files import load_json

FORM_LESIONNET = "lesionnet"
FORM_DLS_RESULTS = "dls_results"
FORM_DLS_ANNOTATION = "dls_annotation"
FORM_RAW_PAIRS = "raw_pairs"
FORM_DESCRIPTIONS = {
    FORM_LESIONNET: "lesionnet predictions file",
    FORM_DLS_RESULTS: "DLS results file",
    FORM_DLS_ANNOTATION: "DLS annotation file",
    FORM_RAW_PAIRS: "lesionnet raw pairs file",
}


# --------------------------------------------------------------------------------------------------
# Form detection
# --------------------------------------------------------------------------------------------------

def detect_form(obj: Any, path: str | os.PathLike = "<data>") -> str:
    """Which form a loaded JSON document is: one of the ``FORM_*`` constants, else an error naming ``path``."""
    if isinstance(obj, list):
        if obj and all(isinstance(r, dict) and "pair_id" in r and "source_center" in r for r in obj):
            return FORM_RAW_PAIRS
        raise PredictionFormatError(
            f"{path}: a JSON list, but not a lesionnet raw pairs file (records with 'pair_id', 'source_center', ...)."
            " Expected a lesionnet predictions file, a DLS results file {\"results\": [...]} or a DLS annotation"
            " file {\"0001\": {...}, ...}.")
    if isinstance(obj, dict):
        if "format" in obj:
            if obj["format"] != PREDICTIONS_FORMAT:
                raise PredictionFormatError(f"{path}: unknown \"format\" {obj['format']!r}; expected "
                                            f"{PREDICTIONS_FORMAT!r}.")
            version = obj.get("version")
            if not isinstance(version, int) or version < 1 or version > PREDICTIONS_VERSION:
                raise PredictionFormatError(f"{path}: {PREDICTIONS_FORMAT} version {version!r} is not supported "
                                            f"(this lesionnet reads version <= {PREDICTIONS_VERSION}); "
                                            "update lesionnet or regenerate the file.")
            if not isinstance(obj.get("results"), list):
                raise PredictionFormatError(f"{path}: a {PREDICTIONS_FORMAT} file needs a \"results\" list.")
            return FORM_LESIONNET
        if "results" in obj:
            if not isinstance(obj["results"], list):
                raise PredictionFormatError(f"{path}: \"results\" must be a list of prediction records, "
                                            f"got {type(obj['results']).__name__}.")
            return FORM_DLS_RESULTS
        if obj and all(isinstance(v, dict) for v in obj.values()) and \
                any("source" in v and "target" in v for v in obj.values()):
            return FORM_DLS_ANNOTATION
    raise PredictionFormatError(
        f"{path}: not a tracking predictions file. Expected one of: a lesionnet predictions file "
        f"{{\"format\": \"{PREDICTIONS_FORMAT}\", \"results\": [...]}}, a DLS results file {{\"results\": [...]}}, "
        "or a DLS annotation file {\"0001\": {\"source\": ..., \"target\": ..., \"predict target center\": ...}, ...}.")



# --------------------------------------------------------------------------------------------------
# Record parsing
# --------------------------------------------------------------------------------------------------

@dataclass
class ParsedEntry:
    """One parsed record: a pair's identity, its prediction and whatever truth it holds.

    Centers are ``(z, y, x)`` voxel indices (the source center of the source scan, the others of the
    target scan), ``target_spacing_zyx`` the target scan's ``(z, y, x)`` spacing in mm.
    """

    where: str                      # file + record, for error messages
    pair_id: str | None
    source: str
    target: str
    source_center_zyx: tuple | None = None
    predicted_center_zyx: tuple | None = None
    target_center_zyx: tuple | None = None
    target_spacing_zyx: tuple | None = None
    radius_mm: float | None = None          # explicit radius ("target radius mm" / "target_radius_mm")
    recist_diameter_px: tuple | None = None  # DLS fallback for the radius

    def radius_with(self, target_spacing_zyx: tuple | None) -> float | None:
        """The DLS radius: the explicit radius, else ``max(recist diameter) / 2 * spacing_x``."""
        if self.radius_mm is not None:
            return self.radius_mm
        if self.recist_diameter_px is not None and target_spacing_zyx is not None:
            _, _, spacing_x = target_spacing_zyx
            return float(max(self.recist_diameter_px)) / 2.0 * spacing_x
        return None

    def describe(self) -> str:
        ident = f"pair {self.pair_id}" if self.pair_id is not None else "pair without id"
        extra = "" if self.target_center_zyx is None else f", target center {fmt_center(self.target_center_zyx)}"
        return f"{ident} (source {self.source} -> target {self.target}{extra}) at {self.where}"


def _records_of(obj: Any, form: str, path: str) -> list[tuple[str, str | None, dict]]:
    """(where, pair id or None, record) for every record of a loaded file."""
    if form == FORM_DLS_ANNOTATION:
        out = []
        for key, record in obj.items():
            out.append((f"{path}: [{key!r}]", str(key), record))
        return out
    if form == FORM_RAW_PAIRS:
        return [(f"{path}[{i}]", r.get("pair_id"), r) for i, r in enumerate(obj)]
    out = []
    for i, record in enumerate(obj["results"]):
        if not isinstance(record, dict):
            raise PredictionFormatError(f"{path}: results[{i}] must be a JSON object, got {type(record).__name__}.")
        pair_id = record.get("pair_id")
        where = f"{path}: results[{i}]" + ("" if pair_id is None else f" (pair {pair_id})")
        out.append((where, None if pair_id is None else str(pair_id), record))
    if form == FORM_LESIONNET:
        validate_lesionnet_records(obj["results"], path)
    return out


def _parse_dls_record(where: str, pair_id: str | None, record: Any, need_prediction: bool) -> ParsedEntry:
    if not isinstance(record, dict):
        raise PredictionFormatError(f"{where}: must be a JSON object, got {type(record).__name__}.")
    for key in ("source", "target") + (("predict target center",) if need_prediction else ()):
        if key not in record or record[key] is None:
            raise PredictionFormatError(f"{where}: record lacks the key {key!r}.")
    entry = ParsedEntry(where=where, pair_id=pair_id, source=str(record["source"]), target=str(record["target"]))
    if record.get("source center") is not None:
        entry.source_center_zyx = xyz_to_zyx(number_triple(record["source center"], "source center", where))
    if need_prediction:
        entry.predicted_center_zyx = xyz_to_zyx(number_triple(record["predict target center"], "predict target center",
                                                               where))
    if record.get("target center") is not None:
        entry.target_center_zyx = xyz_to_zyx(number_triple(record["target center"], "target center", where))
    if record.get("target spacing") is not None:
        entry.target_spacing_zyx = xyz_to_zyx(number_triple(record["target spacing"], "target spacing", where,
                                                             positive=True))
    if record.get("target radius mm") is not None:
        entry.radius_mm = nonnegative_number(record["target radius mm"], "target radius mm", where)
    if record.get("target recist diameter") is not None:
        entry.recist_diameter_px = _diameters(record["target recist diameter"], where)
    return entry


def parse_file(path: Path, need_prediction: bool) -> tuple[str, list[ParsedEntry]]:
    """The form (``FORM_*``) of the file at ``path`` and its records, in file order.

    ``need_prediction``: every record must hold a ``predict target center`` (a raw pairs file is refused).
    """
    obj = load_json(path)
    form = detect_form(obj, path)
    if form == FORM_RAW_PAIRS:
        if need_prediction:
            raise PredictionFormatError(f"{path}: a lesionnet raw pairs file holds no predictions; give it as the "
                                        "reference (--reference) and evaluate a predictions file.")
        from lesionnet.datasets.raw_format import (
            load_pairs,  # heavy import (SimpleITK), only when needed
        )
        entries = []
        for i, pair in enumerate(load_pairs(path)):
            entries.append(ParsedEntry(where=f"{path}[{i}] (pair {pair.pair_id})", pair_id=pair.pair_id,
                                       source=pair.source, target=pair.target,
                                       source_center_zyx=pair.source_center_zyx,
                                       target_center_zyx=pair.target_center_zyx, radius_mm=pair.target_radius_mm))
        return form, entries
    entries = [_parse_dls_record(where, pair_id, record, need_prediction)
               for where, pair_id, record in _records_of(obj, form, str(path))]
    return form, entries


# --------------------------------------------------------------------------------------------------
# Small value checks
# --------------------------------------------------------------------------------------------------

def _diameters(value: Any, where: str) -> tuple:
    if not isinstance(value, (list, tuple)) or not value:
        raise PredictionFormatError(f"{where}: 'target recist diameter' must be a list [long, short] in pixels, "
                                    f"got {value!r}.")
    return tuple(nonnegative_number(v, "target recist diameter", where) for v in value)


def fmt_center(center_zyx: Iterable[float] | None) -> str:
    """A ``(z, y, x)`` center for messages, written ``[x, y, z]`` as in the files (``"?"`` when unknown)."""
    if center_zyx is None:
        return "?"
    return "[" + ", ".join(f"{v:g}" for v in zyx_to_xyz(center_zyx)) + "]"
