"""The input of a tracking prediction: a folder of scans plus a raw-format pairs file, validated.

Layout accepted by ``lesionnet_predict -i IN``:

* ``IN/{scan_id}_0000{ending}`` — one file per scan (channel 0; ``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``);
* the pairs: ``--pairs FILE``, else ``IN/pairs.json``, else, when IN is a raw dataset's
  ``imagesTs``/``imagesTr`` folder, the dataset's ``pairsTs.json``/``pairsTr.json``.

Everything is checked before any work starts, by the checks ``lesionnet_verify_dataset`` runs
(:mod:`lesionnet.datasets.verification.tracking_files`): every pair record, every scan a pair names
present and readable in full (voxel data complete, no NaN/inf, positive spacing, large enough for
the registration), every center inside its scan. One :class:`TrackingInputError` lists every problem
found, each with the file, what is wrong and what to do; no pair is left out silently.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.image_io import SUPPORTED_FILE_ENDINGS
from lesionnet.datasets.raw_format import TrackingPair
from lesionnet.datasets.verification.problems import format_problems
from lesionnet.datasets.verification.tracking_files import check_tracking_files

logger = logging.getLogger(__name__)

CHANNEL_SUFFIX = "_0000"


class TrackingInputError(ValueError):
    """The input folder or pairs file cannot be used; the message names the file, the problem and the fix.

    Attributes:
        problems: every :class:`~lesionnet.datasets.verification.problems.Problem` found (empty when
            the error is about the folder or the pairs file as a whole); ``str()`` lists them.
    """

    def __init__(self, headline: str, problems: list | None = None):
        self.problems = list(problems or [])
        super().__init__(format_problems(headline, self.problems) if self.problems else headline)


@dataclass
class TrackingInput:
    """Validated tracking input: scan files and geometries by scan id, and the pairs to predict."""

    folder: Path
    pairs_path: Path
    pairs: list[TrackingPair]
    scan_paths: dict[str, Path]
    geometries: dict[str, Geometry]

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
                        strict: bool = False, check_voxels: bool = True) -> TrackingInput:
    """Read and check a tracking input folder; raises :class:`TrackingInputError` listing every problem.

    This is the input check of ``lesionnet_predict`` (the same checks as ``lesionnet_verify_dataset``,
    :func:`lesionnet.datasets.verification.tracking_files.check_tracking_files`): it runs before any
    work starts and reads each named scan's voxels once.

    Args:
        folder: the input folder of ``{scan_id}_0000{ending}`` files.
        pairs_path: the pairs file (default: see :func:`default_pairs_path`).
        strict: also check the scans no pair names, and refuse on warnings too.
        check_voxels: read the voxel data (complete, finite); ``False`` reads headers only.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise TrackingInputError(f"{folder}: input folder does not exist.")
    pairs_path = Path(pairs_path) if pairs_path is not None else default_pairs_path(folder)
    scan_paths = find_scan_files(folder)
    report = check_tracking_files(folder, pairs_path, scan_paths, check_voxels=check_voxels, all_scans=strict)
    refused = report.problems if strict else report.errors
    if refused:
        n = len(refused)
        raise TrackingInputError(f"{pairs_path}: {n} problem{'s' if n != 1 else ''} in the input of the prediction, "
                                 "nothing was predicted. Fix each and run again:", refused)
    for problem in report.problems:
        logger.warning("%s", problem)
    named = {s for p in report.pairs for s in (p.source, p.target)}
    return TrackingInput(folder, pairs_path, report.pairs, {s: scan_paths[s] for s in named},
                         {s: report.geometries[s] for s in named})
