"""The input of a tracking prediction: a folder of scans plus a raw-format pairs file, validated.

Layout accepted by ``lesionnet_predict -i IN``:

* ``IN/{scan_id}_0000{ending}`` — one file per scan (channel 0; ``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``);
* the pairs: ``--pairs FILE``, else ``IN/pairs.json``, else, when IN is a raw dataset's
  ``imagesTs``/``imagesTr`` folder, the dataset's ``pairsTs.json``/``pairsTr.json``.

Everything is checked before any work starts (header-only reads): every scan a pair names exists
and reads, and every source (and known target) center lies inside its scan. Each problem raises a
:class:`TrackingInputError` that names the pair and the file — except an existing scan that cannot
be read, which (with ``skip_unreadable=True``) is reported in ``TrackingInput.skipped`` together with
the pairs that need it, so that the other pairs can still be predicted.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lesionnet.datasets.geometry import Geometry, zyx_to_xyz
from lesionnet.datasets.image_io import (
    SUPPORTED_FILE_ENDINGS,
    ImageReadError,
    read_geometry,
)
from lesionnet.datasets.raw_format import TrackingPair, load_pairs

CHANNEL_SUFFIX = "_0000"


class TrackingInputError(ValueError):
    """The input folder or pairs file cannot be used; the message names the pair and the file."""


@dataclass
class TrackingInput:
    """Validated tracking input: scan files and geometries by scan id, and the pairs to predict."""

    folder: Path
    pairs_path: Path
    pairs: list[TrackingPair]
    scan_paths: dict[str, Path]
    geometries: dict[str, Geometry]
    skipped: dict[str, str] = field(default_factory=dict)  # pair_id -> why it cannot be predicted

    def scan_pairs(self) -> dict[tuple[str, str], list[TrackingPair]]:
        """Pairs grouped by (source, target) scan, in first-appearance order: one registration per group."""
        groups: dict[tuple[str, str], list[TrackingPair]] = {}
        for pair in self.pairs:
            groups.setdefault((pair.source, pair.target), []).append(pair)
        return groups


def find_scan_files(folder: Path) -> dict[str, Path]:
    """``{scan_id: path}`` of the channel-0 files in ``folder``."""
    scans: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        for ending in SUPPORTED_FILE_ENDINGS:
            if path.name.endswith(CHANNEL_SUFFIX + ending):
                scans[path.name[: -len(CHANNEL_SUFFIX + ending)]] = path
                break
    return scans


def default_pairs_path(folder: Path) -> Path:
    """Where the pairs file of an input folder is expected (see the module docstring)."""
    if (folder / "pairs.json").is_file():
        return folder / "pairs.json"
    if folder.name in ("imagesTs", "imagesTr"):
        candidate = folder.parent / f"pairs{folder.name[len('images'):]}.json"
        if candidate.is_file():
            return candidate
    raise TrackingInputError(f"{folder}: no pairs file found. Put the lesion pairs in {folder / 'pairs.json'} "
                             "(raw format, see documentation/dataset_format.md) or pass --pairs FILE.")


def load_tracking_input(folder: str | os.PathLike, pairs_path: str | os.PathLike | None = None,
                        skip_unreadable: bool = False) -> TrackingInput:
    """Read and validate a tracking input folder; raises :class:`TrackingInputError` on any problem.

    With ``skip_unreadable``, pairs whose scan exists but cannot be read are left out of
    ``pairs`` and listed in ``skipped`` (pair id → reason) instead of raising.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise TrackingInputError(f"{folder}: input folder does not exist.")
    pairs_path = Path(pairs_path) if pairs_path is not None else default_pairs_path(folder)
    try:
        pairs = load_pairs(pairs_path)
    except (ValueError, FileNotFoundError) as e:
        raise TrackingInputError(str(e)) from e
    if not pairs:
        raise TrackingInputError(f"{pairs_path}: holds no pairs.")
    scan_paths = find_scan_files(folder)
    geometries: dict[str, Geometry] = {}
    unreadable: dict[str, str] = {}
    skipped: dict[str, str] = {}
    usable: list[TrackingPair] = []
    for pair in pairs:
        for role, scan_id in (("source", pair.source), ("target", pair.target)):
            if scan_id in geometries or scan_id in unreadable:
                continue
            if scan_id not in scan_paths:
                raise TrackingInputError(
                    f"{pairs_path}: pair '{pair.pair_id}' names {role} scan '{scan_id}', but {folder} has no "
                    f"file {scan_id}{CHANNEL_SUFFIX}<ending>. Add the scan or remove the pair.")
            try:
                geometries[scan_id] = read_geometry(scan_paths[scan_id])
            except ImageReadError as e:
                if not skip_unreadable:
                    raise TrackingInputError(f"pair '{pair.pair_id}': {e}") from e
                unreadable[scan_id] = str(e)
        bad_scans = [s for s in (pair.source, pair.target) if s in unreadable]
        if bad_scans:
            skipped[pair.pair_id] = unreadable[bad_scans[0]]
            continue
        usable.append(pair)
        _check_center(pair, "source", pair.source_center_zyx, geometries[pair.source], scan_paths[pair.source])
        if pair.target_center_zyx is not None:
            _check_center(pair, "target", pair.target_center_zyx, geometries[pair.target], scan_paths[pair.target])
        if not pair.source_radius_mm > 0:
            raise TrackingInputError(f"{pairs_path}: pair '{pair.pair_id}' has source_radius_mm "
                                     f"{pair.source_radius_mm}; radii must be positive (mm).")
    return TrackingInput(folder, pairs_path, usable, {s: scan_paths[s] for s in geometries}, geometries, skipped)


def _check_center(pair: TrackingPair, role: str, center_zyx, geometry: Geometry, path: Path) -> None:
    if not geometry.contains_voxel(center_zyx):
        raise TrackingInputError(
            f"pair '{pair.pair_id}': {role}_center {list(zyx_to_xyz(center_zyx))} (x, y, z voxel index) lies "
            f"outside {path} whose size is {list(geometry.shape_xyz)} (x, y, z). Check the pair's coordinates "
            "(they must be voxel indices in x, y, z order of that scan).")
