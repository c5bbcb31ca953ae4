"""Convert the DLS lesion-tracking benchmark (DeepLesion NIfTI subvolumes + DLS json) to a raw tracking dataset.

Inputs
------
* DeepLesion subvolumes ``PPPPPP_SS_NN_start-end.nii.gz`` as written by DeepLesion's official
  ``DL_save_nifti.py`` (patient, study, series, first and last slice number of the subvolume).
* A DLS annotation file (``train.json``/``valid.json``/``test.json`` of github.com/JimmyCai91/DLT):
  a dict keyed ``"0001"``, ... (a list is accepted too) of directed pairs with ``source``/``target``
  file names, ``source center``/``target center`` ``[x, y, z]`` (x = column, y = row, z = slice of
  the subvolume, 0-based), ``source spacing``/``target spacing`` ``[sx, sy, sz]`` (mm) and
  ``source recist diameter``/``target recist diameter`` ``[long, short]`` in pixels.

What DeepLesion's writer does (see ``documentation/dls_conversion.md``)
----------------------------------------------------------------------
``DL_save_nifti.py`` stacks the PNG slices with ``cv2.merge`` into ``V[row, col, slice]`` and saves
``nibabel.Nifti1Image(V, T)`` with ``T = [[0, -s1, 0, 0], [-s0, 0, 0, 0], [0, 0, -s2, 0], [0, 0, 0, 1]]``.
SimpleITK therefore reads ITK index ``(row, col, slice)`` — array ``[slice, col, row]`` — with
direction ``(0, 1, 0, 1, 0, 0, 0, 0, -1)`` (LPS): rows and columns are swapped with respect to the
DLS ``[x, y, z]``. In world (LPS) terms the file is consistent: columns run towards +x (patient
left), rows towards +y (posterior), slices towards -z (feet).

What the converter writes
-------------------------
Every scan is re-oriented from its header's direction cosines onto the grid where ITK index
``(x, y, z)`` = (column, row, slice), i.e. the array is ``[slice, row, column]``, with direction
``(1, 0, 0, 0, 1, 0, 0, 0, -1)``: the same physical orientation as DeepLesion's file, so world
coordinates are unchanged and the DLS centers are kept exactly as given. The origin is the world
position of the new voxel (0, 0, 0) (``(0, 0, 0)`` for files from ``DL_save_nifti.py``); the spacing
is the json's ``[sx, sy, sz]``. The slice axis found from the header must have as many voxels as
the slice range in the file name (``002-014`` → 13), otherwise the file is rejected.
Radius (DLS convention): ``radius_mm = max(recist diameter) / 2 * spacing_x``.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm import tqdm

from lesionnet import paths
from lesionnet.datasets.dataset_id import dataset_folder_name
from lesionnet.datasets.geometry import Geometry, xyz_to_zyx
from lesionnet.datasets.image_io import (
    ImageReadError,
    read_geometry,
    read_image,
    write_image,
)
from lesionnet.datasets.raw_format import (
    DATASET_FOLDER_PATTERN,
    SPLITS,
    TrackingPair,
    make_dataset_json,
    save_pairs,
)
from lesionnet.utils.files import load_json, write_json
from lesionnet.utils.validation import finite_numbers

logger = logging.getLogger(__name__)

DLS_FILE_PATTERN = re.compile(r"^(\d{6})_(\d{2})_(\d{2})_(\d{3})-(\d{3})\.nii\.gz$")
DLS_FILE_SUFFIX = ".nii.gz"

#: Direction of the written scans: x (column) → +x, y (row) → +y, z (slice) → -z in ITK's LPS world,
#: the orientation DeepLesion's own files declare (row-major, columns = index axes).
DEEPLESION_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
#: ITK direction of a file written by DL_save_nifti.py (index axes: row, column, slice).
DL_SAVE_NIFTI_DIRECTION = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0)

_DIRECTION_TOLERANCE = 1e-3
_SPACING_TOLERANCE = 1e-3  # relative; NIfTI stores pixdim as float32


class DLSConversionError(ValueError):
    """The DLS input cannot be converted; the message names the file and what to do."""


class DLSLayoutError(DLSConversionError):
    """A subvolume's axis order cannot be established from its header and file name."""


# ------------------------------------------------------------------------------------------------
# annotations
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DLSRecord:
    """One directed DLS pair, as read from the annotation json (file names with ``.nii.gz``)."""

    key: str
    source_file: str
    target_file: str
    source_center_xyz: tuple
    target_center_xyz: tuple
    source_spacing_xyz: tuple
    target_spacing_xyz: tuple
    source_recist_diameter_px: tuple
    target_recist_diameter_px: tuple

    @property
    def source(self) -> str:
        return scan_id_from_filename(self.source_file)

    @property
    def target(self) -> str:
        return scan_id_from_filename(self.target_file)

    @property
    def source_radius_mm(self) -> float:
        return dls_radius_mm(self.source_recist_diameter_px, self.source_spacing_xyz)

    @property
    def target_radius_mm(self) -> float:
        return dls_radius_mm(self.target_recist_diameter_px, self.target_spacing_xyz)

    def to_pair(self, pair_id: str) -> TrackingPair:
        return TrackingPair(
            pair_id=pair_id,
            source=self.source,
            target=self.target,
            source_center_xyz=self.source_center_xyz,
            source_radius_mm=self.source_radius_mm,
            target_center_xyz=self.target_center_xyz,
            target_radius_mm=self.target_radius_mm,
            patient=patient_from_scan_id(self.source),
        )


def dls_radius_mm(recist_diameter_px: Iterable[float], spacing_xyz: Iterable[float]) -> float:
    """DLS lesion radius: half the long RECIST diameter (pixels) times the x spacing (mm)."""
    return max(float(d) for d in recist_diameter_px) / 2.0 * float(list(spacing_xyz)[0])


def scan_id_from_filename(name: str) -> str:
    """``000016_01_01_002-014.nii.gz`` → ``000016_01_01_002-014``."""
    name = Path(name).name
    return name[: -len(DLS_FILE_SUFFIX)] if name.endswith(DLS_FILE_SUFFIX) else name


def patient_from_scan_id(scan_id: str) -> str:
    """The DeepLesion patient id: the first 6 digits of the scan id."""
    return scan_id[:6]


def slice_range_from_filename(name: str) -> tuple[int, int] | None:
    """``(start, end)`` slice numbers from ``PPPPPP_SS_NN_start-end.nii.gz`` (inclusive), else None."""
    match = DLS_FILE_PATTERN.match(Path(name).name)
    if not match:
        return None
    return int(match.group(4)), int(match.group(5))


def expected_num_slices(name: str) -> int | None:
    """Number of slices a DeepLesion subvolume must have according to its file name (``002-014`` → 13)."""
    slice_range = slice_range_from_filename(name)
    return None if slice_range is None else slice_range[1] - slice_range[0] + 1


def load_dls_annotations(path: str | os.PathLike) -> list[DLSRecord]:
    """Read a DLS annotation file (dict keyed ``"0001"``... or a list) into records, in key order."""
    path = Path(path)
    try:
        data = load_json(path)
    except FileNotFoundError:
        raise DLSConversionError(f"{path}: annotation file not found. Pass the DLS json (e.g. DLT's data/test.json) "
                                 "with --annotations.") from None
    except ValueError as e:
        raise DLSConversionError(str(e)) from None
    if isinstance(data, list):
        items = [(f"{i + 1:04d}", r) for i, r in enumerate(data)]
    elif isinstance(data, dict):
        items = sorted(data.items(), key=lambda kv: str(kv[0]))
    else:
        raise DLSConversionError(f"{path}: expected a JSON object keyed \"0001\", ... (or a list) of DLS pairs, "
                                 f"got {type(data).__name__}.")
    if not items:
        raise DLSConversionError(f"{path}: holds no pairs.")
    return [_record_from_json(str(key), record, path) for key, record in items]


def _record_from_json(key: str, record, path: Path) -> DLSRecord:
    where = f"{path} (pair {key})"
    if not isinstance(record, dict):
        raise DLSConversionError(f"{where}: each pair must be a JSON object, got {type(record).__name__}.")
    needed = ("source", "target", "source center", "target center", "source spacing", "target spacing",
              "source recist diameter", "target recist diameter")
    missing = [k for k in needed if k not in record]
    if missing:
        raise DLSConversionError(f"{where}: lacks the key(s) {', '.join(repr(m) for m in missing)}; "
                                 "is this a DLS annotation file (github.com/JimmyCai91/DLT, data/*.json)?")

    def numbers(name: str, count: int) -> tuple:
        return finite_numbers(record[name], count, name, where, DLSConversionError)

    rec = DLSRecord(
        key=key,
        source_file=str(record["source"]),
        target_file=str(record["target"]),
        source_center_xyz=numbers("source center", 3),
        target_center_xyz=numbers("target center", 3),
        source_spacing_xyz=numbers("source spacing", 3),
        target_spacing_xyz=numbers("target spacing", 3),
        source_recist_diameter_px=numbers("source recist diameter", 2),
        target_recist_diameter_px=numbers("target recist diameter", 2),
    )
    for which in ("source", "target"):
        spacing = getattr(rec, f"{which}_spacing_xyz")
        if min(spacing) <= 0:
            raise DLSConversionError(f"{where}: '{which} spacing' {list(spacing)} must be positive.")
        if getattr(rec, f"{which}_radius_mm") <= 0:
            raise DLSConversionError(f"{where}: '{which} recist diameter' must be positive.")
    return rec


# ------------------------------------------------------------------------------------------------
# axis order of a subvolume
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reorientation:
    """How to turn a file's voxel grid into the DeepLesion/lesionnet grid.

    ``axes[a]`` is the file's ITK index axis that becomes output axis ``a`` (x = column, y = row,
    z = slice); ``flip[a]`` says whether it is reversed. ``layout`` names what was recognised.
    """

    axes: tuple
    flip: tuple
    layout: str

    @property
    def is_identity(self) -> bool:
        return self.axes == (0, 1, 2) and not any(self.flip)

    def output_geometry(self, file_geometry: Geometry) -> Geometry:
        """Geometry of the re-oriented grid; every voxel keeps its world position."""
        size_xyz = file_geometry.shape_xyz
        spacing_xyz = tuple(file_geometry.spacing_xyz[a] for a in self.axes)
        shape_xyz = tuple(size_xyz[a] for a in self.axes)
        first_voxel_file_xyz = [0, 0, 0]
        for out_axis, file_axis in enumerate(self.axes):
            if self.flip[out_axis]:
                first_voxel_file_xyz[file_axis] = size_xyz[file_axis] - 1
        origin_xyz = file_geometry.index_to_world(first_voxel_file_xyz)
        return Geometry(spacing_xyz, tuple(origin_xyz), DEEPLESION_DIRECTION, xyz_to_zyx(shape_xyz))

    def apply(self, file_array_zyx: np.ndarray) -> np.ndarray:
        """Re-orient a file's ``[z, y, x]`` array (a view where possible)."""
        array_xyz = file_array_zyx.transpose(2, 1, 0)  # ITK index order of the file
        array_xyz = array_xyz.transpose(self.axes)
        for out_axis, flipped in enumerate(self.flip):
            if flipped:
                array_xyz = np.flip(array_xyz, axis=out_axis)
        return array_xyz.transpose(2, 1, 0)  # back to [z, y, x]: [slice, row, column]


def detect_reorientation(file_geometry: Geometry, path: str | os.PathLike = "") -> Reorientation:
    """Establish the axis order of a DeepLesion subvolume from its header and its file name.

    The header's direction cosines must be axis-aligned; the index axis running along world z is the
    slice axis, the one along world x the column axis, the one along world y the row axis. Axes are
    flipped where they run against DeepLesion's orientation (columns +x, rows +y, slices -z, ITK LPS).
    The slice axis must have as many voxels as the file name's slice range (``002-014`` → 13).

    Raises:
        DLSLayoutError: oblique direction cosines, or a slice count that contradicts the file name.
    """
    path = Path(path)
    direction = file_geometry.direction_matrix  # columns: world direction of file index axes
    world_of_axis = np.argmax(np.abs(direction), axis=0)
    aligned = np.abs(direction[world_of_axis, range(3)])
    if not np.all(aligned > 1 - _DIRECTION_TOLERANCE) or len(set(world_of_axis.tolist())) != 3:
        raise DLSLayoutError(
            f"{path}: the header's direction cosines {tuple(round(v, 4) for v in file_geometry.direction)} are "
            "oblique, so the slice, row and column axes cannot be told apart. DeepLesion subvolumes from "
            "DL_save_nifti.py are axis-aligned: re-export the file with DL_save_nifti.py.")
    axes = tuple(int(np.flatnonzero(world_of_axis == w)[0]) for w in range(3))
    wanted_sign = (1.0, 1.0, -1.0)
    flip = tuple(bool(np.sign(direction[w, axes[w]]) != wanted_sign[w]) for w in range(3))
    size_xyz = file_geometry.shape_xyz
    n_slices = expected_num_slices(path.name)
    if n_slices is not None and size_xyz[axes[2]] != n_slices:
        candidates = [a for a in range(3) if size_xyz[a] == n_slices]
        found = (f"file axis {candidates[0]} has {n_slices} voxels, so the data seem permuted relative to the header"
                 if candidates else f"no axis has {n_slices} voxels")
        raise DLSLayoutError(
            f"{path}: cannot establish the axis order: the file name says {n_slices} slices "
            f"({'-'.join(f'{v:03d}' for v in slice_range_from_filename(path.name))}), but the header's slice "
            f"axis (along world z) has {size_xyz[axes[2]]} voxels (ITK size {list(size_xyz)}, direction "
            f"{tuple(round(v, 4) for v in file_geometry.direction)}); {found}. Neither DeepLesion's "
            "DL_save_nifti.py layout nor lesionnet's: re-export the subvolume with DL_save_nifti.py.")
    if axes == (1, 0, 2) and not any(flip):
        layout = "DL_save_nifti (rows and columns swapped)"
    elif axes == (0, 1, 2) and not any(flip):
        layout = "lesionnet (already [slice, row, column])"
    else:
        layout = f"reoriented from its header (file axes {axes} to x, y, z, flipped {flip})"
    return Reorientation(axes, flip, layout)


def read_deeplesion_subvolume(path: str | os.PathLike, spacing_xyz: Iterable[float] | None = None,
                              reorientation: Reorientation | None = None) -> tuple[np.ndarray, Geometry]:
    """Read a DeepLesion subvolume onto the DLS grid: array ``[slice, row, column]`` and its geometry.

    ``spacing_xyz`` (the DLS json's ``[sx, sy, sz]``) replaces the header spacing when given.
    Integer-valued voxels (DL_save_nifti.py writes int16, or float64 for subvolumes of 300 slices
    or more) come back as int16, anything else as float32.
    """
    path = Path(path)
    file_array_zyx, file_geometry = read_image(path, dtype=None)
    if reorientation is None:
        reorientation = detect_reorientation(file_geometry, path)
    geometry = reorientation.output_geometry(file_geometry)
    if spacing_xyz is not None:
        geometry = Geometry(tuple(float(s) for s in spacing_xyz), geometry.origin_xyz, geometry.direction,
                            geometry.shape_zyx)
    array_zyx = reorientation.apply(_compact_dtype(file_array_zyx))
    return array_zyx, geometry


def _compact_dtype(array: np.ndarray) -> np.ndarray:
    """int16 when every voxel is an integer in int16 range (checked slice by slice), else float32."""
    if array.dtype == np.int16:
        return array
    info = np.iinfo(np.int16)
    if np.issubdtype(array.dtype, np.integer):
        if array.size == 0 or (array.min() >= info.min and array.max() <= info.max):
            return array.astype(np.int16)
        return array.astype(np.float32)
    for plane in array:
        if not (np.all(np.isfinite(plane)) and plane.min() >= info.min and plane.max() <= info.max
                and np.array_equal(plane, np.round(plane))):
            return array.astype(np.float32, copy=False)
    return array.astype(np.int16)


# ------------------------------------------------------------------------------------------------
# conversion
# ------------------------------------------------------------------------------------------------


@dataclass
class ConversionResult:
    """What :func:`convert_dls` wrote and what it left out."""

    folder: Path
    split: str
    num_scans: int
    num_pairs: int
    skipped_pairs: list = field(default_factory=list)  # keys of the DLS records left out
    missing_files: list = field(default_factory=list)
    unreadable_files: list = field(default_factory=list)


def convert_dls(images_dir: str | os.PathLike, annotations: str | os.PathLike, dataset_id: int,
                name: str = "DLS", split: str = "Ts", strict: bool = False, overwrite: bool = False,
                pair_prefix: str | None = None, raw_dir: str | os.PathLike | None = None,
                progress: bool = True) -> ConversionResult:
    """Convert DeepLesion subvolumes + a DLS annotation file into ``Dataset{ID}_{name}`` (tracking).

    Writes ``images{split}/{scan_id}_0000.nii.gz`` (each scan once, however many pairs use it),
    ``pairs{split}.json`` and ``dataset.json`` under ``raw_dir`` (default ``$lesionnet_raw``). The other
    split of an existing dataset is left alone, so valid.json → ``Tr`` and test.json → ``Ts`` can
    share one dataset.

    Args:
        images_dir: folder with the ``.nii.gz`` subvolumes (searched recursively if not at the top).
        annotations: DLS json (``test.json``, ``valid.json``, ...).
        dataset_id: 1..999.
        name: dataset name after the id.
        split: ``"Tr"`` or ``"Ts"``.
        strict: fail when a referenced subvolume is missing or unreadable instead of skipping its pairs.
        overwrite: replace an existing ``pairs{split}.json``.
        pair_prefix: prefix of the pair ids (default: the annotation file's stem + ``_``, e.g. ``test_0001``).
        raw_dir: raw data root; default ``$lesionnet_raw``.
        progress: show a tqdm progress bar over the scans.

    Raises:
        DLSConversionError / DLSLayoutError: with the file and what to do. Layout problems are found
        from the headers before anything is written.
    """
    if split not in SPLITS:
        raise DLSConversionError(f"split must be one of {SPLITS}, got {split!r}.")
    images_dir = Path(images_dir)
    annotations = Path(annotations)
    if not images_dir.is_dir():
        raise DLSConversionError(f"{images_dir}: images folder not found. Pass the folder of DeepLesion .nii.gz "
                                 "subvolumes written by DL_save_nifti.py with --images.")
    records = load_dls_annotations(annotations)
    prefix = f"{annotations.stem}_" if pair_prefix is None else pair_prefix

    root = Path(raw_dir) if raw_dir is not None else paths.raw_dir()
    folder = root / dataset_folder_name(dataset_id, name)
    _check_target_folder(root, folder, int(dataset_id))
    pairs_path = folder / f"pairs{split}.json"
    if pairs_path.exists() and not overwrite:
        raise DLSConversionError(f"{pairs_path}: already exists. Pass --overwrite to replace it, or convert into "
                                 "another dataset id or split.")

    # locate every referenced subvolume once
    files = sorted({f for r in records for f in (r.source_file, r.target_file)})
    located = _locate(images_dir, files)
    missing = [f for f in files if located[f] is None]
    if missing and strict:
        raise DLSConversionError(
            f"{images_dir}: {len(missing)} subvolume(s) referenced by {annotations.name} are missing, e.g. "
            f"{', '.join(missing[:5])}. Generate them with DeepLesion's DL_save_nifti.py, or drop --strict to "
            "skip the pairs that need them.")

    # spacing per scan from the json; the pairs must agree
    spacing_of: dict[str, tuple] = {}
    for r in records:
        for file_name, spacing in ((r.source_file, r.source_spacing_xyz), (r.target_file, r.target_spacing_xyz)):
            known = spacing_of.setdefault(file_name, spacing)
            if not np.allclose(known, spacing, rtol=_SPACING_TOLERANCE):
                logger.warning("%s: pairs of %s give different spacings %s and %s; using the first.",
                               file_name, annotations.name, list(known), list(spacing))

    # headers first: every layout problem is found before anything is written
    plans: dict[str, Reorientation] = {}
    unreadable: list[str] = []
    layout_errors: list[str] = []
    for file_name in files:
        if located[file_name] is None:
            continue
        try:
            file_geometry = read_geometry(located[file_name])
            plans[file_name] = detect_reorientation(file_geometry, located[file_name])
        except DLSLayoutError as e:
            layout_errors.append(str(e))
            continue
        except ImageReadError as e:
            if strict:
                raise DLSConversionError(f"{e} Re-export it with DL_save_nifti.py or drop --strict.") from e
            logger.warning("%s", e)
            unreadable.append(file_name)
            continue
        _check_header_spacing(located[file_name], plans[file_name], file_geometry, spacing_of[file_name])
    if layout_errors:
        more = f" (and {len(layout_errors) - 3} more)" if len(layout_errors) > 3 else ""
        raise DLSLayoutError("\n".join(layout_errors[:3]) + more)

    # convert each scan of a usable pair once (a scan whose every partner is missing is left out)
    images_out = folder / f"images{split}"
    geometries: dict[str, Geometry] = {}
    usable = {f for r in records if r.source_file in plans and r.target_file in plans
              for f in (r.source_file, r.target_file)}
    todo = [f for f in files if f in usable]
    for file_name in tqdm(todo, desc=f"converting DLS scans to images{split}", unit="scan",
                          disable=not progress or not todo):
        try:
            array_zyx, geometry = read_deeplesion_subvolume(located[file_name], spacing_of[file_name],
                                                            plans[file_name])
        except ImageReadError as e:
            if strict:
                raise DLSConversionError(f"{e} Re-export it with DL_save_nifti.py or drop --strict.") from e
            logger.warning("%s", e)
            unreadable.append(file_name)
            continue
        write_image(images_out / f"{scan_id_from_filename(file_name)}_0000.nii.gz", array_zyx, geometry)
        geometries[file_name] = geometry

    # pairs whose two scans were converted
    pairs, skipped = [], []
    for r in records:
        if r.source_file not in geometries or r.target_file not in geometries:
            skipped.append(r.key)
            continue
        for which, file_name, center in (("source", r.source_file, r.source_center_xyz),
                                         ("target", r.target_file, r.target_center_xyz)):
            if not geometries[file_name].contains_index(center):
                logger.warning("%s pair %s: %s center %s lies outside %s (size x×y×z %s); kept as given.",
                               annotations.name, r.key, which, list(center), file_name,
                               list(geometries[file_name].shape_xyz))
        pairs.append(r.to_pair(f"{prefix}{r.key}"))
    if missing or unreadable:
        logger.warning("Skipped %d of %d pairs of %s: %d subvolume(s) missing (e.g. %s), %d unreadable (e.g. %s).",
                       len(skipped), len(records), annotations.name, len(missing), ", ".join(missing[:3]) or "-",
                       len(unreadable), ", ".join(unreadable[:3]) or "-")
    if not pairs:
        raise DLSConversionError(f"{annotations}: none of its {len(records)} pairs has both subvolumes in "
                                 f"{images_dir}. Check --images (the folder of DL_save_nifti.py's output).")

    save_pairs(pairs_path, pairs)
    _write_dataset_json(folder, name, annotations)
    logger.info("Wrote %s: %d scans in images%s/, %d pairs in %s.", folder, len(geometries), split, len(pairs),
                pairs_path.name)
    return ConversionResult(folder, split, len(geometries), len(pairs), skipped, missing, unreadable)


def _check_target_folder(root: Path, folder: Path, dataset_id: int) -> None:
    if not root.is_dir():
        root.mkdir(parents=True, exist_ok=True)
    others = [p.name for p in root.iterdir()
              if p.is_dir() and p.name.startswith(f"Dataset{dataset_id:03d}_") and p != folder
              and DATASET_FOLDER_PATTERN.match(p.name)]
    if others:
        raise DLSConversionError(f"{root}: dataset id {dataset_id} is already used by {', '.join(others)}. "
                                 f"Choose another -d or --name {others[0].split('_', 1)[1]} to add to it.")
    meta_path = folder / "dataset.json"
    if meta_path.is_file():
        try:
            task = load_json(meta_path).get("task")
        except (ValueError, AttributeError):
            task = None
        if task != "tracking":
            raise DLSConversionError(f"{meta_path}: the existing dataset is not a tracking dataset (task {task!r}). "
                                     "Convert into another dataset id.")


def _locate(images_dir: Path, names: list[str]) -> dict[str, Path | None]:
    """Path of each file name: at the top of ``images_dir``, else anywhere below it."""
    found: dict[str, Path | None] = {n: (images_dir / n if (images_dir / n).is_file() else None) for n in names}
    if any(p is None for p in found.values()):
        wanted = {n for n, p in found.items() if p is None}
        for path in images_dir.rglob("*" + DLS_FILE_SUFFIX):
            if path.name in wanted and found[path.name] is None:
                found[path.name] = path
    return found


def _check_header_spacing(path: Path, plan: Reorientation, file_geometry: Geometry, json_spacing_xyz: tuple) -> None:
    header_xyz = tuple(file_geometry.spacing_xyz[a] for a in plan.axes)
    if not np.allclose(header_xyz, json_spacing_xyz, rtol=_SPACING_TOLERANCE):
        logger.warning("%s: header spacing %s differs from the annotation's %s; using the annotation's "
                       "(the DLS benchmark measures with it).", path, [round(s, 6) for s in header_xyz],
                       list(json_spacing_xyz))


def _write_dataset_json(folder: Path, name: str, annotations: Path) -> None:
    images_tr = folder / "imagesTr"
    num_training = len(list(images_tr.glob("*_0000.nii.gz"))) if images_tr.is_dir() else 0
    meta_path = folder / "dataset.json"
    existing = {}
    if meta_path.is_file():
        try:
            existing = load_json(meta_path)
        except ValueError:
            existing = {}
    sources = list(existing.get("converted_from", []))
    if annotations.name not in sources:
        sources.append(annotations.name)
    meta = make_dataset_json(
        name, "tracking", num_training,
        description=("DLS lesion-tracking benchmark (Cai et al., CVPR 2021, github.com/JimmyCai91/DLT) on "
                     "DeepLesion subvolumes, converted by lesionnet_convert_dls. Centers are the DLS [x, y, z] "
                     "(column, row, slice); radius_mm = max(recist diameter) / 2 * spacing_x."),
        licence=("DeepLesion images: NIH Clinical Center terms (nihcc.app.box.com/v/DeepLesion); "
                 "DLS annotations: CC-BY-SA-4.0 (github.com/JimmyCai91/DLT)."),
        converted_from=sources,
    )
    write_json(meta_path, meta)
