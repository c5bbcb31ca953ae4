"""Convert the DLS lesion-tracking benchmark (DeepLesion NIfTI subvolumes + DLS json) to a raw tracking dataset.

Inputs
------
* DeepLesion subvolumes ``PPPPPP_SS_NN_start-end.nii.gz`` as written by DeepLesion's official
  ``DL_save_nifti.py``; their names and axis order are handled in :mod:`lesionnet.datasets.deeplesion_layout`
  (which also explains what ``DL_save_nifti.py`` writes, see ``documentation/dls_conversion.md``).
* A DLS annotation file (``train.json``/``valid.json``/``test.json`` of github.com/JimmyCai91/DLT),
  read and validated by :mod:`lesionnet.datasets.dls_annotations`: directed pairs with centers
  ``[x, y, z]`` (column, row, slice, 0-based), spacings ``[sx, sy, sz]`` (mm) and RECIST diameters (pixels),
  held as ``(z, y, x)`` once read.

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

This module holds the conversion driver (:func:`convert_dls`) and the reading of one subvolume onto
the DLS grid (:func:`read_deeplesion_subvolume`); the public names of the two modules above are
re-exported here, so ``lesionnet.datasets.dls_convert`` stays the one import for the converter.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm import tqdm

from lesionnet import paths
from lesionnet.datasets.dataset_id import dataset_folder_name
from lesionnet.datasets.deeplesion_layout import (
    DEEPLESION_DIRECTION,
    DL_SAVE_NIFTI_DIRECTION,
    DLS_FILE_PATTERN,
    DLS_FILE_SUFFIX,
    DLSConversionError,
    DLSLayoutError,
    Reorientation,
    detect_reorientation,
    expected_num_slices,
    patient_from_scan_id,
    scan_id_from_filename,
    slice_range_from_filename,
)
from lesionnet.datasets.dls_annotations import DLSRecord, dls_radius_mm, load_dls_annotations
from lesionnet.datasets.geometry import Geometry, zyx_to_xyz
from lesionnet.datasets.image_io import (
    ImageReadError,
    read_geometry,
    read_image,
    write_image,
)
from lesionnet.datasets.raw_format import (
    DATASET_FOLDER_PATTERN,
    SPLITS,
    make_dataset_json,
    save_pairs,
)
from lesionnet.utils.files import load_json, write_json

__all__ = [
    "DEEPLESION_DIRECTION",
    "DLS_FILE_PATTERN",
    "DLS_FILE_SUFFIX",
    "DL_SAVE_NIFTI_DIRECTION",
    "ConversionResult",
    "DLSConversionError",
    "DLSLayoutError",
    "DLSRecord",
    "Reorientation",
    "convert_dls",
    "detect_reorientation",
    "dls_radius_mm",
    "expected_num_slices",
    "load_dls_annotations",
    "patient_from_scan_id",
    "read_deeplesion_subvolume",
    "scan_id_from_filename",
    "slice_range_from_filename",
]

logger = logging.getLogger(__name__)

_SPACING_TOLERANCE = 1e-3  # relative; NIfTI stores pixdim as float32


# ------------------------------------------------------------------------------------------------
# reading a subvolume
# ------------------------------------------------------------------------------------------------


def read_deeplesion_subvolume(path: str | os.PathLike, spacing_zyx: Iterable[float] | None = None,
                              reorientation: Reorientation | None = None) -> tuple[np.ndarray, Geometry]:
    """Read a DeepLesion subvolume onto the DLS grid: array ``[slice, row, column]`` and its geometry.

    ``spacing_zyx`` (the DLS json's ``[sx, sy, sz]`` as ``(z, y, x)``, mm) replaces the header spacing
    when given.
    Integer-valued voxels (DL_save_nifti.py writes int16, or float64 for subvolumes of 300 slices
    or more) come back as int16, anything else as float32.
    """
    path = Path(path)
    file_array_zyx, file_geometry = read_image(path, dtype=None)
    if reorientation is None:
        reorientation = detect_reorientation(file_geometry, path)
    geometry = reorientation.output_geometry(file_geometry)
    if spacing_zyx is not None:
        geometry = Geometry(zyx_to_xyz(tuple(float(s) for s in spacing_zyx)), geometry.origin_xyz,
                            geometry.direction, geometry.shape_zyx)
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

    # spacing (z, y, x) per scan from the json; the pairs must agree
    spacing_of: dict[str, tuple] = {}
    for r in records:
        for file_name, spacing_zyx in ((r.source_file, r.source_spacing_zyx), (r.target_file, r.target_spacing_zyx)):
            known_zyx = spacing_of.setdefault(file_name, spacing_zyx)
            if not np.allclose(known_zyx, spacing_zyx, rtol=_SPACING_TOLERANCE):
                logger.warning("%s: pairs of %s give different spacings %s and %s; using the first.",
                               file_name, annotations.name, list(zyx_to_xyz(known_zyx)),
                               list(zyx_to_xyz(spacing_zyx)))

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
        for which, file_name, center_zyx in (("source", r.source_file, r.source_center_zyx),
                                             ("target", r.target_file, r.target_center_zyx)):
            if not geometries[file_name].contains_voxel(center_zyx):
                logger.warning("%s pair %s: %s center %s lies outside %s (size x×y×z %s); kept as given.",
                               annotations.name, r.key, which, list(zyx_to_xyz(center_zyx)), file_name,
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


def _check_header_spacing(path: Path, plan: Reorientation, file_geometry: Geometry, json_spacing_zyx: tuple) -> None:
    header_zyx = tuple(file_geometry.spacing_zyx[a] for a in plan.axes_zyx)
    if not np.allclose(header_zyx, json_spacing_zyx, rtol=_SPACING_TOLERANCE):
        logger.warning("%s: header spacing %s differs from the annotation's %s; using the annotation's "
                       "(the DLS benchmark measures with it).", path, [round(s, 6) for s in zyx_to_xyz(header_zyx)],
                       list(zyx_to_xyz(json_spacing_zyx)))


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
