"""Reading preprocessed data: cases (arrays + geometry), tracking pairs with their affine priors, crops.

Typical use in a method's batch stream::

    from lesionnet.preprocessing.loading import PreprocessedDataset, crop_zyx, centered_start_zyx
    data = PreprocessedDataset(501, "lesionnetPlans_3d")      # a data configuration of the plans
    pair = data.pairs()[0]
    search = data.case(pair.target)
    start = centered_start_zyx(pair.prior_center_zyx, size_zyx)
    crop = crop_zyx(search.image, start, size_zyx)             # decompresses only that region

Arrays are blosc2 ``NDArray`` objects opened read-only (slicing returns numpy); pass
``as_numpy=True`` to :meth:`PreprocessedDataset.case` to decompress whole volumes instead. Centers
are continuous voxel indices ``(z, y, x)`` of the preprocessed arrays; radii mm.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lesionnet.datasets.dataset_id import resolve_raw_dataset
from lesionnet.datasets.geometry import Geometry
from lesionnet.paths import preprocessed_folder_for
from lesionnet.preprocessing.preprocess import PAIRS_FILE
from lesionnet.registration.priors import prior_from_dict
from lesionnet.utils.manifest import read_json_or_none


@dataclass
class PreprocessedCase:
    """One preprocessed scan: ``image`` (and ``seg`` for detection) ``[z, y, x]``, the grid ``geometry``
    of the arrays (world coordinates as the raw scan), and the sidecar ``properties``."""

    scan_id: str
    image: object
    geometry: Geometry
    original_geometry: Geometry
    properties: dict
    seg: object = None

    @property
    def instances(self) -> list:
        """Detection: ``[{"label", "box_zyx": [z0, y0, x0, z1, y1, x1] (half-open voxels), ...}]``."""
        return self.properties.get("instances", [])


@dataclass
class PreprocessedPair:
    """A training pair on the preprocessed grids (centers ``(z, y, x)`` voxels, radii mm) with its affine
    prior; ``extra`` holds the centers on the raw scans (``*_center_zyx_raw``)."""

    pair_id: str
    source: str
    target: str
    source_center_zyx: tuple
    source_radius_mm: float
    target_center_zyx: tuple
    target_radius_mm: float
    prior_center_zyx: tuple
    prior_radius_mm: float
    registration: object  # the prior: AffineRegistration or DeformableRegistration
    patient: str | None = None
    extra: dict = field(default_factory=dict)


def _open_array(path: Path, as_numpy: bool):
    import blosc2
    if not path.is_file():
        raise FileNotFoundError(f"{path}: preprocessed array missing. Re-run lesionnet_plan_and_preprocess.")
    array = blosc2.open(str(path), mode="r", mmap_mode="r")
    return array[:] if as_numpy else array


def load_case(folder: str | os.PathLike, scan_id: str, as_numpy: bool = False) -> PreprocessedCase:
    """Open a preprocessed case of a data folder (``.../<data_identifier>/``)."""
    folder = Path(folder)
    properties = read_json_or_none(folder / f"{scan_id}.json")
    if properties is None:
        raise FileNotFoundError(f"{folder / (scan_id + '.json')}: no preprocessed case '{scan_id}'. "
                                "Re-run lesionnet_plan_and_preprocess.")
    image = _open_array(folder / properties["image_file"], as_numpy)
    seg = _open_array(folder / properties["seg_file"], as_numpy) if properties.get("seg_file") else None
    return PreprocessedCase(scan_id, image, Geometry.from_dict(properties["geometry"]),
                            Geometry.from_dict(properties["original_geometry"]), properties, seg)


def load_tracking_pairs(folder: str | os.PathLike) -> list[PreprocessedPair]:
    """The training pairs of a tracking data folder, each with its directed affine registration."""
    folder = Path(folder)
    content = read_json_or_none(folder / PAIRS_FILE)
    if content is None or "source_center_zyx" not in (content.get("pairs") or [{}])[0]:
        raise FileNotFoundError(f"{folder / PAIRS_FILE}: missing or written by an older lesionnet. "
                                "Re-run lesionnet_plan_and_preprocess.")
    registrations = {k: prior_from_dict(v["registration"]) for k, v in content["scan_pairs"].items()}
    out = []
    for r in content["pairs"]:
        out.append(PreprocessedPair(
            r["pair_id"], r["source"], r["target"], tuple(r["source_center_zyx"]), r["source_radius_mm"],
            tuple(r["target_center_zyx"]), r["target_radius_mm"], tuple(r["prior_center_zyx"]), r["prior_radius_mm"],
            registrations[r["scan_pair"]], r.get("patient"),
            {k: r[k] for k in ("source_center_zyx_raw", "target_center_zyx_raw") if k in r}))
    return out


def crop_zyx(array, start_zyx, size_zyx, pad_value: float = 0.0) -> np.ndarray:
    """``array[start : start + size]`` (``[z, y, x]``, integer voxels) as numpy, padded with
    ``pad_value`` where the box leaves the array. Works on numpy and blosc2 arrays (only the
    overlapping region is read)."""
    start = [int(s) for s in start_zyx]
    size = [int(s) for s in size_zyx]
    shape = array.shape
    out = np.full(size, pad_value, dtype=np.dtype(array.dtype))
    src = tuple(slice(max(0, s), min(n, s + k)) for s, k, n in zip(start, size, shape))
    if any(sl.start >= sl.stop for sl in src):
        return out
    dst = tuple(slice(sl.start - s, sl.stop - s) for sl, s in zip(src, start))
    out[dst] = np.asarray(array[src])
    return out


def centered_start_zyx(center_zyx, size_zyx) -> list:
    """Start index (z, y, x) of a box of ``size_zyx`` voxels centred on a continuous ``center_zyx``."""
    return [int(np.floor(float(c) - (s - 1) / 2.0 + 0.5)) for c, s in zip(center_zyx, size_zyx)]


def map_on_crop(make_map, center_zyx, radius_mm: float, start_zyx, size_zyx, spacing_zyx) -> np.ndarray:
    """A lesion map on the crop ``[start, start + size)`` of a grid:
    ``make_map(size_zyx, center relative to the crop, radius_mm, spacing_zyx)`` (e.g. a method's
    lesion Gaussian)."""
    local_zyx = np.asarray(center_zyx, dtype=np.float64) - np.asarray(start_zyx, dtype=np.float64)
    return make_map(tuple(int(s) for s in size_zyx), local_zyx, radius_mm, spacing_zyx)


class CaseCache:
    """Decompressed preprocessed images, least recently used dropped beyond ``max_cases``."""

    def __init__(self, load_image, max_cases: int = 64):
        self._load = load_image
        self._max = int(max_cases)
        self._cache: OrderedDict = OrderedDict()

    def __call__(self, scan_id: str):
        if scan_id in self._cache:
            self._cache.move_to_end(scan_id)
            return self._cache[scan_id]
        case = self._load(scan_id)
        self._cache[scan_id] = case
        if len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return case


class PreprocessedDataset:
    """One data configuration of a dataset's preprocessed data (``$lesionnet_preprocessed/<dataset>/<data_id>``).

    ``data_identifier`` is a key of the plans' ``data_configurations`` (a method's section names its
    one as ``data_identifier``).
    """

    def __init__(self, dataset, data_identifier: str):
        self.raw = resolve_raw_dataset(dataset)
        self.data_identifier = data_identifier
        self.folder = preprocessed_folder_for(self.raw.folder) / data_identifier
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{self.folder}: no preprocessed data. Run lesionnet_plan_and_preprocess -d "
                                    f"{self.raw.name}.")
        self._cache = CaseCache(lambda scan_id: self.case(scan_id, as_numpy=True))

    @property
    def scan_ids(self) -> list:
        return sorted(p.name[:-5] for p in self.folder.glob("*.json")
                      if p.name != PAIRS_FILE and not p.name.startswith("."))

    def case(self, scan_id: str, as_numpy: bool = False) -> PreprocessedCase:
        return load_case(self.folder, scan_id, as_numpy)

    def cached_case(self, scan_id: str) -> PreprocessedCase:
        """The case decompressed to numpy, kept in a cache of the 64 most recently used (for training)."""
        return self._cache(scan_id)

    def pairs(self) -> list[PreprocessedPair]:
        return load_tracking_pairs(self.folder)

    def pairs_by_id(self, pair_ids) -> list[PreprocessedPair]:
        """The pairs ``pair_ids``, in that order (``KeyError`` naming an id that is not preprocessed)."""
        by_id = {p.pair_id: p for p in self.pairs()}
        missing = [i for i in pair_ids if i not in by_id]
        if missing:
            raise KeyError(f"{self.folder}: no preprocessed pairs {missing[:5]}")
        return [by_id[i] for i in pair_ids]

    def training_items(self) -> dict:
        """``{item id: patient id}`` of what the dataset's task trains on, for the patient splits: the
        pairs of a tracking dataset, the scans of a detection dataset (patient = scan id up to its
        first ``_``, the raw format's rule)."""
        if self.raw.task == "tracking":
            return {p.pair_id: p.patient or p.source.split("_")[0] for p in self.pairs()}
        return {scan: scan.split("_")[0] for scan in self.scan_ids}


__all__ = ["PreprocessedCase", "PreprocessedPair", "PreprocessedDataset", "CaseCache", "load_case",
           "load_tracking_pairs", "crop_zyx", "centered_start_zyx", "map_on_crop"]
