"""Dataset id ↔ folder: ``-d 501`` or ``-d Dataset501_Name`` resolves to ``$lesionnet_raw/Dataset501_Name``."""
from __future__ import annotations

import os
from pathlib import Path

from lesionnet import paths
from lesionnet.datasets.raw_format import DATASET_FOLDER_PATTERN, RawDataset


class DatasetNotFoundError(LookupError):
    """No dataset, or more than one, matches the identifier; the message says what to do."""


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``Dataset{id:03d}_{name}``; the id must be 1..999."""
    if not 0 < int(dataset_id) < 1000:
        raise ValueError(f"dataset id must be between 1 and 999, got {dataset_id}")
    return f"Dataset{int(dataset_id):03d}_{name}"


def parse_dataset_id(identifier: str | int) -> int | None:
    """The numeric id of ``501``, ``"501"`` or ``"Dataset501_Name"``; None for other strings."""
    if isinstance(identifier, int):
        return identifier
    text = str(identifier).strip()
    if text.isdigit():
        return int(text)
    match = DATASET_FOLDER_PATTERN.match(text)
    return int(match.group(1)) if match else None


def find_dataset_folder(identifier: str | int, root: str | os.PathLike | None = None) -> Path:
    """Resolve a dataset id or full folder name inside ``root`` (default: ``$lesionnet_raw``).

    Raises :class:`DatasetNotFoundError` when no folder, or more than one, matches.
    """
    root = Path(root) if root is not None else paths.raw_dir()
    text = str(identifier).strip()
    if not root.is_dir():
        raise DatasetNotFoundError(f"Raw data folder {root} does not exist. Set lesionnet_raw or create "
                                   "a dataset there (e.g. lesionnet_make_synthetic -d 501).")
    if DATASET_FOLDER_PATTERN.match(text):
        folder = root / text
        if folder.is_dir():
            return folder
        raise DatasetNotFoundError(f"No dataset folder {folder}. Available: {_available(root)}.")
    dataset_id = parse_dataset_id(text)
    if dataset_id is None:
        raise DatasetNotFoundError(f"'{identifier}' is neither a dataset id (e.g. 501) nor a folder name "
                                   "(e.g. Dataset501_SynthLesionTracking).")
    prefix = f"Dataset{dataset_id:03d}_"
    matches = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(prefix))
    if not matches:
        raise DatasetNotFoundError(f"No dataset with id {dataset_id} in {root}. Available: {_available(root)}. "
                                   "Create one, e.g. lesionnet_make_synthetic -d 501.")
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches)
        raise DatasetNotFoundError(f"Several datasets have id {dataset_id} in {root}: {names}. "
                                   "Pass the full folder name instead of the id, or rename one.")
    return matches[0]


def resolve_raw_dataset(dataset) -> RawDataset:
    """A :class:`RawDataset` from an id (``501``), a folder name, a path or a RawDataset."""
    if isinstance(dataset, RawDataset):
        return dataset
    if isinstance(dataset, (str, os.PathLike)) and Path(dataset).is_dir():
        return RawDataset(dataset)
    return RawDataset(find_dataset_folder(dataset))


def _available(root: Path) -> str:
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and DATASET_FOLDER_PATTERN.match(p.name))
    return ", ".join(names) if names else "none"
