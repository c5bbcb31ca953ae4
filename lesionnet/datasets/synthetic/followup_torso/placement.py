"""Random placement of the lesions of a Dataset503 patient: :func:`place_lesions`.

Rejection sampling. A candidate (organ by ``lesion_organ_weights``, radius trajectory, shape, look, center)
is kept when

* its center lies in its organ, at least 70 % of 52 probe points (half-way to and on the surface, at its
  largest size) lie in the organ and none in air, skin, subcutaneous fat, bone, disc, spinal canal,
  heart, aorta, vena cava or bowel gas (lymph nodes: in the visceral fat within 2–12 mm of the aorta);
* it does not come within 2 mm of another lesion (largest sizes);
* for every scan it is either **inside** — its center at least (largest semi-axis + ``scan_margin_mm``)
  and its 26 surface probes at least ``scan_margin_mm`` from the outer voxel centers, all mapped exactly
  with ``phi_t^{-1}`` — or entirely **outside** the scan (no lesion is cut by a scan border);
* it is inside at least two scans (so it gives at least one pair of each direction).

A share ``border_lesion_fraction`` of the lesions is moved along the world z axis of a random scan so
that its center lies (largest semi-axis + margin + ``border_gap_range_mm``) inside one of that scan's z
borders, or, for half of them, (1.5 largest semi-axes + edge + ``border_gap_range_mm``) outside it (such a
lesion is kept only if two other scans contain it: follow-ups that overlap only partly). With probability
``twin_fraction`` an accepted lesion gets a look-alike neighbour.

Points are canonical physical ``(x, y, z)`` (mm); voxel indices ``(z, y, x)``.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from lesionnet.datasets.synthetic import common
from lesionnet.datasets.synthetic.followup_torso import anatomy as tissues
from lesionnet.datasets.synthetic.followup_torso.anatomy_eval import evaluate_anatomy
from lesionnet.datasets.synthetic.followup_torso.lesions import FollowUpLesion, LesionLook
from lesionnet.datasets.synthetic.followup_torso.motion import random_rotation

logger = logging.getLogger(__name__)

_ALLOWED = {"liver": (tissues.LIVER, tissues.LIVER_VESSEL), "lung": (tissues.LUNG, tissues.LUNG_VESSEL),
            "kidney": (tissues.KIDNEY, tissues.RENAL_SINUS), "spleen": (tissues.SPLEEN,),
            "lymph_node": (tissues.VISCERAL_FAT,)}
#: a lesion is outside a scan when its center is this many largest semi-axes (+ edge) beyond the border
_OUTSIDE_REACH = 1.5
_FORBIDDEN = (tissues.AIR, tissues.SKIN, tissues.SUBCUTANEOUS_FAT, tissues.BONE, tissues.DISC, tissues.SPINAL_CANAL,
              tissues.HEART, tissues.AORTA, tissues.VENA_CAVA, tissues.BOWEL_GAS)


def place_lesions(config, rng: np.random.Generator, anatomy, scans: list, num_lesions: int,
                  max_organ_draws: int = 20, attempts_per_organ: int = 60) -> list:
    """Draw up to ``num_lesions`` :class:`FollowUpLesion` (twins count); at least one, else ``RuntimeError``.

    Each lesion draws its organ and whether it goes just inside or just outside a scan's z border, then up
    to ``attempts_per_organ`` candidates (so that small organs and border lesions keep their share), else
    draws again.
    """
    organs = sorted(config.lesion_organ_weights)
    weights = np.array([config.lesion_organ_weights[o] for o in organs], dtype=np.float64)
    weights /= weights.sum()
    lesions: list = []
    draws = 0
    while len(lesions) < num_lesions and draws < max_organ_draws:
        draws += 1
        organ = str(rng.choice(organs, p=weights))
        u = rng.uniform() / config.border_lesion_fraction if config.border_lesion_fraction > 0 else 1.0
        border = None if u >= 1.0 else ("outside" if u < 0.5 else "inside")
        accepted = _place_in_organ(rng, config, anatomy, scans, organ, border, lesions, attempts_per_organ)
        if accepted is None:
            continue
        lesions.append(accepted)
        if len(lesions) < num_lesions and rng.uniform() < config.twin_fraction:
            twin = _make_twin(rng, config, anatomy, scans, accepted, len(lesions) - 1, lesions)
            if twin is not None:
                lesions.append(twin)
    if len(lesions) < num_lesions:
        logger.warning("placed only %d of %d lesions after %d organ draws", len(lesions), num_lesions, draws)
    if not lesions:
        raise RuntimeError("no lesion could be placed inside two scans; widen coverage_range_mm or lower "
                           "radius_range_mm.")
    return lesions


def _place_in_organ(rng: np.random.Generator, config, anatomy, scans: list, organ: str, border: str | None,
                    placed: list, attempts: int):
    """A lesion in ``organ`` (just ``inside`` or ``outside`` a scan's z border, or anywhere when ``border`` is
    None) that may be placed, or None after ``attempts`` rejected candidates."""
    for _ in range(attempts):
        radii = _radius_trajectory(rng, config, len(scans))
        axis_ratios, rotation = _random_shape(rng)
        reach = float(np.max(radii) * np.max(axis_ratios))
        center = _draw_center(rng, anatomy, organ, reach)
        if border is not None:
            center = _near_z_border(rng, config, center, scans, reach, outside=border == "outside")
        candidate = FollowUpLesion(organ, center, radii, axis_ratios, rotation,
                                   _random_look(rng, config, anatomy, organ, len(scans)), np.zeros(len(scans), bool))
        accepted = _accept(candidate, config, anatomy, scans, placed)
        if accepted is not None:
            return accepted
    return None


def _accept(candidate: FollowUpLesion, config, anatomy, scans: list, placed: list):
    """The candidate with its ``in_scan`` flags when it may be placed, else None."""
    in_scan = scan_membership(candidate, scans, config.scan_margin_mm, config.edge_mm)
    if in_scan is None or in_scan.sum() < 2 or not _fits(candidate, anatomy, placed, config.edge_mm):
        return None
    return dataclasses.replace(candidate, in_scan=in_scan)


def _radius_trajectory(rng: np.random.Generator, config, num_timepoints: int) -> np.ndarray:
    """Radii (mm) per time point: log-uniform baseline, then a growth factor per step, clipped to the range."""
    low, high = config.radius_range_mm
    radii = [common.log_uniform(rng, low, high)]
    for _ in range(1, num_timepoints):
        radii.append(float(np.clip(radii[-1] * rng.uniform(*config.growth_range), low, high)))
    return np.asarray(radii)


def _random_shape(rng: np.random.Generator) -> tuple:
    """``(axis_ratios, rotation)``: ratios in [0.8, 1.25] scaled to geometric mean 1, uniform orientation."""
    ratios = rng.uniform(0.8, 1.25, size=3)
    return ratios / np.prod(ratios) ** (1.0 / 3.0), random_rotation(rng)


def _random_look(rng: np.random.Generator, config, anatomy, organ: str, num_timepoints: int) -> LesionLook:
    hu = anatomy.hu
    if organ == "lung":
        base, delta = hu["lung"], float(rng.uniform(*config.lung_nodule_hu_range)) - hu["lung"]
    elif organ == "lymph_node":
        base, delta = hu["visceral_fat"], float(rng.uniform(*config.lymph_node_hu_range)) - hu["visceral_fat"]
    else:
        sign = -1.0 if rng.uniform() < config.hypodense_fraction else 1.0
        base, delta = hu[organ], sign * float(rng.uniform(*config.lesion_contrast_hu_range))
    contrast = np.concatenate([[1.0], rng.uniform(*config.contrast_change_range, size=num_timepoints - 1)])
    if organ == "lung":
        contrast = np.minimum(contrast, 1.0)  # nodules may turn part-solid, never denser than soft tissue
    has_rim = organ != "lung" and rng.uniform() < config.rim_fraction
    rim = config.rim_hu * has_rim * rng.uniform(0.5, 1.5, size=num_timepoints)
    return LesionLook(float(base), float(delta), contrast, float(rng.uniform(0.0, 0.4)), rim)


def _draw_center(rng: np.random.Generator, anatomy, organ: str, reach_mm: float) -> np.ndarray:
    box_name = f"kidney_{'right' if rng.uniform() < 0.5 else 'left'}" if organ == "kidney" else organ
    low, high = anatomy.organ_box(box_name)
    if organ == "lymph_node":
        z = float(rng.uniform(low[2], high[2]))
        angle = rng.uniform(0.0, 2.0 * np.pi)
        distance = anatomy.aorta[2] + reach_mm + rng.uniform(2.0, 12.0)
        cx, cy = anatomy.aorta_center_xy(z)
        return np.array([cx + distance * np.cos(angle), cy + distance * np.sin(angle), z])
    return rng.uniform(low, high)


def _near_z_border(rng: np.random.Generator, config, center: np.ndarray, scans: list, reach_mm: float,
                   outside: bool) -> np.ndarray:
    """Move ``center`` along the world z axis of a random scan to just inside (or just ``outside``) one of its z
    borders. Exact: the world point keeps its x, y and gets the wanted z, then is mapped back with ``phi_t``."""
    scan = scans[int(rng.integers(len(scans)))]
    upper = bool(rng.integers(2))
    gap = float(rng.uniform(*config.border_gap_range_mm))
    geometry = scan.geometry
    thickness = geometry.spacing_zyx[0]
    border_z = geometry.origin_xyz[2] + (geometry.shape_zyx[0] - 1) * thickness * upper
    inward = (reach_mm + config.scan_margin_mm + gap) if not outside else -(_OUTSIDE_REACH * reach_mm
                                                                            + config.edge_mm + gap)
    world = scan.mapping.inverse(center)
    world[2] = border_z + (-1.0 if upper else 1.0) * inward
    return scan.mapping(world)


def scan_membership(lesion: FollowUpLesion, scans: list, margin_mm: float, edge_mm: float):
    """(T,) bool: inside scan ``t`` (see the module docstring); None when a scan cuts through the lesion."""
    inside = np.zeros(len(scans), dtype=bool)
    for t, scan in enumerate(scans):
        points = np.vstack([lesion.center_canonical_mm[None], lesion.surface_points(t)])
        distance = _signed_border_distance(scan.geometry, scan.geometry.world_to_voxel(scan.mapping.inverse(points)))
        reach = lesion.reach_mm(t)
        if distance[0] >= reach + margin_mm and distance[1:].min() >= margin_mm:
            inside[t] = True
        elif not (distance[0] <= -(_OUTSIDE_REACH * reach + edge_mm) and distance[1:].max() <= -edge_mm):
            return None
    return inside


def _signed_border_distance(geometry, index_zyx: np.ndarray) -> np.ndarray:
    """Per point ``(N, 3)`` (z, y, x): distance (mm) to the nearest outer voxel-center plane, negative outside."""
    upper = np.asarray(geometry.shape_zyx, dtype=np.float64) - 1.0
    return np.min(np.minimum(index_zyx, upper - index_zyx) * np.asarray(geometry.spacing_zyx), axis=-1)


def _fits(lesion: FollowUpLesion, anatomy, placed: list, edge_mm: float) -> bool:
    """In its organ, clear of forbidden tissue and at least 2 mm from every placed lesion."""
    t = int(np.argmax(lesion.radii_mm))
    points = np.vstack([lesion.center_canonical_mm[None], lesion.surface_points(t, 0.5), lesion.surface_points(t)])
    _, labels = evaluate_anatomy(anatomy, points[:, 0], points[:, 1], points[:, 2], edge_mm)
    allowed = _ALLOWED[lesion.organ]
    if labels[0] not in allowed or np.isin(labels, _FORBIDDEN).any() or np.mean(np.isin(labels, allowed)) < 0.7:
        return False
    return all(np.linalg.norm(other.center_canonical_mm - lesion.center_canonical_mm)
               >= lesion.reach_mm() + other.reach_mm() + 2.0 for other in placed)


def _make_twin(rng: np.random.Generator, config, anatomy, scans: list, original: FollowUpLesion, original_index: int,
               placed: list, max_attempts: int = 20):
    """A look-alike in the same organ: radii × U(0.8, 1.25), contrast within ±15 %, ``twin_gap_range_mm`` away."""
    low, high = config.radius_range_mm
    for _ in range(max_attempts):
        radii = np.clip(original.radii_mm * rng.uniform(0.8, 1.25), low, high)
        axis_ratios, rotation = _random_shape(rng)
        reach = float(np.max(radii) * np.max(axis_ratios))
        distance = original.reach_mm() + reach + rng.uniform(*config.twin_gap_range_mm)
        direction = rng.normal(size=3)
        center = original.center_canonical_mm + direction / max(np.linalg.norm(direction), 1e-12) * distance
        look = dataclasses.replace(original.look, delta_hu=original.look.delta_hu * float(rng.uniform(0.85, 1.15)),
                                   falloff=float(rng.uniform(0.0, 0.4)))
        candidate = FollowUpLesion(original.organ, center, radii, axis_ratios, rotation, look,
                                   np.zeros(len(scans), bool), twin_of=original_index)
        accepted = _accept(candidate, config, anatomy, scans, placed)
        if accepted is not None:
            return accepted
    return None


__all__ = ["place_lesions", "scan_membership"]
