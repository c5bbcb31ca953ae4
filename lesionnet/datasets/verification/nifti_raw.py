"""Raw NIfTI-1/-2 reading for the dataset checker: what SimpleITK silently hides.

* :func:`read_nifti_header` / :func:`nifti_header_spacing`: the header fields exactly as stored.
  ITK's NIfTI reader replaces a zero or NaN ``pixdim`` by 1.0 without an error, so a spacing of 0 is
  invisible through SimpleITK. Header triples (``shape_xyz``, ``pixdim_xyz``) are in NIfTI/ITK
  (x, y, z) order; ``pixdim`` is the voxel size as written (normally mm).
* :func:`scan_nifti_voxels`: streams the raw voxel bytes of a NIfTI file of any pixel type once and
  compares their number with what the header announces (ITK's NIfTI reader fills the missing part
  of a truncated integer file with zeros without an error), and for float32/float64 voxels counts
  NaN/±inf (ITK up to 5.4 reads them as 0). The first bad voxel is returned as an array index
  ``[z, y, x]``. :func:`nifti_nonfinite_voxels` is its float-only form.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
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
    bitpix: int = 0
    num_voxels: int = 0          # product of dim[1..dim[0]] as stored (0 for an empty image)
    stored_shape_xyz: tuple = ()  # dim[1:4] as stored (0 kept), ITK (x, y, z) order

    @property
    def voxel_bytes(self) -> int:
        """Bytes of voxel data the header announces (``num_voxels · bitpix / 8``)."""
        return self.num_voxels * max(self.bitpix, 0) // 8

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
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            vox_offset = int(struct.unpack(endian + "f", header[108:112])[0])
            return NiftiHeader(1, endian, datatype, _dims_xyz(dim), tuple(float(v) for v in pixdim[1:4]),
                               max(vox_offset, 352), int(bitpix), _num_voxels(dim), _stored_xyz(dim))
        if sizeof_hdr == 540 and len(header) >= 540:  # NIfTI-2
            datatype, bitpix = struct.unpack(endian + "2h", header[12:16])
            dim = struct.unpack(endian + "8q", header[16:80])
            pixdim = struct.unpack(endian + "8d", header[104:168])
            vox_offset = struct.unpack(endian + "q", header[168:176])[0]
            return NiftiHeader(2, endian, datatype, _dims_xyz(dim), tuple(float(v) for v in pixdim[1:4]),
                               max(int(vox_offset), 544), int(bitpix), _num_voxels(dim), _stored_xyz(dim))
    return None


def _dims_xyz(dim) -> tuple:
    ndim = max(int(dim[0]), 0)
    sizes = [int(d) if i < ndim else 1 for i, d in enumerate(dim[1:4])]
    return tuple(max(s, 1) for s in sizes)


def _num_voxels(dim) -> int:
    ndim = min(max(int(dim[0]), 0), 7)
    count = 1
    for d in dim[1:ndim + 1]:
        count *= max(int(d), 0)
    return count


def _stored_xyz(dim) -> tuple:
    ndim = max(int(dim[0]), 0)
    return tuple(int(d) if i < ndim else 1 for i, d in enumerate(dim[1:4]))


def nifti_header_spacing(path: str | os.PathLike) -> tuple | None:
    """``pixdim[1:4]`` exactly as stored in a NIfTI header, or None if not a readable NIfTI file.

    ITK's NIfTI reader replaces a zero or NaN ``pixdim`` by 1.0 without an error, so a header
    spacing of 0 is invisible through SimpleITK; this reads the raw header bytes instead.
    """
    header = read_nifti_header(path)
    return None if header is None else header.pixdim_xyz


@dataclass(frozen=True)
class NiftiVoxelScan:
    """What :func:`scan_nifti_voxels` found in a NIfTI file's voxel data.

    Attributes:
        header: the raw header.
        bytes_expected: voxel bytes the header announces.
        bytes_found: voxel bytes present after ``vox_offset`` (decompressed), at most ``bytes_expected``.
        nonfinite: ``(number of NaN, number of ±inf, first bad voxel [z, y, x] or None)`` for
            float32/float64 voxels, else None.
    """

    header: NiftiHeader
    bytes_expected: int
    bytes_found: int
    nonfinite: tuple | None

    @property
    def truncated(self) -> bool:
        return self.bytes_found < self.bytes_expected

    def describe_truncation(self) -> str:
        """``voxel data end early: 79524 of 159048 bytes (50.0 %) ...``, for messages."""
        percent = 100.0 * self.bytes_found / max(self.bytes_expected, 1)
        return (f"voxel data end early (truncated file): {self.bytes_found} of the {self.bytes_expected} bytes "
                f"that the header announces ({percent:.1f} %); SimpleITK would read the missing voxels as 0")


def scan_nifti_voxels(path: str | os.PathLike, chunk_bytes: int = 1 << 26) -> NiftiVoxelScan | None:
    """Stream the voxel bytes of a ``.nii``/``.nii.gz`` file once (any pixel type); None if not NIfTI.

    The decompressed voxel bytes are counted and compared with ``prod(dim) · bitpix / 8`` from the
    header: ITK's NIfTI reader fills a truncated file's missing voxels with 0 for every pixel type
    except float (where it fails), so a cut ``.nii.gz`` is invisible through SimpleITK. Float32/float64
    voxels are also scanned for NaN/±inf, which ITK up to 5.4 silently reads as 0 (``nifti_read_buffer``;
    fixed in ITK 6, InsightSoftwareConsortium/ITK#6683). Memory: one chunk of ``chunk_bytes``.

    Raises:
        ImageReadError: the file cannot be opened or decompressed.
    """
    header = read_nifti_header(path)
    if header is None:
        return None
    dtype = header.float_dtype
    expected = header.voxel_bytes
    if dtype is not None:
        chunk_bytes = max(chunk_bytes // dtype.itemsize, 1) * dtype.itemsize
    n_nan = n_inf = 0
    first = None
    found = 0
    opener = gzip.open if str(path).lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            f.seek(header.vox_offset)
            while found < expected:
                buffer = f.read(min(chunk_bytes, expected - found))
                if not buffer:
                    break
                if dtype is not None:
                    usable = len(buffer) - len(buffer) % dtype.itemsize
                    values = np.frombuffer(buffer[:usable], dtype=dtype)
                    bad = ~np.isfinite(values)
                    if bad.any():
                        nan_count = int(np.count_nonzero(np.isnan(values)))
                        n_nan += nan_count
                        n_inf += int(np.count_nonzero(bad)) - nan_count
                        if first is None:
                            flat = found // dtype.itemsize + int(np.flatnonzero(bad)[0])
                            # NIfTI stores x fastest: flat = x + nx * (y + ny * z)
                            first = tuple(int(v) for v in np.unravel_index(flat, xyz_to_zyx(header.shape_xyz)))
                found += len(buffer)
    except (OSError, EOFError, zlib.error) as e:
        raise ImageReadError(f"{path}: voxel data cannot be read ({first_line(e)}).") from e
    return NiftiVoxelScan(header, expected, found, (n_nan, n_inf, first) if dtype is not None else None)


def nifti_nonfinite_voxels(path: str | os.PathLike, chunk_bytes: int = 1 << 26) -> tuple | None:
    """``(number of NaN, number of ±inf, first bad voxel [z, y, x] or None)`` of a float NIfTI file.

    The float-only form of :func:`scan_nifti_voxels`; None when the file is not a NIfTI file with
    float32/float64 voxels.

    Raises:
        ImageReadError: the voxel data end before the size announced by the header, or cannot be read.
    """
    header = read_nifti_header(path)
    if header is None or header.float_dtype is None:
        return None
    result = scan_nifti_voxels(path, chunk_bytes)
    if result.truncated:
        raise ImageReadError(f"{path}: {result.describe_truncation()}.")
    return result.nonfinite
