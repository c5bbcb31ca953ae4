"""Affine registration of a template (source) scan to a search (target) scan with SimpleITK.

The result maps **template world points to search world points** (mm), which is what a tracker
needs: ``T_aff(source_center)`` is the affine prior of the lesion's position in the follow-up.
ITK's registration estimates the transform from the *fixed* image's space into the *moving*
image's space, so the template is the fixed image and the search scan the moving one.

Recipe (see ``RegistrationSettings``; the defaults follow the DLS/TLT baseline: 2 mm working
resolution, multi-resolution, robust metric on clipped HU):

1. clip intensities to a CT window (air/bone outliers do not dominate), smooth and resample both
   scans to an isotropic working spacing (2 mm, or the finest native spacing of the two scans when
   that is coarser);
2. initialise with the centres of mass of the body masks (HU > ``body_threshold_hu``);
3. optimise a rigid-plus-scale (similarity) transform, then a full affine, each over a pyramid of
   shrink factors, with Mattes mutual information restricted to the template's body mask and
   randomly sampled voxels (fixed seed; with ``threads=1`` the result is bit-for-bit repeatable,
   with several threads it varies in the last digits because the metric is summed in parallel).
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import SimpleITK as sitk

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.image_io import to_sitk

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistrationSettings:
    """Parameters of :func:`register_affine` (units in the names)."""

    working_spacing_mm: float = 2.0
    clip_hu: tuple = (-1000.0, 1000.0)
    body_threshold_hu: float = -500.0
    shrink_factors: tuple = (4, 2, 1)
    smoothing_sigmas_mm: tuple = (4.0, 2.0, 0.0)
    histogram_bins: int = 32
    sampling_fraction: float = 0.25
    iterations_similarity: int = 120
    iterations_affine: int = 120
    learning_rate: float = 1.0
    seed: int = 1  # metric sampling seed; must be > 0 (SimpleITK reads 0 as "seed from the wall clock")
    threads: int | None = None  # None: all cores; 1: bit-for-bit repeatable (the metric sums in a fixed order)

    def __post_init__(self):
        if int(self.seed) <= 0:
            raise ValueError(f"RegistrationSettings.seed must be a positive integer, got {self.seed} "
                             "(SimpleITK treats 0 as 'seed from the wall clock', which is not repeatable).")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AffineRegistration:
    """An affine map from template (source) world points to search (target) world points (mm).

    ``point_target = matrix @ (point_source - center) + center + translation`` (ITK's
    parametrisation of ``AffineTransform``). Plain data, so it can be stored in JSON.
    """

    matrix: np.ndarray
    translation_mm: np.ndarray
    center_mm: np.ndarray
    final_metric: float = float("nan")
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)

    @classmethod
    def identity(cls) -> "AffineRegistration":
        return cls(np.eye(3), np.zeros(3), np.zeros(3))

    def to_sitk(self) -> sitk.AffineTransform:
        transform = sitk.AffineTransform(3)
        transform.SetMatrix(tuple(float(v) for v in np.asarray(self.matrix).ravel()))
        transform.SetCenter(tuple(float(v) for v in self.center_mm))
        transform.SetTranslation(tuple(float(v) for v in self.translation_mm))
        return transform

    def map_points(self, points_source_mm) -> np.ndarray:
        """Template world point(s) ``(..., 3)`` → search world point(s), mm."""
        pts = np.asarray(points_source_mm, dtype=np.float64)
        c = np.asarray(self.center_mm)
        return (pts - c) @ np.asarray(self.matrix).T + c + np.asarray(self.translation_mm)

    def map_voxel(self, index_source_zyx, source: Geometry, target: Geometry) -> np.ndarray:
        """Continuous voxel index ``(z, y, x)`` in the source scan → continuous ``(z, y, x)`` index in the target."""
        return target.world_to_voxel(self.map_points(source.voxel_to_world(index_source_zyx)))

    @property
    def isotropic_scale(self) -> float:
        """Volume scale of the map as one factor: ``|det(matrix)|^(1/3)``."""
        return float(abs(np.linalg.det(np.asarray(self.matrix))) ** (1.0 / 3.0))

    def to_dict(self) -> dict:
        return {
            "matrix": np.asarray(self.matrix).tolist(),
            "translation_mm": np.asarray(self.translation_mm).tolist(),
            "center_mm": np.asarray(self.center_mm).tolist(),
            "final_metric": float(self.final_metric),
            "seconds": float(self.seconds),
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "AffineRegistration":
        return cls(np.asarray(d["matrix"], dtype=np.float64), np.asarray(d["translation_mm"], dtype=np.float64),
                   np.asarray(d["center_mm"], dtype=np.float64), d.get("final_metric", float("nan")),
                   d.get("seconds", 0.0), d.get("settings", {}))


def working_spacing_mm(template: sitk.Image, search: sitk.Image, settings: RegistrationSettings) -> float:
    """Isotropic working spacing: ``settings.working_spacing_mm``, but never finer than the finest
    native spacing of the two scans (resampling coarse scans onto a finer grid adds voxels, not detail)."""
    finest_native = min(min(template.GetSpacing()), min(search.GetSpacing()))
    return max(float(settings.working_spacing_mm), float(finest_native))


def _working_image(image: sitk.Image, target_spacing: float, settings: RegistrationSettings) -> sitk.Image:
    """Clip HU, anti-alias and resample to the isotropic ``target_spacing`` (mm); float32."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    image = sitk.Clamp(image, sitk.sitkFloat32, *settings.clip_hu)
    spacing_xyz = np.asarray(image.GetSpacing())
    sigma_mm = [max(0.0, (target_spacing**2 - s**2)) ** 0.5 / 2.0 for s in spacing_xyz]
    if any(s > 0 for s in sigma_mm):
        image = sitk.SmoothingRecursiveGaussian(image, [max(s, 1e-3) for s in sigma_mm])
    size_xyz = [max(1, int(round(n * s / target_spacing))) for n, s in zip(image.GetSize(), spacing_xyz)]
    return sitk.Resample(image, size_xyz, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
                         (target_spacing,) * 3, image.GetDirection(), settings.clip_hu[0], sitk.sitkFloat32)


def _body_mask(image: sitk.Image, threshold_hu: float) -> sitk.Image:
    mask = sitk.BinaryThreshold(image, lowerThreshold=threshold_hu, upperThreshold=1e9, insideValue=1, outsideValue=0)
    return sitk.BinaryFillhole(sitk.BinaryMorphologicalOpening(mask, (1, 1, 1)))


def _run_stage(fixed, moving, fixed_mask, transform, iterations, settings: RegistrationSettings):
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.histogram_bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(settings.sampling_fraction, settings.seed)
    if fixed_mask is not None:
        method.SetMetricFixedMask(fixed_mask)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=settings.learning_rate, minStep=1e-4, numberOfIterations=iterations,
        gradientMagnitudeTolerance=1e-8, relaxationFactor=0.6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(settings.shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(settings.smoothing_sigmas_mm))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(transform, inPlace=True)
    method.Execute(fixed, moving)
    return transform, method.GetMetricValue()


@contextlib.contextmanager
def _itk_threads(threads: int | None):
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


def register_affine(template: sitk.Image, search: sitk.Image,
                    settings: RegistrationSettings | None = None) -> AffineRegistration:
    """Affine registration; the returned map takes template world points to search world points.

    Args:
        template: the scan with the known lesion (source), CT in HU.
        search: the follow-up scan (target), CT in HU.
        settings: optimisation parameters; defaults to :class:`RegistrationSettings()`.
    """
    settings = settings or RegistrationSettings()
    with _itk_threads(settings.threads):
        return _register_affine(template, search, settings)


def _register_affine(template: sitk.Image, search: sitk.Image, settings: RegistrationSettings) -> AffineRegistration:
    start = time.perf_counter()
    spacing = working_spacing_mm(template, search, settings)
    fixed = _working_image(template, spacing, settings)
    moving = _working_image(search, spacing, settings)
    fixed_mask = _body_mask(fixed, settings.body_threshold_hu)
    moving_mask = _body_mask(moving, settings.body_threshold_hu)
    if sitk.GetArrayViewFromImage(fixed_mask).sum() < 8 or sitk.GetArrayViewFromImage(moving_mask).sum() < 8:
        logger.warning("Registration: no body found above %.0f HU; using intensity moments for initialisation.",
                       settings.body_threshold_hu)
        init_fixed, init_moving, fixed_mask = fixed, moving, None
    else:
        init_fixed, init_moving = fixed_mask, moving_mask

    similarity = sitk.CenteredTransformInitializer(
        sitk.Cast(init_fixed, sitk.sitkFloat32), sitk.Cast(init_moving, sitk.sitkFloat32),
        sitk.Similarity3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS)
    similarity, _ = _run_stage(fixed, moving, fixed_mask, similarity, settings.iterations_similarity, settings)

    affine = sitk.AffineTransform(3)
    affine.SetMatrix(similarity.GetMatrix())
    affine.SetTranslation(similarity.GetTranslation())
    affine.SetCenter(similarity.GetCenter())
    affine, metric = _run_stage(fixed, moving, fixed_mask, affine, settings.iterations_affine, settings)

    result = AffineRegistration(
        matrix=np.asarray(affine.GetMatrix(), dtype=np.float64).reshape(3, 3),
        translation_mm=np.asarray(affine.GetTranslation(), dtype=np.float64),
        center_mm=np.asarray(affine.GetCenter(), dtype=np.float64),
        final_metric=float(metric), seconds=time.perf_counter() - start, settings=settings.to_dict())
    logger.debug("Affine registration: metric %.4f, %.2f s", result.final_metric, result.seconds)
    return result


def register_images(template_zyx: np.ndarray, template_geometry: Geometry, search_zyx: np.ndarray,
                    search_geometry: Geometry, settings: RegistrationSettings | None = None) -> AffineRegistration:
    """:func:`register_affine` on numpy ``[z, y, x]`` arrays with their geometries."""
    return register_affine(to_sitk(template_zyx, template_geometry), to_sitk(search_zyx, search_geometry), settings)
