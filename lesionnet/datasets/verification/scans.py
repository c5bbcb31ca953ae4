"""Scan checks: one image file (readable, geometry, NaN/inf voxels) and one scan (all channels, same grid).

:class:`ScanChecks` reads each image file once (:meth:`ScanChecks._read`): with ``check_voxels=False``
only the header, otherwise the voxels too, float NIfTI files streamed raw (see
:mod:`~lesionnet.datasets.verification.nifti_raw`) because SimpleITK reads NaN/inf there as 0. Arrays are
``[z, y, x]``; spacing and origin are ITK (x, y, z) triples in mm; a NIfTI header spacing of 0 or NaN
(which SimpleITK replaces by 1 mm) is reported from the raw header. Channel 0's geometry of each scan is
kept in :attr:`geometries` for the mask and pair-center checks.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.image_io import ImageReadError, read_geometry, read_image
from lesionnet.datasets.verification.nifti_raw import nifti_header_spacing, nifti_nonfinite_voxels, read_nifti_header
from lesionnet.datasets.verification.problems import ProblemCollector, describe_difference, first_line

_AXES = ("x", "y", "z")


class ScanChecks(ProblemCollector):
    """Checks of the image files of a scan, one file at a time."""

    def _check_scan(self, split: str, scan_id: str, channels: dict, ending: str, num_channels: int) -> None:
        """Every channel file of a scan; all on channel 0's grid. Its mask, if any, is checked by the caller."""
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
                self.add(path, f"geometry differs from channel 0 ({describe_difference(reference, geometry)})",
                         "resample all channels of a scan onto the same grid")

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
            self.add(path, f"unreadable ({type(e).__name__}: {first_line(e)})", "re-export the file")
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
