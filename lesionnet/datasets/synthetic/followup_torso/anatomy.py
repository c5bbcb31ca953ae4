"""The anatomy model of Dataset503: :class:`TorsoAnatomy`, one patient's torso as plain numbers.

Canonical space: physical ``(x, y, z)`` in mm, x → patient's left, y → posterior, z → superior (LPS),
origin at the body center; the body is an elliptic cylinder along z. Structures (each a soft-edged
analytic shape, evaluated by :mod:`.anatomy_eval`):

* skin, subcutaneous fat, a muscular body wall and the visceral cavity inside it (visceral fat);
* a spine of discrete vertebrae repeating along z (vertebral body with cortex and cancellous core,
  discs between them, posterior arch, spinous and transverse processes, spinal canal) and paraspinal
  muscles; ribs: bony arcs in the body wall, one per vertebra, sloping down anteriorly, above
  ``rib_lowest_z_mm``;
* two lungs above a diaphragm made of three domes (right, left and a lower central one under the heart;
  the right dome is the highest), a thin muscular diaphragm sheet, the heart on it; lung vessels as
  small capsule trees;
* liver (with hepatic veins) and spleen below the domes, two kidneys with their sinus, aorta and
  inferior vena cava as tubes along z, bowel loops and colon (capsules with a wall, fluid content and
  gas pockets of -900 HU) in the lower abdomen;
* a smooth texture fixed in canonical space (a few Fourier modes), scaled per tissue.

A patient's anatomy is drawn by :func:`.anatomy_layout.draw_anatomy`: body width and depth from the config,
organ sizes ± ``organ_size_jitter``, organ positions ± ``organ_shift_mm``, organ HU ± 8.
Ellipsoids are ``(center (x, y, z) mm, semi-axes (x, y, z) mm)``; capsules ``(start, end, radius_mm)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# tissue labels of the anatomy (uint8), returned by evaluate_anatomy(..., with labels)
AIR, SKIN, SUBCUTANEOUS_FAT, MUSCLE, VISCERAL_FAT, BONE, DISC, SPINAL_CANAL, LUNG, LUNG_VESSEL, HEART, LIVER, \
    LIVER_VESSEL, SPLEEN, KIDNEY, RENAL_SINUS, AORTA, VENA_CAVA, BOWEL_WALL, BOWEL_CONTENT, BOWEL_GAS = range(21)
TISSUE_NAMES = ("air", "skin", "subcutaneous_fat", "muscle", "visceral_fat", "bone", "disc", "spinal_canal", "lung",
                "lung_vessel", "heart", "liver", "liver_vessel", "spleen", "kidney", "renal_sinus", "aorta",
                "vena_cava", "bowel_wall", "bowel_content", "bowel_gas")

#: nominal HU per tissue (portal-venous phase); bone is split into cortex, cancellous core and rib
NOMINAL_HU = {"air": -1000.0, "skin": 30.0, "subcutaneous_fat": -105.0, "muscle": 50.0, "visceral_fat": -95.0,
              "cortical_bone": 700.0, "cancellous_bone": 400.0, "rib": 600.0, "disc": 85.0, "spinal_canal": 15.0,
              "lung": -860.0, "lung_vessel": 35.0, "heart": 140.0, "liver": 105.0, "liver_vessel": 165.0,
              "spleen": 115.0, "kidney": 165.0, "renal_sinus": -40.0, "aorta": 185.0, "vena_cava": 125.0,
              "bowel_wall": 55.0, "bowel_content": 15.0, "bowel_gas": -900.0}
#: texture amplitude (HU) per tissue label, indexed by label
TEXTURE_HU = np.array([0, 4, 10, 8, 10, 45, 6, 3, 30, 5, 5, 6, 5, 6, 6, 8, 4, 4, 5, 8, 15], dtype=np.float32)


@dataclass(frozen=True)
class TorsoAnatomy:
    """One patient's torso; all positions in canonical mm ``(x, y, z)``, intensities in HU.

    Attributes:
        body_semi_axes_mm: (a, b) semi-axes of the body ellipse (x, y); its size varies by
            ``1 + body_wave_amplitude * sin(z / body_wave_length_mm + body_wave_phase)`` along z.
        skin_mm, fat_mm, wall_mm: thickness of the skin, the subcutaneous fat and the muscular wall.
        vertebra: dict with ``center_xy`` (vertebral body), ``semi_axes_mm`` (x, y), ``period_mm`` (one
            vertebra + disc), ``phase_mm`` (z of a disc center), ``disc_mm`` (disc height), ``cortex_mm``,
            ``canal_center_xy``, ``canal_radius_mm``, ``arch_mm`` (arch ring thickness).
        rib: dict with ``offset_mm`` (distance of the rib arc outside the cavity ellipse), ``radial_mm`` /
            ``height_mm`` (cross-section semi-axes), ``drop_mm`` (how much lower the anterior end is),
            ``angle_range_rad`` (|angle| from posterior covered by ribs), ``lowest_z_mm``.
        domes: ((x0, y0, apex_z, drop_mm, a_mm, b_mm) for the right, left and central dome): each dome is
            ``z = apex - drop * s(q)`` with ``q = (x - x0)^2 / a^2 + (y - y0)^2 / b^2`` and
            ``s(q) = q`` for ``q <= 1``, ``1 + (1 - exp(-2 (q - 1))) / 2`` beyond (a paraboloid that levels
            off at ``apex - 1.5 drop``); the diaphragm is the highest of the three.
        lungs: ((x, y, a_mm, b_mm) right, left): in-plane ellipses of the lungs (above the diaphragm).
        ellipsoids: name → (center, semi-axes) for ``heart``, ``liver``, ``spleen``, ``kidney_right``,
            ``kidney_left``, ``sinus_right``, ``sinus_left``, ``paraspinal_right``, ``paraspinal_left`` (the
            paraspinal muscles are elliptic cylinders: only their x, y center and semi-axes are used).
        aorta: (abdominal center (x, y), thoracic center (x, y), radius_mm); the center blends linearly
            from the abdominal one at z ≤ -50 mm to the thoracic one at z ≥ +100 mm.
        vena_cava: (center (x, y), radius_mm, top_z_mm).
        lung_vessels, liver_vessels: capsules ``(start, end, radius_mm)``.
        bowel: tuple of ``(start, end, radius_mm, content_hu, gas_level_y_mm)``; gas fills the lumen where
            ``y < gas_level_y_mm`` (anterior part; ±1e4 for all gas / no gas).
        bowel_box: ((x, y, z) low, (x, y, z) high) box holding the bowel.
        hu: tissue → HU for this patient (see :data:`NOMINAL_HU`).
        texture_waves: (K, 3) angular wave vectors (rad/mm); texture_phases: (K,) of the texture field.
    """

    body_semi_axes_mm: tuple
    body_wave_amplitude: float
    body_wave_length_mm: float
    body_wave_phase: float
    skin_mm: float
    fat_mm: float
    wall_mm: float
    vertebra: dict
    rib: dict
    domes: tuple
    lungs: tuple
    ellipsoids: dict
    aorta: tuple
    vena_cava: tuple
    lung_vessels: tuple
    liver_vessels: tuple
    bowel: tuple
    bowel_box: tuple
    texture_waves: np.ndarray
    texture_phases: np.ndarray
    hu: dict = field(default_factory=lambda: dict(NOMINAL_HU))

    @property
    def cavity_semi_axes_mm(self) -> tuple:
        """(A, B) semi-axes (mm) of the visceral cavity inside the body wall (at the nominal body size)."""
        inset = self.skin_mm + self.fat_mm + self.wall_mm
        return (self.body_semi_axes_mm[0] - inset, self.body_semi_axes_mm[1] - inset)

    @property
    def diaphragm_apex_z_mm(self) -> float:
        """Highest point of the diaphragm (canonical z, mm)."""
        return float(max(dome[2] for dome in self.domes))

    def body_scale(self, z):
        """Factor on the body's semi-axes at canonical height(s) ``z`` (mm)."""
        return 1.0 + self.body_wave_amplitude * np.sin(z / self.body_wave_length_mm + self.body_wave_phase)

    def diaphragm_z(self, x, y):
        """Canonical z (mm) of the diaphragm above the in-plane point(s) ``(x, y)``."""
        height = None
        for x0, y0, apex, drop, a, b in self.domes:
            q = ((x - x0) / a) ** 2 + ((y - y0) / b) ** 2
            level = np.where(q <= 1.0, q, 1.0 + 0.5 * (1.0 - np.exp(-2.0 * (np.maximum(q, 1.0) - 1.0))))
            dome = apex - drop * level
            height = dome if height is None else np.maximum(height, dome)
        return height

    def aorta_center_xy(self, z):
        """In-plane center (x, y) of the aorta at canonical height(s) ``z`` (mm)."""
        (xa, ya), (xt, yt), _ = self.aorta
        blend = np.clip((np.asarray(z) + 50.0) / 150.0, 0.0, 1.0)
        return xa + (xt - xa) * blend, ya + (yt - ya) * blend

    def organ_box(self, organ: str) -> tuple:
        """Canonical box ``(low, high)`` (corners (x, y, z), mm) from which lesion centers in ``organ`` are drawn.

        ``organ`` is ``liver``, ``spleen``, ``kidney_right``, ``kidney_left``, ``lung`` (both, up to 160 mm above the
        diaphragm apex) or ``lymph_node`` (around the aorta below the diaphragm).
        """
        if organ in ("liver", "spleen", "kidney_right", "kidney_left"):
            center, semi = (np.asarray(v) for v in self.ellipsoids[organ])
            return center - semi, center + semi
        if organ == "lung":
            (xr, yr, ar, br), (xl, yl, al, bl) = self.lungs
            low_z = min(dome[2] - 1.5 * dome[3] for dome in self.domes)
            return (np.array([xr - ar, min(yr - br, yl - bl), low_z]),
                    np.array([xl + al, max(yr + br, yl + bl), self.diaphragm_apex_z_mm + 160.0]))
        if organ == "lymph_node":
            (xa, ya), (xt, yt), radius = self.aorta
            reach = radius + 30.0
            return (np.array([min(xa, xt) - reach, min(ya, yt) - reach, -170.0]),
                    np.array([max(xa, xt) + reach, max(ya, yt) + reach, self.diaphragm_apex_z_mm - 40.0]))
        raise ValueError(f"unknown organ {organ!r}")


__all__ = ["TorsoAnatomy", "TISSUE_NAMES", "NOMINAL_HU", "TEXTURE_HU"]
