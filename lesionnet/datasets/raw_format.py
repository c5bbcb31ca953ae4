"""The raw dataset format (see ``documentation/dataset_format.md``): schema, loading and validation.

A raw dataset is a folder ``Dataset{ID:03d}_{Name}/`` holding

* ``dataset.json`` — ``name``, ``task`` (``"tracking"`` | ``"detection"``), ``channel_names``
  (``{"0": "CT"}``), ``file_ending``, ``numTraining``, optional ``description``, ``licence``;
* ``imagesTr/{scan_id}_{channel:04d}{file_ending}`` (and ``imagesTs/``);
* tracking: ``pairsTr.json`` / ``pairsTs.json`` — a list of directed lesion pairs;
* detection: ``labelsTr/{scan_id}{file_ending}`` — instance masks (0 background, 1..N lesions).

Pair centers are continuous voxel indices in ITK ``(x, y, z)`` order of the referenced scan in the
files (as in the DLS benchmark); :class:`TrackingPair` holds them in lesionnet's ``(z, y, x)`` order,
converted when a pairs file is read or written.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from lesionnet.datasets.geometry import xyz_to_zyx, zyx_to_xyz
from lesionnet.datasets.image_io import SUPPORTED_FILE_ENDINGS
from lesionnet.utils.files import load_json, write_json
from lesionnet.utils.validation import finite_numbers

TASKS = ("tracking", "detection")
SPLITS = ("Tr", "Ts")
DATASET_FOLDER_PATTERN = re.compile(r"^Dataset(\d{3})_(.+)$")
REQUIRED_DATASET_JSON_KEYS = ("name", "task", "channel_names", "file_ending", "numTraining")


class DatasetFormatError(ValueError):
    """A raw dataset file breaks the format; the message names the file and what to do."""


@dataclass(frozen=True)
class TrackingPair:
    """One directed lesion pair: a lesion in ``source`` to be found in ``target``.

    Centers are continuous voxel indices ``(z, y, x)`` of the scan they refer to (the pairs files
    store ``(x, y, z)``; :func:`pair_from_json` and :meth:`to_json` convert); radii in mm.
    ``target_center_zyx`` / ``target_radius_mm`` are ``None`` when the truth is unknown (inference).
    """

    pair_id: str
    source: str
    target: str
    source_center_zyx: tuple
    source_radius_mm: float
    target_center_zyx: tuple | None = None
    target_radius_mm: float | None = None
    patient: str | None = None

    @property
    def patient_id(self) -> str:
        """Patient the pair belongs to: the ``patient`` field, else the scan id up to its first ``_``."""
        return self.patient if self.patient else self.source.split("_")[0]

    @property
    def has_target(self) -> bool:
        return self.target_center_zyx is not None

    def to_json(self) -> dict:
        """The pair as a raw-format record (centers ``[x, y, z]``)."""
        d = {
            "pair_id": self.pair_id,
            "source": self.source,
            "target": self.target,
            "source_center": [float(v) for v in zyx_to_xyz(self.source_center_zyx)],
            "source_radius_mm": float(self.source_radius_mm),
        }
        if self.target_center_zyx is not None:
            d["target_center"] = [float(v) for v in zyx_to_xyz(self.target_center_zyx)]
        if self.target_radius_mm is not None:
            d["target_radius_mm"] = float(self.target_radius_mm)
        if self.patient:
            d["patient"] = self.patient
        return d


def _triple(value, what: str, where: str) -> tuple:
    return finite_numbers(value, 3, what, where, DatasetFormatError)


def pair_from_json(d: dict, where: str) -> TrackingPair:
    """Parse one pair record; ``where`` (file + index) is used in error messages."""
    if not isinstance(d, dict):
        raise DatasetFormatError(f"{where}: each pair must be a JSON object, got {type(d).__name__}.")
    for key in ("pair_id", "source", "target", "source_center", "source_radius_mm"):
        if key not in d:
            raise DatasetFormatError(f"{where}: pair lacks the key '{key}'.")
    where = f"{where} (pair {d['pair_id']})"
    try:
        source_radius = float(d["source_radius_mm"])
        target_radius = None if d.get("target_radius_mm") is None else float(d["target_radius_mm"])
    except (TypeError, ValueError):
        raise DatasetFormatError(f"{where}: radii must be numbers in mm.") from None
    target_center = d.get("target_center")
    return TrackingPair(
        pair_id=str(d["pair_id"]),
        source=str(d["source"]),
        target=str(d["target"]),
        source_center_zyx=xyz_to_zyx(_triple(d["source_center"], "source_center", where)),
        source_radius_mm=source_radius,
        target_center_zyx=None if target_center is None else xyz_to_zyx(_triple(target_center, "target_center",
                                                                                 where)),
        target_radius_mm=target_radius,
        patient=d.get("patient"),
    )


def load_pairs(path: str | os.PathLike) -> list[TrackingPair]:
    """Read a ``pairs*.json`` file (a list of pair records); duplicate pair ids are an error."""
    path = Path(path)
    records = load_json(path)
    if not isinstance(records, list):
        raise DatasetFormatError(f"{path}: expected a JSON list of pairs, got {type(records).__name__}.")
    pairs = [pair_from_json(r, f"{path}[{i}]") for i, r in enumerate(records)]
    seen: set[str] = set()
    for p in pairs:
        if p.pair_id in seen:
            raise DatasetFormatError(f"{path}: pair id '{p.pair_id}' appears more than once; pair ids must be unique.")
        seen.add(p.pair_id)
    return pairs


def save_pairs(path: str | os.PathLike, pairs: Iterable[TrackingPair]) -> None:
    """Write pairs atomically in the raw format."""
    write_json(path, [p.to_json() for p in pairs])


def validate_dataset_json(meta, path: Path) -> dict:
    """Check the keys and values of a ``dataset.json``; return it unchanged or raise naming ``path``."""
    if not isinstance(meta, dict):
        raise DatasetFormatError(f"{path}: must be a JSON object.")
    missing = [k for k in REQUIRED_DATASET_JSON_KEYS if k not in meta]
    if missing:
        raise DatasetFormatError(f"{path}: missing key(s) {', '.join(missing)}. "
                                 "See documentation/dataset_format.md for the required keys.")
    if meta["task"] not in TASKS:
        raise DatasetFormatError(f"{path}: 'task' must be one of {TASKS}, got {meta['task']!r}.")
    if meta["file_ending"] not in SUPPORTED_FILE_ENDINGS:
        raise DatasetFormatError(f"{path}: 'file_ending' must be one of {SUPPORTED_FILE_ENDINGS}, "
                                 f"got {meta['file_ending']!r}.")
    channels = meta["channel_names"]
    if not isinstance(channels, dict) or not channels or sorted(channels) != [str(i) for i in range(len(channels))]:
        raise DatasetFormatError(f"{path}: 'channel_names' must map \"0\", \"1\", ... to names, "
                                 f"e.g. {{\"0\": \"CT\"}}.")
    return meta


class RawDataset:
    """A raw dataset folder; paths are derived lazily, nothing is read until asked for."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self._meta: dict | None = None

    def __repr__(self) -> str:
        return f"RawDataset({str(self.folder)!r})"

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def dataset_json_path(self) -> Path:
        return self.folder / "dataset.json"

    @property
    def meta(self) -> dict:
        """The validated ``dataset.json``."""
        if self._meta is None:
            if not self.dataset_json_path.is_file():
                raise DatasetFormatError(f"{self.dataset_json_path}: not found. Every dataset folder needs a "
                                         "dataset.json (see documentation/dataset_format.md).")
            self._meta = validate_dataset_json(load_json(self.dataset_json_path), self.dataset_json_path)
        return self._meta

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def file_ending(self) -> str:
        return self.meta["file_ending"]

    @property
    def num_channels(self) -> int:
        return len(self.meta["channel_names"])

    def images_dir(self, split: str = "Tr") -> Path:
        _check_split(split)
        return self.folder / f"images{split}"

    def labels_dir(self, split: str = "Tr") -> Path:
        _check_split(split)
        return self.folder / f"labels{split}"

    def pairs_path(self, split: str = "Tr") -> Path:
        _check_split(split)
        return self.folder / f"pairs{split}.json"

    def image_path(self, scan_id: str, split: str = "Tr", channel: int = 0) -> Path:
        return self.images_dir(split) / f"{scan_id}_{channel:04d}{self.file_ending}"

    def label_path(self, scan_id: str, split: str = "Tr") -> Path:
        return self.labels_dir(split) / f"{scan_id}{self.file_ending}"

    def scan_ids(self, split: str = "Tr") -> list[str]:
        """Scan ids that have a channel-0 image file in ``images{split}/``, sorted."""
        folder = self.images_dir(split)
        if not folder.is_dir():
            return []
        suffix = "_0000" + self.file_ending
        return sorted(p.name[: -len(suffix)] for p in folder.iterdir() if p.name.endswith(suffix))

    def pairs(self, split: str = "Tr") -> list[TrackingPair]:
        """Directed lesion pairs of a tracking dataset's split."""
        if self.task != "tracking":
            raise DatasetFormatError(f"{self.dataset_json_path}: task is '{self.task}', it has no lesion pairs.")
        return load_pairs(self.pairs_path(split))


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def make_dataset_json(name: str, task: str, num_training: int, file_ending: str = ".nii.gz",
                      channel_names: dict | None = None, **extra) -> dict:
    """Build a valid ``dataset.json`` dictionary."""
    meta = {
        "name": name,
        "task": task,
        "channel_names": channel_names or {"0": "CT"},
        "file_ending": file_ending,
        "numTraining": int(num_training),
    }
    meta.update(extra)
    return validate_dataset_json(meta, Path("dataset.json"))
