"""Training samples of tracking pairs, for any tracker trained on (template, search) patch pairs.

One sample is built from a preprocessed pair (:class:`lesionnet.preprocessing.loading.PreprocessedPair`):

* ``template`` ``(1, Zt, Yt, Xt)``: the source scan cropped around the source lesion center, shifted
  by a random offset of at most ``template_jitter_voxels`` per axis;
* ``template_gaussian`` ``(1, Zt, Yt, Xt)``: the lesion's map on that crop (the method's Gaussian);
* ``search`` ``(1, Zs, Ys, Xs)``: the target scan cropped around the *affine prior* plus a random
  offset (uniform, at most ``search_offset_fraction`` × patch per axis, and never so far that the
  target center leaves the patch's inner part);
* ``search_prior`` ``(1, Zs, Ys, Xs)``: the prior map ``T_aff(G_t)`` on the search crop, its center
  optionally jittered (``prior_jitter_mm``);
* ``target_center_zyx`` (3,) search-patch voxels, ``target_radius_mm``, ``spacing_zyx`` (3,) mm.

:class:`PairBatchMaker` stacks samples to ``(B, ...)`` float32 arrays with the pair augmentation
(:mod:`lesionnet.training.pair_augmentation`); :class:`lesionnet.training.batch_stream.SeededBatchLoader`
makes the stream of them seeded and resumable.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from lesionnet.datasets.geometry import xyz_to_zyx
from lesionnet.preprocessing.loading import PreprocessedPair, centered_start_zyx, crop_zyx, map_on_crop
from lesionnet.training.batch_stream import BatchDraws, concatenate_batches
from lesionnet.training.pair_augmentation import PairAugmentation, augment_batch, intensity_transforms

#: ``map(shape_zyx, center_zyx, radius_mm, spacing_zyx) -> float32 array``: a method's lesion Gaussian
LesionMap = Callable[..., np.ndarray]
ARRAY_KEYS = ("template", "template_gaussian", "search", "search_prior")


class PairSampler:
    """Builds one training sample of a pair (see the module docstring).

    Args:
        load_case: ``scan_id -> PreprocessedCase`` (image ``[z, y, x]`` and its ``geometry``), e.g.
            :meth:`lesionnet.preprocessing.loading.PreprocessedDataset.cached_case`.
        template_size_zyx, search_size_zyx: patch sizes (voxels of the preprocessed grid).
        lesion_map: the method's lesion Gaussian, ``(shape_zyx, center_zyx, radius_mm, spacing_zyx)``.
        search_offset_fraction: largest random shift of the search crop from the prior, per axis, as a
            fraction of the search patch.
        template_jitter_voxels: largest random shift of the template crop from the source center.
        prior_jitter_mm: std (mm, per axis) of a random normal shift of the prior center (augmentation).
    """

    def __init__(self, load_case, template_size_zyx, search_size_zyx, lesion_map: LesionMap,
                 search_offset_fraction: float = 0.25, template_jitter_voxels: int = 2, prior_jitter_mm: float = 0.0):
        self.load_case = load_case
        self.template_size = [int(v) for v in template_size_zyx]
        self.search_size = [int(v) for v in search_size_zyx]
        self.lesion_map = lesion_map
        self.search_offset_fraction = float(search_offset_fraction)
        self.template_jitter = int(template_jitter_voxels)
        self.prior_jitter_mm = float(prior_jitter_mm)

    def sample(self, pair: PreprocessedPair, rng: np.random.Generator) -> dict:
        source, target = self.load_case(pair.source), self.load_case(pair.target)
        jitter = rng.integers(-self.template_jitter, self.template_jitter + 1, size=3)
        t_start = np.asarray(centered_start_zyx(pair.source_center_zyx, self.template_size)) + jitter
        template = crop_zyx(source.image, t_start, self.template_size)
        template_gaussian = map_on_crop(self.lesion_map, pair.source_center_zyx, pair.source_radius_mm, t_start,
                                        self.template_size, source.geometry.spacing_zyx)
        prior_zyx = np.asarray(pair.prior_center_zyx, dtype=np.float64)
        if self.prior_jitter_mm > 0:       # the shift is drawn in (x, y, z) order, as lesionnet always has
            shift_mm_zyx = np.asarray(xyz_to_zyx(rng.normal(0.0, self.prior_jitter_mm, 3)))
            prior_zyx = prior_zyx + shift_mm_zyx / np.asarray(target.geometry.spacing_zyx)
        s_start = np.asarray(centered_start_zyx(prior_zyx, self.search_size), dtype=np.int64)
        target_zyx = np.asarray(pair.target_center_zyx, dtype=np.float64)
        for axis, size in enumerate(self.search_size):
            reach = int(self.search_offset_fraction * size)
            start = s_start[axis] + int(rng.integers(-reach, reach + 1))
            # keep the target center at least a quarter of the patch from either border
            low, high = target_zyx[axis] - 0.75 * (size - 1), target_zyx[axis] - 0.25 * (size - 1)
            s_start[axis] = int(np.clip(start, np.ceil(low), np.floor(high))) if low <= high else start
        search = crop_zyx(target.image, s_start, self.search_size)
        prior = map_on_crop(self.lesion_map, prior_zyx, pair.prior_radius_mm, s_start, self.search_size,
                            target.geometry.spacing_zyx)
        return {
            "template": template[None].astype(np.float32), "template_gaussian": template_gaussian[None],
            "search": search[None].astype(np.float32), "search_prior": prior[None],
            "target_center_zyx": target_zyx - s_start, "target_radius_mm": float(pair.target_radius_mm),
            "spacing_zyx": np.asarray(target.geometry.spacing_zyx, dtype=np.float64),
            "pair_id": pair.pair_id,
        }


def stack_samples(samples: list[dict]) -> dict:
    """``(B, ...)`` float32 arrays of a list of samples (``pair_ids`` kept as a list)."""
    batch = {k: np.stack([s[k] for s in samples]).astype(np.float32) for k in ARRAY_KEYS}
    for key in ("target_center_zyx", "template_center_zyx"):
        if key in samples[0]:
            batch[key] = np.stack([s[key] for s in samples]).astype(np.float32)
    batch["target_radius_mm"] = np.array([s["target_radius_mm"] for s in samples], dtype=np.float32)
    batch["spacing_zyx"] = np.stack([s["spacing_zyx"] for s in samples]).astype(np.float32)
    batch["pair_ids"] = [s["pair_id"] for s in samples]
    return batch


class PairBatchMaker:
    """``make_batch(pairs, draws)`` for :class:`~lesionnet.training.batch_stream.SeededBatchLoader`: per pair one
    sample with consistent random flips and batchgenerators' intensity transforms, each drawn from the
    sample's own seeds (:meth:`~lesionnet.training.batch_stream.BatchDraws.samples`), then stacked."""

    def __init__(self, sampler: PairSampler, augmentation: PairAugmentation | None = None):
        self.sampler = sampler
        self.augmentation = augmentation or PairAugmentation()
        self.transforms = intensity_transforms(self.augmentation)

    def one(self, pair: PreprocessedPair, rng: np.random.Generator) -> dict:
        """A batch of one augmented sample of ``pair``."""
        batch = stack_samples(augment_batch([self.sampler.sample(pair, rng)], self.augmentation))
        return self.transforms(**batch) if self.augmentation.enabled else batch

    def __call__(self, pairs: list[PreprocessedPair], draws: BatchDraws) -> dict:
        return concatenate_batches([self.one(pair, rng) for pair, rng in draws.samples(pairs)])


__all__ = ["PairSampler", "PairBatchMaker", "stack_samples", "ARRAY_KEYS", "LesionMap"]
