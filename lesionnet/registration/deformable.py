"""Deformable registration prior: lesionnet's affine, then a coarse cubic B-spline, with SimpleITK.

The TLT public code starts from a deformable registration (DEEDS); this is the SimpleITK counterpart.
Like :mod:`lesionnet.registration.affine`, the result maps **template world points to search world
points** (mm): ``p ↦ A(B(p))`` where ``B`` is the B-spline displacement on the template's grid and ``A``
the affine (ITK's "moving initial transform"). It is estimated with the template as the fixed image.

Recipe (:class:`DeformableSettings`): both scans clipped, smoothed and resampled to a coarse isotropic
working spacing (by default the affine stage's, 4 mm, whose images are reused), a B-spline control
grid of about ``grid_spacing_mm`` over the template, Mattes
mutual information on about ``metric_samples`` randomly sampled voxels of the template's body mask, L-BFGS-B
at the working spacing. The affine comes first with its own settings (``affine``).

The inverse map (search → template points) has no closed form; :meth:`DeformableRegistration.inverse`
returns an object that inverts points by fixed-point iteration (residual below 1e-3 mm), which is all a
prior needs (lesion centers are points).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import SimpleITK as sitk

from lesionnet.datasets.geometry import Geometry
from lesionnet.registration.affine import (
    AffineRegistration,
    RegistrationSettings,
    known_fields,
    register_working_pair,
)
from lesionnet.registration.working_images import itk_threads, sampling_fraction, working_pair

INVERSE_ITERATIONS = 50
INVERSE_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class DeformableSettings:
    """Parameters of :func:`register_deformable` (units in the names); ``affine`` sets the affine stage."""

    affine: RegistrationSettings = field(default_factory=RegistrationSettings)
    working_spacing_mm: float | None = None  # None: the affine stage's (its working images are reused)
    grid_spacing_mm: float = 45.0
    shrink_factors: tuple = (1,)
    smoothing_sigmas_mm: tuple = (0.0,)
    histogram_bins: int = 32
    metric_samples: int = 10000
    iterations: int = 15
    seed: int = 1
    threads: int | None = None

    kind = "deformable"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["affine"] = self.affine.to_dict()
        d["kind"] = self.kind
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DeformableSettings":
        fields = known_fields(cls, {k: v for k, v in d.items() if k != "affine"})
        return cls(affine=RegistrationSettings.from_dict(d.get("affine", {})), **fields)


@dataclass
class DeformableRegistration:
    """Template world points → search world points: ``affine(bspline(p))`` (mm). Plain data (JSON).

    ``bspline_fixed_parameters`` / ``bspline_parameters`` are ITK's description of the cubic B-spline
    (grid geometry, then coefficients). ``inverted`` objects map search points to template points.
    """

    affine: AffineRegistration
    bspline_fixed_parameters: list
    bspline_parameters: list
    inverted: bool = False
    final_metric: float = float("nan")
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)

    def _bspline(self) -> sitk.BSplineTransform:
        transform = sitk.BSplineTransform(3, 3)
        transform.SetFixedParameters([float(v) for v in self.bspline_fixed_parameters])
        transform.SetParameters([float(v) for v in self.bspline_parameters])
        return transform

    def _forward(self, points_mm: np.ndarray) -> np.ndarray:
        bspline = self._bspline()
        warped = np.array([bspline.TransformPoint(tuple(float(v) for v in p)) for p in points_mm])
        return self.affine.map_points(warped.reshape(-1, 3))

    def map_points(self, points_source_mm) -> np.ndarray:
        """Source world point(s) ``(..., 3)`` (x, y, z mm) → target world point(s)."""
        pts = np.asarray(points_source_mm, dtype=np.float64)
        flat = pts.reshape(-1, 3)
        out = self._inverse_points(flat) if self.inverted else self._forward(flat)
        return out.reshape(pts.shape)

    def _inverse_points(self, targets_mm: np.ndarray) -> np.ndarray:
        """Solve ``forward(x) = y`` by fixed-point iteration preconditioned with the affine's inverse."""
        affine_inverse = self.affine.inverse()
        x = affine_inverse.map_points(targets_mm)
        matrix_inverse = np.linalg.inv(np.asarray(self.affine.matrix))
        for _ in range(INVERSE_ITERATIONS):
            residual = targets_mm - self._forward(x)
            x = x + residual @ matrix_inverse.T
            if np.max(np.abs(residual)) < INVERSE_TOLERANCE_MM:
                break
        return x

    def map_voxel(self, index_source_zyx, source: Geometry, target: Geometry) -> np.ndarray:
        """Continuous voxel index ``(z, y, x)`` in the source scan → continuous ``(z, y, x)`` index in the target."""
        return target.world_to_voxel(self.map_points(source.voxel_to_world(index_source_zyx)))

    @property
    def isotropic_scale(self) -> float:
        """Volume scale of the affine part (the B-spline is taken as local motion, not growth)."""
        scale = self.affine.isotropic_scale
        return 1.0 / scale if self.inverted else scale

    def inverse(self) -> "DeformableRegistration":
        return DeformableRegistration(self.affine, list(self.bspline_fixed_parameters), list(self.bspline_parameters),
                                      not self.inverted, self.final_metric, self.seconds, dict(self.settings))

    def to_dict(self) -> dict:
        return {"kind": "deformable", "affine": self.affine.to_dict(),
                "bspline_fixed_parameters": [float(v) for v in self.bspline_fixed_parameters],
                "bspline_parameters": [float(v) for v in self.bspline_parameters],
                "inverted": bool(self.inverted), "final_metric": float(self.final_metric),
                "seconds": float(self.seconds), "settings": dict(self.settings)}

    @classmethod
    def from_dict(cls, d: dict) -> "DeformableRegistration":
        return cls(AffineRegistration.from_dict(d["affine"]), list(d["bspline_fixed_parameters"]),
                   list(d["bspline_parameters"]), bool(d.get("inverted", False)),
                   d.get("final_metric", float("nan")), d.get("seconds", 0.0), d.get("settings", {}))


def _mesh_size(image: sitk.Image, grid_spacing_mm: float) -> list:
    extent_mm = [n * s for n, s in zip(image.GetSize(), image.GetSpacing())]
    return [max(1, int(round(e / grid_spacing_mm))) for e in extent_mm]


def register_deformable(template: sitk.Image, search: sitk.Image,
                        settings: DeformableSettings | None = None) -> DeformableRegistration:
    """Affine, then B-spline registration; the returned map takes template world points to search world points.

    Args:
        template: the scan with the known lesion (source), CT in HU.
        search: the follow-up scan (target), CT in HU.
        settings: see :class:`DeformableSettings` (default: its defaults).
    """
    settings = settings or DeformableSettings()
    start = time.perf_counter()
    with itk_threads(settings.affine.threads):
        affine_pair = working_pair(template, search, settings.affine.working_spacing_mm, settings.affine.clip_hu,
                                   settings.affine.body_threshold_hu)
        affine = register_working_pair(affine_pair, settings.affine, start)
    with itk_threads(settings.threads):
        pair = affine_pair
        if settings.working_spacing_mm not in (None, settings.affine.working_spacing_mm):
            pair = working_pair(template, search, settings.working_spacing_mm, settings.affine.clip_hu,
                                settings.affine.body_threshold_hu)
        fixed, moving, fixed_mask = pair.fixed, pair.moving, pair.fixed_mask
        bspline = sitk.BSplineTransformInitializer(fixed, _mesh_size(fixed, settings.grid_spacing_mm), order=3)
        method = sitk.ImageRegistrationMethod()
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.histogram_bins)
        method.SetMetricSamplingStrategy(method.RANDOM)
        fraction = sampling_fraction(fixed_mask, fixed, settings.metric_samples)
        method.SetMetricSamplingPercentage(fraction, settings.seed)
        if fixed_mask is not None:
            method.SetMetricFixedMask(fixed_mask)
        method.SetInterpolator(sitk.sitkLinear)
        method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=settings.iterations,
                                    maximumNumberOfCorrections=5,
                                    maximumNumberOfFunctionEvaluations=2 * settings.iterations)
        method.SetShrinkFactorsPerLevel(list(settings.shrink_factors))
        method.SetSmoothingSigmasPerLevel(list(settings.smoothing_sigmas_mm))
        method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        method.SetMovingInitialTransform(affine.to_sitk())
        method.SetInitialTransform(bspline, inPlace=True)
        method.Execute(fixed, moving)
    return DeformableRegistration(affine, list(bspline.GetFixedParameters()), list(bspline.GetParameters()),
                                  final_metric=float(method.GetMetricValue()),
                                  seconds=time.perf_counter() - start, settings=settings.to_dict())
