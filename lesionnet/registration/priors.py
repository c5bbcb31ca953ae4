"""The registration priors a tracker can start from, by kind: ``affine`` and ``deformable``.

One place that turns a kind or a stored settings / result dict into the right object, so that the
cache, preprocessing, planning and the predictors need not know which kinds exist:

* :func:`default_settings` — the settings of a kind (``threads`` as given);
* :func:`settings_from_dict` / :func:`prior_from_dict` — back from JSON (the dicts carry ``"kind"``;
  dicts without it are affine, as written before the deformable prior existed);
* :func:`register_prior` / :func:`register_prior_images` — run the registration a settings object names.

Every result maps template (source) world points to search (target) world points (mm) and offers
``map_points``, ``map_voxel``, ``isotropic_scale``, ``inverse()`` and ``to_dict()``.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import SimpleITK as sitk

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.image_io import to_sitk
from lesionnet.registration.affine import AffineRegistration, RegistrationSettings, register_affine
from lesionnet.registration.deformable import DeformableRegistration, DeformableSettings, register_deformable

SETTINGS = {"affine": RegistrationSettings, "deformable": DeformableSettings}
RESULTS = {"affine": AffineRegistration, "deformable": DeformableRegistration}
REGISTER = {"affine": register_affine, "deformable": register_deformable}
PRIOR_KINDS = tuple(SETTINGS)


def _check_kind(kind: str) -> str:
    if kind not in SETTINGS:
        raise ValueError(f"unknown registration prior '{kind}'; choose one of {', '.join(PRIOR_KINDS)}.")
    return kind


def with_threads(settings, threads: int | None):
    """A copy of ``settings`` whose ITK thread count (all stages) is ``threads``."""
    if isinstance(settings, DeformableSettings):
        return dataclasses.replace(settings, threads=threads, affine=dataclasses.replace(settings.affine,
                                                                                         threads=threads))
    return dataclasses.replace(settings, threads=threads)


def default_settings(kind: str, threads: int | None = None):
    """lesionnet's default settings of a prior kind."""
    return with_threads(SETTINGS[_check_kind(kind)](), threads)


def settings_from_dict(d: dict):
    """Settings from their ``to_dict()`` form."""
    return SETTINGS[_check_kind(d.get("kind", "affine"))].from_dict(d)


def prior_from_dict(d: dict):
    """A registration result from its ``to_dict()`` form."""
    return RESULTS[_check_kind(d.get("kind", "affine"))].from_dict(d)


def register_prior(template: sitk.Image, search: sitk.Image, settings):
    """Register ``template`` to ``search`` with the prior that ``settings`` belong to."""
    return REGISTER[_check_kind(settings.kind)](template, search, settings)


def register_prior_images(template_zyx: np.ndarray, template_geometry: Geometry, search_zyx: np.ndarray,
                          search_geometry: Geometry, settings):
    """:func:`register_prior` on numpy ``[z, y, x]`` arrays with their geometries."""
    return register_prior(to_sitk(template_zyx, template_geometry), to_sitk(search_zyx, search_geometry), settings)


__all__ = ["PRIOR_KINDS", "with_threads", "default_settings", "settings_from_dict", "prior_from_dict",
           "register_prior", "register_prior_images"]
