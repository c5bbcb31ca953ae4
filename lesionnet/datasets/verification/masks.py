"""Mask checks of a detection dataset: the instance masks in ``labelsTr/``.

:class:`MaskChecks` reports a missing ``labelsTr/``, stray files there and masks without an image
(:meth:`MaskChecks._check_label_files`), and for each ``imagesTr`` scan a missing mask
(:meth:`MaskChecks._check_scan_mask`) or one that is not on the image's grid (shape ``z×y×x``, spacing,
origin, direction) or does not hold non-negative integers (0 background, 1..N one lesion each).
Mask files are read through :meth:`~lesionnet.datasets.verification.scans.ScanChecks._read`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.verification.problems import WARNING, describe_difference
from lesionnet.datasets.verification.scans import ScanChecks
from lesionnet.utils.files import TEMP_PREFIX


class MaskChecks(ScanChecks):
    """Checks of the detection masks; a mask is compared with channel 0 of its scan (:attr:`geometries`)."""

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

    def _check_scan_mask(self, split: str, scan_id: str, ending: str) -> None:
        """The mask of a detection scan: present (when ``labelsTr/`` exists) and valid."""
        label_path = self.folder / "labelsTr" / f"{scan_id}{ending}"
        if not label_path.is_file():
            if (self.folder / "labelsTr").is_dir():
                self.add(label_path, f"mask of scan '{scan_id}' is missing",
                         "add the instance mask (0 background, 1..N one lesion each) or move the scan to imagesTs/")
            return
        image_geometry = self.geometries.get((split, scan_id))
        self._check_mask_file(label_path, image_geometry)

    def _check_mask_file(self, path: Path, image_geometry: Geometry | None) -> None:
        result = self._read(path, need_voxels=True)
        if result is None:
            return
        array, geometry, nonfinite = result
        self._check_geometry(path, geometry, check_size=image_geometry is None)
        if image_geometry is not None and not image_geometry.same_grid(geometry):
            self.add(path, f"mask grid differs from its image ({describe_difference(image_geometry, geometry)})",
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

