"""DeepLesion subvolume files: their names, the errors of the DLS converter, and their axis order.

File names
----------
DeepLesion subvolumes are ``PPPPPP_SS_NN_start-end.nii.gz`` as written by DeepLesion's official
``DL_save_nifti.py`` (patient, study, series, first and last slice number of the subvolume, inclusive);
the scan id is the name without ``.nii.gz`` and the patient id its first 6 digits.

What DeepLesion's writer does (see ``documentation/dls_conversion.md``)
----------------------------------------------------------------------
``DL_save_nifti.py`` stacks the PNG slices with ``cv2.merge`` into ``V[row, col, slice]`` and saves
``nibabel.Nifti1Image(V, T)`` with ``T = [[0, -s1, 0, 0], [-s0, 0, 0, 0], [0, 0, -s2, 0], [0, 0, 0, 1]]``.
SimpleITK therefore reads ITK index ``(row, col, slice)`` — array ``[slice, col, row]`` — with
direction ``(0, 1, 0, 1, 0, 0, 0, 0, -1)`` (LPS): rows and columns are swapped with respect to the
DLS ``[x, y, z]``. In world (LPS) terms the file is consistent: columns run towards +x (patient
left), rows towards +y (posterior), slices towards -z (feet).

Re-orientation
--------------
:func:`detect_reorientation` finds, from a file's header direction cosines, which axis of the file's
``[z, y, x]`` array becomes output z (slice), y (row) and x (column) and which are flipped;
:class:`Reorientation` applies that to a ``[z, y, x]`` array and to the geometry (every voxel keeps its
world position, in mm), giving the array ``[slice, row, column]`` — ITK index ``(x, y, z)`` = (column,
row, slice) — with direction :data:`DEEPLESION_DIRECTION`. The slice axis must have as many voxels as
the file name's slice range (``002-014`` → 13), otherwise :class:`DLSLayoutError`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lesionnet.datasets.geometry import Geometry, points_xyz_to_zyx, xyz_to_zyx, zyx_to_xyz

DLS_FILE_PATTERN = re.compile(r"^(\d{6})_(\d{2})_(\d{2})_(\d{3})-(\d{3})\.nii\.gz$")
DLS_FILE_SUFFIX = ".nii.gz"

#: Direction of the written scans: x (column) → +x, y (row) → +y, z (slice) → -z in ITK's LPS world,
#: the orientation DeepLesion's own files declare (row-major, columns = index axes).
DEEPLESION_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
#: ITK direction of a file written by DL_save_nifti.py (index axes: row, column, slice).
DL_SAVE_NIFTI_DIRECTION = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0)

#: World axis (0 = x, 1 = y, 2 = z of ITK's LPS) along which each axis of the output ``[z, y, x]``
#: array runs — slices along z, rows along y, columns along x — and the sign of that direction
#: (DeepLesion's orientation: columns +x, rows +y, slices -z).
_OUTPUT_WORLD_AXIS_ZYX = xyz_to_zyx((0, 1, 2))
_OUTPUT_SIGN_ZYX = xyz_to_zyx((1.0, 1.0, -1.0))

_DIRECTION_TOLERANCE = 1e-3


class DLSConversionError(ValueError):
    """The DLS input cannot be converted; the message names the file and what to do."""


class DLSLayoutError(DLSConversionError):
    """A subvolume's axis order cannot be established from its header and file name."""


# ------------------------------------------------------------------------------------------------
# file names
# ------------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------------
# axis order of a subvolume
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reorientation:
    """How to turn a file's voxel grid into the DeepLesion/lesionnet grid.

    ``axes_zyx[a]`` is the axis of the file's ``[z, y, x]`` array that becomes output axis ``a``
    (z = slice, y = row, x = column); ``flip_zyx[a]`` says whether it is reversed. ``layout`` names
    what was recognised.
    """

    axes_zyx: tuple
    flip_zyx: tuple
    layout: str

    @property
    def is_identity(self) -> bool:
        return self.axes_zyx == (0, 1, 2) and not any(self.flip_zyx)

    def output_geometry(self, file_geometry: Geometry) -> Geometry:
        """Geometry of the re-oriented grid; every voxel keeps its world position."""
        file_shape_zyx = file_geometry.shape_zyx
        spacing_zyx = tuple(file_geometry.spacing_zyx[a] for a in self.axes_zyx)
        shape_zyx = tuple(file_shape_zyx[a] for a in self.axes_zyx)
        first_voxel_file_zyx = [0, 0, 0]
        for out_axis, file_axis in enumerate(self.axes_zyx):
            if self.flip_zyx[out_axis]:
                first_voxel_file_zyx[file_axis] = file_shape_zyx[file_axis] - 1
        origin_world = file_geometry.voxel_to_world(first_voxel_file_zyx)
        return Geometry(zyx_to_xyz(spacing_zyx), tuple(origin_world), DEEPLESION_DIRECTION, shape_zyx)

    def apply(self, file_array_zyx: np.ndarray) -> np.ndarray:
        """Re-orient a file's ``[z, y, x]`` array to ``[slice, row, column]`` (a view where possible)."""
        array_zyx = file_array_zyx.transpose(self.axes_zyx)
        for out_axis, flipped in enumerate(self.flip_zyx):
            if flipped:
                array_zyx = np.flip(array_zyx, axis=out_axis)
        return array_zyx


def detect_reorientation(file_geometry: Geometry, path: str | os.PathLike = "") -> Reorientation:
    """Establish the axis order of a DeepLesion subvolume from its header and its file name.

    The header's direction cosines must be axis-aligned; the array axis running along world z is the
    slice axis, the one along world x the column axis, the one along world y the row axis. Axes are
    flipped where they run against DeepLesion's orientation (columns +x, rows +y, slices -z, ITK LPS).
    The slice axis must have as many voxels as the file name's slice range (``002-014`` → 13).

    Raises:
        DLSLayoutError: oblique direction cosines, or a slice count that contradicts the file name.
    """
    path = Path(path)
    # rows: world x, y, z; columns: the world direction of each axis of the file's [z, y, x] array
    direction_zyx = points_xyz_to_zyx(file_geometry.direction_matrix)
    world_of_axis = np.argmax(np.abs(direction_zyx), axis=0)
    aligned = np.abs(direction_zyx[world_of_axis, range(3)])
    if not np.all(aligned > 1 - _DIRECTION_TOLERANCE) or len(set(world_of_axis.tolist())) != 3:
        raise DLSLayoutError(
            f"{path}: the header's direction cosines {tuple(round(v, 4) for v in file_geometry.direction)} are "
            "oblique, so the slice, row and column axes cannot be told apart. DeepLesion subvolumes from "
            "DL_save_nifti.py are axis-aligned: re-export the file with DL_save_nifti.py.")
    axes_zyx = tuple(int(np.flatnonzero(world_of_axis == w)[0]) for w in _OUTPUT_WORLD_AXIS_ZYX)
    flip_zyx = tuple(bool(np.sign(direction_zyx[w, a]) != sign)
                     for w, a, sign in zip(_OUTPUT_WORLD_AXIS_ZYX, axes_zyx, _OUTPUT_SIGN_ZYX))
    slice_axis = axes_zyx[0]
    n_slices = expected_num_slices(path.name)
    if n_slices is not None and file_geometry.shape_zyx[slice_axis] != n_slices:
        size_xyz = file_geometry.shape_xyz  # the message numbers the file axes as ITK does
        candidates = [a for a in range(3) if size_xyz[a] == n_slices]
        found = (f"file axis {candidates[0]} has {n_slices} voxels, so the data seem permuted relative to the header"
                 if candidates else f"no axis has {n_slices} voxels")
        raise DLSLayoutError(
            f"{path}: cannot establish the axis order: the file name says {n_slices} slices "
            f"({'-'.join(f'{v:03d}' for v in slice_range_from_filename(path.name))}), but the header's slice "
            f"axis (along world z) has {file_geometry.shape_zyx[slice_axis]} voxels (ITK size {list(size_xyz)}, "
            f"direction {tuple(round(v, 4) for v in file_geometry.direction)}); {found}. Neither DeepLesion's "
            "DL_save_nifti.py layout nor lesionnet's: re-export the subvolume with DL_save_nifti.py.")
    if axes_zyx == (0, 2, 1) and not any(flip_zyx):  # the file's array is [slice, column, row]
        layout = "DL_save_nifti (rows and columns swapped)"
    elif axes_zyx == (0, 1, 2) and not any(flip_zyx):
        layout = "lesionnet (already [slice, row, column])"
    else:
        axes_itk, flip_itk = _itk_order(axes_zyx, flip_zyx)
        layout = f"reoriented from its header (file axes {axes_itk} to x, y, z, flipped {flip_itk})"
    return Reorientation(axes_zyx, flip_zyx, layout)


def _itk_order(axes_zyx: tuple, flip_zyx: tuple) -> tuple[tuple, tuple]:
    """``axes_zyx`` / ``flip_zyx`` of a :class:`Reorientation` over ITK index axes instead (0 = x, 1 = y, 2 = z).

    For the layout description, which names the file axes as ITK numbers them.
    """
    itk_axis_of = zyx_to_xyz((0, 1, 2))  # the ITK index axis of each axis of a [z, y, x] array
    return tuple(itk_axis_of[a] for a in zyx_to_xyz(axes_zyx)), zyx_to_xyz(flip_zyx)

