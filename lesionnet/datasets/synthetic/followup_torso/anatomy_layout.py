"""Random construction of a Dataset503 torso: :func:`draw_anatomy`.

Sizes follow the body: the visceral cavity (inside skin, subcutaneous fat and muscular wall) has
semi-axes ``(A, B)`` and most organs are placed and sized as fractions of ``A`` and ``B``; the
diaphragm height ``z_r`` (apex of the right dome, canonical z) anchors the organs along z. Every organ
size is multiplied by ``U(1 - organ_size_jitter, 1 + organ_size_jitter)`` per axis and every organ
center shifted by ``U(-organ_shift_mm, organ_shift_mm)`` per axis.

Coordinates: canonical physical ``(x, y, z)`` in mm (x → left, y → posterior, z → superior); HU.
"""
from __future__ import annotations

import numpy as np

from lesionnet.datasets.synthetic.followup_torso.anatomy import NOMINAL_HU, TorsoAnatomy

#: tissues whose HU are jittered per patient (± 8 HU)
_JITTERED_HU = ("muscle", "lung", "heart", "liver", "spleen", "kidney", "aorta", "vena_cava", "bowel_content")
#: a gas level that puts the whole lumen above / below it (finite, so the anatomy stays JSON-friendly)
_ALL_GAS, _NO_GAS = 1.0e4, -1.0e4


def _unit(rng: np.random.Generator, mean_direction=(0.0, 0.0, 0.0), spread: float = 1.0) -> np.ndarray:
    """A unit (x, y, z) vector: ``mean_direction`` plus ``spread`` times a random Gaussian vector, normalised."""
    v = np.asarray(mean_direction, dtype=np.float64) + spread * rng.normal(size=3)
    return v / max(float(np.linalg.norm(v)), 1e-9)


class _Jitter:
    """Organ size and position variation of one patient."""

    def __init__(self, rng: np.random.Generator, size_jitter: float, shift_mm: float):
        self.rng, self.size_jitter, self.shift_mm = rng, size_jitter, shift_mm

    def size(self, n: int = 3) -> np.ndarray:
        return self.rng.uniform(1.0 - self.size_jitter, 1.0 + self.size_jitter, size=n)

    def ellipsoid(self, center, semi_axes) -> tuple:
        """``(center, semi-axes)`` as tuples of floats, jittered."""
        center = np.asarray(center, float) + self.rng.uniform(-self.shift_mm, self.shift_mm, size=3)
        semi = np.asarray(semi_axes, float) * self.size()
        return tuple(float(v) for v in center), tuple(float(v) for v in semi)


def draw_anatomy(rng: np.random.Generator, config) -> TorsoAnatomy:
    """Draw one patient's torso (``config``: a :class:`FollowUpTorsoConfig`)."""
    jitter = _Jitter(rng, config.organ_size_jitter, config.organ_shift_mm)
    a = float(rng.uniform(*config.body_width_range_mm)) / 2.0
    b = float(rng.uniform(*config.body_depth_range_mm)) / 2.0
    skin, fat, wall = 2.0, float(rng.uniform(6.0, 12.0) + 0.35 * (b - 100.0)), float(rng.uniform(8.0, 12.0))
    cavity = (a - skin - fat - wall, b - skin - fat - wall)
    vertebra = _draw_vertebra(rng, jitter, cavity)
    domes, lungs = _draw_thorax(rng, jitter, cavity)
    apex_right, apex_left = domes[0][2], domes[1][2]
    ellipsoids = _draw_organs(jitter, cavity, vertebra, apex_right, apex_left)
    aorta, vena_cava = _draw_vessels(rng, cavity, vertebra, apex_right)
    bowel, bowel_box = _draw_bowel(rng, cavity, vertebra, apex_right)
    num_waves = 4
    texture_waves = np.stack([_unit(rng) for _ in range(num_waves)]) * (
        2.0 * np.pi / rng.uniform(10.0, 35.0, size=(num_waves, 1)))
    hu = dict(NOMINAL_HU)
    for name in _JITTERED_HU:
        hu[name] = float(hu[name] + rng.uniform(-8.0, 8.0))
    return TorsoAnatomy(
        body_semi_axes_mm=(a, b),
        body_wave_amplitude=float(rng.uniform(0.01, 0.04)),
        body_wave_length_mm=float(rng.uniform(60.0, 120.0)),
        body_wave_phase=float(rng.uniform(0.0, 2.0 * np.pi)),
        skin_mm=skin, fat_mm=fat, wall_mm=wall,
        vertebra=vertebra,
        rib={"offset_mm": wall / 2.0, "radial_mm": 4.0, "height_mm": 6.0, "drop_mm": float(rng.uniform(70.0, 100.0)),
             "angle_range_rad": (0.45, 2.3), "lowest_z_mm": float(apex_right - rng.uniform(90.0, 110.0))},
        domes=domes,
        lungs=lungs,
        ellipsoids=ellipsoids,
        aorta=aorta,
        vena_cava=vena_cava,
        lung_vessels=_draw_lung_vessels(rng, lungs, cavity, apex_right),
        liver_vessels=_draw_liver_vessels(rng, ellipsoids["liver"], vena_cava, apex_right),
        bowel=bowel,
        bowel_box=bowel_box,
        texture_waves=texture_waves,
        texture_phases=rng.uniform(0.0, 2.0 * np.pi, size=num_waves),
        hu=hu,
    )


def _draw_vertebra(rng: np.random.Generator, jitter: _Jitter, cavity: tuple) -> dict:
    """The spine: vertebral body, canal and repetition along z (mm)."""
    scale = float(jitter.size(1)[0])
    canal_radius = 8.0 * scale
    canal_y = cavity[1] - 30.0 * scale
    semi = (22.0 * scale, 16.0 * scale)
    period = float(rng.uniform(27.0, 32.0))
    return {"center_xy": (0.0, canal_y - canal_radius - 3.0 - semi[1]), "semi_axes_mm": semi,
            "period_mm": period, "phase_mm": float(rng.uniform(0.0, period)), "disc_mm": float(rng.uniform(5.0, 7.0)),
            "cortex_mm": 2.5, "canal_center_xy": (0.0, canal_y), "canal_radius_mm": canal_radius, "arch_mm": 6.0}


def _draw_thorax(rng: np.random.Generator, jitter: _Jitter, cavity: tuple) -> tuple:
    """``(domes, lungs)``: right, left and central diaphragm dome; right and left lung ellipse (see
    :class:`TorsoAnatomy`)."""
    big_a, big_b = cavity
    apex_right = float(rng.uniform(15.0, 45.0))
    apexes = (apex_right, apex_right - float(rng.uniform(5.0, 20.0)))
    domes, lungs = [], []
    for side, apex in zip((-1.0, 1.0), apexes):
        size_x, size_y = jitter.size(2)
        lung_a = 0.40 * big_a * size_x
        lung_b = min(0.82 * size_y, 0.9) * big_b
        lung_x = side * (big_a - lung_a - 2.0)
        lung_y = 0.08 * big_b
        lungs.append((float(lung_x), float(lung_y), float(lung_a), float(lung_b)))
        domes.append((float(lung_x), float(lung_y - 0.15 * big_b), apex, float(rng.uniform(55.0, 75.0)),
                      float(lung_a), float(lung_b)))
    domes.append((0.1 * big_a, -0.3 * big_b, apexes[1] - 8.0, 40.0, 0.45 * big_a, 0.6 * big_b))
    return tuple(domes), tuple(lungs)


def _draw_organs(jitter: _Jitter, cavity: tuple, vertebra: dict, apex_right: float, apex_left: float) -> dict:
    """Ellipsoids ``name → (center, semi-axes)`` of the solid organs and paraspinal muscles (mm)."""
    big_a, big_b = cavity
    organs = {
        "heart": jitter.ellipsoid((0.15 * big_a, -0.35 * big_b, apex_left + 45.0), (0.42 * big_a, 0.42 * big_b, 50.0)),
        "liver": jitter.ellipsoid((-0.40 * big_a, -0.15 * big_b, apex_right - 85.0),
                                  (0.58 * big_a, 0.78 * big_b, 90.0)),
        "spleen": jitter.ellipsoid((0.62 * big_a, 0.42 * big_b, apex_left - 55.0), (0.22 * big_a, 0.36 * big_b, 55.0)),
    }
    for side, name, z in ((-1.0, "right", apex_right - 150.0), (1.0, "left", apex_left - 135.0)):
        center, semi = jitter.ellipsoid((side * 0.45 * big_a, 0.32 * big_b, z), (24.0, 28.0, 55.0))
        organs[f"kidney_{name}"] = (center, semi)
        sinus_center = (center[0] - side * 0.45 * semi[0], center[1], center[2])
        organs[f"sinus_{name}"] = (sinus_center, (0.45 * semi[0], 0.4 * semi[1], 0.55 * semi[2]))
        canal_y, canal_radius = vertebra["canal_center_xy"][1], vertebra["canal_radius_mm"]
        organs[f"paraspinal_{name}"] = jitter.ellipsoid((side * (canal_radius + 24.0), canal_y + 10.0, 0.0),
                                                        (22.0, 20.0, 1.0e4))
    return organs


def _draw_vessels(rng: np.random.Generator, cavity: tuple, vertebra: dict, apex_right: float) -> tuple:
    """``(aorta, vena_cava)`` (see :class:`TorsoAnatomy`)."""
    (_, vertebra_y), (vertebra_a, vertebra_b) = vertebra["center_xy"], vertebra["semi_axes_mm"]
    aorta_radius = float(rng.uniform(10.0, 13.0))
    aorta = ((0.1 * cavity[0], vertebra_y - vertebra_b - aorta_radius - 3.0),
             (vertebra_a + aorta_radius + 3.0, vertebra_y), aorta_radius)
    cava_radius = float(rng.uniform(9.0, 12.0))
    vena_cava = ((-(0.12 * cavity[0] + cava_radius), vertebra_y - vertebra_b - cava_radius - 4.0), cava_radius,
                 apex_right + 10.0)
    return aorta, vena_cava


def _draw_lung_vessels(rng: np.random.Generator, lungs: tuple, cavity: tuple, apex_right: float) -> tuple:
    """Two generations of capsules per lung from a hilum near the mediastinum."""
    segments = []
    for side, (lung_x, lung_y, lung_a, _) in zip((-1.0, 1.0), lungs):
        hilum = np.array([lung_x - side * 0.55 * lung_a, lung_y - 0.1 * cavity[1], apex_right + 55.0])
        for _ in range(3):
            direction = _unit(rng, (side, 0.0, 0.0), 0.6)
            end = hilum + direction * rng.uniform(45.0, 70.0)
            segments.append((tuple(hilum), tuple(end), 3.5))
            for _ in range(2):
                child = _unit(rng, direction, 0.8)
                segments.append((tuple(end), tuple(end + child * rng.uniform(25.0, 45.0)), 2.0))
    return tuple((tuple(map(float, s)), tuple(map(float, e)), float(r)) for s, e, r in segments)


def _draw_liver_vessels(rng: np.random.Generator, liver: tuple, vena_cava: tuple, apex_right: float) -> tuple:
    """Three hepatic veins from the top of the vena cava into the liver."""
    center, semi = np.asarray(liver[0]), np.asarray(liver[1])
    (cava_x, cava_y), _, _ = vena_cava
    start = (float(cava_x), float(cava_y), float(apex_right - 15.0))
    ends = center + semi * rng.uniform((-0.5, -0.4, -0.1), (0.2, 0.4, 0.5), size=(3, 3))
    return tuple((start, tuple(float(v) for v in end), float(rng.uniform(4.0, 6.5))) for end in ends)


def _draw_bowel(rng: np.random.Generator, cavity: tuple, vertebra: dict, apex_right: float) -> tuple:
    """``(segments, box)``: colon (3 wide segments framing the abdomen) and a random walk of small bowel."""
    big_a, big_b = cavity
    front_of_spine = vertebra["center_xy"][1] - vertebra["semi_axes_mm"][1] - 10.0
    top = apex_right - 120.0 + float(rng.uniform(-15.0, 15.0))
    corners = np.array([(-0.68 * big_a, -0.05 * big_b, -205.0), (-0.68 * big_a, -0.3 * big_b, top),
                        (0.68 * big_a, -0.35 * big_b, top - rng.uniform(0.0, 20.0)), (0.7 * big_a, 0.0, -205.0)])
    corners = corners + rng.uniform(-6.0, 6.0, size=corners.shape)
    segments = [_bowel_segment(rng, corners[i], corners[i + 1], float(rng.uniform(17.0, 23.0)), 0.4, 0.8)
                for i in range(3)]
    low = np.array([-0.5 * big_a, -0.75 * big_b, -200.0])
    high = np.array([0.5 * big_a, front_of_spine - 5.0, top - 10.0])
    point = rng.uniform(low, high)
    for _ in range(int(rng.integers(8, 13))):
        end = np.clip(point + _unit(rng) * rng.uniform(30.0, 50.0), low, high)
        segments.append(_bowel_segment(rng, point, end, float(rng.uniform(9.0, 14.0)), 0.3, 0.6))
        point = end
    box_low = np.array([-0.75 * big_a, -big_b, -1.0e4])
    box_high = np.array([0.75 * big_a, front_of_spine + 25.0, top + 25.0])
    return tuple(segments), (tuple(map(float, box_low)), tuple(map(float, box_high)))


def _bowel_segment(rng: np.random.Generator, start, end, radius: float, p_all_gas: float, p_gas: float) -> tuple:
    """One bowel capsule: all gas with probability ``p_all_gas``, an air–fluid level up to ``p_gas``, else fluid."""
    u = rng.uniform()
    mid_y = 0.5 * (start[1] + end[1])
    level = _ALL_GAS if u < p_all_gas else (mid_y + rng.uniform(-0.6, 0.3) * radius if u < p_gas else _NO_GAS)
    return (tuple(map(float, start)), tuple(map(float, end)), radius, float(rng.uniform(0.0, 35.0)), float(level))


__all__ = ["draw_anatomy"]
