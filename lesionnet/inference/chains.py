"""Multi-follow-up tracking: carry a lesion through a patient's intermediate scans (chain mode).

A patient has a chain of scans ordered in time. In chain mode a pair ``S -> T`` with intermediate
scans ``M1 < M2 < ... < Mk`` of the same patient between ``S`` and ``T`` is predicted hop by hop:
``S -> M1`` from the pair's true source center, then ``M1 -> M2`` seeded with the *predicted* center
in ``M1``, ..., and finally ``Mk -> T``. Pairs whose scans are consecutive are a single hop.

**Time order.** The raw format has no explicit time stamp (neither the pairs nor ``dataset.json``
carry one), so within a patient scans are ordered by the *natural sort* of their scan ids
(:func:`natural_scan_key`: digit runs compare as numbers, so ``P0_T2 < P0_T10``). This is the time
order of the synthetic dataset (``{patient}_T{t}``) and of DeepLesion scan ids
(``{patient}_{study}_{series}_{slices}``, studies numbered in time). Another order can be given with
``time_key``. A scan's patient is the ``patient`` field of the pairs naming it, else the scan id up
to its first ``_`` (the rule of :attr:`lesionnet.datasets.raw_format.TrackingPair.patient_id`).

**Backward pairs** (target earlier than source) are tracked along the reversed chain
(``T2 -> T1 -> T0``) by default; with ``allow_backward=False`` they raise a ``ValueError``.

Centers are continuous voxel indices ``(z, y, x)`` of the scan they refer to; radii are in mm.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import re
from typing import Any, Callable, Iterable, Mapping

from tqdm import tqdm

from lesionnet.datasets.geometry import xyz_to_zyx
from lesionnet.datasets.prediction_format import predicted_center_zyx, prediction_record_from_pair
from lesionnet.datasets.raw_format import TrackingPair
from lesionnet.inference.tracking_input import TrackingInput
from lesionnet.utils.validation import finite_numbers

logger = logging.getLogger(__name__)

#: Optional record key: a tracker that estimates the lesion's radius in the target scan (mm) may
#: return it under this key; chain mode then seeds the next hop with it instead of the source radius.
PREDICTED_RADIUS_KEY = "predict target radius mm"
#: Decimals of the voxel centers and radii (mm) in the hop cache key.
CACHE_DECIMALS = 4

_TRUTH_KEYS = ("target center", "target radius mm", "target recist diameter")
_DIGITS = re.compile(r"(\d+)")

TrackCase = Callable[[TrackingInput, list[TrackingPair]], list[dict]]
HopKey = tuple  # (hop source scan, rounded center zyx, rounded radius mm, hop target scan)


def natural_scan_key(scan_id: str) -> tuple:
    """Sort key of a scan id: digit runs compare as numbers (``P0_T2`` < ``P0_T10``); ties by the id."""
    parts = _DIGITS.split(scan_id)  # text at even positions, digit runs at odd positions
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), scan_id


def patient_chains(pairs: Iterable[TrackingPair], scans: Iterable[str] = (),
                   time_key: Callable[[str], Any] | None = None) -> dict[str, list[str]]:
    """Time-ordered scans of every patient: ``{patient_id: [scan_id, ...]}`` (earliest first).

    The scans are those named by ``pairs`` plus ``scans`` (e.g. every scan of a tracking input).
    A scan's patient is the ``patient`` field of a pair naming it, else the scan id up to its first
    ``_``. Scans are sorted by ``time_key`` (default :func:`natural_scan_key`). Raises ``ValueError``
    when pairs give one scan two different patients.
    """
    time_key = time_key or natural_scan_key
    explicit: dict[str, tuple[str, str]] = {}  # scan -> (patient, pair id that says so)
    seen: dict[str, None] = {}
    for pair in pairs:
        for scan in (pair.source, pair.target):
            seen[scan] = None
            if not pair.patient:
                continue
            previous = explicit.setdefault(scan, (pair.patient, pair.pair_id))
            if previous[0] != pair.patient:
                raise ValueError(f"scan '{scan}' is given patient '{previous[0]}' by pair '{previous[1]}' and "
                                 f"patient '{pair.patient}' by pair '{pair.pair_id}'; a scan belongs to one patient.")
    for scan in scans:
        seen[scan] = None
    chains: dict[str, list[str]] = {}
    for scan in seen:
        patient = explicit[scan][0] if scan in explicit else scan.split("_")[0]
        chains.setdefault(patient, []).append(scan)
    return {patient: sorted(chains[patient], key=time_key) for patient in sorted(chains, key=natural_scan_key)}


def chain_hops(pair: TrackingPair, chains: Mapping[str, list[str]], allow_backward: bool = True) -> list[tuple]:
    """The consecutive hops ``[(S, M1), (M1, M2), ..., (Mk, T)]`` from ``pair.source`` to ``pair.target``.

    ``chains`` comes from :func:`patient_chains`. A pair of consecutive scans is one hop; a pair
    whose source is its target is one hop ``(S, S)``. A backward pair (target earlier than source)
    follows the reversed chain, or raises ``ValueError`` when ``allow_backward`` is False. Raises
    ``ValueError`` naming the pair when a scan is in no chain or the two scans are in different
    patients' chains.
    """
    return _hops(pair, _chain_index(chains), chains, allow_backward)


def predict_chained(tracking_input: TrackingInput, pairs: Iterable[TrackingPair], track_case: TrackCase,
                    progress: bool = True, *, chains: Mapping[str, list[str]] | None = None,
                    allow_backward: bool = True, cache: dict | None = None) -> list[dict]:
    """Predict ``pairs`` in chain mode; one lesionnet prediction record per pair, in input order.

    ``track_case(tracking_input, hop_pairs)`` is any per-scan-pair tracker (a method's predictor): all
    ``hop_pairs`` share one source and one target scan (they carry no target truth), and it returns
    one prediction record per pair, in order (:mod:`lesionnet.datasets.prediction_format`), whose
    ``"predict target center"`` is the predicted center in the target scan. Hop ``k + 1`` starts from
    hop ``k``'s predicted center; the radius carried along is the pair's source radius (mm), or the
    tracker's :data:`PREDICTED_RADIUS_KEY` when its records carry one.

    Scheduling: a directed scan pair is tracked (one ``track_case`` call) once every hop that needs
    it knows its start center, so each scan pair is tracked once per call. A hop is identified by
    ``(scan, center rounded to CACHE_DECIMALS, radius, next scan)`` and computed once, however many
    pairs share it (the same lesion from the same scan to several later scans). Pass the same
    ``cache`` dict to several calls (e.g. one call per case) to share hops between them.

    The record of pair ``S -> T`` has the pair's id, scans, true source center and radius, its truth
    when known, the last hop's ``"predict target center"`` / ``"predict target center world"`` /
    ``"target spacing"`` / ``"predict confidence"`` (and any extra keys of the last hop's record),
    ``"processing time"`` = the sum over its hops (None if a hop has none; a hop shared by several
    pairs counts for each), and ``"chain"``: the scan ids visited, ``[S, M1, ..., T]``.
    Scans are ordered as in :func:`patient_chains` over the pairs and every scan of
    ``tracking_input``, unless ``chains`` is given. Errors of ``track_case`` (e.g.
    :class:`lesionnet.datasets.image_io.ImageReadError`) propagate.
    """
    pairs = list(pairs)
    if chains is None:
        chains = patient_chains(pairs, tracking_input.geometries)
    index = _chain_index(chains)
    cache = {} if cache is None else cache
    tracks = []
    for pair in pairs:
        for scan in (pair.source, pair.target):
            if scan not in tracking_input.geometries:
                raise ValueError(f"pair '{pair.pair_id}': scan '{scan}' is not part of the tracking input "
                                 f"{tracking_input.folder}.")
        tracks.append(_Track(pair, _hops(pair, index, chains, allow_backward)))
    for track in tracks:
        for _, scan in track.hops:
            if scan not in tracking_input.geometries:
                raise ValueError(f"pair '{track.pair.pair_id}': intermediate scan '{scan}' is not part of the "
                                 f"tracking input {tracking_input.folder}.")

    total_hops = sum(len(t.hops) for t in tracks)
    computed = calls = 0
    with tqdm(total=total_hops, desc="chained tracking", unit="hop", disable=not progress) as bar:
        while True:
            groups = _ready_groups(tracks)
            if not groups:
                break
            for (source, target), group in groups.items():
                missing: dict[HopKey, _Track] = {}
                for track in group:
                    key = track.key()
                    if key not in cache:
                        missing.setdefault(key, track)
                if missing:
                    hop_pairs = [t.hop_pair() for t in missing.values()]
                    records = track_case(tracking_input, hop_pairs)
                    calls += 1
                    if len(records) != len(hop_pairs):
                        raise ValueError(f"track_case returned {len(records)} records for {len(hop_pairs)} pairs "
                                         f"of scan pair {source} -> {target}.")
                    cache.update(zip(missing, records))
                    computed += len(hop_pairs)
                    logger.debug("%s -> %s: %d hop(s) tracked, %d shared", source, target, len(hop_pairs),
                                 len(group) - len(hop_pairs))
                for track in group:
                    track.advance(cache[track.key()], tracking_input)
                bar.update(len(group))
    logger.info("Chained tracking: %d pairs, %d pair-hops, %d hops tracked in %d scan-pair calls (%d shared)",
                len(tracks), total_hops, computed, calls, total_hops - computed)
    return [track.final_record() for track in tracks]


# --------------------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------------------

def _chain_index(chains: Mapping[str, list[str]]) -> dict[str, tuple[str, int]]:
    """``{scan: (patient, position in the patient's chain)}``; a scan in two chains is an error."""
    index: dict[str, tuple[str, int]] = {}
    for patient, scans in chains.items():
        for position, scan in enumerate(scans):
            if scan in index:
                raise ValueError(f"scan '{scan}' appears in the chains of patients '{index[scan][0]}' and "
                                 f"'{patient}'; a scan belongs to one patient.")
            index[scan] = (patient, position)
    return index


def _hops(pair: TrackingPair, index: dict, chains: Mapping[str, list[str]], allow_backward: bool) -> list[tuple]:
    for scan in (pair.source, pair.target):
        if scan not in index:
            raise ValueError(f"pair '{pair.pair_id}': scan '{scan}' is in no patient's chain.")
    (source_patient, i), (target_patient, j) = index[pair.source], index[pair.target]
    if source_patient != target_patient:
        raise ValueError(f"pair '{pair.pair_id}': source scan '{pair.source}' (patient '{source_patient}') and "
                         f"target scan '{pair.target}' (patient '{target_patient}') belong to different patients; "
                         "a chain runs within one patient's scans.")
    if i == j:
        return [(pair.source, pair.target)]
    chain = chains[source_patient]
    if j < i and not allow_backward:
        raise ValueError(f"pair '{pair.pair_id}': target scan '{pair.target}' is earlier than source scan "
                         f"'{pair.source}' in patient '{source_patient}'s chain {chain}; backward pairs are "
                         "tracked only with allow_backward=True (along the reversed chain).")
    step = 1 if j > i else -1
    visited = chain[i:j + 1] if step == 1 else chain[j:i + 1][::-1]
    return list(zip(visited[:-1], visited[1:]))


@dataclasses.dataclass
class _Track:
    """One input pair on its way along the chain."""

    pair: TrackingPair
    hops: list
    step: int = 0  # index of the next hop
    center: tuple = ()  # start center of the next hop: voxel index (z, y, x) in hops[step][0]
    radius: float = 0.0  # mm
    records: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self.center = tuple(float(v) for v in self.pair.source_center_zyx)
        self.radius = float(self.pair.source_radius_mm)

    @property
    def done(self) -> bool:
        return self.step >= len(self.hops)

    def key(self) -> HopKey:
        source, target = self.hops[self.step]
        return (source, tuple(round(v, CACHE_DECIMALS) for v in self.center), round(self.radius, CACHE_DECIMALS),
                target)

    def hop_pair(self) -> TrackingPair:
        """The synthetic pair of the next hop (no target truth)."""
        source, target = self.hops[self.step]
        pair_id = self.pair.pair_id if (source, target) == (self.pair.source, self.pair.target) else \
            f"{self.pair.pair_id}:{source}->{target}"
        return TrackingPair(pair_id=pair_id, source=source, target=target, source_center_zyx=self.center,
                            source_radius_mm=self.radius, patient=self.pair.patient_id)

    def advance(self, record: dict, tracking_input: TrackingInput) -> None:
        source, target = self.hops[self.step]
        where = f"chained pair '{self.pair.pair_id}', hop {source} -> {target}"
        self.center = xyz_to_zyx(finite_numbers(record.get("predict target center"), 3, "predict target center",
                                                where))
        radius = record.get(PREDICTED_RADIUS_KEY)
        if radius is not None and math.isfinite(float(radius)) and float(radius) > 0:
            self.radius = float(radius)
        self.records.append(record)
        self.step += 1
        if not self.done and not tracking_input.geometries[target].contains_voxel(self.center):
            logger.warning("%s: predicted center %s (z, y, x voxel index) lies outside scan %s; the next hop "
                           "starts there anyway.", where, [round(v, 2) for v in self.center], target)

    def final_record(self) -> dict:
        last = self.records[-1]
        times = [r.get("processing time") for r in self.records]
        total = None if any(t is None for t in times) else float(sum(times))
        record = prediction_record_from_pair(
            self.pair, predicted_center_zyx(last), xyz_to_zyx(last["target spacing"]),
            predicted_center_world=last.get("predict target center world"),
            confidence=last.get("predict confidence"), processing_time_s=total)
        for key, value in last.items():
            if key not in record and key not in _TRUTH_KEYS:
                record[key] = value
        record["chain"] = [source for source, _ in self.hops] + [self.hops[-1][1]]
        return record


def _ready_groups(tracks: list[_Track]) -> dict[tuple, list[_Track]]:
    """Unfinished tracks grouped by their next hop, for the scan pairs no other track still waits to use.

    Chains are monotone (forward hops follow the chain, backward hops the reversed chain), so the
    scan pairs form an acyclic dependency graph and some scan pair is always free; if that ever
    failed, every waiting hop is taken (hop-level order) so that the loop always progresses.
    """
    waiting: dict[tuple, list[_Track]] = {}
    later: set[tuple] = set()
    for track in tracks:
        if track.done:
            continue
        waiting.setdefault(track.hops[track.step], []).append(track)
        later.update(track.hops[track.step + 1:])
    free = {hop: group for hop, group in waiting.items() if hop not in later}
    return free or waiting
