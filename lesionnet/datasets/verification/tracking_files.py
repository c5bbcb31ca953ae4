"""The input check of a tracking prediction: a pairs file and the scan files it names, outside a raw dataset.

``lesionnet_predict -i IN`` reads ``IN/{scan_id}_0000{ending}`` files and a raw-format pairs file (see
:mod:`lesionnet.inference.tracking_input`). :func:`check_tracking_files` runs on them the checks that
:func:`lesionnet.datasets.verify.verify_dataset` runs on a dataset, through the same check classes:
every pair record (ids unique, radii positive), every scan a pair names present and readable in full
(voxel data complete, no NaN/inf voxels, spacing positive, at least the size the registration needs,
see :mod:`.limits`), and every center inside its scan (``[x, y, z]`` voxel indices in the pairs file).
It returns every problem found; the caller decides to refuse.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.raw_format import TrackingPair
from lesionnet.datasets.verification.limits import MIN_TRACKING_EXTENT_MM
from lesionnet.datasets.verification.pairs import PairChecks
from lesionnet.datasets.verification.problems import WARNING, list_some
from lesionnet.datasets.verification.scans import ScanChecks


@dataclass
class TrackingFilesReport:
    """What :func:`check_tracking_files` found.

    Attributes:
        pairs: the pairs that parse (in file order).
        geometries: scan id → Geometry of every readable scan that was checked.
        problems: every :class:`~.problems.Problem` found (errors and warnings).
    """

    pairs: list = field(default_factory=list)
    geometries: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)

    @property
    def errors(self) -> list:
        return [p for p in self.problems if p.is_error]


class _TrackingFileChecks(PairChecks, ScanChecks):
    """Pair and scan checks of a prediction input folder (one scan file per scan id)."""

    def check(self, pairs_path: Path, scan_paths: dict, all_scans: bool) -> TrackingFilesReport:
        self.min_extent_mm = MIN_TRACKING_EXTENT_MM
        if not pairs_path.is_file():
            self.add(pairs_path, "pairs file not found", "pass the lesion pairs with --pairs FILE (raw format, see "
                     "documentation/dataset_format.md)")
            return TrackingFilesReport(problems=self.problems)
        pairs: list[TrackingPair] = self._load_pairs_file(pairs_path)
        if not pairs and not self.problems:
            self.add(pairs_path, "holds no pairs",
                     "list the lesion pairs to track (see documentation/dataset_format.md)")
        named = list(dict.fromkeys(s for p in pairs for s in (p.source, p.target)))
        for scan_id in named:
            if scan_id not in scan_paths:
                users = [p.pair_id for p in pairs if scan_id in (p.source, p.target)]
                self.add(pairs_path, f"scan '{scan_id}' of pair(s) {list_some(users)} not found "
                         f"({self.folder / (scan_id + '_0000')}<ending>)",
                         "add the scan file to the input folder or remove the pairs that name it")
        todo = [s for s in named if s in scan_paths]
        if all_scans:
            unused = sorted(set(scan_paths) - set(named))
            for scan_id in unused:
                self.add(scan_paths[scan_id], f"scan '{scan_id}' is named by no pair",
                         "remove it from the input folder or add its pairs", WARNING)
            todo += unused
        geometries: dict[str, Geometry] = {}
        for scan_id in todo:
            geometry = self._check_image_file(Path(scan_paths[scan_id]))
            if geometry is not None:
                geometries[scan_id] = geometry
        self._check_centers(pairs_path, pairs, geometries.get)
        return TrackingFilesReport(pairs, geometries, self.problems)


def check_tracking_files(folder: str | os.PathLike, pairs_path: str | os.PathLike, scan_paths: dict,
                         check_voxels: bool = True, all_scans: bool = False) -> TrackingFilesReport:
    """Every problem of a tracking prediction input (see the module docstring).

    Args:
        folder: the input folder (named in messages about missing scans).
        pairs_path: the raw-format pairs file.
        scan_paths: scan id → channel-0 file of the scans in ``folder``.
        check_voxels: read the voxel data (complete, finite); ``False`` reads headers only.
        all_scans: also check the scans no pair names (and warn about them).
    """
    checker = _TrackingFileChecks(Path(folder), check_voxels=check_voxels, progress=False)
    return checker.check(Path(pairs_path), dict(scan_paths), all_scans)


__all__ = ["TrackingFilesReport", "check_tracking_files"]
