"""Check a raw dataset before planning: every problem found, each with the file, what is wrong and what to do.

:func:`verify_dataset` walks a ``Dataset{ID}_{Name}/`` folder (see ``lesionnet.datasets.raw_format``)
and returns a list of :class:`Problem`. It does not stop at the first problem; only an unusable
``dataset.json`` ends the check early, because nothing else can be interpreted without it.

What is checked:

* ``dataset.json``: present, valid JSON, required keys, ``task``, ``file_ending``, ``channel_names``;
  ``numTraining`` against the number of ``imagesTr`` scans (warning).
* every scan: all channels ``_0000``, ``_0001``, ... present and readable, all channels on the same
  grid, spacing positive and finite (for NIfTI also in the raw header, because SimpleITK silently
  replaces a zero or NaN ``pixdim`` by 1 mm), no NaN/inf voxels (for float NIfTI files read from the
  raw bytes, because ITK up to 5.4 silently reads NaN/inf NIfTI voxels as 0).
* tracking: ``pairs{Tr,Ts}.json`` parse, pair ids unique, radii positive and finite, both scans of
  a pair exist in the pairs file's own split, centers lie inside their scans.
* detection: every ``imagesTr`` scan has a ``labelsTr`` mask on the same grid (shape, spacing,
  origin, direction) holding non-negative integers; masks without an image are reported.

Each image file's voxels are read once (headers may be read twice; float NIfTI masks twice). With ``check_voxels=False`` only headers are read
(:func:`~lesionnet.datasets.image_io.read_geometry`): much faster on large datasets, but NaN voxels,
mask values and truncated voxel data are not checked.
"""
from __future__ import annotations

import gzip
import logging
import math
import os
import re
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.image_io import ImageReadError, read_geometry, read_image
from lesionnet.datasets.raw_format import (
    DATASET_FOLDER_PATTERN,
    SPLITS,
    DatasetFormatError,
    TrackingPair,
    pair_from_json,
    validate_dataset_json,
)
from lesionnet.utils.files import TEMP_PREFIX, load_json

logger = logging.getLogger(__name__)

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset.

    Attributes:
        file: the file (or folder) concerned, as a path string.
        message: what is wrong.
        hint: what to do about it.
        severity: ``"error"`` (the dataset cannot be used as is) or ``"warning"``.
    """

    file: str
    message: str
    hint: str
    severity: str = ERROR

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == WARNING else ""
        return f"{self.file}: {prefix}{self.message} — {self.hint}"


@dataclass
class VerifyReport:
    """Result of :func:`verify_dataset_report`: the problems and what was looked at."""

    folder: Path
    problems: list
    num_scans: int = 0
    num_pairs: int = 0

    @property
    def errors(self) -> list:
        return [p for p in self.problems if p.is_error]

    @property
    def warnings(self) -> list:
        return [p for p in self.problems if not p.is_error]

    def summary(self) -> str:
        what = f"{self.num_scans} scan{'s' if self.num_scans != 1 else ''}, {self.num_pairs} pair{'s' if self.num_pairs != 1 else ''}"
        if not self.problems:
            return f"no problems found in {what} ({self.folder.name})"
        n_err, n_warn = len(self.errors), len(self.warnings)
        return (f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''} "
                f"({n_err} error{'s' if n_err != 1 else ''}, {n_warn} warning{'s' if n_warn != 1 else ''}) "
                f"in {what} ({self.folder.name})")


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


# ----------------------------------------------------------------------------------------------
# NIfTI header: SimpleITK hides zero / NaN pixdim (it substitutes 1.0), so read it ourselves.
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NiftiHeader:
    """The few raw NIfTI-1/-2 header fields the verifier needs, exactly as stored in the file."""

    version: int
    endian: str
    datatype: int
    shape_xyz: tuple
    pixdim_xyz: tuple
    vox_offset: int

    @property
    def float_dtype(self) -> np.dtype | None:
        """numpy dtype of the voxels when they are float32/float64, else None."""
        kind = {16: "f4", 64: "f8"}.get(self.datatype)
        return np.dtype(self.endian + kind) if kind else None


def read_nifti_header(path: str | os.PathLike) -> NiftiHeader | None:
    """Raw header of a ``.nii``/``.nii.gz`` file, or None when it is not a readable NIfTI-1/-2 file."""
    path = Path(path)
    name = path.name.lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        return None
    try:
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rb") as f:
            header = f.read(540)
    except (OSError, EOFError, ValueError):
        return None
    if len(header) < 348:
        return None
    for endian in ("<", ">"):
        (sizeof_hdr,) = struct.unpack(endian + "i", header[:4])
        if sizeof_hdr == 348:  # NIfTI-1
            datatype = struct.unpack(endian + "h", header[70:72])[0]
            dim = struct.unpack(endian + "8h", header[40:56])
            pixdim = struct.unpack(endian + "8f", header[76:108])
            vox_offset = int(struct.unpack(endian + "f", header[108:112])[0])
            return NiftiHeader(1, endian, datatype, _dims_xyz(dim), tuple(float(v) for v in pixdim[1:4]),
                               max(vox_offset, 352))
        if sizeof_hdr == 540 and len(header) >= 540:  # NIfTI-2
            datatype = struct.unpack(endian + "h", header[12:14])[0]
            dim = struct.unpack(endian + "8q", header[16:80])
            pixdim = struct.unpack(endian + "8d", header[104:168])
            vox_offset = struct.unpack(endian + "q", header[168:176])[0]
            return NiftiHeader(2, endian, datatype, _dims_xyz(dim), tuple(float(v) for v in pixdim[1:4]),
                               max(int(vox_offset), 544))
    return None


def _dims_xyz(dim) -> tuple:
    ndim = max(int(dim[0]), 0)
    sizes = [int(d) if i < ndim else 1 for i, d in enumerate(dim[1:4])]
    return tuple(max(s, 1) for s in sizes)


def nifti_header_spacing(path: str | os.PathLike) -> tuple | None:
    """``pixdim[1:4]`` exactly as stored in a NIfTI header, or None if not a readable NIfTI file.

    ITK's NIfTI reader replaces a zero or NaN ``pixdim`` by 1.0 without an error, so a header
    spacing of 0 is invisible through SimpleITK; this reads the raw header bytes instead.
    """
    header = read_nifti_header(path)
    return None if header is None else header.pixdim_xyz


def nifti_nonfinite_voxels(path: str | os.PathLike, chunk_bytes: int = 1 << 26) -> tuple | None:
    """``(number of NaN, number of ±inf, first bad voxel [z, y, x] or None)`` of a float NIfTI file.

    ITK (up to 5.4) silently turns NaN and ±inf voxels of NIfTI files into 0 when reading
    (``nifti_read_buffer``; fixed in ITK 6, InsightSoftwareConsortium/ITK#6683), so they cannot be
    seen through SimpleITK; this streams the raw voxel bytes in chunks instead. Returns None when
    the file is not a NIfTI file with float32/float64 voxels.

    Raises:
        ImageReadError: the voxel data end before the size announced by the header.
    """
    header = read_nifti_header(path)
    if header is None or header.float_dtype is None:
        return None
    dtype = header.float_dtype
    nx, ny, nz = header.shape_xyz
    total = nx * ny * nz
    per_chunk = max(chunk_bytes // dtype.itemsize, 1)
    n_nan = n_inf = 0
    first = None
    opener = gzip.open if str(path).lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            f.seek(header.vox_offset)
            done = 0
            while done < total:
                count = min(per_chunk, total - done)
                buffer = f.read(count * dtype.itemsize)
                if len(buffer) < count * dtype.itemsize:
                    raise ImageReadError(f"{path}: voxel data end early (truncated file).")
                values = np.frombuffer(buffer, dtype=dtype)
                nan = np.isnan(values)
                inf = np.isinf(values)
                n_nan += int(np.count_nonzero(nan))
                n_inf += int(np.count_nonzero(inf))
                if first is None and (n_nan or n_inf):
                    flat = done + int(np.flatnonzero(nan | inf)[0])
                    # NIfTI stores x fastest: flat = x + nx * (y + ny * z)
                    first = tuple(int(v) for v in np.unravel_index(flat, (nz, ny, nx)))
                done += count
    except (OSError, EOFError) as e:
        raise ImageReadError(f"{path}: voxel data cannot be read ({_first_line(e)}).") from e
    return n_nan, n_inf, first


# ----------------------------------------------------------------------------------------------

_AXES = ("x", "y", "z")


class _Verifier:
    def __init__(self, folder: Path, check_voxels: bool, progress: bool):
        self.folder = folder
        self.check_voxels = check_voxels
        self.progress = progress
        self.problems: list[Problem] = []
        self.meta: dict | None = None
        # (split, scan_id) -> Geometry of channel 0 when readable
        self.geometries: dict[tuple, Geometry] = {}
        self.num_pairs = 0

    # -- helpers --------------------------------------------------------------------------------
    def add(self, file, message: str, hint: str, severity: str = ERROR) -> None:
        self.problems.append(Problem(str(file), message, hint, severity))

    def report(self, num_scans: int) -> VerifyReport:
        return VerifyReport(self.folder, self.problems, num_scans=num_scans, num_pairs=self.num_pairs)

    # -- main -----------------------------------------------------------------------------------
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

        # scans on disk, per split
        on_disk = {split: self._scan_files(split, ending, num_channels) for split in SPLITS}
        if not on_disk["Tr"] and not on_disk["Ts"]:
            self.add(self.folder / "imagesTr", "no scans found in imagesTr/ or imagesTs/",
                     f"put images there named {{scan_id}}_0000{ending} (one file per channel)")

        pairs_by_split: dict[str, list[TrackingPair]] = {}
        if task == "tracking":
            for split in SPLITS:
                pairs_by_split[split] = self._load_pairs(split, bool(on_disk[split]))
            if not any(self.folder.joinpath(f"pairs{s}.json").is_file() for s in SPLITS):
                self.add(self.folder / "pairsTr.json", "a tracking dataset needs pairsTr.json and/or pairsTs.json",
                         "write the lesion pairs (see documentation/dataset_format.md)")
            self.num_pairs = sum(len(p) for p in pairs_by_split.values())
            for split in SPLITS:
                self._check_pair_references(split, pairs_by_split[split], on_disk)
        else:
            self._check_label_files(ending, on_disk["Tr"])

        # read every scan once
        todo = [(split, scan_id) for split in SPLITS for scan_id in sorted(on_disk[split])]
        bar = tqdm(todo, desc="verifying scans", unit="scan", disable=not self.progress or not todo)
        for split, scan_id in bar:
            self._check_scan(split, scan_id, on_disk[split][scan_id], ending, num_channels, task)

        if task == "tracking":
            for split in SPLITS:
                self._check_pair_centers(split, pairs_by_split[split])

        self._check_num_training(task, len(on_disk["Tr"]), len(pairs_by_split.get("Tr", [])))
        return self.report(len(todo))

    # -- dataset.json ---------------------------------------------------------------------------
    def _check_dataset_json(self) -> bool:
        path = self.folder / "dataset.json"
        if not path.is_file():
            self.add(path, "missing", "every dataset folder needs a dataset.json with name, task, channel_names, "
                     "file_ending and numTraining (see documentation/dataset_format.md)")
            return False
        try:
            meta = load_json(path)
        except (ValueError, OSError) as e:
            self.add(path, f"not valid JSON ({_first_line(e)})", "fix the syntax or regenerate the file")
            return False
        try:
            self.meta = validate_dataset_json(meta, path)
        except DatasetFormatError as e:
            message = str(e)
            prefix = f"{path}: "
            if message.startswith(prefix):
                message = message[len(prefix):]
            self.add(path, message.rstrip("."), "fix dataset.json; see documentation/dataset_format.md")
            return False
        if not isinstance(self.meta["name"], str) or not self.meta["name"]:
            self.add(path, "'name' must be a non-empty string", "set it, e.g. \"name\": \"MyData\"")
        n = self.meta["numTraining"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            self.add(path, f"'numTraining' must be a non-negative integer, got {n!r}",
                     "set it to the number of scans in imagesTr/")
        return True

    def _check_num_training(self, task: str, num_tr_scans: int, num_tr_pairs: int) -> None:
        n = self.meta["numTraining"]
        if isinstance(n, bool) or not isinstance(n, int):
            return  # already reported
        if n == num_tr_scans or (task == "tracking" and n == num_tr_pairs and num_tr_pairs):
            return
        counted = f"{num_tr_scans} scans in imagesTr/" + (f" and {num_tr_pairs} pairs in pairsTr.json"
                                                         if task == "tracking" else "")
        self.add(self.folder / "dataset.json", f"numTraining is {n} but there are {counted}",
                 f"set numTraining to {num_tr_scans}", WARNING)

    # -- files on disk --------------------------------------------------------------------------
    def _scan_files(self, split: str, ending: str, num_channels: int) -> dict:
        """scan_id -> {channel: path} for the files of ``images{split}/``; odd files are reported."""
        folder = self.folder / f"images{split}"
        scans: dict[str, dict[int, Path]] = {}
        if not folder.is_dir():
            return scans
        pattern = re.compile(r"^(.+)_(\d{4})" + re.escape(ending) + r"$")
        for path in sorted(folder.iterdir()):
            name = path.name
            if name.startswith(TEMP_PREFIX):
                self.add(path, "leftover temporary file of an interrupted write",
                         "delete it (and re-run the step that wrote the folder)", WARNING)
                continue
            if name.startswith(".") or path.is_dir():
                continue
            match = pattern.match(name)
            if not match:
                self.add(path, f"file name does not follow {{scan_id}}_{{channel:04d}}{ending}",
                         f"rename it (e.g. case1_0000{ending}) or remove it; dataset.json says file_ending "
                         f"is '{ending}'", WARNING)
                continue
            scan_id, channel = match.group(1), int(match.group(2))
            if channel >= num_channels:
                self.add(path, f"channel {channel} is not in channel_names (dataset.json lists {num_channels})",
                         "add the channel to channel_names in dataset.json or remove the file")
                continue
            scans.setdefault(scan_id, {})[channel] = path
        return scans

    def _check_label_files(self, ending: str, tr_scans: dict) -> None:
        labels_dir = self.folder / "labelsTr"
        if not labels_dir.is_dir():
            if tr_scans:
                self.add(labels_dir, "missing: a detection dataset needs an instance mask per imagesTr scan",
                         f"create labelsTr/ with {{scan_id}}{ending} masks (0 background, 1..N lesions)")
            return
        for path in sorted(labels_dir.iterdir()):
            name = path.name
            if name.startswith(TEMP_PREFIX):
                self.add(path, "leftover temporary file of an interrupted write", "delete it", WARNING)
                continue
            if name.startswith(".") or path.is_dir():
                continue
            if not name.endswith(ending):
                self.add(path, f"not a '{ending}' file", "remove it or convert it to the dataset's file_ending",
                         WARNING)
                continue
            scan_id = name[: -len(ending)]
            if scan_id not in tr_scans:
                self.add(path, f"mask has no image (imagesTr/{scan_id}_0000{ending} not found)",
                         "add the image or remove the mask", WARNING)

    # -- tracking pairs -------------------------------------------------------------------------
    def _load_pairs(self, split: str, has_scans: bool) -> list[TrackingPair]:
        path = self.folder / f"pairs{split}.json"
        if not path.is_file():
            if split == "Tr" and has_scans:
                self.add(path, "missing although imagesTr/ holds scans",
                         "write the training lesion pairs to pairsTr.json (see documentation/dataset_format.md)")
            return []
        try:
            records = load_json(path)
        except (ValueError, OSError) as e:
            self.add(path, f"not valid JSON ({_first_line(e)})", "fix the syntax or regenerate the file")
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
                    self.add(path, f"scan '{scan_id}' of pair(s) {_some(users)} is in images{other}/, "
                             f"not images{split}/",
                             f"pairs in pairs{split}.json must reference images{split}/ scans: move the scan or the pair")
                else:
                    self.add(path, f"scan '{scan_id}' of pair(s) {_some(users)} not found ({expected})",
                             "add the scan or remove the pairs that reference it")

    def _check_pair_centers(self, split: str, pairs: list) -> None:
        path = self.folder / f"pairs{split}.json"
        for pair in pairs:
            checks = [("source", pair.source, pair.source_center_xyz)]
            if pair.target_center_xyz is not None:
                checks.append(("target", pair.target, pair.target_center_xyz))
            for which, scan_id, center_xyz in checks:
                geometry = self.geometries.get((split, scan_id))
                if geometry is None:
                    continue  # scan missing or unreadable: already reported
                if not geometry.contains_index(center_xyz):
                    size = "×".join(str(v) for v in geometry.shape_xyz)
                    self.add(path, f"pair {pair.pair_id}: {which}_center {list(center_xyz)} lies outside scan "
                             f"'{scan_id}' (size x×y×z = {size})",
                             "centers are voxel indices [x=column, y=row, z=slice] of the scan; fix the center "
                             "or its axis order")

    # -- one scan -------------------------------------------------------------------------------
    def _check_scan(self, split: str, scan_id: str, channels: dict, ending: str, num_channels: int,
                    task: str) -> None:
        images_dir = self.folder / f"images{split}"
        reference: Geometry | None = None
        for channel in range(num_channels):
            path = channels.get(channel, images_dir / f"{scan_id}_{channel:04d}{ending}")
            if channel not in channels:
                self.add(path, f"channel {channel} of scan '{scan_id}' is missing",
                         f"every scan needs one file per channel in channel_names ({num_channels})")
                continue
            geometry = self._check_image_file(path)
            if geometry is None:
                continue
            if reference is None:
                reference = geometry
                if channel == 0:
                    self.geometries[(split, scan_id)] = geometry
            elif not reference.same_grid(geometry):
                self.add(path, f"geometry differs from channel 0 ({_describe_difference(reference, geometry)})",
                         "resample all channels of a scan onto the same grid")
        if task == "detection" and split == "Tr":
            label_path = self.folder / "labelsTr" / f"{scan_id}{ending}"
            if not label_path.is_file():
                if (self.folder / "labelsTr").is_dir():
                    self.add(label_path, f"mask of scan '{scan_id}' is missing",
                             "add the instance mask (0 background, 1..N one lesion each) or move the scan to imagesTs/")
                return
            image_geometry = self.geometries.get((split, scan_id))
            self._check_mask_file(label_path, image_geometry)

    def _read(self, path: Path, need_voxels: bool):
        """``(array or None, geometry, nonfinite)`` of an image file, or None after reporting why it cannot be read.

        ``nonfinite`` is ``(n_nan, n_inf, first [z, y, x])`` when the voxels were checked, else None.
        Each file's voxels are read once: float NIfTI files are streamed raw (SimpleITK would turn
        NaN into 0) with only the header read through SimpleITK, unless the caller needs the array.
        """
        try:
            if not self.check_voxels:
                return None, read_geometry(path), None
            raw = nifti_nonfinite_voxels(path) if self._is_float_nifti(path) else None
            if raw is not None and not need_voxels:
                return None, read_geometry(path), raw
            array, geometry = read_image(path, dtype=None)
            if raw is None and np.issubdtype(array.dtype, np.floating):
                finite = np.isfinite(array)
                n_bad = int(array.size - np.count_nonzero(finite))
                n_nan = int(np.count_nonzero(np.isnan(array))) if n_bad else 0
                first = tuple(int(v) for v in np.argwhere(~finite)[0]) if n_bad else None
                raw = (n_nan, n_bad - n_nan, first)
            return array, geometry, raw
        except ImageReadError as e:
            message = str(e)
            prefix = f"{path}: "
            if message.startswith(prefix):
                message = message[len(prefix):]
            self.add(path, f"unreadable: {message.rstrip('.')}", "re-export the file or remove the scan")
        except (RuntimeError, ValueError, OSError, MemoryError) as e:
            self.add(path, f"unreadable ({type(e).__name__}: {_first_line(e)})", "re-export the file")
        return None

    @staticmethod
    def _is_float_nifti(path: Path) -> bool:
        header = read_nifti_header(path)
        return header is not None and header.float_dtype is not None

    def _report_nonfinite(self, path: Path, nonfinite, what: str) -> None:
        if nonfinite is None:
            return
        n_nan, n_inf, first = nonfinite
        if not (n_nan or n_inf):
            return
        counts = ", ".join(part for part in (f"{n_nan} NaN" if n_nan else "", f"{n_inf} inf" if n_inf else "") if part)
        self.add(path, f"{counts} voxel(s) (first at [z, y, x] = {list(first)})",
                 f"replace them ({what}) and re-save the file; note that SimpleITK reads NaN/inf in NIfTI "
                 "files as 0 without warning")

    def _check_geometry(self, path: Path, geometry: Geometry) -> None:
        spacing = np.asarray(geometry.spacing_xyz, dtype=np.float64)
        bad = [f"{a}={s:g}" for a, s in zip(_AXES, spacing) if not (math.isfinite(s) and s > 0)]
        raw = nifti_header_spacing(path)
        if raw is not None:
            bad_raw = [f"{a}={s:g}" for a, s in zip(_AXES, raw) if not (math.isfinite(s) and s > 0)]
            if bad_raw and not bad:
                self.add(path, f"spacing in the NIfTI header (pixdim) is not positive and finite: {', '.join(bad_raw)} "
                         f"(SimpleITK silently reads {tuple(round(s, 6) for s in spacing)})",
                         "write the true voxel size (mm) into the header, e.g. re-export with SimpleITK "
                         "or fix pixdim with nibabel header.set_zooms")
                bad = []  # reported
        if bad:
            self.add(path, f"spacing is not positive and finite: {', '.join(bad)}",
                     "write the true voxel size (mm) into the image header")
        if not np.all(np.isfinite(geometry.origin_xyz)):
            self.add(path, f"origin is not finite: {geometry.origin_xyz}", "fix the image header")
        direction = geometry.direction_matrix
        if not np.all(np.isfinite(direction)) or abs(np.linalg.det(direction)) < 1e-3:
            self.add(path, "direction matrix is degenerate", "fix the image header (orientation)")
        if min(geometry.shape_zyx) < 1:
            self.add(path, f"image is empty (shape z×y×x = {geometry.shape_zyx})", "re-export the scan")

    def _check_image_file(self, path: Path) -> Geometry | None:
        result = self._read(path, need_voxels=False)
        if result is None:
            return None
        _, geometry, nonfinite = result
        self._check_geometry(path, geometry)
        self._report_nonfinite(path, nonfinite, "e.g. by the air value -1024 HU for CT")
        return geometry

    def _check_mask_file(self, path: Path, image_geometry: Geometry | None) -> None:
        result = self._read(path, need_voxels=True)
        if result is None:
            return
        array, geometry, nonfinite = result
        self._check_geometry(path, geometry)
        if image_geometry is not None and not image_geometry.same_grid(geometry):
            self.add(path, f"mask grid differs from its image ({_describe_difference(image_geometry, geometry)})",
                     "resample the mask onto the image grid (nearest neighbour) or re-export it from the image")
        if array is None:
            return
        self._report_nonfinite(path, nonfinite, "by 0 for background")
        if np.issubdtype(array.dtype, np.integer):
            if array.size and array.min() < 0:
                self.add(path, f"mask holds negative values (min {int(array.min())})",
                         "use 0 for background and 1..N for the lesions")
        elif np.issubdtype(array.dtype, np.floating):
            finite = array[np.isfinite(array)]
            if finite.size and (finite.min() < 0 or not np.array_equal(finite, np.round(finite))):
                self.add(path, "mask values must be non-negative integers (instance ids), found "
                         f"{'negative' if finite.min() < 0 else 'fractional'} values",
                         "save the mask as an integer image with 0 background and 1..N lesions")
        else:
            self.add(path, f"mask has pixel type {array.dtype}", "save it as an integer image")


def _describe_difference(a: Geometry, b: Geometry) -> str:
    parts = []
    if a.shape_zyx != b.shape_zyx:
        parts.append(f"shape z×y×x {list(a.shape_zyx)} vs {list(b.shape_zyx)}")
    if not np.allclose(a.spacing_xyz, b.spacing_xyz, atol=1e-4):
        parts.append(f"spacing {_fmt(a.spacing_xyz)} vs {_fmt(b.spacing_xyz)}")
    if not np.allclose(a.origin_xyz, b.origin_xyz, atol=1e-3):
        parts.append(f"origin {_fmt(a.origin_xyz)} vs {_fmt(b.origin_xyz)}")
    if not np.allclose(a.direction, b.direction, atol=1e-4):
        parts.append(f"direction {_fmt(a.direction)} vs {_fmt(b.direction)}")
    return "; ".join(parts) or "tolerance"


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def _some(items: list, limit: int = 3) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
