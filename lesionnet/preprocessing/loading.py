"""Reading preprocessed data: cases (arrays + geometry), tracking pairs with their affine priors, crops and
the Gaussian maps made on the fly.

Typical use in a trainer::

    from lesionnet.preprocessing.loading import PreprocessedDataset
    data = PreprocessedDataset(501, "tlt")              # reads lesionnet_plans.json
    cfg = data.configuration                            # template/search patch sizes, Tr, batch, ...
    pair = data.pairs()[0]
    search = data.case(pair.target)
    crop = crop_zyx(search.image, start_zyx, cfg["search_patch_size_zyx"])   # decompresses only that region
    prior = pair_prior_map(pair, start_zyx, cfg["search_patch_size_zyx"], search.geometry, kind="tlt")

Arrays are blosc2 ``NDArray`` objects opened read-only (slicing returns numpy); pass
``as_numpy=True`` to :meth:`PreprocessedDataset.case` to decompress whole volumes instead.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lesionnet.datasets.geometry import Geometry
from lesionnet.planning.fingerprint import preprocessed_folder_for, resolve_raw_dataset
from lesionnet.planning.plans_io import get_configuration, load_plans
from lesionnet.preprocessing.manifest import read_json_or_none
from lesionnet.preprocessing.preprocess import PAIRS_FILE
from lesionnet.registration.affine import AffineRegistration
from lesionnet.registration.anatomy_maps import dlt_gaussian, tlt_gaussian


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
    """A training pair on the preprocessed grids (indices ``(x, y, z)``, radii mm) with its affine prior."""

    pair_id: str
    source: str
    target: str
    source_center_xyz: tuple
    source_radius_mm: float
    target_center_xyz: tuple
    target_radius_mm: float
    prior_center_xyz: tuple
    prior_radius_mm: float
    registration: AffineRegistration
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
    if content is None:
        raise FileNotFoundError(f"{folder / PAIRS_FILE}: missing. Re-run lesionnet_plan_and_preprocess.")
    registrations = {k: AffineRegistration.from_dict(v["registration"]) for k, v in content["scan_pairs"].items()}
    out = []
    for r in content["pairs"]:
        out.append(PreprocessedPair(
            r["pair_id"], r["source"], r["target"], tuple(r["source_center_xyz"]), r["source_radius_mm"],
            tuple(r["target_center_xyz"]), r["target_radius_mm"], tuple(r["prior_center_xyz"]), r["prior_radius_mm"],
            registrations[r["scan_pair"]], r.get("patient"),
            {k: r[k] for k in ("source_center_xyz_raw", "target_center_xyz_raw") if k in r}))
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


def centered_start_zyx(center_xyz, size_zyx) -> list:
    """Start index (z, y, x) of a box of ``size_zyx`` voxels centred on a continuous ``center_xyz``."""
    center_zyx = np.asarray(center_xyz, dtype=np.float64)[::-1]
    return [int(np.floor(c - (s - 1) / 2.0 + 0.5)) for c, s in zip(center_zyx, size_zyx)]


def gaussian_on_crop(center_xyz, radius_mm: float, start_zyx, size_zyx, spacing_xyz, kind: str = "tlt",
                     n: float = 4.0) -> np.ndarray:
    """Gaussian map of a lesion on a crop ``[start, start + size)`` of a grid (``kind``: ``"tlt"``
    ``exp(-|p-c|²/(12 r²))`` or ``"dlt"`` ``exp(-|p-c|²/(2 (n r)²))``)."""
    local_xyz = np.asarray(center_xyz, dtype=np.float64) - np.asarray(start_zyx, dtype=np.float64)[::-1]
    if kind == "tlt":
        return tlt_gaussian(size_zyx, local_xyz, radius_mm, spacing_xyz)
    if kind == "dlt":
        return dlt_gaussian(size_zyx, local_xyz, radius_mm, spacing_xyz, n=n)
    raise ValueError(f"kind must be 'tlt' or 'dlt', got {kind!r}")


def pair_prior_map(pair: PreprocessedPair, start_zyx, size_zyx, target_geometry: Geometry, kind: str = "tlt",
                   n: float = 4.0) -> np.ndarray:
    """The search-side prior ``T_aff(G_t)`` (center and radius projected by the affine) on a crop of the
    target's preprocessed grid."""
    return gaussian_on_crop(pair.prior_center_xyz, pair.prior_radius_mm, start_zyx, size_zyx,
                            target_geometry.spacing_xyz, kind, n)


def pair_template_map(pair: PreprocessedPair, start_zyx, size_zyx, source_geometry: Geometry, kind: str = "tlt",
                      n: float = 4.0) -> np.ndarray:
    """The template-side Gaussian ``G_t`` of the source lesion on a crop of the source's grid."""
    return gaussian_on_crop(pair.source_center_xyz, pair.source_radius_mm, start_zyx, size_zyx,
                            source_geometry.spacing_xyz, kind, n)


class PreprocessedDataset:
    """A dataset's preprocessed data for one method, located through its plans."""

    def __init__(self, dataset, method: str, plans: dict | None = None):
        self.raw = resolve_raw_dataset(dataset)
        self.plans = plans if plans is not None else load_plans(self.raw)
        self.method = method
        self.configuration = get_configuration(self.plans, method)
        data_id = self.configuration.get("data_identifier")
        if not data_id:
            raise ValueError(f"method '{method}' works on the raw data (no preprocessed arrays).")
        self.folder = preprocessed_folder_for(self.raw.folder) / data_id

    @property
    def scan_ids(self) -> list:
        return sorted(p.name[:-5] for p in self.folder.glob("*.json")
                      if p.name != PAIRS_FILE and not p.name.startswith("."))

    def case(self, scan_id: str, as_numpy: bool = False) -> PreprocessedCase:
        return load_case(self.folder, scan_id, as_numpy)

    def pairs(self) -> list[PreprocessedPair]:
        return load_tracking_pairs(self.folder)


__all__ = ["PreprocessedCase", "PreprocessedPair", "PreprocessedDataset", "load_case", "load_tracking_pairs",
           "crop_zyx", "centered_start_zyx", "gaussian_on_crop", "pair_prior_map", "pair_template_map"]
