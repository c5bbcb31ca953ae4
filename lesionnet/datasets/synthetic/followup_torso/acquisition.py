"""The scans of a Dataset503 patient: :class:`FollowUpScan` and :func:`draw_scans`.

Each scan draws its own grid: square in-plane pixels (``inplane_spacing_range_mm``), slice thickness
= slice spacing (``slice_thickness_range_mm``), a square in-plane field of view (``fov_range_mm``) centered
on the world z axis, and a z-coverage of ``coverage_range_mm`` whose start (canonical z) is the
patient's nominal start shifted by up to ± ``coverage_shift_mm`` per scan. The
world frame is the scanner's: x, y centered on the table axis, z the table position, so slice 0 of a
scan lies at world z = (canonical start − table shift). Each scan also draws its mapping ``phi_t``
(:mod:`.motion`: rigid pose, breathing depth, smooth non-rigid field) and its image formation (blur,
noise, bias).

Shapes and spacings of grids are ``(z, y, x)``; world points ``(x, y, z)`` mm.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.synthetic.followup_torso.anatomy import TorsoAnatomy
from lesionnet.datasets.synthetic.followup_torso.motion import (
    BreathingField,
    FollowUpMapping,
    RigidPose,
    SmoothField,
    rotation_about_axes,
)


@dataclass(frozen=True)
class FollowUpScan:
    """One scan (time point) of a patient.

    Attributes:
        scan_id: ``{patient}_T{t}``.
        geometry: the grid (axis-aligned; in-plane centered on the world origin; z origin = table position).
        mapping: ``phi_t``, world (mm) → canonical (mm).
        coverage_mm: (start, end) canonical z range the scan was planned to cover (mm; the exact
            coverage follows from ``geometry`` and ``mapping``).
        subslices: sub-slices averaged per slice (partial volume across the slice thickness).
        psf_fwhm_mm: in-plane Gaussian blur (full width at half maximum, mm).
        noise_hu: noise standard deviation at the center of the field of view (HU).
        noise_seed: seed of this scan's noise (rendering is repeatable in any order).
        bias_coefficients_hu: (7,) coefficients of the bias field (see :mod:`.rendering`); their absolute
            values sum to at most ``bias_field_hu``.
    """

    scan_id: str
    geometry: Geometry
    mapping: FollowUpMapping
    coverage_mm: tuple
    subslices: int
    psf_fwhm_mm: float
    noise_hu: float
    noise_seed: int
    bias_coefficients_hu: np.ndarray


def draw_scans(config, anatomy: TorsoAnatomy, patient_id: str, num_timepoints: int, rngs: dict) -> list:
    """The ``num_timepoints`` scans of a patient.

    Args:
        config: a :class:`FollowUpTorsoConfig`.
        anatomy: the patient (for the breathing field's landmarks).
        rngs: generators ``grid``, ``pose``, ``breathing``, ``deformation``, ``noise`` (one stream each, so
            that changing one magnitude changes nothing else).
    """
    grid_rng = rngs["grid"]
    nominal_start = float(grid_rng.uniform(*config.coverage_start_range_mm))
    scans = []
    for t in range(num_timepoints):
        thickness = round(float(grid_rng.uniform(*config.slice_thickness_range_mm)), 3)
        inplane = round(float(grid_rng.uniform(*config.inplane_spacing_range_mm)), 3)
        num_xy = int(round(float(grid_rng.uniform(*config.fov_range_mm)) / inplane))
        length = float(grid_rng.uniform(*config.coverage_range_mm))
        num_z = max(2, int(round(length / thickness)))
        start = nominal_start + float(grid_rng.uniform(-1.0, 1.0)) * config.coverage_shift_mm
        pose = _random_pose(rngs["pose"], config)
        spacing_xyz = (inplane, inplane, thickness)
        origin_xyz = (-(num_xy - 1) / 2.0 * inplane, -(num_xy - 1) / 2.0 * inplane,
                      start - float(pose.translation_mm[2]))
        geometry = Geometry(spacing_xyz, origin_xyz, shape_zyx=(num_z, num_xy, num_xy))
        mapping = FollowUpMapping(pose, _breathing(rngs["breathing"], config, anatomy),
                                  SmoothField.random(rngs["deformation"], config.nonrigid_displacement_mm,
                                                     config.nonrigid_wavelength_mm, config.nonrigid_modes))
        noise_rng = rngs["noise"]
        bias = noise_rng.uniform(-1.0, 1.0, size=7)
        scans.append(FollowUpScan(
            scan_id=f"{patient_id}_T{t}",
            geometry=geometry,
            mapping=mapping,
            coverage_mm=(start, start + (num_z - 1) * thickness),
            subslices=max(2, int(np.ceil(thickness / config.subslice_spacing_mm - 1e-9))),
            psf_fwhm_mm=float(noise_rng.uniform(*config.psf_fwhm_range_mm)),
            noise_hu=float(noise_rng.uniform(*config.noise_hu_range)),
            noise_seed=int(noise_rng.integers(0, 2 ** 63 - 1)),
            bias_coefficients_hu=bias * (config.bias_field_hu / max(float(np.abs(bias).sum()), 1e-9)),
        ))
    return scans


def _random_pose(rng: np.random.Generator, config) -> RigidPose:
    """Rotation about z ≤ ``max_rotation_deg``, tilts ≤ ``max_tilt_deg``; in-plane translation uniform in a disk
    of radius ``max_translation_mm``; table shift along z ≤ ``table_shift_mm``."""
    tilt_x, tilt_y = rng.uniform(-1.0, 1.0, size=2) * config.max_tilt_deg
    turn = float(rng.uniform(-1.0, 1.0)) * config.max_rotation_deg
    rotation = rotation_about_axes(np.deg2rad([tilt_x, tilt_y, turn]))
    radius = config.max_translation_mm * np.sqrt(rng.uniform())
    direction = rng.uniform(0.0, 2.0 * np.pi)
    shift_z = float(rng.uniform(-1.0, 1.0)) * config.table_shift_mm
    return RigidPose(rotation, np.array([radius * np.cos(direction), radius * np.sin(direction), shift_z]))


def _breathing(rng: np.random.Generator, config, anatomy: TorsoAnatomy) -> BreathingField:
    vertebra = anatomy.vertebra
    return BreathingField(depth_mm=float(rng.uniform(*config.breathing_range_mm)), ap_ratio=config.breathing_ap_ratio,
                          apex_z_mm=anatomy.diaphragm_apex_z_mm, cavity_semi_axes_mm=anatomy.cavity_semi_axes_mm,
                          spine_center_xy=vertebra["center_xy"],
                          spine_radius_mm=float(max(vertebra["semi_axes_mm"]) + 5.0))


__all__ = ["FollowUpScan", "draw_scans"]
