"""DLS annotation files: loading and validating the directed lesion pairs of the DLS benchmark.

A DLS annotation file (``train.json``/``valid.json``/``test.json`` of github.com/JimmyCai91/DLT) is
a dict keyed ``"0001"``, ... (a list is accepted too) of directed pairs with ``source``/``target``
file names (DeepLesion subvolumes, see :mod:`lesionnet.datasets.deeplesion_layout`),
``source center``/``target center`` ``[x, y, z]`` (x = column, y = row, z = slice of the subvolume,
0-based), ``source spacing``/``target spacing`` ``[sx, sy, sz]`` (mm) and
``source recist diameter``/``target recist diameter`` ``[long, short]`` in pixels.
:func:`load_dls_annotations` reads one into :class:`DLSRecord` objects, in key order, and rejects
missing keys, non-finite numbers, non-positive spacings and diameters with a :class:`DLSConversionError`.
The file's ``[x, y, z]`` centers and spacings are converted to lesionnet's ``(z, y, x)`` when read.
Radius (DLS convention): ``radius_mm = max(recist diameter) / 2 * spacing_x``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from lesionnet.datasets.deeplesion_layout import DLSConversionError, patient_from_scan_id, scan_id_from_filename
from lesionnet.datasets.geometry import xyz_to_zyx, zyx_to_xyz
from lesionnet.datasets.raw_format import TrackingPair
from lesionnet.utils.files import load_json
from lesionnet.utils.validation import finite_numbers


@dataclass(frozen=True)
class DLSRecord:
    """One directed DLS pair, as read from the annotation json (file names with ``.nii.gz``).

    Centers are continuous voxel indices ``(z, y, x)`` of the subvolume named, spacings ``(z, y, x)``
    in mm (the json's ``[x, y, z]``, converted when read); RECIST diameters ``(long, short)`` in pixels.
    """

    key: str
    source_file: str
    target_file: str
    source_center_zyx: tuple
    target_center_zyx: tuple
    source_spacing_zyx: tuple
    target_spacing_zyx: tuple
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
        return dls_radius_mm(self.source_recist_diameter_px, self.source_spacing_zyx)

    @property
    def target_radius_mm(self) -> float:
        return dls_radius_mm(self.target_recist_diameter_px, self.target_spacing_zyx)

    def to_pair(self, pair_id: str) -> TrackingPair:
        return TrackingPair(
            pair_id=pair_id,
            source=self.source,
            target=self.target,
            source_center_zyx=self.source_center_zyx,
            source_radius_mm=self.source_radius_mm,
            target_center_zyx=self.target_center_zyx,
            target_radius_mm=self.target_radius_mm,
            patient=patient_from_scan_id(self.source),
        )


def dls_radius_mm(recist_diameter_px: Iterable[float], spacing_zyx: Iterable[float]) -> float:
    """DLS lesion radius: half the long RECIST diameter (pixels) times the x spacing (mm) of ``spacing_zyx``."""
    _, _, spacing_x = spacing_zyx
    return max(float(d) for d in recist_diameter_px) / 2.0 * float(spacing_x)


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
        source_center_zyx=xyz_to_zyx(numbers("source center", 3)),
        target_center_zyx=xyz_to_zyx(numbers("target center", 3)),
        source_spacing_zyx=xyz_to_zyx(numbers("source spacing", 3)),
        target_spacing_zyx=xyz_to_zyx(numbers("target spacing", 3)),
        source_recist_diameter_px=numbers("source recist diameter", 2),
        target_recist_diameter_px=numbers("target recist diameter", 2),
    )
    for which in ("source", "target"):
        spacing_zyx = getattr(rec, f"{which}_spacing_zyx")
        if min(spacing_zyx) <= 0:
            raise DLSConversionError(f"{where}: '{which} spacing' {list(zyx_to_xyz(spacing_zyx))} must be positive.")
        if getattr(rec, f"{which}_radius_mm") <= 0:
            raise DLSConversionError(f"{where}: '{which} recist diameter' must be positive.")
    return rec

