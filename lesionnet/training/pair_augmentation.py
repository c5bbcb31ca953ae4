"""Augmentation of paired tracking samples (template + search patches with their lesion maps), for any
tracker trained on pairs (see :mod:`lesionnet.training.pair_sampling`).

* Spatial, applied *consistently*: a random flip per axis flips the template image, the template
  Gaussian, the search image, the search prior and the target center together, so the pair still
  shows the same lesion in the same anatomy. (The random crop offsets of the sampler are the
  translation part.)
* Prior jitter and crop offset (off by default): the prior's center is moved by a random normal shift
  (``prior_jitter_mm`` per axis) before the prior Gaussian is drawn, and the search crop by up to
  ``search_offset_fraction`` of the patch, so that copying the prior is not the cheapest way to a low
  loss (applied by the sampler).
* Intensity, with batchgenerators: multiplicative brightness, contrast and Gaussian noise, drawn
  independently for the template and the search patch (two scans differ in exactly these ways).
  The Gaussian maps are never changed by intensity transforms.

Every draw comes from numpy's global RNG, which the data loader seeds per batch (see
:mod:`lesionnet.training.batch_stream`), so a batch is a pure function of (seed, batch index).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lesionnet.utils.dataclass_dict import dataclass_from_dict


@dataclass
class PairAugmentation:
    """Probabilities and ranges of the pair augmentation (``enabled=False`` turns all of it off). A method
    stores it as the ``augmentation`` dict of its :class:`~lesionnet.training.config.TrainingConfig`."""

    enabled: bool = True
    flip_probability: float = 0.5            # per axis (z, y, x)
    brightness_range: tuple = (0.85, 1.15)
    brightness_probability: float = 0.3
    contrast_range: tuple = (0.8, 1.2)
    contrast_probability: float = 0.3
    noise_variance: tuple = (0.0, 0.05)
    noise_probability: float = 0.3
    # Off by default: at prediction the search crop is centred on the prior itself, and with a jittered
    # prior or a shifted crop (6 mm, 0.05 of the patch) a TLT trained for 20 CPU minutes moved away from
    # the prior on validation (CPM@10mm 87.5 -> 55 % in 3 epochs), without them it stayed at it
    # (documentation/methods/tlt.md, "What keeps a trained TLT at the prior").
    prior_jitter_mm: float = 0.0             # std of a random shift of the prior center, per axis (mm)
    search_offset_fraction: float = 0.0      # largest shift of the search crop from the prior, per axis (× patch)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PairAugmentation":
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return dataclass_from_dict(cls, values, "pair augmentation setting")


def intensity_transforms(config: PairAugmentation):
    """batchgenerators intensity transforms (a ``Compose``) for the ``template`` and ``search`` keys of a
    batch dict."""
    # imported here: batchgenerators' transforms pull in scipy.signal and scipy.stats (about a second),
    # which a command that only predicts or prints its help does not need
    from batchgenerators.transforms.abstract_transforms import Compose
    from batchgenerators.transforms.color_transforms import (
        BrightnessMultiplicativeTransform,
        ContrastAugmentationTransform,
    )
    from batchgenerators.transforms.noise_transforms import GaussianNoiseTransform

    transforms = []
    for key in ("template", "search"):
        transforms += [
            BrightnessMultiplicativeTransform(tuple(config.brightness_range), per_channel=False, data_key=key,
                                              p_per_sample=config.brightness_probability),
            ContrastAugmentationTransform(tuple(config.contrast_range), preserve_range=True, per_channel=False,
                                          data_key=key, p_per_sample=config.contrast_probability),
            GaussianNoiseTransform(tuple(config.noise_variance), p_per_sample=config.noise_probability, data_key=key),
        ]
    return Compose(transforms)


def flip_sample(sample: dict, axes_zyx) -> dict:
    """Flip the spatial axes ``axes_zyx`` (0 = z, 1 = y, 2 = x) of one sample, in place of a copy.

    ``sample`` holds ``template``, ``template_gaussian``, ``search``, ``search_prior`` ``(C, Z, Y, X)``
    arrays, ``target_center_zyx`` (search-patch voxels) and optionally ``template_center_zyx``
    (template-patch voxels). A center ``c`` on an axis of ``n`` voxels
    maps to ``n - 1 - c``.
    """
    axes = tuple(int(a) for a in axes_zyx)
    if not axes:
        return sample
    out = dict(sample)
    for key in ("template", "template_gaussian", "search", "search_prior"):
        out[key] = np.ascontiguousarray(np.flip(sample[key], axis=tuple(a + 1 for a in axes)))
    for key, patch in (("target_center_zyx", "search"), ("template_center_zyx", "template")):
        if key not in sample:        # the template center: only for trackers that take it (DLT)
            continue
        center = np.array(sample[key], dtype=np.float64)
        for a in axes:
            center[a] = sample[patch].shape[a + 1] - 1 - center[a]
        out[key] = center
    return out


def augment_batch(samples: list[dict], config: PairAugmentation) -> list[dict]:
    """Consistent random flips per sample (numpy's global RNG); intensity transforms are applied to the
    stacked batch by the loader (see :func:`intensity_transforms`)."""
    if not config.enabled:
        return samples
    out = []
    for sample in samples:
        axes = [a for a in range(3) if np.random.uniform() < config.flip_probability]
        out.append(flip_sample(sample, axes))
    return out
