"""Tracking predictions on disk: the lesionnet format, DLS results and DLS annotation files.

Three input forms are read, and told apart automatically by :func:`detect_form`:

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
predictions; it is accepted as a *reference* (ground truth) only.

Centers are continuous voxel indices ``[x, y, z]`` (x = column, y = row, z = slice) of the scan
they refer to; spacings and radii are in mm. :func:`load_tracking_predictions` returns a
:class:`TrackingPredictions`: per-pair numpy arrays with the prediction and its ground truth, the
truth taken from the file itself or from a reference.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from lesionnet.utils.files import load_json, write_json
from lesionnet.utils.validation import finite_numbers

PREDICTIONS_FORMAT = "lesionnet_tracking_predictions"
PREDICTIONS_VERSION = 1

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

#: Keys every record of a lesionnet predictions file must have.
REQUIRED_LESIONNET_KEYS = ("pair_id", "source", "target", "source center", "source radius mm",
                           "target spacing", "predict target center")

#: Default tolerance (voxels, per axis) when pairs are matched by their centers. The public DLS
#: annotation files round centers to 0.1 voxel, so the same pair can differ by up to 0.05.
DEFAULT_MATCH_TOLERANCE_VOX = 0.1
MATCH_MODES = ("auto", "id", "geometry", "index")

_SCAN_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
_SHOW_FIRST = 3


class PredictionFormatError(ValueError):
    """A predictions or reference file cannot be used; the message names the file and the record."""


# --------------------------------------------------------------------------------------------------
# Writing the lesionnet format
# --------------------------------------------------------------------------------------------------

def make_prediction_record(*, pair_id: str, source: str, target: str, source_center_xyz: Sequence[float],
                           source_radius_mm: float, target_spacing_xyz: Sequence[float],
                           predicted_center_xyz: Sequence[float],
                           predicted_center_world_xyz: Sequence[float] | None = None,
                           confidence: float | None = None, processing_time_s: float | None = None,
                           target_center_xyz: Sequence[float] | None = None,
                           target_radius_mm: float | None = None) -> dict:
    """One record of a lesionnet predictions file (keys as in the DLS results files).

    ``*_xyz`` are voxel indices ``(x, y, z)`` of the scan named (``source`` / ``target``), except
    ``predicted_center_world_xyz`` (mm, physical) and ``target_spacing_xyz`` (mm). The truth
    (``target_center_xyz``, ``target_radius_mm``) is written when known; the record then also gets
    ``"target recist diameter" = [2 r / sx, 2 r / sx]`` (pixels), so that the DLS evaluator's rule
    ``max(diameter) / 2 * spacing[0]`` gives back ``r``.
    """
    where = f"prediction record for pair {pair_id!r}"
    spacing = _triple(target_spacing_xyz, "target spacing", where, positive=True)
    record: dict[str, Any] = {
        "pair_id": str(pair_id),
        "source": str(source),
        "target": str(target),
        "source center": list(_triple(source_center_xyz, "source center", where)),
        "source radius mm": _nonnegative(source_radius_mm, "source radius mm", where),
        "target spacing": list(spacing),
        "predict target center": list(_triple(predicted_center_xyz, "predict target center", where)),
        "predict target center world": (None if predicted_center_world_xyz is None else
                                        list(_triple(predicted_center_world_xyz, "predict target center world",
                                                     where))),
        "predict confidence": None if confidence is None else float(confidence),
        "processing time": None if processing_time_s is None else float(processing_time_s),
    }
    if (target_center_xyz is None) != (target_radius_mm is None):
        raise ValueError(f"{where}: give both target_center_xyz and target_radius_mm (the truth) or neither.")
    if target_center_xyz is not None:
        radius = _nonnegative(target_radius_mm, "target radius mm", where)
        record["target center"] = list(_triple(target_center_xyz, "target center", where))
        record["target radius mm"] = radius
        record["target recist diameter"] = [2.0 * radius / spacing[0]] * 2
    return record


def prediction_record_from_pair(pair, predicted_center_xyz: Sequence[float], target_spacing_xyz: Sequence[float],
                                predicted_center_world_xyz: Sequence[float] | None = None,
                                confidence: float | None = None, processing_time_s: float | None = None) -> dict:
    """:func:`make_prediction_record` for a :class:`lesionnet.datasets.raw_format.TrackingPair`.

    The pair's truth (``target_center_xyz``, ``target_radius_mm``) is copied when it has one.
    """
    has_truth = pair.target_center_xyz is not None and pair.target_radius_mm is not None
    return make_prediction_record(
        pair_id=pair.pair_id, source=pair.source, target=pair.target,
        source_center_xyz=pair.source_center_xyz, source_radius_mm=pair.source_radius_mm,
        target_spacing_xyz=target_spacing_xyz, predicted_center_xyz=predicted_center_xyz,
        predicted_center_world_xyz=predicted_center_world_xyz, confidence=confidence,
        processing_time_s=processing_time_s,
        target_center_xyz=pair.target_center_xyz if has_truth else None,
        target_radius_mm=pair.target_radius_mm if has_truth else None,
    )


def write_predictions(path: str | os.PathLike, records: Iterable[dict], method: str, dataset: str | None,
                      **extra: Any) -> Path:
    """Write a lesionnet predictions file atomically; returns its path.

    ``records`` come from :func:`make_prediction_record`; they are checked (required keys, unique
    pair ids) before anything is written. ``extra`` keys (e.g. ``plans``, ``fold``) are added to the
    top level.
    """
    path = Path(path)
    records = list(records)
    _validate_lesionnet_records(records, str(path))
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
    if detect_form(doc, path) != FORM_LESIONNET:
        raise PredictionFormatError(f"{path}: not a lesionnet predictions file (no \"format\": "
                                    f"\"{PREDICTIONS_FORMAT}\"). Use load_tracking_predictions() to read "
                                    "DLS results or annotation files.")
    _validate_lesionnet_records(doc["results"], str(path))
    return doc


def _validate_lesionnet_records(records: list, where: str) -> None:
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


# --------------------------------------------------------------------------------------------------
# Form detection and record parsing
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


@dataclass
class _Entry:
    """One parsed record (internal): a pair's identity, its prediction and whatever truth it holds."""

    where: str                      # file + record, for error messages
    pair_id: str | None
    source: str
    target: str
    source_center: tuple | None = None
    predicted: tuple | None = None
    target_center: tuple | None = None
    spacing: tuple | None = None
    radius_mm: float | None = None          # explicit radius ("target radius mm" / "target_radius_mm")
    recist_diameter_px: tuple | None = None  # DLS fallback for the radius

    def radius_with(self, spacing: tuple | None) -> float | None:
        """The DLS radius: the explicit radius, else ``max(recist diameter) / 2 * spacing[0]``."""
        if self.radius_mm is not None:
            return self.radius_mm
        if self.recist_diameter_px is not None and spacing is not None:
            return float(max(self.recist_diameter_px)) / 2.0 * spacing[0]
        return None

    def describe(self) -> str:
        ident = f"pair {self.pair_id}" if self.pair_id is not None else "pair without id"
        extra = "" if self.target_center is None else f", target center {_fmt_xyz(self.target_center)}"
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
        _validate_lesionnet_records(obj["results"], path)
    return out


def _parse_dls_record(where: str, pair_id: str | None, record: Any, need_prediction: bool) -> _Entry:
    if not isinstance(record, dict):
        raise PredictionFormatError(f"{where}: must be a JSON object, got {type(record).__name__}.")
    for key in ("source", "target") + (("predict target center",) if need_prediction else ()):
        if key not in record or record[key] is None:
            raise PredictionFormatError(f"{where}: record lacks the key {key!r}.")
    entry = _Entry(where=where, pair_id=pair_id, source=str(record["source"]), target=str(record["target"]))
    if record.get("source center") is not None:
        entry.source_center = _triple(record["source center"], "source center", where)
    if need_prediction:
        entry.predicted = _triple(record["predict target center"], "predict target center", where)
    if record.get("target center") is not None:
        entry.target_center = _triple(record["target center"], "target center", where)
    if record.get("target spacing") is not None:
        entry.spacing = _triple(record["target spacing"], "target spacing", where, positive=True)
    if record.get("target radius mm") is not None:
        entry.radius_mm = _nonnegative(record["target radius mm"], "target radius mm", where)
    if record.get("target recist diameter") is not None:
        entry.recist_diameter_px = _diameters(record["target recist diameter"], where)
    return entry


def _parse_file(path: Path, need_prediction: bool) -> tuple[str, list[_Entry]]:
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
            entries.append(_Entry(where=f"{path}[{i}] (pair {pair.pair_id})", pair_id=pair.pair_id,
                                  source=pair.source, target=pair.target, source_center=pair.source_center_xyz,
                                  target_center=pair.target_center_xyz, radius_mm=pair.target_radius_mm))
        return form, entries
    entries = [_parse_dls_record(where, pair_id, record, need_prediction)
               for where, pair_id, record in _records_of(obj, form, str(path))]
    return form, entries


# --------------------------------------------------------------------------------------------------
# Matching pairs across files
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairKey:
    """What identifies a directed pair across files: an id, and the scans plus lesion centers."""

    pair_id: str | None
    source: str
    target: str
    source_center: tuple | None
    target_center: tuple | None
    description: str


def scan_key(name: str) -> str:
    """A scan name without its image file ending, so ``"a_b.nii.gz"`` (DLS) matches ``"a_b"`` (lesionnet)."""
    lower = name.lower()
    for ending in _SCAN_ENDINGS:
        if lower.endswith(ending):
            return name[: -len(ending)]
    return name


def _center_gap(a: PairKey, b: PairKey) -> float | None:
    """Largest per-axis difference (voxels) over the centers both keys have; None when they share none."""
    gaps = []
    for ca, cb in ((a.source_center, b.source_center), (a.target_center, b.target_center)):
        if ca is not None and cb is not None:
            gaps.append(max(abs(x - y) for x, y in zip(ca, cb)))
    return max(gaps) if gaps else None


def match_pairs(queries: Sequence[PairKey], pool: Sequence[PairKey], *, match: str = "auto",
                tolerance_vox: float = DEFAULT_MATCH_TOLERANCE_VOX, query_name: str = "predictions",
                pool_name: str = "reference") -> tuple[list[int | None], str]:
    """For each query, the index of the same pair in ``pool`` (None if it has none), and the rule used.

    ``match``:

    * ``"id"`` — by pair id; an id that names other scans in the two files is an error.
    * ``"geometry"`` — same source and target scan (file ending ignored), then the nearest lesion
      center (source and/or target center, whichever both have) within ``tolerance_vox`` per axis.
    * ``"index"`` — by position; both lists must be equally long with the same scans at each position.
    * ``"auto"`` — by id when both sides have ids and they overlap; else by geometry; else (records
      without centers that cannot be told apart) by position.

    Two queries matching the same pool pair is an error.
    """
    if match not in MATCH_MODES:
        raise ValueError(f"match must be one of {MATCH_MODES}, got {match!r}")
    if match == "index":
        return _match_by_index(queries, pool, query_name, pool_name), "index"
    if match == "id" or (match == "auto" and _ids_usable(queries, pool)):
        return _match_by_id(queries, pool, query_name, pool_name), "id"
    result, ambiguous = _match_by_geometry(queries, pool, tolerance_vox, query_name, pool_name)
    if ambiguous and match == "auto" and len(queries) == len(pool):
        try:
            return _match_by_index(queries, pool, query_name, pool_name), "index"
        except PredictionFormatError:
            pass        # the files' orders disagree too: fall through to the ambiguity error below
    if ambiguous:
        raise PredictionFormatError(
            f"{len(ambiguous)} {query_name} pair(s) cannot be told apart from other lesions of the same scans "
            f"(no shared centers), e.g. {ambiguous[0].description}; give pair ids or centers.")
    return result, "geometry"


def _ids_usable(queries: Sequence[PairKey], pool: Sequence[PairKey]) -> bool:
    if not queries or not pool:
        return False
    if any(q.pair_id is None for q in queries) or any(p.pair_id is None for p in pool):
        return False
    pool_ids = {p.pair_id for p in pool}
    return any(q.pair_id in pool_ids for q in queries)


def _match_by_id(queries, pool, query_name, pool_name) -> list[int | None]:
    index: dict[str, int] = {}
    for i, p in enumerate(pool):
        if p.pair_id is None:
            raise PredictionFormatError(f"{pool_name}: {p.description} has no pair id; cannot match by id.")
        if p.pair_id in index:
            raise PredictionFormatError(f"{pool_name}: pair id {p.pair_id!r} appears more than once.")
        index[p.pair_id] = i
    out: list[int | None] = []
    seen: set[str] = set()
    for q in queries:
        if q.pair_id is None:
            raise PredictionFormatError(f"{query_name}: {q.description} has no pair id; cannot match by id.")
        if q.pair_id in seen:
            raise PredictionFormatError(f"{query_name}: pair id {q.pair_id!r} appears more than once.")
        seen.add(q.pair_id)
        j = index.get(q.pair_id)
        if j is not None:
            p = pool[j]
            if (scan_key(q.source), scan_key(q.target)) != (scan_key(p.source), scan_key(p.target)):
                raise PredictionFormatError(
                    f"pair id {q.pair_id!r} names different scans in the {query_name} ({q.source} -> {q.target}) "
                    f"and the {pool_name} ({p.source} -> {p.target}); are both files from the same dataset?")
        out.append(j)
    return out


def _match_by_geometry(queries, pool, tolerance_vox, query_name, pool_name):
    groups: dict[tuple[str, str], list[int]] = {}
    for i, p in enumerate(pool):
        groups.setdefault((scan_key(p.source), scan_key(p.target)), []).append(i)
    out: list[int | None] = []
    taken: dict[int, int] = {}
    ambiguous: list[PairKey] = []
    for qi, q in enumerate(queries):
        candidates = groups.get((scan_key(q.source), scan_key(q.target)), [])
        best, best_gap, no_center = None, math.inf, []
        for j in candidates:
            gap = _center_gap(q, pool[j])
            if gap is None:
                no_center.append(j)
            elif gap <= tolerance_vox and gap < best_gap:
                best, best_gap = j, gap
        if best is None and no_center:
            if len(candidates) == 1:
                best = no_center[0]
            else:
                ambiguous.append(q)
        if best is not None:
            if best in taken:
                raise PredictionFormatError(
                    f"{query_name}: {q.description} and {queries[taken[best]].description} both match "
                    f"{pool_name} {pool[best].description}; each pair may be given once.")
            taken[best] = qi
        out.append(best)
    return out, ambiguous


def _match_by_index(queries, pool, query_name, pool_name) -> list[int | None]:
    if len(queries) != len(pool):
        raise PredictionFormatError(f"cannot match by position: {len(queries)} {query_name} pairs but "
                                    f"{len(pool)} {pool_name} pairs.")
    for q, p in zip(queries, pool):
        if (scan_key(q.source), scan_key(q.target)) != (scan_key(p.source), scan_key(p.target)):
            raise PredictionFormatError(f"cannot match by position: {query_name} {q.description} is at the "
                                        f"position of {pool_name} {p.description}.")
    return list(range(len(queries)))


def _key_of(entry: _Entry) -> PairKey:
    return PairKey(entry.pair_id, entry.source, entry.target, entry.source_center, entry.target_center,
                   entry.describe())


def describe_pairs(keys: Sequence[PairKey], limit: int = _SHOW_FIRST) -> str:
    """``"N pair(s): first; second; ..."`` for error messages."""
    shown = "; ".join(k.description for k in keys[:limit])
    more = "" if len(keys) <= limit else f"; ... ({len(keys) - limit} more)"
    return f"{len(keys)} pair(s): {shown}{more}"


# --------------------------------------------------------------------------------------------------
# Loading predictions with their ground truth
# --------------------------------------------------------------------------------------------------

@dataclass
class TrackingPredictions:
    """Predictions for ``n`` directed pairs, each with its ground truth, as numpy arrays.

    Arrays of centers are ``(n, 3)`` voxel indices ``(x, y, z)`` of the target scan (``source_center_xyz``:
    of the source scan, NaN where unknown); ``target_spacing_xyz`` is ``(n, 3)`` mm;
    ``target_radius_mm`` is ``(n,)`` (the DLS radius). ``pair_ids`` are None for DLS results records
    matched to no reference. ``missing`` lists reference pairs that have no prediction (only with
    ``allow_missing``).
    """

    path: str
    form: str
    pair_ids: list
    sources: list
    targets: list
    source_center_xyz: np.ndarray
    predicted_center_xyz: np.ndarray
    target_center_xyz: np.ndarray
    target_spacing_xyz: np.ndarray
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
            sc = self.source_center_xyz[i]
            source_center = None if np.isnan(sc).any() else tuple(float(v) for v in sc)
            target_center = tuple(float(v) for v in self.target_center_xyz[i])
            ident = f"pair {self.pair_ids[i]}" if self.pair_ids[i] is not None else f"record #{i}"
            desc = (f"{ident} (source {self.sources[i]} -> target {self.targets[i]}, "
                    f"target center {_fmt_xyz(target_center)}) of {self.path}")
            out.append(PairKey(self.pair_ids[i], self.sources[i], self.targets[i], source_center, target_center,
                               desc))
        return out

    def subset(self, index: Sequence[int]) -> "TrackingPredictions":
        """The pairs at ``index``, in that order."""
        idx = np.asarray(index, dtype=int)
        return TrackingPredictions(
            path=self.path, form=self.form, pair_ids=[self.pair_ids[i] for i in idx],
            sources=[self.sources[i] for i in idx], targets=[self.targets[i] for i in idx],
            source_center_xyz=self.source_center_xyz[idx], predicted_center_xyz=self.predicted_center_xyz[idx],
            target_center_xyz=self.target_center_xyz[idx], target_spacing_xyz=self.target_spacing_xyz[idx],
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
    form, entries = _parse_file(path, need_prediction=True)
    if not entries:
        raise PredictionFormatError(f"{path}: holds no prediction records.")
    _check_unique_ids(entries, str(path))
    if reference is None:
        return _build(path, form, entries, [_truth_from_self(e) for e in entries], None, [], None)

    reference = Path(reference)
    ref_form, ref_entries = _parse_file(reference, need_prediction=False)
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
                                     "; others: " + "; ".join(e.describe() for e in unmatched[1:_SHOW_FIRST])) +
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


def _check_unique_ids(entries: list[_Entry], where: str) -> None:
    seen: dict[str, _Entry] = {}
    for e in entries:
        if e.pair_id is None:
            continue
        if e.pair_id in seen:
            raise PredictionFormatError(f"{where}: pair id {e.pair_id!r} appears more than once "
                                        f"({seen[e.pair_id].where} and {e.where}).")
        seen[e.pair_id] = e


def _truth_from_self(e: _Entry) -> tuple[tuple, tuple, float]:
    hint = "; or evaluate against a reference (--reference) that holds the truth"
    if e.target_center is None:
        raise PredictionFormatError(f"{e.where}: record lacks the ground truth key 'target center'{hint}.")
    if e.spacing is None:
        raise PredictionFormatError(f"{e.where}: record lacks the key 'target spacing'.")
    radius = e.radius_with(e.spacing)
    if radius is None:
        raise PredictionFormatError(f"{e.where}: record has neither 'target radius mm' nor "
                                    f"'target recist diameter'{hint}.")
    return e.target_center, e.spacing, radius


def _truth_from_reference(pred: _Entry, ref: _Entry, reference: Path) -> tuple[tuple, tuple, float]:
    if ref.target_center is None:
        raise PredictionFormatError(f"reference {reference}: {ref.describe()} has no target center (no truth).")
    spacing = ref.spacing if ref.spacing is not None else pred.spacing
    if spacing is None:
        raise PredictionFormatError(f"{pred.where}: record lacks 'target spacing', and the reference {reference} "
                                    "gives none for this pair.")
    radius = ref.radius_with(spacing)
    if radius is None:
        raise PredictionFormatError(f"reference {reference}: {ref.describe()} has no target radius "
                                    "('target radius mm', 'target_radius_mm' or 'target recist diameter').")
    return ref.target_center, spacing, radius


def _build(path: Path, form: str, entries: list[_Entry], truths: list, reference: str | None, missing: list,
           rule: str | None) -> TrackingPredictions:
    nan3 = (math.nan,) * 3
    return TrackingPredictions(
        path=str(path), form=form, pair_ids=[e.pair_id for e in entries], sources=[e.source for e in entries],
        targets=[e.target for e in entries],
        source_center_xyz=np.array([e.source_center or nan3 for e in entries], dtype=np.float64).reshape(-1, 3),
        predicted_center_xyz=np.array([e.predicted for e in entries], dtype=np.float64).reshape(-1, 3),
        target_center_xyz=np.array([t[0] for t in truths], dtype=np.float64).reshape(-1, 3),
        target_spacing_xyz=np.array([t[1] for t in truths], dtype=np.float64).reshape(-1, 3),
        target_radius_mm=np.array([t[2] for t in truths], dtype=np.float64),
        reference=reference, missing=missing, match_rule=rule)


# --------------------------------------------------------------------------------------------------
# Small value checks
# --------------------------------------------------------------------------------------------------

def _triple(value: Any, what: str, where: str, positive: bool = False) -> tuple:
    return finite_numbers(value, 3, what, where, PredictionFormatError, positive=positive)


def _nonnegative(value: Any, what: str, where: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise PredictionFormatError(f"{where}: {what!r} must be a number, got {value!r}.") from None
    if not math.isfinite(out) or out < 0:
        raise PredictionFormatError(f"{where}: {what!r} must be a finite number >= 0, got {value!r}.")
    return out


def _diameters(value: Any, where: str) -> tuple:
    if not isinstance(value, (list, tuple)) or not value:
        raise PredictionFormatError(f"{where}: 'target recist diameter' must be a list [long, short] in pixels, "
                                    f"got {value!r}.")
    return tuple(_nonnegative(v, "target recist diameter", where) for v in value)


def _fmt_xyz(xyz: Iterable[float] | None) -> str:
    if xyz is None:
        return "?"
    return "[" + ", ".join(f"{v:g}" for v in xyz) + "]"
