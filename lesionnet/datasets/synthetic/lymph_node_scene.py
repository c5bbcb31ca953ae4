"""The scene of a Dataset502 case: lymph nodes and tube-like distractors, and their random placement.

* :class:`Tube` — a vessel, airway or muscle band running mostly along z;
* :class:`LymphNode` — an ellipsoidal node;
* :func:`random_tubes` draws the distractors, :func:`place_nodes` the node clusters (nodes inside the
  grid, off every tube, touching or spaced apart within a cluster).

Everything is in world mm on the scan's own grid (axis-aligned, centered on the origin); points,
centers and directions are physical ``(x, y, z)`` vectors, ``half_fov_mm`` the half field of view along
x, y and z (mm); intensities in HU.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from lesionnet.datasets.synthetic import shapes
from lesionnet.datasets.synthetic.lymph_node_config import LymphNodeConfig
from lesionnet.datasets.synthetic.transforms import random_unit_vector, rotation_matrix


@dataclass(frozen=True)
class Tube:
    """A tube along z with in-plane centerline
    ``c(z) = start_xy + slope_xy * z + wobble_xy * sin(2 pi z / period + phase)`` (mm).

    ``z_range_mm`` limits its extent; ``radius_mm`` its in-plane cross-section; ``hu`` its intensity;
    ``wall_hu`` (optional) a 1.5 mm wall (airways); ``kind`` is ``vessel``, ``airway`` or ``muscle`` (muscles
    use ``semi_axes_mm`` instead of a circle).
    """

    kind: str
    start_xy: tuple
    slope_xy: tuple
    wobble_xy: tuple
    period_mm: float
    phase: float
    radius_mm: float
    hu: float
    z_range_mm: tuple = (-np.inf, np.inf)
    semi_axes_mm: tuple | None = None
    wall_hu: float | None = None

    def center_xy(self, z_mm) -> tuple:
        """In-plane center (mm) at height(s) ``z_mm``."""
        wobble = np.sin(2 * np.pi * np.asarray(z_mm) / self.period_mm + self.phase)
        return (self.start_xy[0] + self.slope_xy[0] * z_mm + self.wobble_xy[0] * wobble,
                self.start_xy[1] + self.slope_xy[1] * z_mm + self.wobble_xy[1] * wobble)

    def occupancy(self, x, y, z_mm: float, edge_mm: float) -> np.ndarray:
        """Occupancy on an axial plane at height ``z_mm`` (``x``, ``y`` in mm)."""
        cx, cy = self.center_xy(z_mm)
        semi = self.semi_axes_mm or (self.radius_mm, self.radius_mm)
        across = shapes.elliptic_cylinder(x, y, (cx, cy), semi, edge_mm)
        return across * shapes.slab(np.full_like(x, z_mm), self.z_range_mm[0], self.z_range_mm[1], edge_mm)


@dataclass(frozen=True)
class LymphNode:
    """One node: world center (mm), semi-axes (mm) along the columns of ``rotation``, intensity (HU)."""

    center_mm: np.ndarray
    semi_axes_mm: np.ndarray
    rotation: np.ndarray
    hu: float

    def reach_mm(self, direction) -> float:
        """Distance from the center to the surface along a unit ``direction`` (x, y, z)."""
        local = self.rotation.T @ np.asarray(direction, dtype=np.float64)
        return float(1.0 / np.sqrt(np.sum((local / self.semi_axes_mm) ** 2)))

    def rho(self, x, y, z) -> np.ndarray:
        """Normalised ellipsoid radius at points (1 on the surface)."""
        d = np.stack([x - self.center_mm[0], y - self.center_mm[1], z - self.center_mm[2]], axis=-1)
        return np.linalg.norm((d @ self.rotation) / self.semi_axes_mm, axis=-1)


def random_tubes(rng: np.random.Generator, config: LymphNodeConfig, half_fov_mm: np.ndarray) -> list:
    tubes = []
    hx, hy, hz = half_fov_mm

    def path(radius):
        start = rng.uniform(-1, 1, size=2) * (np.array([hx, hy]) - radius)
        slope = random_unit_vector(rng)[:2] * rng.uniform(0, config.vessel_max_slope)
        wobble = random_unit_vector(rng)[:2] * rng.uniform(0, config.vessel_wobble_mm)
        return tuple(start), tuple(slope), tuple(wobble), float(rng.uniform(60, 160)), float(rng.uniform(0, 2 * np.pi))

    for _ in range(int(rng.integers(config.muscles_range[0], config.muscles_range[1] + 1))):
        semi = (float(rng.uniform(12, 25)), float(rng.uniform(8, 16)))
        angle = rng.uniform(0, 2 * np.pi)  # place the band near the border
        start = (0.85 * hx * np.cos(angle), 0.85 * hy * np.sin(angle))
        _, slope, wobble, period, phase = path(semi[0])
        tubes.append(Tube("muscle", start, tuple(0.3 * np.array(slope)), wobble, period, phase, max(semi), 50.0,
                          semi_axes_mm=semi))
    if rng.uniform() < config.airway_probability:
        radius = float(rng.uniform(6.0, 9.0))
        tubes.append(Tube("airway", *path(radius), radius, -950.0, wall_hu=40.0))
    for _ in range(int(rng.integers(config.vessels_range[0], config.vessels_range[1] + 1))):
        radius = float(rng.uniform(*config.vessel_radius_range_mm))
        start, slope, wobble, period, phase = path(radius)
        if rng.uniform() < 0.3:   # some vessels end (branch off) inside the field of view
            cut = float(rng.uniform(-0.2, 0.2) * hz)
            z_range = (cut, np.inf) if rng.uniform() < 0.5 else (-np.inf, cut)
        else:
            z_range = (-np.inf, np.inf)
        tubes.append(Tube("vessel", start, slope, wobble, period, phase, radius,
                          float(rng.uniform(*config.vessel_hu_range)), z_range_mm=z_range))
    return tubes


def _random_node(rng: np.random.Generator, config: LymphNodeConfig, center_mm, slice_thickness_mm: float) -> LymphNode:
    diameter = float(rng.uniform(*config.node_diameter_range_mm))
    a = diameter / 2.0
    b = a * rng.uniform(0.55, 1.0)
    c = max(a * rng.uniform(*config.node_height_ratio_range), config.min_node_height_slices * slice_thickness_mm)
    in_plane = rotation_matrix((0, 0, 1), rng.uniform(0, 2 * np.pi))
    tilt_axis = np.array([*random_unit_vector(rng)[:2], 0.0])
    tilt = rotation_matrix(tilt_axis if np.linalg.norm(tilt_axis) > 1e-6 else (1, 0, 0),
                           np.deg2rad(rng.uniform(0, config.node_tilt_deg)))
    return LymphNode(np.asarray(center_mm, dtype=np.float64), np.array([a, b, c]), tilt @ in_plane,
                     float(rng.uniform(*config.node_hu_range)))


def _node_clear(node: LymphNode, nodes: list, tubes: list, half_fov_mm, config: LymphNodeConfig,
                touching: int | None) -> bool:
    """Inside the grid, off every tube, and not overlapping other nodes (except touching ``touching``)."""
    reach = np.array([node.reach_mm(axis) for axis in np.eye(3)])
    if np.any(np.abs(node.center_mm) + reach + config.fov_margin_mm > half_fov_mm):
        return False
    max_reach = float(np.max(node.semi_axes_mm))
    for z in np.linspace(node.center_mm[2] - reach[2], node.center_mm[2] + reach[2], 5):
        for tube in tubes:
            if not tube.z_range_mm[0] - 2 <= z <= tube.z_range_mm[1] + 2:
                continue
            tx, ty = tube.center_xy(z)
            tube_reach = max(tube.semi_axes_mm or (tube.radius_mm,))
            if np.hypot(node.center_mm[0] - tx, node.center_mm[1] - ty) < max_reach + tube_reach + 1.5:
                return False
    for j, other in enumerate(nodes):
        offset = other.center_mm - node.center_mm
        distance = float(np.linalg.norm(offset))
        direction = offset / max(distance, 1e-9)
        contact = node.reach_mm(direction) + other.reach_mm(-direction)
        if distance < contact * (0.95 if j == touching else 1.0) + (0.0 if j == touching else 1.0):
            return False
    return True


def place_nodes(rng: np.random.Generator, config: LymphNodeConfig, tubes: list, half_fov_mm,
                 slice_thickness_mm: float) -> list:
    nodes: list[LymphNode] = []
    num_clusters = int(rng.integers(config.clusters_range[0], config.clusters_range[1] + 1))
    for _ in range(num_clusters):
        wanted = int(rng.integers(config.nodes_per_cluster_range[0], config.nodes_per_cluster_range[1] + 1))
        cluster: list[int] = []
        for _attempt in range(60):  # the cluster's first node
            node = _random_node(rng, config, rng.uniform(-0.7, 0.7, size=3) * half_fov_mm, slice_thickness_mm)
            if _node_clear(node, nodes, tubes, half_fov_mm, config, None):
                nodes.append(node)
                cluster.append(len(nodes) - 1)
                break
        if not cluster:
            continue
        attempts = 0
        while len(cluster) < wanted and attempts < 40 * wanted:
            attempts += 1
            anchor_index = int(rng.choice(cluster))
            anchor = nodes[anchor_index]
            direction = random_unit_vector(rng) * np.array([1.0, 1.0, 0.4])
            direction /= np.linalg.norm(direction)
            node = _random_node(rng, config, anchor.center_mm, slice_thickness_mm)
            touching = rng.uniform() < config.touching_fraction
            gap = 0.0 if touching else rng.uniform(*config.node_gap_range_mm)
            distance = anchor.reach_mm(direction) + node.reach_mm(-direction) + gap
            node = dataclasses.replace(node, center_mm=anchor.center_mm + direction * distance)
            if _node_clear(node, nodes, tubes, half_fov_mm, config, anchor_index if touching else None):
                nodes.append(node)
                cluster.append(len(nodes) - 1)
    return nodes


__all__ = ["Tube", "LymphNode", "random_tubes", "place_nodes"]
