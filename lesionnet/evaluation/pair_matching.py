"""Matching the same directed pairs across two files: predictions against a reference, or two prediction sets.

A pair is identified by a :class:`PairKey`: its pair id (absent in DLS results files), its source
and target scan names (compared by :func:`scan_key`, so an image file ending is ignored) and its
lesion centers. :func:`match_pairs` matches by id, by geometry (same scans, nearest center), or by
position (``MATCH_MODES``), and picks the rule itself in ``"auto"`` mode.

Centers are continuous voxel indices ``(z, y, x)`` (z = slice, y = row, x = column) of the scan they
refer to, so the matching tolerance (:data:`DEFAULT_MATCH_TOLERANCE_VOX`) is in voxels, per axis — not mm.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from lesionnet.datasets.prediction_format import PredictionFormatError

#: Default tolerance (voxels, per axis) when pairs are matched by their centers. The public DLS
#: annotation files round centers to 0.1 voxel, so the same pair can differ by up to 0.05.
DEFAULT_MATCH_TOLERANCE_VOX = 0.1
MATCH_MODES = ("auto", "id", "geometry", "index")
#: How many pairs an error message names before it only counts the rest.
SHOW_FIRST = 3

_SCAN_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


@dataclass(frozen=True)
class PairKey:
    """What identifies a directed pair across files: an id, and the scans plus lesion centers."""

    pair_id: str | None
    source: str
    target: str
    source_center_zyx: tuple | None
    target_center_zyx: tuple | None
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
    for ca, cb in ((a.source_center_zyx, b.source_center_zyx), (a.target_center_zyx, b.target_center_zyx)):
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


def describe_pairs(keys: Sequence[PairKey], limit: int = SHOW_FIRST) -> str:
    """``"N pair(s): first; second; ..."`` for error messages."""
    shown = "; ".join(k.description for k in keys[:limit])
    more = "" if len(keys) <= limit else f"; ... ({len(keys) - limit} more)"
    return f"{len(keys)} pair(s): {shown}{more}"
