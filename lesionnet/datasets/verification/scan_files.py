"""The image checks of :mod:`.scans` on a detection prediction input: a folder of scans, no pairs.

Each scan is one ``{scan_id}_0000{ending}`` file; every one is read in full once (complete, finite, at
least :data:`~.limits.MIN_SCAN_SIZE_VOXELS` voxels per axis), before any work starts.
"""
from __future__ import annotations

import os
from pathlib import Path

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.verification.problems import Problem
from lesionnet.datasets.verification.scans import ScanChecks


class _ScanFileChecks(ScanChecks):
    def check(self, scan_paths: dict) -> dict[str, Geometry]:
        geometries = {}
        for scan_id, path in scan_paths.items():
            geometry = self._check_image_file(Path(path))
            if geometry is not None:
                geometries[scan_id] = geometry
        return geometries


def check_scan_files(folder: str | os.PathLike, scan_paths: dict,
                     check_voxels: bool = True) -> tuple[dict[str, Geometry], list[Problem]]:
    """``(geometries of the readable scans, problems)`` of the scans ``{scan_id: file}`` of ``folder``."""
    checker = _ScanFileChecks(Path(folder), check_voxels=check_voxels, progress=False)
    geometries = checker.check(dict(scan_paths))
    return geometries, checker.problems


__all__ = ["check_scan_files"]
