"""One case through preprocessing, the same for training data and for every predictor (as nnU-Net does).

* :func:`preprocess_case` — resample a scan to the plan's target spacing and normalise it;
  ``preprocess_dataset`` stores its result for training, predictors run it on each input scan;
* :func:`registration_settings_of` and :func:`register_scan_pair` — the registration behind the
  tracking prior, with the plan's settings and the same direction rule as the training priors
  (with ``symmetric`` settings the earlier scan id is registered to the later one and the map is
  inverted for the other direction);
* :func:`lesion_on_grids` — a lesion's center on the preprocessed source grid and its prior (center
  and radius through the affine) on the preprocessed target grid.

Arrays are ``[z, y, x]``; centers are continuous voxel indices ``(z, y, x)`` of the grid named;
radii mm.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.image_io import read_image
from lesionnet.preprocessing.normalization import normalize
from lesionnet.preprocessing.resampling import map_voxel, resample_array, target_geometry
from lesionnet.registration.affine import RegistrationSettings
from lesionnet.registration.anatomy_maps import project_lesion
from lesionnet.registration.cache import DEFAULT_PRIOR_REGISTRATION
from lesionnet.registration.priors import register_prior_images, settings_from_dict, with_threads


@dataclass
class PreprocessedScan:
    """A scan after :func:`preprocess_case`: ``image`` float32 ``[z, y, x]`` on ``geometry`` (the target
    spacing, same field of view), and the scan as read (``raw_image`` HU on ``raw_geometry``)."""

    image: np.ndarray
    geometry: Geometry
    raw_image: np.ndarray
    raw_geometry: Geometry


def preprocess_case(image_zyx: np.ndarray, geometry: Geometry, data_configuration: dict) -> tuple[np.ndarray, Geometry]:
    """Resample ``image_zyx`` (HU, ``[z, y, x]``) to the data configuration's target spacing and normalise
    it; returns ``(float32 array, its grid)``."""
    grid = target_geometry(geometry, data_configuration["target_spacing_zyx"])
    interpolation = data_configuration.get("image_interpolation", "linear")
    resampled = resample_array(image_zyx, geometry, grid, interpolation)
    return normalize(resampled, data_configuration["normalization"]), grid


def preprocess_scan(path: str | os.PathLike, data_configuration: dict) -> PreprocessedScan:
    """Read a scan file and :func:`preprocess_case` it (raises ``ImageReadError`` naming the file)."""
    raw_image, raw_geometry = read_image(path)
    image, grid = preprocess_case(raw_image, raw_geometry, data_configuration)
    return PreprocessedScan(image, grid, raw_image, raw_geometry)


def registration_settings_of(data_configuration: dict, default: RegistrationSettings = DEFAULT_PRIOR_REGISTRATION,
                             threads: int | None = 1) -> tuple:
    """``(settings, symmetric)`` of the tracking prior planned in a data configuration (affine or
    deformable settings, as the plan's ``registration.settings`` say; ``default`` when the plan names
    none). ``threads`` replaces the planned thread count: 1 (training priors) is bit-for-bit repeatable,
    None uses every core (faster; the result varies in the last digits)."""
    reg = data_configuration.get("registration") or {}
    symmetric = bool(reg.get("symmetric", True))
    settings = settings_from_dict(reg["settings"]) if reg.get("settings") else default
    return with_threads(settings, threads), symmetric


def _content_key(scan: PreprocessedScan) -> str:
    digest = hashlib.blake2b(np.ascontiguousarray(scan.raw_image).tobytes(), digest_size=16)
    digest.update(repr(scan.raw_geometry).encode())
    return digest.hexdigest()


#: registrations of this process, by scan contents and settings: several trackers run on the same scan
#: pairs in one process (a comparison, a demo) register each pair once, and the symmetric rule reuses
#: one registration for both directions
_REGISTRATIONS: OrderedDict = OrderedDict()
_MAX_CACHED_REGISTRATIONS = 256


def _register_cached(template: PreprocessedScan, search: PreprocessedScan, settings):
    key = (_content_key(template), _content_key(search), json.dumps(settings.to_dict(), sort_keys=True))
    if key not in _REGISTRATIONS:
        _REGISTRATIONS[key] = register_prior_images(template.raw_image, template.raw_geometry, search.raw_image,
                                                    search.raw_geometry, settings)
        while len(_REGISTRATIONS) > _MAX_CACHED_REGISTRATIONS:
            _REGISTRATIONS.popitem(last=False)
    return _REGISTRATIONS[key]


def register_scan_pair(source: PreprocessedScan, target: PreprocessedScan, source_id: str, target_id: str,
                       settings, symmetric: bool = True):
    """The prior ``source → target`` (the kind ``settings`` name) from the raw scans, by the training priors'
    direction rule (symmetric: the earlier scan id is the template, the other direction is the inverse).
    A scan pair already registered in this process with the same settings is not registered again."""
    if symmetric and target_id < source_id:
        return _register_cached(target, source, settings).inverse()
    return _register_cached(source, target, settings)


def lesion_on_grids(registration, source_center_zyx_raw, radius_mm: float,
                    source_raw: Geometry, source_grid: Geometry,
                    target_grid: Geometry) -> tuple[np.ndarray, np.ndarray, float]:
    """``(source center on source_grid, prior center on target_grid, prior radius mm)`` of a lesion given
    on the raw source scan; centers ``(z, y, x)``. The prior radius is ``r · |det A|^(1/3)``."""
    source_zyx = map_voxel(source_center_zyx_raw, source_raw, source_grid)
    prior_zyx, prior_radius = project_lesion(registration, source_zyx, radius_mm, source_grid, target_grid)
    return source_zyx, prior_zyx, prior_radius


__all__ = ["PreprocessedScan", "preprocess_case", "preprocess_scan", "registration_settings_of",
           "register_scan_pair", "lesion_on_grids"]
