"""A CT-like torso phantom defined analytically in canonical space (mm, Hounsfield units).

Canonical axes follow the DICOM/ITK patient convention (LPS): x grows towards the patient's left,
y towards the back (posterior), z towards the head (superior); the origin is the body center. The
phantom covers the lower thorax and upper abdomen of a torso scaled to about two thirds of an
adult's (body about 220 mm wide and 156 mm deep at ``anatomy_scale = 1``), so that coarse voxels
(2–3 mm) and small grids (about 112 × 112 in-plane) still hold the whole body.

Contents (default HU in :data:`TISSUE_HU`): air outside the body, subcutaneous fat, soft tissue with
patches of visceral fat, paraspinal muscles, both lungs with branching vessels, heart, liver with
enhancing vessels, spleen, stomach (wall, fluid, air cap), both kidneys, aorta, a spine of vertebral
bodies and discs with the spinal canal, posterior arch and spinous process, and oblique ribs. Tissue
textures are smooth random fields fixed in canonical space, so they move with the anatomy.

:meth:`TorsoPhantom.evaluate` returns HU (and optionally a tissue label) at arbitrary canonical points.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from lesionnet.datasets.geometry import xyz_to_zyx
from lesionnet.datasets.synthetic import shapes
from lesionnet.datasets.synthetic.transforms import random_unit_vector, rotation_matrix

# tissue labels returned by TorsoPhantom.evaluate(..., with_tissue=True)
AIR, SUBCUTANEOUS_FAT, SOFT_TISSUE, VISCERAL_FAT, MUSCLE, LUNG, LUNG_VESSEL, HEART, LIVER, \
    LIVER_VESSEL, SPLEEN, STOMACH, KIDNEY, AORTA, BONE = range(15)

TISSUE_NAMES = ("air", "subcutaneous_fat", "soft_tissue", "visceral_fat", "muscle", "lung", "lung_vessel",
                "heart", "liver", "liver_vessel", "spleen", "stomach", "kidney", "aorta", "bone")

#: Nominal intensities (HU) of the phantom's tissues, as in a portal-venous contrast phase; each patient
#: jitters organs by a few HU.
TISSUE_HU = {
    "air": -1000.0,
    "subcutaneous_fat": -100.0,
    "visceral_fat": -90.0,
    "soft_tissue": 40.0,
    "muscle": 55.0,
    "lung": -850.0,
    "lung_vessel": 40.0,
    "heart": 110.0,
    "liver": 100.0,
    "liver_vessel": 160.0,
    "spleen": 105.0,
    "stomach_wall": 60.0,
    "stomach_fluid": 15.0,
    "kidney": 170.0,
    "aorta": 170.0,
    "cortical_bone": 700.0,
    "cancellous_bone": 250.0,
    "disc": 90.0,
    "spinal_canal": 20.0,
    "rib": 550.0,
}

#: Texture amplitude (HU, standard deviation) per tissue group.
TEXTURE_HU = {"fat": 10.0, "soft": 8.0, "lung": 25.0, "organ": 6.0}


@dataclass(frozen=True)
class TextureField:
    """A smooth random field on a regular canonical grid (zero mean, unit standard deviation).

    Attributes:
        values_zyx: the field on the grid, array ``[z, y, x]``.
        origin_mm: canonical position (x, y, z) (mm) of grid node (0, 0, 0).
        spacing_mm: isotropic grid spacing (mm).
    """

    values_zyx: np.ndarray
    origin_mm: tuple
    spacing_mm: float

    @classmethod
    def random(cls, rng: np.random.Generator, half_extent_mm=(170.0, 130.0, 130.0), spacing_mm: float = 4.0,
               smoothing_mm: float = 5.0) -> "TextureField":
        """Gaussian-smoothed white noise covering ``±half_extent_mm`` (canonical (x, y, z), mm), renormalised
        to unit std."""
        shape_zyx = tuple(int(np.ceil(2 * h / spacing_mm)) + 1 for h in xyz_to_zyx(half_extent_mm))
        noise = rng.standard_normal(size=shape_zyx).astype(np.float32)
        smooth = ndimage.gaussian_filter(noise, smoothing_mm / spacing_mm, mode="wrap")
        smooth = (smooth - smooth.mean()) / max(float(smooth.std()), 1e-6)
        return cls(smooth, tuple(-h for h in half_extent_mm), spacing_mm)

    def sample(self, x, y, z) -> np.ndarray:
        """Field values at canonical points (trilinear; constant continuation outside the grid)."""
        coords_zyx = np.stack([(z - self.origin_mm[2]) / self.spacing_mm,
                               (y - self.origin_mm[1]) / self.spacing_mm,
                               (x - self.origin_mm[0]) / self.spacing_mm]).astype(np.float32)
        return ndimage.map_coordinates(self.values_zyx, coords_zyx, order=1, mode="nearest")


@dataclass(frozen=True)
class Organ:
    """An ellipsoidal organ: center (x, y, z) and semi-axes in canonical mm, intensity in HU."""

    center_mm: tuple
    semi_axes_mm: tuple
    hu: float

    def bounding_box(self) -> tuple:
        """``(low_mm, high_mm)`` canonical box (corner points (x, y, z), mm) enclosing the ellipsoid."""
        c, s = np.asarray(self.center_mm), np.asarray(self.semi_axes_mm)
        return c - s, c + s


def _vessel_tree(rng: np.random.Generator, root_mm, main_direction, num_primary: int, lengths_mm,
                 radii_mm, spread_deg: float) -> list:
    """Segments ``(start, end, radius_mm)`` of a random branching tree (three generations)."""
    segments = []
    frontier = []
    for _ in range(num_primary):
        direction = np.asarray(main_direction, float) + 0.9 * random_unit_vector(rng)
        frontier.append((np.asarray(root_mm, float), direction / np.linalg.norm(direction)))
    for generation, (length_range, radius) in enumerate(zip(lengths_mm, radii_mm)):
        next_frontier = []
        for start, direction in frontier:
            end = start + direction * rng.uniform(*length_range)
            segments.append((start, end, float(radius)))
            if generation + 1 < len(lengths_mm):
                for _ in range(2):
                    axis = np.cross(direction, random_unit_vector(rng))
                    turn = rotation_matrix(axis, np.deg2rad(rng.uniform(0.3, 1.0) * spread_deg))
                    next_frontier.append((end, turn @ direction))
        frontier = next_frontier
    return segments


@dataclass(frozen=True)
class TorsoPhantom:
    """One patient's anatomy (all positions and sizes in canonical mm, intensities in HU).

    Build with :meth:`random`; evaluate with :meth:`evaluate`. Attributes are plain data so a
    phantom can be pickled to worker processes.
    """

    body_semi_axes_mm: tuple
    fat_thickness_mm: float
    organs: dict
    spine: dict
    lung_vessels: list
    liver_vessels: list
    rib_phase: float
    disc_phase: float
    texture: TextureField
    fat_pattern: TextureField
    hu: dict = field(default_factory=lambda: dict(TISSUE_HU))

    @classmethod
    def random(cls, rng: np.random.Generator, anatomy_scale: float = 1.0) -> "TorsoPhantom":
        """Draw a patient: body size ±7 %, organ positions ±5 mm, organ sizes ±10 %, HU ±8."""
        sx, sy, sz = anatomy_scale * rng.uniform(0.93, 1.07, size=3)
        scale = np.array([sx, sy, sz])

        def organ(center, semi, hu_key):
            center = np.asarray(center, float) * scale + rng.uniform(-5, 5, size=3)
            semi = np.asarray(semi, float) * scale * rng.uniform(0.9, 1.1, size=3)
            return Organ(tuple(center), tuple(semi), TISSUE_HU[hu_key] + rng.uniform(-8, 8))

        organs = {
            "lung_left": organ((48, 5, 70), (42, 58, 95), "lung"),
            "lung_right": organ((-48, 5, 75), (44, 58, 95), "lung"),
            "heart": organ((8, -25, 52), (45, 36, 40), "heart"),
            "liver": organ((-40, -5, -30), (62, 55, 55), "liver"),
            "spleen": organ((66, 28, -22), (20, 32, 38), "spleen"),
            "stomach": organ((38, -32, -18), (30, 22, 26), "stomach_wall"),
            "kidney_left": organ((46, 36, -62), (18, 15, 32), "kidney"),
            "kidney_right": organ((-46, 36, -66), (18, 15, 32), "kidney"),
        }
        spine = {
            "body_center_xy": (0.0, 30.0 * sy), "body_radius_mm": 14.0 * min(sx, sy),
            "canal_center_xy": (0.0, 50.0 * sy), "canal_radius_mm": 6.0, "arch_radius_mm": 10.0,
            "spinous_center_xy": (0.0, 62.0 * sy), "spinous_semi_axes_mm": (4.0, 7.0),
            "paraspinal_offset_xy": (26.0 * sx, 50.0 * sy), "paraspinal_semi_axes_mm": (15.0 * sx, 11.0 * sy),
            "aorta_center_xy": (14.0 * sx, 8.0 * sy), "aorta_radius_mm": 10.0 * min(sx, sy),
            "disc_period_mm": 24.0 * sz, "disc_thickness_mm": 5.0,
        }
        lung_vessels = []
        for side, lung_key in ((1.0, "lung_left"), (-1.0, "lung_right")):
            root = np.array([side * 22.0 * sx, 0.0, 45.0 * sz])
            lung_vessels += _vessel_tree(rng, root, (side, 0.0, 0.0), 5, ((30, 50), (20, 35), (12, 22)),
                                         (3.0, 1.8, 1.0), 40.0)
        liver_center = np.asarray(organs["liver"].center_mm)
        liver_vessels = _vessel_tree(rng, liver_center + np.array([25.0, 10.0, 0.0]), (-1.0, 0.0, 0.0), 4,
                                     ((30, 45), (15, 30)), (4.0, 2.5), 45.0)
        return cls(
            body_semi_axes_mm=(110.0 * sx, 78.0 * sy),
            fat_thickness_mm=float(rng.uniform(6.0, 14.0)),
            organs=organs,
            spine=spine,
            lung_vessels=lung_vessels,
            liver_vessels=liver_vessels,
            rib_phase=float(rng.uniform(0, 2 * np.pi)),
            disc_phase=float(rng.uniform(0, 2 * np.pi)),
            texture=TextureField.random(rng),
            fat_pattern=TextureField.random(rng, spacing_mm=5.0, smoothing_mm=9.0),
        )

    # ------------------------------------------------------------------ geometry helpers
    @property
    def interior_semi_axes_mm(self) -> tuple:
        """Semi-axes (mm) of the body inside the subcutaneous fat layer."""
        ax, ay = self.body_semi_axes_mm
        return (ax - self.fat_thickness_mm, ay - self.fat_thickness_mm)

    def organ_box(self, name: str) -> tuple:
        """Canonical box ``(low_mm, high_mm)`` (corners (x, y, z), mm) to draw lesion candidates for organ ``name``.

        ``name`` is one of ``liver``, ``spleen``, ``lung`` (both lungs), ``soft_tissue`` (the body inside
        the fat layer).
        """
        if name == "lung":
            lo_l, hi_l = self.organs["lung_left"].bounding_box()
            lo_r, hi_r = self.organs["lung_right"].bounding_box()
            return np.minimum(lo_l, lo_r), np.maximum(hi_l, hi_r)
        if name == "soft_tissue":
            ax, ay = self.interior_semi_axes_mm
            return np.array([-ax, -ay, -150.0]), np.array([ax, ay, 150.0])
        return self.organs[name].bounding_box()

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, x, y, z, edge_mm: float = 1.0, with_tissue: bool = False):
        """HU at canonical points ``x, y, z`` (mm, 1D arrays of equal length).

        Returns ``hu`` (float32, same shape), and with ``with_tissue`` also ``tissue`` (uint8 label of the
        tissue covering each point, see ``TISSUE_NAMES``). Edges are soft over ``edge_mm``.
        """
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.float32)
        z = np.asarray(z, dtype=np.float32)
        hu = np.full(x.shape, self.hu["air"], dtype=np.float32)
        tissue = np.zeros(x.shape, dtype=np.uint8) if with_tissue else None

        def put(occupancy, value, label, index=None):
            """Paint ``value`` with ``occupancy`` (on the points ``index`` when given); ``label`` is a
            tissue id or an array of ids per painted point."""
            if index is None:
                shapes.paint(hu, occupancy, value)
            else:
                hu[index] = shapes.paint(hu[index], occupancy, value)
            if tissue is not None:
                covered = occupancy > 0.5
                labels = label if np.isscalar(label) else label[covered]
                if index is None:
                    tissue[covered] = labels
                else:
                    tissue[index[0][covered]] = labels

        ax, ay = self.body_semi_axes_mm
        body = shapes.elliptic_cylinder(x, y, (0, 0), (ax, ay), edge_mm)
        texture = np.zeros_like(x)
        in_body = np.nonzero(body > 0)
        texture[in_body] = self.texture.sample(x[in_body], y[in_body], z[in_body])
        put(body, self.hu["subcutaneous_fat"] + TEXTURE_HU["fat"] * texture, SUBCUTANEOUS_FAT)
        interior = shapes.elliptic_cylinder(x, y, (0, 0), self.interior_semi_axes_mm, edge_mm)
        # visceral / mediastinal fat: about half of the soft tissue between the organs, in smooth patches
        fat_fraction = np.zeros_like(x)
        fat_fraction[in_body] = np.clip((self.fat_pattern.sample(x[in_body], y[in_body], z[in_body]) + 0.1) / 0.5, 0, 1)
        soft_value = (self.hu["soft_tissue"] * (1 - fat_fraction) + self.hu["visceral_fat"] * fat_fraction
                      + TEXTURE_HU["soft"] * texture)
        put(interior, soft_value, SOFT_TISSUE)
        if tissue is not None:
            tissue[(interior > 0.5) & (fat_fraction > 0.5)] = VISCERAL_FAT
        self._paint_spine_muscles(put, x, y, z, edge_mm, muscles_only=True)
        self._paint_lungs(put, x, y, z, edge_mm, texture)
        self._paint_organs(put, x, y, z, edge_mm, texture)
        self._paint_spine_muscles(put, x, y, z, edge_mm, muscles_only=False)
        self._paint_ribs(put, x, y, z, edge_mm)
        return (hu, tissue) if with_tissue else hu

    def _box_index(self, x, y, z, low, high, pad):
        inside = ((x >= low[0] - pad) & (x <= high[0] + pad) & (y >= low[1] - pad) & (y <= high[1] + pad)
                  & (z >= low[2] - pad) & (z <= high[2] + pad))
        return np.nonzero(inside)

    def _paint_lungs(self, put, x, y, z, edge_mm, texture):
        iax, iay = self.interior_semi_axes_mm
        for key in ("lung_left", "lung_right"):
            lung = self.organs[key]
            idx = self._box_index(x, y, z, *lung.bounding_box(), edge_mm)
            if idx[0].size == 0:
                continue
            xs, ys, zs = x[idx], y[idx], z[idx]
            occupancy = shapes.ellipsoid(xs, ys, zs, lung.center_mm, lung.semi_axes_mm, edge_mm)
            occupancy *= shapes.elliptic_cylinder(xs, ys, (0, 0), (iax - 5.0, iay - 5.0), edge_mm)
            vessels = shapes.capsules(xs, ys, zs, self.lung_vessels, edge_mm)
            value = lung.hu + TEXTURE_HU["lung"] * texture[idx]
            value = value * (1 - vessels) + vessels * (self.hu["lung_vessel"] + TEXTURE_HU["organ"] * texture[idx])
            put(occupancy, value, np.where(vessels > 0.5, LUNG_VESSEL, LUNG).astype(np.uint8), idx)

    def _paint_organs(self, put, x, y, z, edge_mm, texture):
        for key, label in (("heart", HEART), ("liver", LIVER), ("spleen", SPLEEN), ("stomach", STOMACH),
                           ("kidney_left", KIDNEY), ("kidney_right", KIDNEY)):
            organ = self.organs[key]
            idx = self._box_index(x, y, z, *organ.bounding_box(), edge_mm)
            if idx[0].size == 0:
                continue
            xs, ys, zs = x[idx], y[idx], z[idx]
            occupancy = shapes.ellipsoid(xs, ys, zs, organ.center_mm, organ.semi_axes_mm, edge_mm)
            occupancy *= shapes.elliptic_cylinder(xs, ys, (0, 0), self.interior_semi_axes_mm, edge_mm)
            value = organ.hu + TEXTURE_HU["organ"] * texture[idx]
            labels = label
            if key == "liver":
                vessels = shapes.capsules(xs, ys, zs, self.liver_vessels, edge_mm)
                value = value * (1 - vessels) + vessels * self.hu["liver_vessel"]
                labels = np.where(vessels > 0.5, LIVER_VESSEL, LIVER).astype(np.uint8)
            elif key == "stomach":
                value = self._stomach_value(organ, xs, ys, zs, edge_mm, value)
            put(occupancy, value, labels, idx)

    def _stomach_value(self, organ, xs, ys, zs, edge_mm, wall_value):
        """Stomach: 3 mm wall, fluid inside, an air cap in its upper third."""
        semi_inner = tuple(s - 3.0 for s in organ.semi_axes_mm)
        lumen = shapes.ellipsoid(xs, ys, zs, organ.center_mm, semi_inner, edge_mm)
        air = shapes.ramp(organ.center_mm[2] + 0.35 * organ.semi_axes_mm[2] - zs, edge_mm)
        lumen_value = self.hu["stomach_fluid"] * (1 - air) + self.hu["air"] * air
        return wall_value * (1 - lumen) + lumen * lumen_value

    def _spine_index(self, x, y, z, edge_mm):
        """Indices of the points in the box holding the spine, the paraspinal muscles and the aorta."""
        sp = self.spine
        half_width = sp["paraspinal_offset_xy"][0] + sp["paraspinal_semi_axes_mm"][0] + edge_mm
        low = (-half_width, sp["aorta_center_xy"][1] - sp["aorta_radius_mm"] - edge_mm, -np.inf)
        high = (half_width, sp["spinous_center_xy"][1] + sp["spinous_semi_axes_mm"][1] + edge_mm, np.inf)
        return self._box_index(x, y, z, low, high, 0.0)

    def _paint_spine_muscles(self, put, x, y, z, edge_mm, muscles_only: bool):
        sp = self.spine
        idx = self._spine_index(x, y, z, edge_mm)
        if idx[0].size == 0:
            return
        x, y, z = x[idx], y[idx], z[idx]
        ox, oy = sp["paraspinal_offset_xy"]
        if muscles_only:
            for side in (-1.0, 1.0):
                put(shapes.elliptic_cylinder(x, y, (side * ox, oy), sp["paraspinal_semi_axes_mm"], edge_mm),
                    self.hu["muscle"], MUSCLE, idx)
            return
        aorta = shapes.elliptic_cylinder(x, y, sp["aorta_center_xy"], (sp["aorta_radius_mm"],) * 2, edge_mm)
        put(aorta, self.hu["aorta"], AORTA, idx)
        # vertebral body: cortical shell, cancellous core, discs repeating along z
        r = sp["body_radius_mm"]
        vertebra = shapes.elliptic_cylinder(x, y, sp["body_center_xy"], (r, r), edge_mm)
        core = shapes.elliptic_cylinder(x, y, sp["body_center_xy"], (r - 2.5, r - 2.5), edge_mm)
        period = sp["disc_period_mm"]
        phase = np.mod(z / period + self.disc_phase / (2 * np.pi), 1.0) * period  # mm within one period
        disc = shapes.slab(phase, 0.0, sp["disc_thickness_mm"], edge_mm)
        bone_value = self.hu["cortical_bone"] * (1 - core) + self.hu["cancellous_bone"] * core
        value = bone_value * (1 - disc) + self.hu["disc"] * disc
        put(vertebra, value, BONE, idx)
        arch = shapes.elliptic_cylinder(x, y, sp["canal_center_xy"], (sp["arch_radius_mm"],) * 2, edge_mm)
        spinous = shapes.elliptic_cylinder(x, y, sp["spinous_center_xy"], sp["spinous_semi_axes_mm"], edge_mm)
        put(np.maximum(arch, spinous) * (1 - 0.8 * disc), self.hu["cortical_bone"], BONE, idx)
        canal = shapes.elliptic_cylinder(x, y, sp["canal_center_xy"], (sp["canal_radius_mm"],) * 2, edge_mm)
        put(canal, self.hu["spinal_canal"], SOFT_TISSUE, idx)

    def _paint_ribs(self, put, x, y, z, edge_mm):
        """Oblique ribs: a band 7 mm thick just inside the fat layer, repeating every 26 mm along z."""
        band = np.cos(2 * np.pi * (z + 0.35 * y) / 26.0 + self.rib_phase)
        idx = np.nonzero((band > 0.55) & (z > -45.0 - 5.0) & (np.abs(x) > 20.0 - 6.0))
        if idx[0].size == 0:
            return
        x, y, z, band = x[idx], y[idx], z[idx], band[idx]
        iax, iay = self.interior_semi_axes_mm
        outer = shapes.elliptic_cylinder(x, y, (0, 0), (iax - 2.0, iay - 2.0), edge_mm)
        inner = shapes.elliptic_cylinder(x, y, (0, 0), (iax - 9.0, iay - 9.0), edge_mm)
        rib = outer * (1 - inner) * np.clip((band - 0.55) / 0.15, 0, 1)
        rib *= shapes.ramp(-45.0 - z, 5.0)                       # only above the lower costal margin
        rib *= 1 - shapes.ramp(np.abs(x) - 20.0, 6.0)            # gap in the midline (sternum / spine)
        put(rib, self.hu["rib"], BONE, idx)
