"""Reading and writing 3D images through SimpleITK (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``).

Images travel through lesionnet as a numpy array in ``[z, y, x]`` order plus a
:class:`~lesionnet.datasets.geometry.Geometry` in ITK ``(x, y, z)`` order. This module is the only
one that touches ``SimpleITK.GetArrayFromImage`` / ``GetImageFromArray``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lesionnet.datasets.geometry import Geometry, xyz_to_zyx
from lesionnet.utils.files import atomic_path

SUPPORTED_FILE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha")


class ImageReadError(RuntimeError):
    """A scan could not be read; the message names the file."""


def file_ending(path: str | os.PathLike) -> str:
    """The supported file ending of ``path`` (``.nii.gz`` counts as one ending)."""
    name = Path(path).name.lower()
    for ending in SUPPORTED_FILE_ENDINGS:
        if name.endswith(ending):
            return ending
    raise ValueError(f"{path}: unsupported file type; use one of {', '.join(SUPPORTED_FILE_ENDINGS)}.")


def geometry_of(image: sitk.Image) -> Geometry:
    """Geometry of a SimpleITK image (3D)."""
    if image.GetDimension() != 3:
        raise ValueError(f"expected a 3D image, got {image.GetDimension()}D")
    size_xyz = image.GetSize()
    return Geometry(image.GetSpacing(), image.GetOrigin(), image.GetDirection(), xyz_to_zyx(size_xyz))


def read_sitk(path: str | os.PathLike) -> sitk.Image:
    """Read a 3D image with SimpleITK; raise :class:`ImageReadError` naming the file on failure."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found.")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        first_line = str(e).strip().splitlines()[-1] if str(e).strip() else "unknown error"
        raise ImageReadError(f"{path}: cannot be read as an image ({first_line}). "
                             "Re-export the file or remove it from the dataset.") from e
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(f"{path}: expected a single-channel 3D image, got "
                             f"{image.GetDimension()}D with {image.GetNumberOfComponentsPerPixel()} components.")
    return image


def read_image(path: str | os.PathLike, dtype=np.float32) -> tuple[np.ndarray, Geometry]:
    """Read a 3D image → ``(array_zyx, geometry)``; ``array_zyx`` has shape (Z, Y, X)."""
    image = read_sitk(path)
    array_zyx = sitk.GetArrayFromImage(image)
    if dtype is not None:
        array_zyx = array_zyx.astype(dtype, copy=False)
    return array_zyx, geometry_of(image)


def read_geometry(path: str | os.PathLike) -> Geometry:
    """Geometry of an image file from its header only (no voxel data is loaded)."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found.")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        raise ImageReadError(f"{path}: cannot read the image header. Re-export the file.") from e
    size_xyz = reader.GetSize()
    if len(size_xyz) != 3:
        raise ImageReadError(f"{path}: expected a 3D image, got {len(size_xyz)}D.")
    return Geometry(reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection(), xyz_to_zyx(size_xyz))


def to_sitk(array_zyx: np.ndarray, geometry: Geometry) -> sitk.Image:
    """Wrap a ``[z, y, x]`` array and its geometry into a SimpleITK image."""
    if tuple(array_zyx.shape) != tuple(geometry.shape_zyx) and geometry.shape_zyx != (0, 0, 0):
        raise ValueError(f"array shape {array_zyx.shape} does not match geometry shape {geometry.shape_zyx}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_zyx))
    image.SetSpacing(geometry.spacing_xyz)
    image.SetOrigin(geometry.origin_xyz)
    image.SetDirection(geometry.direction)
    return image


def write_image(path: str | os.PathLike, array_zyx: np.ndarray, geometry: Geometry, compress: bool = True) -> None:
    """Write a ``[z, y, x]`` array with its geometry atomically; the format follows the file ending."""
    file_ending(path)  # validates the ending before anything is written
    write_sitk(path, to_sitk(array_zyx, geometry), compress=compress)


def write_sitk(path: str | os.PathLike, image: sitk.Image, compress: bool = True) -> None:
    """Write a SimpleITK image atomically."""
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
