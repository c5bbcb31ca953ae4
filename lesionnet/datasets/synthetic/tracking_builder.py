"""Random construction of a Dataset501 patient: :func:`make_patient`.

From a seed, draws the phantom, the time points (voxel spacing, grid shape ``(z, y, x)``, affine pose
and smooth displacement of each follow-up, noise and bias field) and the lesions (organ, radius
trajectory, drift, shape, appearance, look-alike twins), placed by rejection sampling so that each
lesion sits in its organ, clear of bone / air / vessels / other lesions and inside every scan.
Every kind of draw uses its own random stream of the patient's seed.

Coordinates: canonical and world points are physical ``(x, y, z)`` vectors in mm; voxel indices, shapes
and spacings (``*_zyx``) are in array order ``(z, y, x)``; radii in mm, intensities in HU.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from lesionnet.datasets.synthetic import common, shapes
from lesionnet.datasets.synthetic import phantom as phantom_module
from lesionnet.datasets.synthetic.phantom import TorsoPhantom
from lesionnet.datasets.synthetic.tracking_config import TrackingConfig
from lesionnet.datasets.synthetic.tracking_patient import (
    LesionAppearance,
    SyntheticLesion,
    SyntheticPatient,
    TimePoint,
)
from lesionnet.datasets.synthetic.transforms import (
    AffinePose,
    FourierDisplacement,
    WorldToCanonical,
    random_rotation,
    random_unit_vector,
)

logger = logging.getLogger(__name__)

_ORGAN_TISSUE = {"liver": (phantom_module.LIVER, phantom_module.LIVER_VESSEL),
                 "lung": (phantom_module.LUNG, phantom_module.LUNG_VESSEL),
                 "soft_tissue": (phantom_module.SOFT_TISSUE, phantom_module.VISCERAL_FAT, phantom_module.MUSCLE),
                 "spleen": (phantom_module.SPLEEN,)}
_FORBIDDEN_TISSUE = (phantom_module.AIR, phantom_module.SUBCUTANEOUS_FAT, phantom_module.BONE,
                     phantom_module.AORTA, phantom_module.HEART, phantom_module.STOMACH, phantom_module.KIDNEY)
# random streams of a patient (child seed sequences), so that changing one magnitude (e.g. the
# non-rigid displacement) leaves every other draw unchanged
_STREAM_STRUCTURE, _STREAM_ANATOMY, _STREAM_GRID, _STREAM_POSE, _STREAM_DEFORMATION, _STREAM_LESIONS, \
    _STREAM_NOISE = range(7)


def make_patient(config: TrackingConfig | None = None, seed=0, patient_id: str = "P0000",
                 num_timepoints: int | None = None) -> SyntheticPatient:
    """Build one patient in memory (nothing is rendered or written yet).

    Args:
        config: generator parameters (default :class:`TrackingConfig`).
        seed: an int or a ``np.random.SeedSequence`` (e.g. :func:`common.patient_seed_sequence`).
        patient_id: used in scan ids (``{patient_id}_T{t}``) and pair ids.
        num_timepoints: force the number of scans (else drawn from ``config.timepoints_range``).

    Every random choice comes from separate streams of ``seed`` (structure, anatomy, grid, pose,
    deformation, lesions, noise), so e.g. changing ``nonrigid_displacement_mm`` changes nothing else.
    """
    config = config or TrackingConfig()
    seed_sequence = common.as_seed_sequence(seed)
    structure_rng = common.child_rng(seed_sequence, _STREAM_STRUCTURE)
    drawn_timepoints = int(structure_rng.integers(config.timepoints_range[0], config.timepoints_range[1] + 1))
    num_lesions = int(structure_rng.integers(config.lesions_range[0], config.lesions_range[1] + 1))
    num_timepoints = int(num_timepoints or drawn_timepoints)
    if num_timepoints < 2:
        raise ValueError("a tracking patient needs at least 2 time points")

    phantom = TorsoPhantom.random(common.child_rng(seed_sequence, _STREAM_ANATOMY), config.anatomy_scale)
    timepoints = _make_timepoints(config, seed_sequence, patient_id, num_timepoints)
    lesions = _place_lesions(config, common.child_rng(seed_sequence, _STREAM_LESIONS), phantom, timepoints,
                             num_lesions)
    patient = SyntheticPatient(patient_id, phantom, tuple(timepoints), tuple(lesions), config.edge_mm,
                               config.psf_sigma_voxels)
    _check_lesions_inside(patient, config)
    return patient


def _make_timepoints(config: TrackingConfig, seed_sequence, patient_id: str, num_timepoints: int) -> list:
    grid_rng = common.child_rng(seed_sequence, _STREAM_GRID)
    pose_rng = common.child_rng(seed_sequence, _STREAM_POSE)
    deformation_rng = common.child_rng(seed_sequence, _STREAM_DEFORMATION)
    noise_rng = common.child_rng(seed_sequence, _STREAM_NOISE)
    thickness_range, inplane_range = config.spacing_ranges_mm()
    nominal_thickness = config.nominal_spacing_zyx[0]
    timepoints = []
    for t in range(num_timepoints):
        thickness = round(float(grid_rng.uniform(*thickness_range)), 3)
        inplane = round(float(grid_rng.uniform(*inplane_range)), 3)
        spacing_zyx = (thickness, inplane, inplane)
        shape_zyx = tuple(max(4, int(round(f / s))) for f, s in zip(config.field_of_view_mm_zyx, spacing_zyx))
        pose = AffinePose.random(pose_rng, config.max_rotation_deg, config.max_translation_mm, config.scale_range)
        displacement = FourierDisplacement.random(deformation_rng, config.nonrigid_displacement_mm,
                                                  config.nonrigid_wavelength_mm, config.nonrigid_modes)
        mapping = WorldToCanonical.identity() if t == 0 else WorldToCanonical(pose, displacement)
        if t > 0 and displacement.lipschitz_bound >= 1.0:
            logger.debug("%s_T%d: non-rigid displacement Lipschitz bound %.2f >= 1; it may fold locally.",
                         patient_id, t, displacement.lipschitz_bound)
        noise_hu = float(noise_rng.uniform(*config.noise_hu_range)) * np.sqrt(nominal_thickness / thickness)
        timepoints.append(TimePoint(
            scan_id=f"{patient_id}_T{t}",
            geometry=common.centered_geometry(shape_zyx, spacing_zyx),
            mapping=mapping,
            subslices=max(1, int(np.ceil(thickness / config.max_subslice_mm - 1e-9))),
            noise_hu=noise_hu,
            noise_seed=int(noise_rng.integers(0, 2 ** 63 - 1)),
            bias_coefficients_zyx=noise_rng.uniform(-1.0, 1.0, size=(3, 3, 3)) * config.bias_field_hu,
        ))
    return timepoints


def _radius_trajectory(rng: np.random.Generator, config: TrackingConfig, num_timepoints: int) -> np.ndarray:
    """World radii (mm) per time point: log-uniform baseline, then a growth factor per step, clipped."""
    low, high = config.radius_range_mm
    radii = [min(max(common.log_uniform(rng, *config.baseline_radius_range_mm), low), high)]
    for _ in range(1, num_timepoints):
        radii.append(float(np.clip(radii[-1] * rng.uniform(*config.growth_range), low, high)))
    return np.asarray(radii)


def _random_appearance(rng: np.random.Generator, config: TrackingConfig, phantom: TorsoPhantom, organ: str,
                       num_timepoints: int) -> LesionAppearance:
    if organ == "lung":
        base = phantom.organs["lung_left"].hu
        delta = float(rng.uniform(*config.lung_nodule_hu_range)) - base
    else:
        base = phantom.organs[organ].hu if organ in phantom.organs else phantom.hu["soft_tissue"]
        sign = -1.0 if rng.uniform() < config.hypodense_fraction else 1.0
        delta = sign * float(rng.uniform(*config.lesion_contrast_hu_range))
    contrast = np.concatenate([[1.0], rng.uniform(*config.contrast_change_range, size=num_timepoints - 1)])
    if organ == "lung":
        contrast = np.minimum(contrast, 1.0)  # nodules may become part-solid, never denser than bone
    has_rim = rng.uniform() < config.rim_fraction
    rim = config.rim_hu * has_rim * rng.uniform(0.5, 1.5, size=num_timepoints)
    has_necrosis = rng.uniform() < config.necrosis_fraction
    necrosis_onset = int(rng.integers(0, num_timepoints)) if has_necrosis else num_timepoints
    necrosis = np.where(np.arange(num_timepoints) >= necrosis_onset, config.necrosis_hu, 0.0)
    texture = rng.uniform(*config.lesion_texture_hu_range) * rng.uniform(0.5, 1.5, size=num_timepoints)
    num_modes = 6
    directions = np.stack([random_unit_vector(rng) for _ in range(num_modes)])
    wave_vectors = directions * rng.uniform(2.0, 5.0, size=(num_modes, 1))
    phases = rng.uniform(0, 2 * np.pi, size=num_modes)
    shifts = np.concatenate([np.zeros((1, num_modes)), rng.uniform(-1.5, 1.5, size=(num_timepoints - 1, num_modes))])
    return LesionAppearance(float(base), float(delta), contrast, rim, necrosis, texture, wave_vectors, phases, shifts)


def _twin_appearance(rng: np.random.Generator, original: LesionAppearance) -> LesionAppearance:
    """A look-alike: same base, contrast within ±15 %, same rim/necrosis pattern, own texture."""
    return dataclasses.replace(
        original,
        delta_hu=original.delta_hu * float(rng.uniform(0.85, 1.15)),
        texture_phases=rng.uniform(0, 2 * np.pi, size=original.texture_phases.shape),
    )


def _place_lesions(config: TrackingConfig, rng: np.random.Generator, phantom: TorsoPhantom, timepoints: list,
                   num_lesions: int, max_attempts: int = 2000, attempts_per_radius: int = 50) -> list:
    """Draw ``num_lesions`` lesions by rejection sampling (organ, inside every scan, no overlap)."""
    num_timepoints = len(timepoints)
    organs = sorted(config.lesion_organ_weights)
    weights = np.array([config.lesion_organ_weights[o] for o in organs], dtype=np.float64)
    weights /= weights.sum()
    lesions: list[SyntheticLesion] = []
    attempts = 0
    while len(lesions) < num_lesions and attempts < max_attempts:
        # a radius trajectory is kept for several positions: redrawing it at every rejection would favour
        # the small lesions that fit anywhere and bend the radius distribution away from the configured one
        if attempts % attempts_per_radius == 0:
            radii_mm = _radius_trajectory(rng, config, num_timepoints)
        attempts += 1
        organ = str(rng.choice(organs, p=weights))
        center0 = rng.uniform(*phantom.organ_box(organ))
        lesion = _make_lesion(rng, config, phantom, organ, center0, radii_mm, timepoints, num_timepoints)
        if not _lesion_fits(lesion, phantom, timepoints, lesions, config):
            continue
        attempts += (-attempts) % attempts_per_radius        # the next lesion draws its own radius
        lesions.append(lesion)
        if len(lesions) < num_lesions and rng.uniform() < config.twin_fraction:
            twin = _make_twin(rng, config, phantom, lesion, len(lesions) - 1, timepoints, lesions)
            if twin is not None:
                lesions.append(twin)
    if len(lesions) < num_lesions:
        logger.warning("placed only %d of %d lesions after %d attempts", len(lesions), num_lesions, attempts)
    if not lesions:
        raise RuntimeError("no lesion could be placed; enlarge field_of_view_mm_zyx or reduce radius_range_mm.")
    return lesions


def _make_lesion(rng, config, phantom, organ, center0, radii_mm, timepoints, num_timepoints, appearance=None,
                 twin_of=None) -> SyntheticLesion:
    centers = [np.asarray(center0, dtype=np.float64)]
    for _ in range(1, num_timepoints):
        centers.append(centers[-1] + random_unit_vector(rng) * rng.uniform(0.0, config.lesion_drift_mm))
    axis_ratios = rng.uniform(0.8, 1.2, size=3)
    axis_ratios /= np.prod(axis_ratios) ** (1.0 / 3.0)
    rotation = random_rotation(rng, 180.0)
    if appearance is None:
        appearance = _random_appearance(rng, config, phantom, organ, num_timepoints)
    # radii_mm are DLS radii (half the long axial diameter in scan t's world mm): the canonical size is
    # chosen so that the ellipsoid's axial cross-section through its center has exactly that half-axis
    unit_half_axes = []
    for t, center in enumerate(centers):
        mapping = timepoints[t].mapping
        jacobian = mapping.jacobian(mapping.inverse(center))
        unit_half_axes.append(shapes.axial_half_long_axis(axis_ratios, rotation, jacobian))
    return SyntheticLesion(organ=organ, centers_canonical_mm=np.stack(centers),
                           radii_canonical_mm=np.asarray(radii_mm) / np.asarray(unit_half_axes),
                           radii_mm=np.asarray(radii_mm), axis_ratios=axis_ratios, rotation=rotation,
                           appearance=appearance, twin_of=twin_of)


def _make_twin(rng, config, phantom, original: SyntheticLesion, original_index: int, timepoints,
               placed: list, max_attempts: int = 20):
    """A similar lesion in the same organ, ``twin_gap_range_mm`` from ``original``'s surface."""
    num_timepoints = len(timepoints)
    low, high = config.radius_range_mm
    for _ in range(max_attempts):
        ratio = rng.uniform(0.8, 1.25)
        radii_mm = np.clip(original.radii_mm * ratio, low, high)
        r_max = float(np.max(original.radii_canonical_mm) * np.max(original.axis_ratios) * (1.0 + ratio))
        distance = r_max + rng.uniform(*config.twin_gap_range_mm) + 2 * config.lesion_drift_mm
        center0 = original.centers_canonical_mm[0] + random_unit_vector(rng) * distance
        twin = _make_lesion(rng, config, phantom, original.organ, center0, radii_mm, timepoints, num_timepoints,
                            _twin_appearance(rng, original.appearance), twin_of=original_index)
        if _lesion_fits(twin, phantom, timepoints, placed, config):
            return twin
    return None


_HARD_TISSUE = (phantom_module.AIR, phantom_module.BONE)
#: least fraction of a lesion's test points (center, half and full radius) inside its organ
_MIN_ORGAN_FRACTION = 0.6
_DIRECTIONS = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)
                        if (i, j, k) != (0, 0, 0)], dtype=np.float64)
_DIRECTIONS /= np.linalg.norm(_DIRECTIONS, axis=1, keepdims=True)


def _lesion_fits(lesion: SyntheticLesion, phantom: TorsoPhantom, timepoints: list, placed: list,
                 config: TrackingConfig) -> bool:
    """Organ at the center, mostly inside its organ, core clear of other structures, surface clear of bone
    and air, apart from the other lesions, inside every scan."""
    allowed = _ORGAN_TISSUE[lesion.organ]
    for t in range(len(timepoints)):          # the cheap geometric checks first
        center = lesion.centers_canonical_mm[t]
        reach = float(np.max(lesion.semi_axes_mm(t)))
        for other in placed:
            other_reach = float(np.max(other.semi_axes_mm(t)))
            if np.linalg.norm(other.centers_canonical_mm[t] - center) < reach + other_reach + 2.0:
                return False
        # inside the scan under the affine part of phi_t (the non-rigid part is bounded by the margin)
        tp = timepoints[t]
        index_zyx = tp.geometry.world_to_voxel(tp.mapping.pose.invert(center))
        if common.distance_to_border_mm(tp.geometry, index_zyx) < lesion.radii_mm[t] * 1.25 + config.fov_margin_mm:
            return False
    for t in range(len(timepoints)):
        center = lesion.centers_canonical_mm[t]
        reach = float(np.max(lesion.semi_axes_mm(t)))
        points = np.concatenate([center[None], center + 0.5 * reach * _DIRECTIONS, center + reach * _DIRECTIONS])
        _, tissue = phantom.evaluate(points[:, 0], points[:, 1], points[:, 2], with_tissue=True)
        core, rim = tissue[:1 + len(_DIRECTIONS)], tissue[1 + len(_DIRECTIONS):]
        # the core (center and half radius) stays clear of every other structure; a large lesion may push
        # its surface against its neighbours but never into air or bone
        if tissue[0] != allowed[0] or np.isin(core, _FORBIDDEN_TISSUE).any() or np.isin(rim, _HARD_TISSUE).any():
            return False
        if np.mean(np.isin(tissue, allowed)) < _MIN_ORGAN_FRACTION:
            return False
    return True


def _check_lesions_inside(patient: SyntheticPatient, config: TrackingConfig) -> None:
    """Warn when the non-rigid displacement pushed a lesion center close to a scan border."""
    for t, tp in enumerate(patient.timepoints):
        for k in range(len(patient.lesions)):
            index_zyx = patient.lesion_center_zyx(t, k)
            if common.distance_to_border_mm(tp.geometry, index_zyx) < patient.lesion_radius_mm(t, k):
                logger.warning("%s lesion %d lies within its radius of the scan border; lower "
                               "nonrigid_displacement_mm (%.1f) below fov_margin_mm (%.1f).", tp.scan_id, k,
                               config.nonrigid_displacement_mm, config.fov_margin_mm)


__all__ = ["make_patient"]
