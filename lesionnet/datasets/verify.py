"""Check a raw dataset before planning: every problem found, each with the file, what is wrong and what to do.

:func:`verify_dataset` walks a ``Dataset{ID}_{Name}/`` folder (see ``lesionnet.datasets.raw_format``)
and returns a list of :class:`Problem`. It does not stop at the first problem; only an unusable
``dataset.json`` ends the check early, because nothing else can be interpreted without it.

What is checked:

* ``dataset.json``: present, valid JSON, required keys, ``task``, ``file_ending``, ``channel_names``;
  ``numTraining`` against the number of ``imagesTr`` scans (warning).
* every scan: all channels ``_0000``, ``_0001``, ... present and readable, all channels on the same
  grid, spacing positive and finite (for NIfTI also in the raw header, because SimpleITK silently
  replaces a zero or NaN ``pixdim`` by 1 mm), voxel data complete (NIfTI files of every pixel type are
  streamed raw and their decompressed size compared with the header, because SimpleITK reads the
  missing part of a truncated integer NIfTI file as 0), no NaN/inf voxels (float NIfTI files read from the
  raw bytes, because ITK up to 5.4 silently reads NaN/inf NIfTI voxels as 0), at least
  :data:`MIN_SCAN_SIZE_VOXELS` voxels per axis and, for tracking, :data:`MIN_TRACKING_EXTENT_MM` mm
  per axis (what the affine registration needs; see :mod:`lesionnet.datasets.verification.limits`).
* tracking: ``pairs{Tr,Ts}.json`` parse, pair ids unique, radii positive and finite, training pairs
  have a target, both scans of a pair exist in the pairs file's own split, centers lie inside their scans.
* detection: every ``imagesTr`` scan has a ``labelsTr`` mask on the same grid (shape, spacing,
  origin, direction) holding non-negative integers; masks without an image are reported.

Each image file's voxels are read once (headers may be read twice; float NIfTI masks twice). With
``check_voxels=False`` only headers are read (:func:`~lesionnet.datasets.image_io.read_geometry`): much
faster on large datasets, but NaN voxels, mask values and truncated voxel data are not checked.

:func:`check_dataset_input` is the same check as the input gate of ``lesionnet_plan_and_preprocess``:
by default only the training split, raising :class:`InputCheckError` that lists every error.

This module holds the public entry points and the driver that runs the checks in order; the checks
themselves live in :mod:`lesionnet.datasets.verification` (``problems``: :class:`Problem`,
:class:`VerifyReport`; ``nifti_raw``: raw NIfTI header and voxel reading; ``layout``: ``dataset.json``
and file names; ``scans``; ``masks``; ``pairs``), whose public names are re-exported here.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from tqdm import tqdm

from lesionnet.datasets.raw_format import DATASET_FOLDER_PATTERN, SPLITS, TrackingPair
from lesionnet.datasets.verification.layout import DatasetLayoutChecks
from lesionnet.datasets.verification.limits import MIN_SCAN_SIZE_VOXELS, MIN_TRACKING_EXTENT_MM
from lesionnet.datasets.verification.masks import MaskChecks
from lesionnet.datasets.verification.nifti_raw import (
    NiftiHeader,
    nifti_header_spacing,
    nifti_nonfinite_voxels,
    read_nifti_header,
    scan_nifti_voxels,
)
from lesionnet.datasets.verification.pairs import PairChecks
from lesionnet.datasets.verification.problems import ERROR, WARNING, InputCheckError, Problem, VerifyReport

__all__ = [
    "ERROR",
    "MIN_SCAN_SIZE_VOXELS",
    "MIN_TRACKING_EXTENT_MM",
    "WARNING",
    "InputCheckError",
    "NiftiHeader",
    "Problem",
    "VerifyReport",
    "nifti_header_spacing",
    "nifti_nonfinite_voxels",
    "read_nifti_header",
    "scan_nifti_voxels",
    "check_dataset_input",
    "verify_dataset",
    "verify_dataset_report",
]

logger = logging.getLogger(__name__)


def check_dataset_input(folder: str | os.PathLike, whole_dataset: bool = False, strict: bool = False,
                        progress: bool = True) -> VerifyReport:
    """The input check of ``lesionnet_plan_and_preprocess``: raise :class:`InputCheckError` listing every problem.

    Runs the same checks as :func:`verify_dataset_report`, voxels included (each file read once; a
    truncated file, NaN/inf voxels, a scan too small for the registration are errors), before any
    work starts.

    Args:
        folder: the ``Dataset{ID}_{Name}`` folder.
        whole_dataset: check ``imagesTs``/``pairsTs.json`` too; by default only what planning and
            preprocessing read (``dataset.json``, ``imagesTr``, ``pairsTr.json`` or ``labelsTr``).
        strict: the whole dataset, and warnings refuse the input too.
        progress: tqdm progress bar over the scans.

    Returns:
        the report (warnings only, unless ``strict``) when the input is usable.
    """
    splits = SPLITS if (whole_dataset or strict) else ("Tr",)
    report = _Verifier(Path(folder), check_voxels=True, progress=progress, splits=splits).run()
    refused = report.problems if strict else report.errors
    if refused:
        n = len(refused)
        raise InputCheckError(f"{report.folder}: {n} problem{'s' if n != 1 else ''} in the input "
                              f"({report.num_scans} scans, {report.num_pairs} pairs checked); nothing was done. "
                              "Fix each and run again:", refused)
    for problem in report.warnings:
        logger.warning("%s", problem)
    return report


def verify_dataset(folder: str | os.PathLike, check_voxels: bool = True, progress: bool = True) -> list[Problem]:
    """All problems of the raw dataset in ``folder`` (empty list: the dataset is fine).

    Args:
        folder: the ``Dataset{ID}_{Name}`` folder.
        check_voxels: read the voxel data (NaN/inf, mask values, truncated files); ``False`` reads
            headers only.
        progress: show a tqdm progress bar over the scans.
    """
    return verify_dataset_report(folder, check_voxels=check_voxels, progress=progress).problems


def verify_dataset_report(folder: str | os.PathLike, check_voxels: bool = True, progress: bool = True) -> VerifyReport:
    """Like :func:`verify_dataset`, also counting the scans and pairs that were checked."""
    return _Verifier(Path(folder), check_voxels=check_voxels, progress=progress).run()


class _Verifier(DatasetLayoutChecks, PairChecks, MaskChecks):
    """Runs every check of one dataset in a fixed order (the order of the problems in the report);
    ``splits`` limits the scans and pairs files looked at (``("Tr",)``: what training reads)."""

    def __init__(self, folder: Path, check_voxels: bool, progress: bool, splits: tuple = SPLITS):
        super().__init__(folder, check_voxels, progress)
        self.splits = tuple(splits)

    def run(self) -> VerifyReport:
        if not self.folder.is_dir():
            self.add(self.folder, "dataset folder does not exist",
                     "check the path, or create the dataset (e.g. lesionnet_make_synthetic -d 501)")
            return self.report(0)
        if not DATASET_FOLDER_PATTERN.match(self.folder.name):
            self.add(self.folder, "folder name is not of the form Dataset{ID}_{Name} (three-digit id)",
                     "rename it, e.g. Dataset501_MyData, so that -d 501 can find it", WARNING)
        if not self._check_dataset_json():
            return self.report(0)

        ending = self.meta["file_ending"]
        num_channels = len(self.meta["channel_names"])
        task = self.meta["task"]
        if task == "tracking":
            self.min_extent_mm = MIN_TRACKING_EXTENT_MM

        # scans on disk, per split
        on_disk = {split: self._scan_files(split, ending, num_channels) for split in SPLITS}
        if not any(on_disk[split] for split in self.splits):
            self.add(self.folder / "imagesTr", "no scans found in imagesTr/ or imagesTs/",
                     f"put images there named {{scan_id}}_0000{ending} (one file per channel)")
        splits = self.splits

        pairs_by_split: dict[str, list[TrackingPair]] = {}
        if task == "tracking":
            for split in splits:
                pairs_by_split[split] = self._load_pairs(split, bool(on_disk[split]))
            if not any(self.folder.joinpath(f"pairs{s}.json").is_file() for s in splits):
                self.add(self.folder / "pairsTr.json", "a tracking dataset needs pairsTr.json and/or pairsTs.json",
                         "write the lesion pairs (see documentation/dataset_format.md)")
            self.num_pairs = sum(len(p) for p in pairs_by_split.values())
            for split in splits:
                self._check_pair_references(split, pairs_by_split[split], on_disk)
        else:
            self._check_label_files(ending, on_disk["Tr"])

        # read every scan once
        todo = [(split, scan_id) for split in splits for scan_id in sorted(on_disk[split])]
        bar = tqdm(todo, desc="verifying scans", unit="scan", disable=not self.progress or not todo)
        for split, scan_id in bar:
            self._check_scan(split, scan_id, on_disk[split][scan_id], ending, num_channels)
            if task == "detection" and split == "Tr":
                self._check_scan_mask(split, scan_id, ending)

        if task == "tracking":
            for split in splits:
                self._check_pair_centers(split, pairs_by_split[split])

        self._check_num_training(task, len(on_disk["Tr"]), len(pairs_by_split.get("Tr", [])))
        return self.report(len(todo))
