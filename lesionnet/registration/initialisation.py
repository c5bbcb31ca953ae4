"""Starting points of the affine registration that survive different z-coverage of the two scans.

A follow-up rarely covers the same body range as its baseline: the scan may start 5 cm higher, end
earlier, or cover a different field of view. Centres of mass of the whole bodies are then off along z by
half the coverage difference, and the optimiser starts in the wrong basin. Instead:

1. each working image is summarised by axial **slice profiles** along world z: body area, mean HU
   inside the body, fraction of bone (> 150 HU) and of air (< −300 HU, lungs and gas) inside the body;
2. every z-offset ``dz`` at which the scans overlap (step: the working spacing) is scored by the
   mean squared difference of the standardised profiles over the slices the two scans share (at least
   ``min_overlap_fraction`` of the shorter scan); the best local minima are the candidate offsets;
3. each candidate's translation is the difference of the body centroids of the **matched slabs** (the
   template slices that fall inside the search scan after the offset, and those search slices), and its
   rotation centre the template slab's centroid.

World points are physical ``(x, y, z)`` in mm (ITK order); arrays are ``[z, y, x]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

BONE_HU = 150.0
AIR_HU = -300.0


@dataclass(frozen=True)
class SliceProfiles:
    """Per axial slice of a working image (``n`` slices): world z (mm), features ``(n, 4)``, body
    centroid ``(n, 3)`` world (x, y, z) mm, body area ``(n,)`` in voxels."""

    z_mm: np.ndarray
    features: np.ndarray
    centroid_mm: np.ndarray
    area: np.ndarray


@dataclass(frozen=True)
class Start:
    """A starting point: ``translation_mm`` (template → search world shift, x, y, z), ``center_mm`` (rotation
    centre, template world) and the profile ``score`` of its z-offset (lower is better)."""

    translation_mm: np.ndarray
    center_mm: np.ndarray
    z_offset_mm: float
    score: float


def slice_profiles(image: sitk.Image, mask: sitk.Image) -> SliceProfiles:
    """Profiles of a working image and its body mask (see the module docstring)."""
    values = sitk.GetArrayViewFromImage(image)
    body = sitk.GetArrayViewFromImage(mask).astype(bool)
    area = body.sum(axis=(1, 2)).astype(np.float64)
    safe = np.maximum(area, 1.0)
    mean_hu = np.where(body, values, 0.0).sum(axis=(1, 2)) / safe
    bone = (body & (values > BONE_HU)).sum(axis=(1, 2)) / safe
    air = (body & (values < AIR_HU)).sum(axis=(1, 2)) / safe
    area_fraction = area / float(body.shape[1] * body.shape[2])
    features = np.stack([np.sqrt(area_fraction), mean_hu / 100.0, bone, air], axis=1)
    ys, xs = np.arange(body.shape[1]), np.arange(body.shape[2])
    cy = (body.sum(axis=2) * ys).sum(axis=1) / safe
    cx = (body.sum(axis=1) * xs).sum(axis=1) / safe
    centroid = np.array([image.TransformContinuousIndexToPhysicalPoint((float(x), float(y), float(k)))
                         for k, (x, y) in enumerate(zip(cx, cy))])
    return SliceProfiles(centroid[:, 2].copy(), features, centroid, area)


def _sorted_by_z(p: SliceProfiles) -> SliceProfiles:
    order = np.argsort(p.z_mm)
    return SliceProfiles(p.z_mm[order], p.features[order], p.centroid_mm[order], p.area[order])


def z_offset_scores(template: SliceProfiles, search: SliceProfiles, offsets_mm: np.ndarray,
                    min_overlap_fraction: float) -> np.ndarray:
    """Mean squared profile difference for each template → search z-offset (``inf`` where the overlap is too small)."""
    template, search = _sorted_by_z(template), _sorted_by_z(search)
    scale = np.concatenate([template.features, search.features]).std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    shorter = min(np.ptp(template.z_mm), np.ptp(search.z_mm))
    scores = np.full(len(offsets_mm), np.inf)
    for i, dz in enumerate(offsets_mm):
        shifted = template.z_mm + dz
        inside = (shifted >= search.z_mm[0]) & (shifted <= search.z_mm[-1]) & (template.area > 0)
        if inside.sum() < 2 or np.ptp(shifted[inside]) < min_overlap_fraction * shorter:
            continue
        other = np.stack([np.interp(shifted[inside], search.z_mm, search.features[:, k])
                          for k in range(search.features.shape[1])], axis=1)
        scores[i] = float(np.mean(((template.features[inside] - other) / scale) ** 2))
    return scores


def _local_minima(scores: np.ndarray, count: int, min_gap: int = 2) -> list:
    order = [i for i in np.argsort(scores) if np.isfinite(scores[i])]
    chosen: list = []
    for i in order:
        if all(abs(i - j) >= min_gap for j in chosen):
            chosen.append(int(i))
        if len(chosen) == count:
            break
    return chosen


def _slab_centroid(p: SliceProfiles, low_mm: float, high_mm: float) -> np.ndarray | None:
    inside = (p.z_mm >= low_mm) & (p.z_mm <= high_mm) & (p.area > 0)
    if not inside.any():
        return None
    weights = p.area[inside]
    return (p.centroid_mm[inside] * weights[:, None]).sum(axis=0) / weights.sum()


def candidate_starts(fixed: sitk.Image, fixed_mask: sitk.Image, moving: sitk.Image, moving_mask: sitk.Image,
                     count: int, min_overlap_fraction: float) -> list:
    """Up to ``count`` starts (best profile score first) for registering ``fixed`` (template) to ``moving`` (search)."""
    template, search = slice_profiles(fixed, fixed_mask), slice_profiles(moving, moving_mask)
    step = float(fixed.GetSpacing()[2])
    offsets = np.arange(search.z_mm.min() - template.z_mm.max(), search.z_mm.max() - template.z_mm.min() + step / 2,
                        step)
    scores = z_offset_scores(template, search, offsets, min_overlap_fraction)
    starts = []
    for i in _local_minima(scores, count):
        dz = float(offsets[i])
        low, high = max(template.z_mm.min(), search.z_mm.min() - dz), min(template.z_mm.max(), search.z_mm.max() - dz)
        template_centroid = _slab_centroid(template, low, high)
        search_centroid = _slab_centroid(search, low + dz, high + dz)
        if template_centroid is None or search_centroid is None:
            continue
        starts.append(Start(search_centroid - template_centroid, template_centroid, dz, float(scores[i])))
    return starts
