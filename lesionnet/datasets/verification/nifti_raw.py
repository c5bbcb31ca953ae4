"""Raw NIfTI-1/-2 reading for the dataset checker: what SimpleITK silently hides.

* :func:`read_nifti_header` / :func:`nifti_header_spacing`: the header fields exactly as stored.
  ITK's NIfTI reader replaces a zero or NaN ``pixdim`` by 1.0 without an error, so a spacing of 0 is
  invisible through SimpleITK. Header triples (``shape_xyz``, ``pixdim_xyz``) are in NIfTI/ITK
  (x, y, z) order; ``pixdim`` is the voxel size as written (normally mm).
* :func:`nifti_nonfinite_voxels`: NaN/±inf counts of a float32/float64 NIfTI file, streamed from the
  raw voxel bytes (ITK up to 5.4 reads them as 0), and truncation detection (voxel data shorter than
  the header announces). The first bad voxel is returned as an array index ``[z, y, x]``.
"""
from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lesionnet.datasets.geometry import xyz_to_zyx
from lesionnet.datasets.image_io import ImageReadError
from lesionnet.datasets.verification.problems import first_line


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
                    first = tuple(int(v) for v in np.unravel_index(flat, xyz_to_zyx(header.shape_xyz)))
                done += count
    except (OSError, EOFError) as e:
        raise ImageReadError(f"{path}: voxel data cannot be read ({first_line(e)}).") from e
    return n_nan, n_inf, first

