"""Tracking pair checks: ``pairs{Tr,Ts}.json`` of a tracking dataset.

:class:`PairChecks` parses each pairs file (records, unique pair ids, radii positive and finite, in mm),
checks that both scans of every pair exist in the pairs file's own split, and, once the scans have
been read, that every center lies inside its scan. Centers are continuous voxel indices, ``[x, y, z]``
(x = column, y = row, z = slice) in the pairs file and in the messages, ``(z, y, x)`` in
:class:`~lesionnet.datasets.raw_format.TrackingPair`, checked with
:meth:`~lesionnet.datasets.geometry.Geometry.contains_voxel` against the scan's channel 0 geometry.
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from lesionnet.datasets.geometry import zyx_to_xyz
from lesionnet.datasets.raw_format import DatasetFormatError, TrackingPair, pair_from_json
from lesionnet.datasets.verification.problems import ProblemCollector, first_line, list_some
from lesionnet.utils.files import load_json


class PairChecks(ProblemCollector):
    """Checks of the tracking pairs files; centers need :attr:`geometries` filled by the scan checks."""

    def _load_pairs(self, split: str, has_scans: bool) -> list[TrackingPair]:
        path = self.folder / f"pairs{split}.json"
        if not path.is_file():
            if split == "Tr" and has_scans:
                self.add(path, "missing although imagesTr/ holds scans",
                         "write the training lesion pairs to pairsTr.json (see documentation/dataset_format.md)")
            return []
        pairs = self._load_pairs_file(path)
        if split == "Tr":
            self._check_training_targets(path, pairs)
        return pairs

    def _load_pairs_file(self, path: Path) -> list[TrackingPair]:
        """The parseable pairs of a raw-format pairs file; every broken record, radius and duplicate id reported."""
        try:
            records = load_json(path)
        except (ValueError, OSError) as e:
            self.add(path, f"not valid JSON ({first_line(e)})", "fix the syntax or regenerate the file")
            return []
        if not isinstance(records, list):
            self.add(path, f"expected a JSON list of pairs, got {type(records).__name__}",
                     "write a list of pair objects [{\"pair_id\": ..., \"source\": ..., ...}, ...]")
            return []
        pairs = []
        for i, record in enumerate(records):
            try:
                pair = pair_from_json(record, f"pair [{i}]")
            except DatasetFormatError as e:
                self.add(path, str(e).rstrip("."), "fix the record (see documentation/dataset_format.md)")
                continue
            pairs.append(pair)
            self._check_radius(path, pair, "source", pair.source_radius_mm)
            if pair.target_radius_mm is not None:
                self._check_radius(path, pair, "target", pair.target_radius_mm)
        counts = Counter(p.pair_id for p in pairs)
        for pair_id, n in counts.items():
            if n > 1:
                self.add(path, f"pair id '{pair_id}' appears {n} times", "give every pair a unique pair_id")
        return pairs

    def _check_training_targets(self, path: Path, pairs: list) -> None:
        """Training pairs need the truth (planning and training would otherwise leave them out)."""
        missing = [p.pair_id for p in pairs if p.target_center_zyx is None or p.target_radius_mm is None]
        if missing:
            self.add(path, f"training pair(s) {list_some(missing)} lack target_center or target_radius_mm",
                     "add the follow-up lesion's center and radius, or move the pairs to pairsTs.json")

    def _check_radius(self, path: Path, pair: TrackingPair, which: str, radius_mm: float) -> None:
        if not math.isfinite(radius_mm) or radius_mm <= 0:
            self.add(path, f"pair {pair.pair_id}: {which}_radius_mm is {radius_mm}, must be positive and finite",
                     "set the lesion radius in mm (DLS: max(recist diameter) / 2 * spacing x)")

    def _check_pair_references(self, split: str, pairs: list, on_disk: dict) -> None:
        path = self.folder / f"pairs{split}.json"
        other = "Ts" if split == "Tr" else "Tr"
        ending = self.meta["file_ending"]
        reported: set[str] = set()
        for pair in pairs:
            for scan_id in (pair.source, pair.target):
                if scan_id in on_disk[split] or scan_id in reported:
                    continue  # one problem per missing scan, not per pair
                reported.add(scan_id)
                users = [p.pair_id for p in pairs if scan_id in (p.source, p.target)]
                expected = self.folder / f"images{split}" / f"{scan_id}_0000{ending}"
                if scan_id in on_disk[other]:
                    self.add(path, f"scan '{scan_id}' of pair(s) {list_some(users)} is in images{other}/, "
                             f"not images{split}/",
                             f"pairs in pairs{split}.json must reference images{split}/ scans: "
                             "move the scan or the pair")
                else:
                    self.add(path, f"scan '{scan_id}' of pair(s) {list_some(users)} not found ({expected})",
                             "add the scan or remove the pairs that reference it")

    def _check_pair_centers(self, split: str, pairs: list) -> None:
        geometries = self.geometries
        self._check_centers(self.folder / f"pairs{split}.json", pairs, lambda scan_id: geometries.get((split, scan_id)))

    def _check_centers(self, path: Path, pairs: list, geometry_of) -> None:
        """Every center of ``pairs`` (from the pairs file ``path``) inside its scan; ``geometry_of(scan_id)``
        is the scan's Geometry, or None when it is missing or unreadable (already reported)."""
        for pair in pairs:
            checks = [("source", pair.source, pair.source_center_zyx)]
            if pair.target_center_zyx is not None:
                checks.append(("target", pair.target, pair.target_center_zyx))
            for which, scan_id, center_zyx in checks:
                geometry = geometry_of(scan_id)
                if geometry is None:
                    continue  # scan missing or unreadable: already reported
                if not geometry.contains_voxel(center_zyx):
                    size = "×".join(str(v) for v in geometry.shape_xyz)
                    self.add(path, f"pair {pair.pair_id}: {which}_center {list(zyx_to_xyz(center_zyx))} lies outside "
                             f"scan '{scan_id}' (size x×y×z = {size})",
                             "centers are voxel indices [x=column, y=row, z=slice] of the scan; fix the center "
                             "or its axis order")


def require_usable_training_pairs(pairs_path: Path, pairs: list, scan_ids, dataset_name: str) -> None:
    """Raise :class:`DatasetFormatError` naming ``pairs_path`` when a training pair names a scan that is not
    in ``scan_ids`` (the ``imagesTr`` scans) or has no target: planning and preprocessing never leave
    such a pair out silently. ``lesionnet_plan_and_preprocess`` refuses them earlier, with every problem."""
    scans = set(scan_ids)
    bad = [p.pair_id for p in pairs if p.source not in scans or p.target not in scans or not p.has_target]
    if bad:
        raise DatasetFormatError(f"{pairs_path}: training pair(s) {list_some(bad)} name a scan missing from "
                                 f"imagesTr/ or have no target_center. Run lesionnet_verify_dataset -d {dataset_name} "
                                 "for the list, then add the scans or remove the pairs.")
