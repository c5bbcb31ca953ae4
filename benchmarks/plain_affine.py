"""The plain SimpleITK affine recipe that the registration benchmark compares lesionnet's prior with.

A textbook recipe, kept here as the yardstick (it is not part of the library): Mattes mutual
information (32 bins, 10 % random sampling), the follow-up (search) scan as the fixed image,
``CenteredTransformInitializer`` with GEOMETRY, one affine stage, regular-step gradient descent
(learning rate 2, 300 iterations), shrink factors 4 / 2 / 1 with smoothing sigmas 2 / 1 / 0 (voxels),
native spacing.

ITK estimates the map from fixed to moving points, i.e. search → template here; the lesion prior needs
template → search, which is the exact inverse of the affine.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from lesionnet.registration.affine import AffineRegistration
from lesionnet.registration.cache import invert_registration

SEED = 1


def register_plain(template: sitk.Image, search: sitk.Image) -> AffineRegistration:
    """The plain recipe; returns the map template world points → search world points (mm)."""
    fixed = sitk.Cast(search, sitk.sitkFloat32)
    moving = sitk.Cast(template, sitk.sitkFloat32)
    transform = sitk.AffineTransform(sitk.CenteredTransformInitializer(
        fixed, moving, sitk.AffineTransform(3), sitk.CenteredTransformInitializerFilter.GEOMETRY))
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.10, SEED)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-4, numberOfIterations=300)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2, 1, 0])
    method.SetInitialTransform(transform, inPlace=True)
    method.Execute(fixed, moving)
    search_to_template = AffineRegistration(np.asarray(transform.GetMatrix(), dtype=np.float64).reshape(3, 3),
                                            np.asarray(transform.GetTranslation(), dtype=np.float64),
                                            np.asarray(transform.GetCenter(), dtype=np.float64),
                                            float(method.GetMetricValue()))
    return invert_registration(search_to_template)
