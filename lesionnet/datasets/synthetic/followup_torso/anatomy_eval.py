"""Evaluation of a :class:`~.anatomy.TorsoAnatomy` at canonical points: :func:`evaluate_anatomy`.

Painter's algorithm on soft occupancies (``shapes.paint``; every edge a linear ramp ``edge_mm`` wide):
body (skin) → subcutaneous fat → muscular wall → visceral cavity (fat) → ribs → bowel → diaphragm sheet,
lungs and lung vessels → liver and hepatic veins, spleen, kidneys → heart, vena cava, aorta →
paraspinal muscles, vertebrae, spinal canal → texture. Only points inside the body are painted, and
each structure only on the points inside its bounding box (checked against the range of the points
first, so a thin slab of points skips most structures at no cost).

Points are three 1D arrays ``x, y, z`` of canonical physical coordinates (mm); results are float32 HU and
uint8 tissue labels (:data:`.anatomy.TISSUE_NAMES`) of the same length.
"""
from __future__ import annotations

import numpy as np

from lesionnet.datasets.synthetic import shapes
from lesionnet.datasets.synthetic.followup_torso import anatomy as tissues
from lesionnet.datasets.synthetic.followup_torso.anatomy import TEXTURE_HU, TorsoAnatomy

_INF = 1.0e9


def _ellipse_sd(x, y, cx: float, cy: float, a, b):
    """Approximate signed distance (mm) to the ellipse of semi-axes ``a, b`` (scalars or arrays) at ``(cx, cy)``."""
    u, v = (x - cx) / a, (y - cy) / b
    grad = 2.0 * np.sqrt((u / a) ** 2 + (v / b) ** 2)
    return (u * u + v * v - 1.0) / np.maximum(grad, 1e-6)


class _Canvas:
    """Points being painted: coordinates (mm), HU, labels, the cavity occupancy and the diaphragm height."""

    def __init__(self, x, y, z, hu, label, cavity=None):
        self.x, self.y, self.z, self.hu, self.label, self.cavity = x, y, z, hu, label, cavity
        self.dome = None
        points = (x, y, z)
        self.low = np.array([p.min() if p.size else _INF for p in points], dtype=np.float64)
        self.high = np.array([p.max() if p.size else -_INF for p in points], dtype=np.float64)

    def select(self, low, high):
        """Points inside the box ``[low, high]`` (corners (x, y, z), mm): ``slice(None)`` for all, ``None``
        for none, else an index array."""
        if np.any(self.high < low) or np.any(self.low > high):
            return None
        mask = None
        for axis, coords in enumerate((self.x, self.y, self.z)):
            if self.low[axis] < low[axis]:
                mask = coords >= low[axis] if mask is None else mask & (coords >= low[axis])
            if self.high[axis] > high[axis]:
                mask = coords <= high[axis] if mask is None else mask & (coords <= high[axis])
        if mask is None:
            return slice(None)
        index = np.flatnonzero(mask)
        return index if index.size else None

    def coords(self, index) -> tuple:
        return self.x[index], self.y[index], self.z[index]

    def subset(self, index) -> "_Canvas":
        """A canvas of the points ``index`` (copies); paint it, then :meth:`write_back`."""
        cavity = None if self.cavity is None else self.cavity[index]
        sub = _Canvas(self.x[index], self.y[index], self.z[index], self.hu[index], self.label[index], cavity)
        sub.dome = None if self.dome is None else self.dome[index]
        return sub

    def write_back(self, index, sub: "_Canvas") -> None:
        self.hu[index] = sub.hu
        self.label[index] = sub.label

    def paint(self, index, occupancy, value, tissue: int) -> None:
        """Paint ``value`` (HU, scalar or array) with ``occupancy`` on the points ``index``; the label becomes
        ``tissue`` where the occupancy exceeds 0.5."""
        if isinstance(index, slice):
            shapes.paint(self.hu, occupancy, value)
            self.label[occupancy > 0.5] = tissue
        else:
            self.hu[index] = shapes.paint(self.hu[index], occupancy, value)
            self.label[index] = np.where(occupancy > 0.5, np.uint8(tissue), self.label[index])


def evaluate_anatomy(anatomy: TorsoAnatomy, x, y, z, edge_mm: float = 1.0) -> tuple:
    """``(hu, label)`` of the anatomy at canonical points ``x, y, z`` (1D arrays, mm): float32 HU and uint8
    tissue labels (label of a point: the last structure covering more than half of it)."""
    x, y, z = (np.asarray(v, dtype=np.float32) for v in (x, y, z))
    hu = np.full(x.shape, anatomy.hu["air"], dtype=np.float32)
    label = np.zeros(x.shape, dtype=np.uint8)
    scale = anatomy.body_scale(z).astype(np.float32)
    a, b = anatomy.body_semi_axes_mm
    body = shapes.ramp(_ellipse_sd(x, y, 0.0, 0.0, a * scale, b * scale), edge_mm)
    inside = np.flatnonzero(body > 0)
    if inside.size == 0:
        return hu, label
    canvas = _Canvas(x[inside], y[inside], z[inside], np.full(inside.size, anatomy.hu["skin"], dtype=np.float32),
                     np.full(inside.size, tissues.SKIN, dtype=np.uint8))
    _paint_body_wall(canvas, anatomy, scale[inside], edge_mm)
    _paint_ribs(canvas, anatomy, scale[inside], edge_mm)
    _paint_bowel(canvas, anatomy, edge_mm)
    _paint_thorax(canvas, anatomy, edge_mm)
    _paint_abdomen(canvas, anatomy, edge_mm)
    _paint_heart_and_great_vessels(canvas, anatomy, edge_mm)
    _paint_spine(canvas, anatomy, edge_mm)
    _add_texture(canvas, anatomy)
    occupancy = body[inside]
    hu[inside] = shapes.paint(hu[inside], occupancy, canvas.hu)
    label[inside] = np.where(occupancy > 0.5, canvas.label, np.uint8(tissues.AIR))
    return hu, label


# ---------------------------------------------------------------------------------------- body wall
def _paint_body_wall(canvas: _Canvas, anatomy: TorsoAnatomy, scale, edge_mm: float) -> None:
    a, b = anatomy.body_semi_axes_mm
    everything = slice(None)
    for inset, name, tissue in ((anatomy.skin_mm, "subcutaneous_fat", tissues.SUBCUTANEOUS_FAT),
                                (anatomy.skin_mm + anatomy.fat_mm, "muscle", tissues.MUSCLE),
                                (anatomy.skin_mm + anatomy.fat_mm + anatomy.wall_mm, "visceral_fat",
                                 tissues.VISCERAL_FAT)):
        occupancy = shapes.ramp(_ellipse_sd(canvas.x, canvas.y, 0.0, 0.0, a * scale - inset, b * scale - inset),
                                edge_mm)
        canvas.paint(everything, occupancy, anatomy.hu[name], tissue)
    canvas.cavity = occupancy


def _paint_ribs(canvas: _Canvas, anatomy: TorsoAnatomy, scale, edge_mm: float) -> None:
    """Ribs: periodic along z (one per vertebra), on an ellipse ``offset_mm`` outside the cavity, lower anteriorly."""
    rib, vertebra = anatomy.rib, anatomy.vertebra
    index = canvas.select((-_INF, -_INF, rib["lowest_z_mm"] - rib["drop_mm"] - 2.0 * rib["height_mm"]),
                          (_INF, _INF, _INF))
    if index is None:
        return
    x, y, z = canvas.coords(index)
    big_a, big_b = anatomy.cavity_semi_axes_mm
    inset = anatomy.body_semi_axes_mm[0] - big_a
    semi_x = anatomy.body_semi_axes_mm[0] * scale[index] - inset + rib["offset_mm"]
    semi_y = anatomy.body_semi_axes_mm[1] * scale[index] - inset + rib["offset_mm"]
    radius = np.sqrt(x * x + y * y)
    rho = np.sqrt((x / semi_x) ** 2 + (y / semi_y) ** 2)
    radial = (rho - 1.0) * radius / np.maximum(rho, 1e-6)
    shell = np.flatnonzero(np.abs(radial) < rib["radial_mm"] + edge_mm)
    if shell.size == 0:
        return
    x, y, z, radial, radius = x[shell], y[shell], z[shell], radial[shell], radius[shell]
    angle = np.abs(np.arctan2(x, y))  # 0 posterior, pi anterior
    period = vertebra["period_mm"]
    u = z + rib["drop_mm"] * angle / np.pi - (vertebra["phase_mm"] + 0.5 * period)
    number = np.round(u / period)
    dz = u - number * period
    section = np.sqrt((radial / rib["radial_mm"]) ** 2 + (dz / rib["height_mm"]) ** 2)
    low, high = rib["angle_range_rad"]
    along = np.maximum(low - angle, angle - high) * radius
    lowest = rib["lowest_z_mm"] - (vertebra["phase_mm"] + 0.5 * period)
    occupancy = np.minimum(shapes.ramp((section - 1.0) * rib["radial_mm"], edge_mm), shapes.ramp(along, edge_mm))
    occupancy = occupancy * (number * period >= lowest)
    target = index[shell] if not isinstance(index, slice) else shell
    canvas.paint(target, occupancy.astype(np.float32), anatomy.hu["rib"], tissues.BONE)


# ---------------------------------------------------------------------------------------- abdomen
def _capsule(canvas: _Canvas, start, end, reach: float):
    """``(index, distance)``: points within the capsule's box (``reach`` mm around the segment) and their distance
    (mm) to the segment; ``(None, None)`` when no point is near."""
    low = np.minimum(start, end) - reach
    high = np.maximum(start, end) + reach
    index = canvas.select(low, high)
    if index is None:
        return None, None
    x, y, z = canvas.coords(index)
    return index, shapes.capsule_distance(x, y, z, start, end)


def _paint_bowel(canvas: _Canvas, anatomy: TorsoAnatomy, edge_mm: float, wall_mm: float = 3.0) -> None:
    index = canvas.select(*anatomy.bowel_box)
    if index is None:
        return
    sub = canvas.subset(index)
    gas_hu = np.float32(anatomy.hu["bowel_gas"])
    for start, end, radius, content_hu, gas_level_y in anatomy.bowel:
        near, distance = _capsule(sub, start, end, radius + edge_mm)
        if near is None:
            continue
        cavity = sub.cavity[near]
        sub.paint(near, shapes.ramp(distance - radius, edge_mm) * cavity, anatomy.hu["bowel_wall"], tissues.BOWEL_WALL)
        lumen = shapes.ramp(distance - (radius - wall_mm), edge_mm) * cavity
        gas = shapes.ramp(sub.y[near] - gas_level_y, edge_mm)
        sub.paint(near, lumen * (1.0 - gas), np.float32(content_hu), tissues.BOWEL_CONTENT)
        sub.paint(near, lumen * gas, gas_hu, tissues.BOWEL_GAS)
    canvas.write_back(index, sub)


def _diaphragm(canvas: _Canvas, anatomy: TorsoAnatomy):
    """Diaphragm height (mm) at every point of the canvas, computed once; far above or below the diaphragm a
    constant that gives the same occupancies."""
    if canvas.dome is None:
        top = anatomy.diaphragm_apex_z_mm + 10.0
        bottom = min(apex - 1.5 * drop for _, _, apex, drop, _, _ in anatomy.domes) - 10.0
        if canvas.low[2] > top:
            canvas.dome = np.full(canvas.x.shape, -_INF, dtype=np.float32)
        elif canvas.high[2] < bottom:
            canvas.dome = np.full(canvas.x.shape, _INF, dtype=np.float32)
        else:
            canvas.dome = anatomy.diaphragm_z(canvas.x, canvas.y).astype(np.float32)
    return canvas.dome


def _below_diaphragm(canvas: _Canvas, anatomy: TorsoAnatomy, index, edge_mm: float, gap_mm: float = 2.5):
    return shapes.ramp(canvas.z[index] - (_diaphragm(canvas, anatomy)[index] - gap_mm), edge_mm)


def _above_diaphragm(canvas: _Canvas, anatomy: TorsoAnatomy, index, edge_mm: float, gap_mm: float = 2.5):
    return shapes.ramp((_diaphragm(canvas, anatomy)[index] + gap_mm) - canvas.z[index], edge_mm)


def _ellipsoid(canvas: _Canvas, ellipsoid: tuple, edge_mm: float):
    """``(index, occupancy)`` of an axis-aligned ellipsoid ``(center, semi-axes)``; ``(None, None)`` if no point
    is near."""
    center, semi = np.asarray(ellipsoid[0]), np.asarray(ellipsoid[1])
    index = canvas.select(center - semi - edge_mm, center + semi + edge_mm)
    if index is None:
        return None, None
    x, y, z = canvas.coords(index)
    return index, shapes.ellipsoid(x, y, z, ellipsoid[0], ellipsoid[1], edge_mm)


def _paint_thorax(canvas: _Canvas, anatomy: TorsoAnatomy, edge_mm: float) -> None:
    """Diaphragm sheet, lungs above it, lung vessels inside the lungs."""
    bottom = min(apex - 1.5 * drop for _, _, apex, drop, _, _ in anatomy.domes) - 5.0
    index = canvas.select((-_INF, -_INF, bottom), (_INF, _INF, anatomy.diaphragm_apex_z_mm + 5.0))
    if index is not None:
        sheet = shapes.ramp(np.abs(canvas.z[index] - _diaphragm(canvas, anatomy)[index]) - 2.5, edge_mm)
        canvas.paint(index, sheet * canvas.cavity[index], anatomy.hu["muscle"], tissues.MUSCLE)
    for lung_x, lung_y, lung_a, lung_b in anatomy.lungs:
        index = canvas.select((lung_x - lung_a - edge_mm, lung_y - lung_b - edge_mm, bottom),
                              (lung_x + lung_a + edge_mm, lung_y + lung_b + edge_mm, _INF))
        if index is None:
            continue
        x, y, _ = canvas.coords(index)
        occupancy = np.minimum(shapes.elliptic_cylinder(x, y, (lung_x, lung_y), (lung_a, lung_b), edge_mm),
                               _above_diaphragm(canvas, anatomy, index, edge_mm))
        canvas.paint(index, occupancy * canvas.cavity[index], anatomy.hu["lung"], tissues.LUNG)
    _paint_capsules_in(canvas, tissues.LUNG, anatomy.lung_vessels, anatomy.hu["lung_vessel"], tissues.LUNG_VESSEL,
                       edge_mm)


def _paint_capsules_in(canvas: _Canvas, inside_tissue: int, segments, value: float, tissue: int,
                       edge_mm: float) -> None:
    """Paint capsules ``(start, end, radius)`` only on the points currently labelled ``inside_tissue``."""
    index = np.flatnonzero(canvas.label == inside_tissue)
    if index.size == 0:
        return
    sub = canvas.subset(index)
    for start, end, radius in segments:
        near, distance = _capsule(sub, start, end, radius + edge_mm)
        if near is not None:
            sub.paint(near, shapes.ramp(distance - radius, edge_mm), value, tissue)
    canvas.write_back(index, sub)


def _paint_abdomen(canvas: _Canvas, anatomy: TorsoAnatomy, edge_mm: float) -> None:
    """Liver (below the diaphragm, with hepatic veins), spleen (below the diaphragm), kidneys with their sinus."""
    for name, tissue in (("liver", tissues.LIVER), ("spleen", tissues.SPLEEN)):
        index, occupancy = _ellipsoid(canvas, anatomy.ellipsoids[name], edge_mm)
        if index is not None:
            occupancy = np.minimum(occupancy, _below_diaphragm(canvas, anatomy, index, edge_mm))
            canvas.paint(index, occupancy * canvas.cavity[index], anatomy.hu[name], tissue)
        if name == "liver":
            _paint_capsules_in(canvas, tissues.LIVER, anatomy.liver_vessels, anatomy.hu["liver_vessel"],
                               tissues.LIVER_VESSEL, edge_mm)
    for side in ("right", "left"):
        index, kidney = _ellipsoid(canvas, anatomy.ellipsoids[f"kidney_{side}"], edge_mm)
        if index is None:
            continue
        canvas.paint(index, kidney * canvas.cavity[index], anatomy.hu["kidney"], tissues.KIDNEY)
        x, y, z = canvas.coords(index)
        center, semi = anatomy.ellipsoids[f"sinus_{side}"]
        sinus = np.minimum(shapes.ellipsoid(x, y, z, center, semi, edge_mm), kidney)
        canvas.paint(index, sinus, anatomy.hu["renal_sinus"], tissues.RENAL_SINUS)


def _paint_heart_and_great_vessels(canvas: _Canvas, anatomy: TorsoAnatomy, edge_mm: float) -> None:
    index, occupancy = _ellipsoid(canvas, anatomy.ellipsoids["heart"], edge_mm)
    if index is not None:
        occupancy = np.minimum(occupancy, _above_diaphragm(canvas, anatomy, index, edge_mm))
        canvas.paint(index, occupancy * canvas.cavity[index], anatomy.hu["heart"], tissues.HEART)
    (cava_x, cava_y), cava_radius, cava_top = anatomy.vena_cava
    index = canvas.select((cava_x - cava_radius - edge_mm, cava_y - cava_radius - edge_mm, -_INF),
                          (cava_x + cava_radius + edge_mm, cava_y + cava_radius + edge_mm, cava_top + edge_mm))
    if index is not None:
        x, y, z = canvas.coords(index)
        sd = np.maximum(np.sqrt((x - cava_x) ** 2 + (y - cava_y) ** 2) - cava_radius, z - cava_top)
        canvas.paint(index, shapes.ramp(sd, edge_mm), anatomy.hu["vena_cava"], tissues.VENA_CAVA)
    (xa, ya), (xt, yt), radius = anatomy.aorta
    reach = radius + edge_mm
    index = canvas.select((min(xa, xt) - reach, min(ya, yt) - reach, -_INF),
                          (max(xa, xt) + reach, max(ya, yt) + reach, _INF))
    if index is not None:
        x, y, z = canvas.coords(index)
        cx, cy = anatomy.aorta_center_xy(z)
        sd = np.sqrt((x - cx) ** 2 + (y - cy) ** 2) - radius
        canvas.paint(index, shapes.ramp(sd, edge_mm), anatomy.hu["aorta"], tissues.AORTA)


# ---------------------------------------------------------------------------------------- spine
def _paint_spine(canvas: _Canvas, anatomy: TorsoAnatomy, edge_mm: float) -> None:
    """Paraspinal muscles, then vertebral bodies (cortex, cancellous core) between discs, arch, processes, canal."""
    v = anatomy.vertebra
    (body_x, body_y), (body_a, body_b) = v["center_xy"], v["semi_axes_mm"]
    (canal_x, canal_y), canal_radius = v["canal_center_xy"], v["canal_radius_mm"]
    muscles = [anatomy.ellipsoids["paraspinal_right"], anatomy.ellipsoids["paraspinal_left"]]
    low_x = min(c[0] - s[0] for c, s in muscles) - edge_mm
    high_x = max(c[0] + s[0] for c, s in muscles) + edge_mm
    high_y = max(max(c[1] + s[1] for c, s in muscles), canal_y + canal_radius + 30.0) + edge_mm
    index = canvas.select((low_x, body_y - body_b - edge_mm, -_INF), (high_x, high_y, _INF))
    if index is None:
        return
    sub = canvas.subset(index)
    everything = slice(None)
    x, y, z = sub.x, sub.y, sub.z
    for center, semi in muscles:
        sub.paint(everything, shapes.elliptic_cylinder(x, y, center[:2], semi[:2], edge_mm), anatomy.hu["muscle"],
                  tissues.MUSCLE)
    period = v["period_mm"]
    phase = np.mod(z - v["phase_mm"], period)
    level_sd = 0.5 * v["disc_mm"] - np.minimum(phase, period - phase)  # < 0 inside a vertebra, > 0 in a disc
    in_vertebra = shapes.ramp(level_sd, edge_mm)
    body_sd = _ellipse_sd(x, y, body_x, body_y, body_a, body_b)
    column = shapes.ramp(body_sd, edge_mm)
    sub.paint(everything, column, anatomy.hu["disc"], tissues.DISC)
    sub.paint(everything, np.minimum(column, in_vertebra), anatomy.hu["cortical_bone"], tissues.BONE)
    core = np.minimum(shapes.ramp(body_sd + v["cortex_mm"], edge_mm), shapes.ramp(level_sd + v["cortex_mm"], edge_mm))
    sub.paint(everything, core, anatomy.hu["cancellous_bone"], tissues.BONE)
    canal_distance = np.sqrt((x - canal_x) ** 2 + (y - canal_y) ** 2)
    arch = shapes.ramp(np.abs(canal_distance - canal_radius - 0.5 * v["arch_mm"]) - 0.5 * v["arch_mm"], edge_mm)
    for cx, cy, a, b in ((canal_x, canal_y + canal_radius + 12.0, 4.0, 12.0),
                         (canal_x - canal_radius - 16.0, canal_y - 2.0, 12.0, 4.5),
                         (canal_x + canal_radius + 16.0, canal_y - 2.0, 12.0, 4.5)):
        arch = np.maximum(arch, shapes.ramp(_ellipse_sd(x, y, cx, cy, a, b), edge_mm))
    sub.paint(everything, np.minimum(arch, in_vertebra), anatomy.hu["rib"], tissues.BONE)
    sub.paint(everything, shapes.ramp(canal_distance - canal_radius, edge_mm), anatomy.hu["spinal_canal"],
              tissues.SPINAL_CANAL)
    canvas.write_back(index, sub)


def _add_texture(canvas: _Canvas, anatomy: TorsoAnatomy) -> None:
    """A smooth texture fixed in canonical space: ``TEXTURE_HU[label] * sum_k sin(w_k · p + phase_k) / sqrt(K / 2)``."""
    waves = anatomy.texture_waves.astype(np.float32)
    phases = anatomy.texture_phases.astype(np.float32)
    texture = np.zeros(canvas.x.shape, dtype=np.float32)
    for w, phase in zip(waves, phases):
        texture += np.sin(canvas.x * w[0] + canvas.y * w[1] + canvas.z * w[2] + phase)
    canvas.hu += TEXTURE_HU[canvas.label] * texture / np.float32(np.sqrt(len(phases) / 2.0))


__all__ = ["evaluate_anatomy"]
