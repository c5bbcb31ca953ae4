"""Affine registration of a template (source) scan to a search (target) scan with SimpleITK.

The result maps **template world points to search world points** (mm), which is what a tracker
needs: ``T_aff(source_center)`` is the affine prior of the lesion's position in the follow-up.
ITK's registration estimates the transform from the *fixed* image's space into the *moving*
image's space, so the template is the fixed image and the search scan the moving one.

Recipe (:class:`RegistrationSettings`; measurements that chose it: ``documentation/registration.md``):

1. clip intensities to a CT window, anti-alias and resample both scans to a coarse isotropic working
   spacing (:mod:`.working_images`); body masks (HU above ``body_threshold_hu``);
2. starting points that survive different z-coverage: z-offsets from axial slice profiles, translations
   from the body centroids of the matched slabs (:mod:`.initialisation`); with several candidates, each
   gets a short similarity run at the coarsest level and the best metric wins (multi-start);
3. a similarity transform (rotation, isotropic scale, translation), then a full affine, each over a
   pyramid of shrink factors, with Mattes mutual information on about ``metric_samples`` randomly
   sampled voxels of the template's body mask (a count, not a fraction: the time does not grow with the
   scan's size) (fixed seed; with ``threads=1`` the result is bit-for-bit repeatable, with
   several threads it varies in the last digits because the metric is summed in parallel).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import SimpleITK as sitk

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.image_io import to_sitk
from lesionnet.registration.initialisation import candidate_starts
from lesionnet.registration.working_images import (
    WorkingPair,
    itk_threads,
    sampling_fraction,
    working_pair,
    working_spacing,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistrationSettings:
    """Parameters of :func:`register_affine` (units in the names)."""

    working_spacing_mm: float = 4.0
    clip_hu: tuple = (-1000.0, 1000.0)
    body_threshold_hu: float = -500.0
    num_starts: int = 3
    start_iterations: int = 25
    min_overlap_fraction: float = 0.4
    shrink_factors: tuple = (2, 1)
    smoothing_sigmas_mm: tuple = (4.0, 0.0)
    histogram_bins: int = 32
    metric_samples: int = 10000
    iterations_similarity: int = 100
    iterations_affine: int = 100
    learning_rate: float = 1.0
    seed: int = 1  # metric sampling seed; must be > 0 (SimpleITK reads 0 as "seed from the wall clock")
    threads: int | None = None  # None: all cores; 1: bit-for-bit repeatable (the metric sums in a fixed order)

    kind = "affine"

    def __post_init__(self):
        if int(self.seed) <= 0:
            raise ValueError(f"RegistrationSettings.seed must be a positive integer, got {self.seed} "
                             "(SimpleITK treats 0 as 'seed from the wall clock', which is not repeatable).")
        if int(self.num_starts) < 1:
            raise ValueError(f"RegistrationSettings.num_starts must be at least 1, got {self.num_starts}.")

    def to_dict(self) -> dict:
        return {**asdict(self), "kind": self.kind}

    @classmethod
    def from_dict(cls, d: dict) -> "RegistrationSettings":
        return cls(**known_fields(cls, d))


def known_fields(cls, d: dict) -> dict:
    """``d`` (JSON) as keyword arguments of the settings class ``cls``; ``ValueError`` naming unknown fields."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known - {"kind"})
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {unknown} (settings written by another lesionnet "
                         "version?). Re-run lesionnet_plan_and_preprocess to plan them again.")
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k != "kind"}


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

    def inverse(self) -> "AffineRegistration":
        """The exact inverse map (search world → template world) in ITK's centred parametrisation.

        ``y = M (x - c) + c + t``  ⇒  ``x = M⁻¹ (y - c') + c' - t`` with ``c' = c + t``.
        """
        translation = np.asarray(self.translation_mm, dtype=np.float64)
        settings = dict(self.settings)
        settings["inverted"] = not bool(settings.get("inverted", False))
        return AffineRegistration(np.linalg.inv(np.asarray(self.matrix, dtype=np.float64)), -translation,
                                  np.asarray(self.center_mm, dtype=np.float64) + translation,
                                  self.final_metric, self.seconds, settings)

    def to_dict(self) -> dict:
        return {
            "kind": "affine",
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
    """The isotropic spacing the registration works at (see :func:`.working_images.working_spacing`)."""
    return working_spacing(template, search, settings.working_spacing_mm)


def _run_stage(fixed, moving, fixed_mask, transform, iterations, settings: RegistrationSettings,
               shrink_factors=None, smoothing_sigmas_mm=None):
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.histogram_bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(sampling_fraction(fixed_mask, fixed, settings.metric_samples), settings.seed)
    if fixed_mask is not None:
        method.SetMetricFixedMask(fixed_mask)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=settings.learning_rate, minStep=1e-4, numberOfIterations=iterations,
        gradientMagnitudeTolerance=1e-8, relaxationFactor=0.6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(shrink_factors or settings.shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(smoothing_sigmas_mm or settings.smoothing_sigmas_mm))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(transform, inPlace=True)
    method.Execute(fixed, moving)
    return transform, method.GetMetricValue()


def _similarity_from(start) -> sitk.Similarity3DTransform:
    transform = sitk.Similarity3DTransform()
    transform.SetCenter(tuple(float(v) for v in start.center_mm))
    transform.SetTranslation(tuple(float(v) for v in start.translation_mm))
    return transform


def _initial_similarity(fixed, moving, fixed_mask, moving_mask, settings: RegistrationSettings):
    """The similarity transform to optimise from: the best of the candidate starts (or a moments init)."""
    starts = candidate_starts(fixed, fixed_mask, moving, moving_mask, settings.num_starts,
                              settings.min_overlap_fraction)
    if not starts:
        logger.debug("Registration: no z-offset candidates; centres of mass of the body masks instead.")
        return sitk.CenteredTransformInitializer(sitk.Cast(fixed_mask, sitk.sitkFloat32),
                                                 sitk.Cast(moving_mask, sitk.sitkFloat32),
                                                 sitk.Similarity3DTransform(),
                                                 sitk.CenteredTransformInitializerFilter.MOMENTS)
    if len(starts) == 1:
        return _similarity_from(starts[0])
    coarsest = (settings.shrink_factors[0],), (settings.smoothing_sigmas_mm[0],)
    screened = [_run_stage(fixed, moving, fixed_mask, _similarity_from(s), settings.start_iterations, settings,
                           *coarsest) for s in starts]
    best = int(np.argmin([metric for _, metric in screened]))
    logger.debug("Registration: start %d of %d (z-offset %.1f mm) has the best metric", best + 1, len(starts),
                 starts[best].z_offset_mm)
    return screened[best][0]


def register_affine(template: sitk.Image, search: sitk.Image,
                    settings: RegistrationSettings | None = None) -> AffineRegistration:
    """Affine registration; the returned map takes template world points to search world points.

    Args:
        template: the scan with the known lesion (source), CT in HU.
        search: the follow-up scan (target), CT in HU.
        settings: optimisation parameters; defaults to :class:`RegistrationSettings()`.
    """
    settings = settings or RegistrationSettings()
    with itk_threads(settings.threads):
        start = time.perf_counter()
        pair = working_pair(template, search, settings.working_spacing_mm, settings.clip_hu,
                            settings.body_threshold_hu)
        return register_working_pair(pair, settings, start)


def register_working_pair(pair: WorkingPair, settings: RegistrationSettings,
                          start: float | None = None) -> AffineRegistration:
    """The affine stages on prepared working images (:func:`register_affine` without the preparation).

    ``start`` (a ``time.perf_counter()`` value) is when the work on this scan pair began; the result's
    ``seconds`` count from there.
    """
    start = time.perf_counter() if start is None else start
    fixed, moving, fixed_mask = pair.fixed, pair.moving, pair.fixed_mask
    if fixed_mask is None:
        logger.warning("Registration: no body found above %.0f HU; using intensity moments for initialisation.",
                       settings.body_threshold_hu)
        similarity = sitk.CenteredTransformInitializer(fixed, moving, sitk.Similarity3DTransform(),
                                                       sitk.CenteredTransformInitializerFilter.MOMENTS)
    else:
        similarity = _initial_similarity(fixed, moving, fixed_mask, pair.moving_mask, settings)
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
