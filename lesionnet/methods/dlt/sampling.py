"""DLT's training samples: supervised pairs with center augmentation, self-supervised pairs from one scan,
and the batch maker of the three training modes (Sec. 4).

* **Supervised** (:class:`CenterShiftSampler`): a pair of
  :class:`lesionnet.training.pair_sampling.PairSampler`, with the template center ``μ_t`` moved by a
  random ``Δμ_t`` drawn uniformly in the ball ``|Δμ_t| ≤ 0.25 r_t`` (mm) before the template is cut and
  ``G_t`` drawn ("center augmentation"). The sample also holds ``template_center_zyx``, the (moved)
  center in template-patch voxels, where DLT cuts its kernels. By default the search prior stays the
  pair's (projected from the original center); with ``prior_follows_shift`` it is projected from the moved
  center through the pair's registration, as at prediction, where the prior always comes from the given
  template center (and as the paper's ``G_s = G(T_aff(μ_t), n r)`` reads).
* **Self-supervised** (:class:`SelfSupervisedSampler`): from one scan and one lesion center (no pair, no
  registration): the template is cut as above; the search is a crop of the *same* scan around the lesion
  plus a random offset (the random crop), passed with ``G_t``'s map and a point map of the center through
  batchgenerators' ``SpatialTransform`` (elastic deformation, rotation ±10° in the axial plane, scale
  0.75–1.25, each with p = 0.5); the search prior is the transformed ``G_t`` (``T_aug(G_t)``) and the
  target the transformed center. Gaussian noise (variance 0–0.05) and blur (σ 0.5–1.5 voxels) follow,
  each with p = 0.5.
* :class:`DLTBatchMaker`: ``mode`` ``"supervised"`` (pairs), ``"ssl"`` (scan lesions) or ``"mix"`` (pairs;
  with probability τ a batch is self-supervised instead, from the scan lesions, Eq. 9). lesionnet option
  ``anatomy_dropout`` (off by default): each sample's search prior is blanked with that probability, so
  that the prior is not always there to copy.

Sizes, centers and arrays are ``(z, y, x)`` voxels of the preprocessed grid; radii and spacings mm.
"""
from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import numpy as np

from lesionnet.datasets.robustness_pairs import random_shift_in_ball_zyx
from lesionnet.methods.dlt.maps import lesion_gaussian
from lesionnet.preprocessing.loading import PreprocessedPair, centered_start_zyx, crop_zyx, map_on_crop
from lesionnet.registration.anatomy_maps import project_lesion
from lesionnet.training.batch_stream import BatchDraws, concatenate_batches
from lesionnet.training.pair_augmentation import PairAugmentation, augment_batch, intensity_transforms
from lesionnet.training.pair_sampling import PairSampler, stack_samples

#: the paper's center augmentation: |Δμ_t| <= 0.25 r_t
CENTER_SHIFT_FRACTION = 0.25
#: DLT-Mix: probability of a self-supervised batch (τ of Eq. 9)
MIX_SSL_PROBABILITY = 0.25
MODES = ("supervised", "ssl", "mix")


class ScanLesion(NamedTuple):
    """A lesion of one scan, all that self-supervised training needs: scan id, ``center_zyx`` (voxels of
    the preprocessed grid), ``radius_mm``."""

    scan_id: str
    center_zyx: tuple
    radius_mm: float


def scan_lesions(pairs: list[PreprocessedPair]) -> list[ScanLesion]:
    """The distinct lesions of the scans of ``pairs`` (both ends of each pair; no correspondence used), sorted
    by scan and center, so that the list depends only on each scan's lesions."""
    seen = {}
    for p in pairs:
        for scan, center, radius in ((p.source, p.source_center_zyx, p.source_radius_mm),
                                     (p.target, p.target_center_zyx, p.target_radius_mm)):
            key = (scan, tuple(round(float(c), 3) for c in center))
            seen.setdefault(key, ScanLesion(scan, tuple(float(c) for c in center), float(radius)))
    return [seen[key] for key in sorted(seen)]


def center_shift_zyx(radius_mm: float, spacing_zyx, rng: np.random.Generator,
                     fraction: float = CENTER_SHIFT_FRACTION) -> np.ndarray:
    """A random shift (voxels, z, y, x) uniform in the ball of radius ``fraction · radius_mm`` mm."""
    return random_shift_in_ball_zyx(fraction * float(radius_mm), spacing_zyx, rng)


def _with_template_center(sample: dict, center_zyx, template_size) -> dict:
    sample["template_center_zyx"] = np.asarray(center_zyx, dtype=np.float64) - np.asarray(
        centered_start_zyx(center_zyx, template_size), dtype=np.float64)
    return sample


class CenterShiftSampler:
    """Supervised DLT samples (see the module docstring); ``center_shift_fraction = 0`` turns the center
    augmentation off."""

    def __init__(self, load_case, template_size_zyx, search_size_zyx, search_offset_fraction: float = 0.0,
                 prior_jitter_mm: float = 0.0, center_shift_fraction: float = CENTER_SHIFT_FRACTION,
                 prior_follows_shift: bool = False):
        self.load_case = load_case
        self.pair_sampler = PairSampler(load_case, template_size_zyx, search_size_zyx, lesion_gaussian,
                                        search_offset_fraction, template_jitter_voxels=0,
                                        prior_jitter_mm=prior_jitter_mm)
        self.center_shift_fraction = float(center_shift_fraction)
        self.prior_follows_shift = bool(prior_follows_shift)

    def sample(self, pair: PreprocessedPair, rng: np.random.Generator) -> dict:
        center = np.asarray(pair.source_center_zyx, dtype=np.float64)
        shifted = pair
        if self.center_shift_fraction > 0:
            source = self.load_case(pair.source).geometry
            center = center + center_shift_zyx(pair.source_radius_mm, source.spacing_zyx, rng,
                                               self.center_shift_fraction)
            shifted = replace(pair, source_center_zyx=tuple(center))
            if self.prior_follows_shift:
                prior_zyx, _ = project_lesion(pair.registration, center, pair.source_radius_mm, source,
                                              self.load_case(pair.target).geometry)
                shifted = replace(shifted, prior_center_zyx=tuple(float(v) for v in prior_zyx))
        return _with_template_center(self.pair_sampler.sample(shifted, rng), center, self.pair_sampler.template_size)


class SelfSupervisedSampler:
    """Self-supervised DLT samples from one scan (see the module docstring)."""

    def __init__(self, load_case, template_size_zyx, search_size_zyx, search_offset_fraction: float = 0.25,
                 center_shift_fraction: float = CENTER_SHIFT_FRACTION, probability: float = 0.5):
        self.load_case = load_case
        self.template_size = [int(v) for v in template_size_zyx]
        self.search_size = [int(v) for v in search_size_zyx]
        self.search_offset_fraction = float(search_offset_fraction)
        self.center_shift_fraction = float(center_shift_fraction)
        self.probability = float(probability)
        self._spatial = None

    def spatial_transform(self):
        """batchgenerators' ``SpatialTransform`` cutting the search patch from the centre of a larger region."""
        if self._spatial is None:
            from batchgenerators.transforms.spatial_transforms import SpatialTransform
            p = self.probability
            self._spatial = SpatialTransform(
                self.search_size, random_crop=False, do_elastic_deform=True, alpha=(0.0, 200.0), sigma=(9.0, 13.0),
                do_rotation=True, angle_x=(-np.pi / 18, np.pi / 18), angle_y=(0.0, 0.0), angle_z=(0.0, 0.0),
                do_scale=True, scale=(0.75, 1.25), border_mode_data="constant", border_cval_data=0.0, order_data=1,
                p_el_per_sample=p, p_scale_per_sample=p, p_rot_per_sample=p)
        return self._spatial

    def sample(self, lesion: ScanLesion, rng: np.random.Generator) -> dict:
        case = self.load_case(lesion.scan_id)
        spacing = case.geometry.spacing_zyx
        center = np.asarray(lesion.center_zyx, dtype=np.float64)
        moved = center + (center_shift_zyx(lesion.radius_mm, spacing, rng, self.center_shift_fraction)
                          if self.center_shift_fraction > 0 else 0.0)
        t_start = centered_start_zyx(moved, self.template_size)
        template = crop_zyx(case.image, t_start, self.template_size)
        template_gaussian = map_on_crop(lesion_gaussian, moved, lesion.radius_mm, t_start, self.template_size, spacing)
        # the region the augmentation draws from: 1.5x the search patch around the lesion plus the random crop
        region = [int(np.ceil(1.5 * s / 2.0)) * 2 for s in self.search_size]
        reach = np.array([self.search_offset_fraction * s for s in self.search_size])
        region_center = center + rng.uniform(-reach, reach)
        r_start = centered_start_zyx(region_center, region)
        stack = np.stack([crop_zyx(case.image, r_start, region),
                          map_on_crop(lesion_gaussian, moved, lesion.radius_mm, r_start, region, spacing),
                          map_on_crop(_point_map, center, 1.0, r_start, region, spacing)])[None].astype(np.float32)
        out = self.spatial_transform()(data=stack)["data"][0]
        return _with_template_center({
            "template": template[None].astype(np.float32), "template_gaussian": template_gaussian[None],
            "search": out[0:1].astype(np.float32), "search_prior": np.clip(out[1:2], 0.0, 1.0).astype(np.float32),
            "target_center_zyx": _point_center(out[2]), "target_radius_mm": float(lesion.radius_mm),
            "spacing_zyx": np.asarray(spacing, dtype=np.float64), "pair_id": f"ssl:{lesion.scan_id}",
        }, moved, self.template_size)


def _point_map(shape_zyx, center_zyx, _radius_mm, _spacing_zyx) -> np.ndarray:
    """A narrow Gaussian (σ = 1 voxel) at ``center_zyx``: the marker whose transform gives the new center."""
    grid = np.indices(shape_zyx, dtype=np.float64)
    d2 = sum((g - c) ** 2 for g, c in zip(grid, center_zyx))
    return np.exp(-d2 / 2.0).astype(np.float32)


def _point_center(point_zyx: np.ndarray) -> np.ndarray:
    """Center (voxels) of a transformed point map: the centroid of its upper half around the maximum."""
    peak = float(point_zyx.max())
    if peak <= 0:
        return (np.asarray(point_zyx.shape, dtype=np.float64) - 1) / 2.0
    weight = np.clip(point_zyx - 0.5 * peak, 0.0, None)
    grid = np.indices(point_zyx.shape, dtype=np.float64)
    return np.array([(g * weight).sum() / weight.sum() for g in grid])


class DLTBatchMaker:
    """``make_batch(items, draws)`` for :class:`~lesionnet.training.batch_stream.SeededBatchLoader` in one of
    :data:`MODES` (see the module docstring): per sample (its own seeds) consistent flips and intensity
    transforms, self-supervised samples also noise and blur on the search patch; then stacked. DLT-Mix
    draws the mode of the whole global batch from the batch's Generator (the same on every rank)."""

    def __init__(self, mode: str, supervised: CenterShiftSampler | None, self_supervised: SelfSupervisedSampler | None,
                 lesions: list[ScanLesion] | None = None, augmentation: PairAugmentation | None = None,
                 ssl_probability: float = MIX_SSL_PROBABILITY, anatomy_dropout: float = 0.0):
        if mode not in MODES:
            raise ValueError(f"DLT training mode must be one of {MODES}, got {mode!r}")
        if mode != "supervised" and (self_supervised is None or (mode == "mix" and not lesions)):
            raise ValueError(f"DLT mode '{mode}' needs scan lesions to build self-supervised pairs from.")
        self.mode = mode
        self.supervised, self.self_supervised = supervised, self_supervised
        self.lesions = list(lesions or [])
        self.augmentation = augmentation or PairAugmentation()
        self.ssl_probability = float(ssl_probability)
        self.anatomy_dropout = float(anatomy_dropout)
        self.transforms = intensity_transforms(self.augmentation)
        self._ssl_transforms = None

    def _ssl_search_transforms(self):
        if self._ssl_transforms is None:
            from batchgenerators.transforms.abstract_transforms import Compose
            from batchgenerators.transforms.noise_transforms import GaussianBlurTransform, GaussianNoiseTransform
            self._ssl_transforms = Compose([
                GaussianNoiseTransform((0.0, 0.05), p_per_sample=0.5, data_key="search"),
                GaussianBlurTransform((0.5, 1.5), different_sigma_per_channel=False, p_per_sample=0.5,
                                      data_key="search")])
        return self._ssl_transforms

    def __call__(self, items: list, draws: BatchDraws) -> dict:
        self_supervised = self.mode == "ssl"
        if self.mode == "mix" and draws.rng.uniform() < self.ssl_probability:    # the whole batch: one mode
            self_supervised = True
            chosen = draws.rng.integers(0, len(self.lesions), size=draws.global_batch_size)
            items = draws.share([self.lesions[i] for i in chosen])
        sampler = self.self_supervised if self_supervised else self.supervised
        parts = []
        for item, rng in draws.samples(items):
            batch = stack_samples(augment_batch([sampler.sample(item, rng)], self.augmentation))
            if self.augmentation.enabled:
                batch = self.transforms(**batch)
            if self_supervised:
                batch = self._ssl_search_transforms()(**batch)
            if self.anatomy_dropout > 0 and rng.uniform() < self.anatomy_dropout:
                batch["search_prior"][:] = 0.0     # lesionnet option: a sample whose search prior is blanked
            parts.append(batch)
        batch = concatenate_batches(parts)
        batch["self_supervised"] = np.float32(self_supervised)
        return batch


__all__ = ["CENTER_SHIFT_FRACTION", "MIX_SSL_PROBABILITY", "MODES", "ScanLesion", "scan_lesions", "center_shift_zyx",
           "CenterShiftSampler", "SelfSupervisedSampler", "DLTBatchMaker"]
