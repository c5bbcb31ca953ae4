"""Training batches for the paired trackers (TLT; DLT reuses it): sampling, crops, priors, augmentation.

One sample is built from a preprocessed pair (:class:`lesionnet.preprocessing.loading.PreprocessedPair`):

* ``template`` ``(1, Zt, Yt, Xt)``: the source scan cropped around the source lesion center, shifted
  by a random offset of at most ``template_jitter_voxels`` per axis;
* ``template_gaussian`` ``(1, Zt, Yt, Xt)``: the lesion's Gaussian ``G_t`` on that crop (TLT: the SSS
  input);
* ``search`` ``(1, Zs, Ys, Xs)``: the target scan cropped around the *affine prior* plus a random
  offset (uniform, at most ``search_offset_fraction`` × patch per axis, and never so far that the
  target center leaves the patch's inner part);
* ``search_prior`` ``(1, Zs, Ys, Xs)``: the prior Gaussian ``T_aff(G_t)`` on the search crop (RAAM),
  its center optionally jittered (``prior_jitter_mm``);
* ``target_center_zyx`` (3,) search-patch voxels, ``target_radius_mm``, ``spacing_zyx`` (3,) mm.

Batches are stacked to ``(B, ...)`` float32 arrays. A batch depends only on ``(seed, batch index)``:
the loader seeds a numpy Generator (pair choice, offsets) and numpy's and Python's global RNGs
(batchgenerators' transforms) from those two numbers, so batches are identical whether they are built in this process
or in any of the worker processes, and a resumed run sees exactly the batches an uninterrupted run
would have seen.
"""
from __future__ import annotations

import logging
import random
from collections import OrderedDict

import numpy as np
from batchgenerators.dataloading.data_loader import DataLoader
from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter

from lesionnet.preprocessing.loading import PreprocessedPair, centered_start_zyx, crop_zyx, gaussian_on_crop
from lesionnet.training.augmentation import AugmentationConfig, augment_batch, intensity_transforms

logger = logging.getLogger(__name__)

ARRAY_KEYS = ("template", "template_gaussian", "search", "search_prior")


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


class PairSampler:
    """Builds one training sample of a pair (see the module docstring).

    Args:
        load_case: ``scan_id -> PreprocessedCase`` (image ``[z, y, x]`` and its ``geometry``).
        template_size_zyx, search_size_zyx: patch sizes (voxels of the preprocessed grid).
        kind: ``"tlt"`` or ``"dlt"`` Gaussian for the maps.
        search_offset_fraction: largest random shift of the search crop from the prior, per axis, as a
            fraction of the search patch.
        template_jitter_voxels: largest random shift of the template crop from the source center.
        prior_jitter_mm: std (mm, per axis) of a random normal shift of the prior center (augmentation).
    """

    def __init__(self, load_case, template_size_zyx, search_size_zyx, kind: str = "tlt",
                 search_offset_fraction: float = 0.25, template_jitter_voxels: int = 2, prior_jitter_mm: float = 0.0):
        self.load_case = load_case
        self.template_size = [int(v) for v in template_size_zyx]
        self.search_size = [int(v) for v in search_size_zyx]
        self.kind = kind
        self.search_offset_fraction = float(search_offset_fraction)
        self.template_jitter = int(template_jitter_voxels)
        self.prior_jitter_mm = float(prior_jitter_mm)

    def sample(self, pair: PreprocessedPair, rng: np.random.Generator) -> dict:
        source, target = self.load_case(pair.source), self.load_case(pair.target)
        jitter = rng.integers(-self.template_jitter, self.template_jitter + 1, size=3)
        t_start = np.asarray(centered_start_zyx(pair.source_center_xyz, self.template_size)) + jitter
        template = crop_zyx(source.image, t_start, self.template_size)
        template_gaussian = gaussian_on_crop(pair.source_center_xyz, pair.source_radius_mm, t_start,
                                             self.template_size, source.geometry.spacing_xyz, self.kind)
        prior_xyz = np.asarray(pair.prior_center_xyz, dtype=np.float64)
        if self.prior_jitter_mm > 0:
            prior_xyz = prior_xyz + rng.normal(0.0, self.prior_jitter_mm, 3) / np.asarray(target.geometry.spacing_xyz)
        s_start = np.asarray(centered_start_zyx(prior_xyz, self.search_size), dtype=np.int64)
        target_zyx = np.asarray(pair.target_center_xyz, dtype=np.float64)[::-1]
        for axis, size in enumerate(self.search_size):
            reach = int(self.search_offset_fraction * size)
            start = s_start[axis] + int(rng.integers(-reach, reach + 1))
            # keep the target center at least a quarter of the patch from either border
            low, high = target_zyx[axis] - 0.75 * (size - 1), target_zyx[axis] - 0.25 * (size - 1)
            s_start[axis] = int(np.clip(start, np.ceil(low), np.floor(high))) if low <= high else start
        search = crop_zyx(target.image, s_start, self.search_size)
        prior = gaussian_on_crop(prior_xyz, pair.prior_radius_mm, s_start, self.search_size,
                                 target.geometry.spacing_xyz, self.kind)
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
    batch["target_center_zyx"] = np.stack([s["target_center_zyx"] for s in samples]).astype(np.float32)
    batch["target_radius_mm"] = np.array([s["target_radius_mm"] for s in samples], dtype=np.float32)
    batch["spacing_zyx"] = np.stack([s["spacing_zyx"] for s in samples]).astype(np.float32)
    batch["pair_ids"] = [s["pair_id"] for s in samples]
    return batch


def batch_seed(seed: int, batch_index: int) -> tuple[np.random.Generator, int]:
    """The Generator of batch ``batch_index`` and the 32-bit seed for numpy's global RNG."""
    sequence = np.random.SeedSequence([int(seed), int(batch_index)])
    return np.random.default_rng(sequence), int(sequence.generate_state(1)[0])


class PairBatchLoader(DataLoader):
    """A batchgenerators ``DataLoader`` of training batches; batch ``k`` of the stream is
    ``build_batch(first_batch + k)``. In a ``MultiThreadedAugmenter`` worker ``w`` of ``n`` builds batches
    ``w, w + n, ...`` and the augmenter returns them in order, so the stream is the same for any
    number of workers."""

    def __init__(self, pairs: list[PreprocessedPair], sampler: PairSampler, batch_size: int, seed: int,
                 first_batch: int = 0, augmentation: AugmentationConfig | None = None, num_workers: int = 1):
        super().__init__(list(pairs), int(batch_size), num_threads_in_multithreaded=max(1, int(num_workers)),
                         seed_for_shuffle=int(seed), infinite=True)
        if not pairs:
            raise ValueError("no training pairs to sample from.")
        self.sampler = sampler
        self.seed = int(seed)
        self.first_batch = int(first_batch)
        self.augmentation = augmentation or AugmentationConfig()
        self.transforms = intensity_transforms(self.augmentation)
        self._produced = 0

    def build_batch(self, batch_index: int) -> dict:
        """Batch number ``batch_index`` of the stream (pure function of the seed and the index)."""
        rng, global_seed = batch_seed(self.seed, batch_index)
        np.random.seed(global_seed)          # batchgenerators draws from numpy's and Python's global RNGs
        random.seed(global_seed)
        chosen = rng.integers(0, len(self._data), size=self.batch_size)
        samples = [self.sampler.sample(self._data[i], rng) for i in chosen]
        batch = stack_samples(augment_batch(samples, self.augmentation))
        if self.augmentation.enabled:
            batch = self.transforms(**batch)
        batch["batch_index"] = int(batch_index)
        return batch

    def generate_train_batch(self) -> dict:
        index = self.first_batch + self.thread_id + self._produced * self.number_of_threads_in_multithreaded
        self._produced += 1
        return self.build_batch(index)


def make_batch_stream(loader: PairBatchLoader, num_workers: int):
    """An iterator over the loader's batches: the loader itself (``num_workers == 0``) or a
    batchgenerators ``MultiThreadedAugmenter`` with ``num_workers`` processes (call ``_finish()`` on it
    when done)."""
    if num_workers <= 0:
        return loader
    return MultiThreadedAugmenter(loader, None, int(num_workers), num_cached_per_queue=2, seeds=None,
                                  pin_memory=False)
