"""The images a registration works on: clipped, anti-aliased, resampled to a coarse isotropic grid; body masks.

Shared by the affine and the deformable recipes. Images are SimpleITK images (x, y, z index order in
ITK, arrays from them ``[z, y, x]``); spacings in mm, intensities in HU.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk


def working_spacing(template: sitk.Image, search: sitk.Image, spacing_mm: float) -> float:
    """Isotropic working spacing: ``spacing_mm``, but never finer than the finest native spacing of the two
    scans (resampling coarse scans onto a finer grid adds voxels, not detail)."""
    finest_native = min(min(template.GetSpacing()), min(search.GetSpacing()))
    return max(float(spacing_mm), float(finest_native))


def working_image(image: sitk.Image, spacing_mm: float, clip_hu: tuple) -> sitk.Image:
    """Clip HU to ``clip_hu``, anti-alias and resample to the isotropic ``spacing_mm``; float32.

    The grid keeps the image's origin and direction and covers its extent. Anti-aliasing is a Gaussian
    of ``sqrt(spacing² − native²) / 2`` mm per axis (none along axes already as coarse).
    """
    image = sitk.Clamp(sitk.Cast(image, sitk.sitkFloat32), sitk.sitkFloat32, *clip_hu)
    spacing_xyz = np.asarray(image.GetSpacing())
    sigma_mm = [max(0.0, (spacing_mm**2 - s**2)) ** 0.5 / 2.0 for s in spacing_xyz]
    if any(s > 0 for s in sigma_mm):
        image = sitk.SmoothingRecursiveGaussian(image, [max(s, 1e-3) for s in sigma_mm])
    size_xyz = [max(1, int(round(n * s / spacing_mm))) for n, s in zip(image.GetSize(), spacing_xyz)]
    return sitk.Resample(image, size_xyz, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
                         (spacing_mm,) * 3, image.GetDirection(), float(clip_hu[0]), sitk.sitkFloat32)


def body_mask(image: sitk.Image, threshold_hu: float) -> sitk.Image:
    """Voxels above ``threshold_hu``, opened by one voxel, holes filled (lungs and gas inside the body)."""
    mask = sitk.BinaryThreshold(image, lowerThreshold=threshold_hu, upperThreshold=1e9, insideValue=1, outsideValue=0)
    return sitk.BinaryFillhole(sitk.BinaryMorphologicalOpening(mask, (1, 1, 1)))


@contextlib.contextmanager
def itk_threads(threads: int | None):
    """Run ITK filters with ``threads`` threads (None: leave ITK's default), restoring it afterwards."""
    if threads is None:
        yield
        return
    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)


def sampling_fraction(mask: sitk.Image | None, image: sitk.Image, samples: int) -> float:
    """The metric sampling fraction that draws about ``samples`` points from the (masked) working image at
    full working resolution (coarser pyramid levels then draw proportionally fewer); in (0, 1]."""
    count = float(sitk.GetArrayViewFromImage(mask).sum()) if mask is not None else float(np.prod(image.GetSize()))
    return float(min(1.0, max(samples, 1) / max(count, 1.0)))


@dataclass(frozen=True)
class WorkingPair:
    """Template (fixed) and search (moving) working images at ``spacing_mm``, with their body masks
    (``None`` when a scan shows no body above the threshold). Made once per scan pair and shared by the
    affine and the B-spline stages."""

    fixed: sitk.Image
    moving: sitk.Image
    fixed_mask: sitk.Image | None
    moving_mask: sitk.Image | None
    spacing_mm: float


def working_pair(template: sitk.Image, search: sitk.Image, spacing_mm: float, clip_hu: tuple,
                 body_threshold_hu: float) -> WorkingPair:
    """:func:`working_image` and :func:`body_mask` of both scans at the working spacing of the pair."""
    spacing = working_spacing(template, search, spacing_mm)
    fixed, moving = working_image(template, spacing, clip_hu), working_image(search, spacing, clip_hu)
    masks = [body_mask(image, body_threshold_hu) for image in (fixed, moving)]
    if min(sitk.GetArrayViewFromImage(m).sum() for m in masks) < 8:
        masks = [None, None]
    return WorkingPair(fixed, moving, masks[0], masks[1], spacing)
