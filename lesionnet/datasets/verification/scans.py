"""Scan checks: one image file (readable in full, geometry, size, NaN/inf voxels) and one scan (all channels).

:class:`ScanChecks` reads each image file once (:meth:`ScanChecks._read`): with ``check_voxels=False``
only the header, otherwise the voxels too, NIfTI files streamed raw (see
:mod:`~lesionnet.datasets.verification.nifti_raw`) because SimpleITK reads NaN/inf there as 0 and fills a
truncated integer file with 0. Every scan must have the size :mod:`~.limits` asks for (at least 4 voxels
per axis; tracking scans also the extent the registration needs, :attr:`min_extent_mm`). Arrays are
``[z, y, x]``; spacing and origin are ITK (x, y, z) triples in mm; a NIfTI header spacing of 0 or NaN
(which SimpleITK replaces by 1 mm) is reported from the raw header. Channel 0's geometry of each scan is
kept in :attr:`geometries` for the mask and pair-center checks.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from lesionnet.datasets.geometry import Geometry, xyz_to_zyx
from lesionnet.datasets.image_io import ImageReadError, read_geometry, read_image
from lesionnet.datasets.verification.limits import scan_size_problem
from lesionnet.datasets.verification.nifti_raw import nifti_header_spacing, read_nifti_header, scan_nifti_voxels
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
        Each file's voxels are read once: NIfTI files are streamed raw (:func:`scan_nifti_voxels`: the
        byte count against the header for every pixel type, NaN/inf for floats — SimpleITK hides both),
        with only the header read through SimpleITK unless the caller needs the array; other formats
        are read through SimpleITK, which fails on truncated data itself. A truncated file is reported
        and its header geometry still returned (array None), so its other checks still run.
        """
        try:
            if not self.check_voxels:
                return None, read_geometry(path), None
            nifti = scan_nifti_voxels(path)
            if nifti is not None:
                if nifti.truncated:
                    self.add(path, nifti.describe_truncation(),
                             "copy or export the file again (it was cut short, e.g. by an interrupted copy or a "
                             "full disk)")
                    return None, read_geometry(path), None
                if not need_voxels:
                    return None, read_geometry(path), nifti.nonfinite
                array, geometry = read_image(path, dtype=None)
                return array, geometry, nifti.nonfinite
            array, geometry = read_image(path, dtype=None)
            raw = None
            if np.issubdtype(array.dtype, np.floating):
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

    def _check_geometry(self, path: Path, geometry: Geometry, check_size: bool = True) -> bool:
        """Spacing positive and finite (also in a NIfTI header), origin finite, direction not degenerate, and
        with ``check_size`` the size :mod:`~.limits` asks for (a mask on its image's grid skips it).
        Returns False when the scan is too small (its centers are then not checked: one problem, not many)."""
        spacing = np.asarray(geometry.spacing_xyz, dtype=np.float64)
        bad = [f"{a}={s:g}" for a, s in zip(_AXES, spacing) if not (math.isfinite(s) and s > 0)]
        raw = nifti_header_spacing(path)
        spacing_reported = bool(bad)
        if raw is not None:
            bad_raw = [f"{a}={s:g}" for a, s in zip(_AXES, raw) if not (math.isfinite(s) and s > 0)]
            if bad_raw and not bad:
                self.add(path, f"spacing in the NIfTI header (pixdim) is not positive and finite: {', '.join(bad_raw)} "
                         f"(SimpleITK silently reads {tuple(round(s, 6) for s in spacing)})",
                         "write the true voxel size (mm) into the header, e.g. re-export with SimpleITK "
                         "or fix pixdim with nibabel header.set_zooms")
                bad = []  # reported
                spacing_reported = True
        if bad:
            self.add(path, f"spacing is not positive and finite: {', '.join(bad)}",
                     "write the true voxel size (mm) into the image header")
        if not np.all(np.isfinite(geometry.origin_xyz)):
            self.add(path, f"origin is not finite: {geometry.origin_xyz}", "fix the image header")
        direction = geometry.direction_matrix
        if not np.all(np.isfinite(direction)) or abs(np.linalg.det(direction)) < 1e-3:
            self.add(path, "direction matrix is degenerate", "fix the image header (orientation)")
        if not check_size:
            return True
        header = read_nifti_header(path)
        shape_zyx = xyz_to_zyx(header.stored_shape_xyz) if header is not None else geometry.shape_zyx
        too_small = scan_size_problem(shape_zyx, geometry.spacing_xyz,
                                      None if spacing_reported else self.min_extent_mm)
        if too_small:
            self.add(path, too_small, "export the whole scan (all slices), or remove it and the pairs or mask that use "
                     "it")
        return not too_small

    def _check_image_file(self, path: Path) -> Geometry | None:
        result = self._read(path, need_voxels=False)
        if result is None:
            return None
        _, geometry, nonfinite = result
        large_enough = self._check_geometry(path, geometry)
        self._report_nonfinite(path, nonfinite, "e.g. by the air value -1024 HU for CT")
        return geometry if large_enough else None
