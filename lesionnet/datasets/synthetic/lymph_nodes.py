"""Dataset502_SynthLymphNodes: anisotropic CT-like crops with clusters of small lymph nodes.

Each case is one scan (a crop of mediastinal / abdominal fat, 0.6–0.9 mm in-plane, 2–5 mm slices)
holding clusters of small, low-contrast ellipsoidal nodes (3–20 mm, some only 2–3 slices thick, some
touching each other), and tube-like distractors running mostly along z (vessels of the same intensity
as the nodes, an airway, muscle bands). In one axial slice a vessel's cross-section looks like a node;
only the z-context (a tube persists over many slices, a node ends) separates them.

Everything is defined in world mm on the scan's own grid (axis-aligned, centered on the origin). The
instance mask ``labels_zyx`` holds 0 for background and ``1..N`` for the nodes: a voxel belongs to the
node whose normalised ellipsoid radius ``rho`` at the voxel center is smallest and below 1. Nodes whose
mask would be smaller than ``min_node_voxels`` are dropped from the case entirely (image and mask);
each remaining instance is one 26-connected blob.

Arrays are ``[z, y, x]``; node centers are continuous voxel indices ``(x, y, z)``; sizes in mm.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.image_io import write_image
from lesionnet.datasets.raw_format import make_dataset_json
from lesionnet.datasets.synthetic import common, shapes
from lesionnet.datasets.synthetic.transforms import random_unit_vector, rotation_matrix
from lesionnet.utils.files import write_json
from lesionnet.utils.parallel import run_jobs

logger = logging.getLogger(__name__)

DATASET_ID = 502
DATASET_NAME = "SynthLymphNodes"


@dataclass
class LymphNodeConfig:
    """Every parameter of Dataset502 (defaults in brackets; units in the names or stated).

    Dataset: ``num_patients`` [20] cases (one scan each), ``test_fraction`` [0.2] → 16 train + 4 test.

    Grid: ``shape_zyx`` [32, 128, 128] voxels; per case ``inplane_spacing_range_mm`` [0.6, 0.9] and
    ``slice_thickness_range_mm`` [2, 5]; ``max_subslice_mm`` [1] sub-slice distance for the
    partial-volume average across a slice; ``psf_sigma_voxels`` [0.5] in-plane blur; ``edge_mm`` [0.5].

    Nodes: ``clusters_range`` [2, 3] clusters of ``nodes_per_cluster_range`` [2, 6] nodes;
    ``node_diameter_range_mm`` [3, 20] long in-plane diameter (uniform); the short in-plane axis is
    0.55–1 × the long one; the z semi-axis is ``node_height_ratio_range`` [1.0, 2.0] × the long
    semi-axis (nodes are often elongated cranio-caudally) but at least ``min_node_height_slices`` [1.0]
    × the slice thickness (so a node spans 2 or more slices; the smallest only 2–3);
    ``node_tilt_deg`` [20] largest tilt of a node's axis out of the axial plane; ``node_hu_range``
    [-20, 40]; ``touching_fraction`` [0.4] nodes placed in contact with a neighbour of their cluster
    (others ``node_gap_range_mm`` [1.5, 8] apart); ``min_node_voxels`` [4].

    Distractors: ``vessels_range`` [2, 5] tubes of radius ``vessel_radius_range_mm`` [1.5, 6] and
    ``vessel_hu_range`` [10, 50] HU, drifting at most ``vessel_max_slope`` [0.35] mm in-plane per mm in z
    plus a wobble of up to ``vessel_wobble_mm`` [4]; ``airway_probability`` [0.5] an air-filled tube of
    radius 6–9 mm; ``muscles_range`` [1, 2] muscle bands (50 HU).

    Background and scanner: ``fat_hu_range`` [-100, -60] fat intensity per case, ``fat_texture_hu`` [12];
    ``noise_hu_range`` [12, 25] noise standard deviation; ``bias_field_hu`` [15]; ``fov_margin_mm`` [3]
    distance from each node to the border of the grid.
    """

    num_patients: int = 20
    test_fraction: float = 0.2
    shape_zyx: tuple = (32, 128, 128)
    inplane_spacing_range_mm: tuple = (0.6, 0.9)
    slice_thickness_range_mm: tuple = (2.0, 5.0)
    max_subslice_mm: float = 1.0
    psf_sigma_voxels: float = 0.5
    edge_mm: float = 0.5
    clusters_range: tuple = (2, 3)
    nodes_per_cluster_range: tuple = (2, 6)
    node_diameter_range_mm: tuple = (3.0, 20.0)
    node_height_ratio_range: tuple = (1.0, 2.0)
    min_node_height_slices: float = 1.0
    node_tilt_deg: float = 20.0
    node_hu_range: tuple = (-20.0, 40.0)
    touching_fraction: float = 0.4
    node_gap_range_mm: tuple = (1.5, 8.0)
    min_node_voxels: int = 4
    vessels_range: tuple = (2, 5)
    vessel_radius_range_mm: tuple = (1.5, 6.0)
    vessel_hu_range: tuple = (10.0, 50.0)
    vessel_max_slope: float = 0.35
    vessel_wobble_mm: float = 4.0
    airway_probability: float = 0.5
    muscles_range: tuple = (1, 2)
    fat_hu_range: tuple = (-100.0, -60.0)
    fat_texture_hu: float = 12.0
    noise_hu_range: tuple = (12.0, 25.0)
    bias_field_hu: float = 15.0
    fov_margin_mm: float = 3.0

    def __post_init__(self):
        if len(self.shape_zyx) != 3 or min(self.shape_zyx) < 8:
            raise ValueError(f"shape_zyx must be 3 sizes of at least 8 voxels, got {self.shape_zyx}.")
        if not 0 < self.node_diameter_range_mm[0] <= self.node_diameter_range_mm[1]:
            raise ValueError("node_diameter_range_mm must be positive and increasing, "
                             f"got {self.node_diameter_range_mm}.")

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


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


@dataclass(frozen=True)
class LymphNodeCase:
    """One generated case.

    Attributes:
        case_id: scan id (``LN0000`` ...).
        image_zyx: float32 HU, shape ``geometry.shape_zyx``.
        labels_zyx: instance mask, uint8 (uint16 beyond 255 nodes): 0 background, 1..N nodes.
        geometry: the grid.
        nodes: the N kept nodes; ``nodes[i]`` has label ``i + 1``.
        tubes: the distractor structures.
    """

    case_id: str
    image_zyx: np.ndarray
    labels_zyx: np.ndarray
    geometry: Geometry
    nodes: tuple
    tubes: tuple

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    def node_center_xyz(self, i: int) -> np.ndarray:
        """Continuous voxel index (x, y, z) of node ``i`` (label ``i + 1``)."""
        return self.geometry.world_to_index(self.nodes[i].center_mm)


# ====================================================================================== scene
def _random_tubes(rng: np.random.Generator, config: LymphNodeConfig, half_fov_xyz: np.ndarray) -> list:
    tubes = []
    hx, hy, hz = half_fov_xyz

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


def _node_clear(node: LymphNode, nodes: list, tubes: list, half_fov_xyz, config: LymphNodeConfig,
                touching: int | None) -> bool:
    """Inside the grid, off every tube, and not overlapping other nodes (except touching ``touching``)."""
    reach = np.array([node.reach_mm(axis) for axis in np.eye(3)])
    if np.any(np.abs(node.center_mm) + reach + config.fov_margin_mm > half_fov_xyz):
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


def _place_nodes(rng: np.random.Generator, config: LymphNodeConfig, tubes: list, half_fov_xyz,
                 slice_thickness_mm: float) -> list:
    nodes: list[LymphNode] = []
    num_clusters = int(rng.integers(config.clusters_range[0], config.clusters_range[1] + 1))
    for _ in range(num_clusters):
        wanted = int(rng.integers(config.nodes_per_cluster_range[0], config.nodes_per_cluster_range[1] + 1))
        cluster: list[int] = []
        for _attempt in range(60):  # the cluster's first node
            node = _random_node(rng, config, rng.uniform(-0.7, 0.7, size=3) * half_fov_xyz, slice_thickness_mm)
            if _node_clear(node, nodes, tubes, half_fov_xyz, config, None):
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
            if _node_clear(node, nodes, tubes, half_fov_xyz, config, anchor_index if touching else None):
                nodes.append(node)
                cluster.append(len(nodes) - 1)
    return nodes


# ====================================================================================== rendering
def _instance_mask(nodes: list, geometry: Geometry) -> np.ndarray:
    """Label of the node with the smallest ``rho < 1`` at each voxel center (int32 ``[z, y, x]``, 0 = none)."""
    labels = np.zeros(geometry.shape_zyx, dtype=np.int32)
    best_rho = np.full(geometry.shape_zyx, np.inf, dtype=np.float32)
    for i, node in enumerate(nodes):
        box = _node_box(node, geometry)
        if box is None:
            continue
        zz, yy, xx = np.meshgrid(*[np.arange(lo, hi) for lo, hi in box], indexing="ij")
        index_xyz = np.stack([xx, yy, zz], axis=-1).astype(np.float64)
        world = geometry.index_to_world(index_xyz)
        rho = node.rho(world[..., 0], world[..., 1], world[..., 2]).astype(np.float32)
        region = tuple(slice(lo, hi) for lo, hi in box)
        better = (rho < 1.0) & (rho < best_rho[region])
        best_rho[region][better] = rho[better]
        labels[region][better] = i + 1
    return labels


def _node_box(node: LymphNode, geometry: Geometry, pad_mm: float = 1.0):
    """``[(z0, z1), (y0, y1), (x0, x1)]`` voxel ranges enclosing the node, or None when outside."""
    reach = np.array([node.reach_mm(axis) for axis in np.eye(3)]) + pad_mm
    low = geometry.world_to_index(node.center_mm - reach)
    high = geometry.world_to_index(node.center_mm + reach)
    box = []
    for axis in (2, 1, 0):  # z, y, x order of the array
        lo = max(0, int(np.floor(min(low[axis], high[axis]))))
        hi = min(geometry.shape_zyx[2 - axis], int(np.ceil(max(low[axis], high[axis]))) + 1)
        if hi <= lo:
            return None
        box.append((lo, hi))
    return box


def _clean_mask(labels: np.ndarray, num_nodes: int, min_voxels: int) -> tuple:
    """Keep each label's largest 26-connected component; return ``(labels, kept node indices)``."""
    structure = np.ones((3, 3, 3), dtype=bool)
    kept = []
    for i in range(num_nodes):
        region = labels == i + 1
        if not region.any():
            continue
        components, count = ndimage.label(region, structure=structure)
        if count > 1:
            sizes = np.bincount(components.ravel())[1:]
            labels[region & (components != 1 + int(np.argmax(sizes)))] = 0
        if (labels == i + 1).sum() >= min_voxels:
            kept.append(i)
        else:
            labels[labels == i + 1] = 0
    return labels, kept


def _render_image(rng: np.random.Generator, config: LymphNodeConfig, geometry: Geometry, nodes: list, tubes: list,
                  fat_hu: float) -> np.ndarray:
    nz, ny, nx = geometry.shape_zyx
    spacing_z = geometry.spacing_zyx[0]
    # background texture on the scan grid, correlation about 3 mm in-plane and 1 slice
    texture = ndimage.gaussian_filter(rng.standard_normal((nz, ny, nx), dtype=np.float32),
                                      (1.0, 3.0 / geometry.spacing_zyx[1], 3.0 / geometry.spacing_zyx[2]))
    texture /= max(float(texture.std()), 1e-6)
    node_texture_scale = np.float32(5.0)
    grid_y, grid_x = np.meshgrid(np.arange(ny, dtype=np.float64), np.arange(nx, dtype=np.float64), indexing="ij")
    subslices = max(1, int(np.ceil(spacing_z / config.max_subslice_mm - 1e-9)))
    offsets = (np.arange(subslices) + 0.5) / subslices - 0.5
    image = np.zeros((nz, ny, nx), dtype=np.float32)
    for z in range(nz):
        for offset in offsets:
            index_xyz = np.stack([grid_x, grid_y, np.full_like(grid_x, z + offset)], axis=-1)
            world = geometry.index_to_world(index_xyz)
            x, y, zw = world[..., 0], world[..., 1], float(world[0, 0, 2])
            plane = (fat_hu + config.fat_texture_hu * texture[z]).astype(np.float32)
            for tube in tubes:
                occupancy = tube.occupancy(x, y, zw, config.edge_mm)
                value = tube.hu
                if tube.wall_hu is not None:  # airway: wall around an air lumen
                    cx, cy = tube.center_xy(zw)
                    lumen = shapes.elliptic_cylinder(x, y, (cx, cy), (tube.radius_mm - 1.5,) * 2, config.edge_mm)
                    value = tube.wall_hu * (1 - lumen) + tube.hu * lumen
                elif tube.kind == "muscle":
                    value = tube.hu + 8.0 * texture[z]
                shapes.paint(plane, occupancy.astype(np.float32), value)
            for node in nodes:
                reach_z = node.reach_mm((0, 0, 1)) + config.edge_mm
                if abs(zw - node.center_mm[2]) > reach_z:
                    continue
                sd = shapes.ellipsoid_signed_distance(x, y, np.full_like(x, zw), node.center_mm, node.semi_axes_mm,
                                                      node.rotation)
                occupancy = shapes.ramp(sd, config.edge_mm).astype(np.float32)
                shapes.paint(plane, occupancy, node.hu + node_texture_scale * texture[z])
            image[z] += plane / np.float32(subslices)
    if config.psf_sigma_voxels > 0:
        image = ndimage.gaussian_filter(image, (0.0, config.psf_sigma_voxels, config.psf_sigma_voxels))
    image += common.smooth_bias_field(image.shape, rng.uniform(-1, 1, size=(3, 3, 3)) * config.bias_field_hu)
    image += common.correlated_noise(rng, image.shape, float(rng.uniform(*config.noise_hu_range)))
    return image


def make_lymph_node_case(config: LymphNodeConfig | None = None, seed=0, case_id: str = "LN0000") -> LymphNodeCase:
    """Generate one Dataset502 case in memory: image, instance mask, geometry and node truth.

    Args:
        config: generator parameters (default :class:`LymphNodeConfig`).
        seed: int or ``np.random.SeedSequence`` (e.g. ``common.patient_seed_sequence(run_seed, i)``).
        case_id: the scan id.
    """
    config = config or LymphNodeConfig()
    seed_sequence = common.as_seed_sequence(seed)
    scene_rng = common.child_rng(seed_sequence, 0)
    image_rng = common.child_rng(seed_sequence, 1)
    thickness = round(float(scene_rng.uniform(*config.slice_thickness_range_mm)), 3)
    inplane = round(float(scene_rng.uniform(*config.inplane_spacing_range_mm)), 3)
    geometry = common.centered_geometry(config.shape_zyx, (thickness, inplane, inplane))
    half_fov_xyz = np.asarray(geometry.extent_mm_xyz) / 2.0 - np.asarray(geometry.spacing_xyz) / 2.0
    fat_hu = float(scene_rng.uniform(*config.fat_hu_range))
    tubes = _random_tubes(scene_rng, config, half_fov_xyz)
    nodes = _place_nodes(scene_rng, config, tubes, half_fov_xyz, thickness)
    for _ in range(3):  # drop nodes too small to appear in the mask, then relabel
        labels, kept = _clean_mask(_instance_mask(nodes, geometry), len(nodes), config.min_node_voxels)
        if len(kept) == len(nodes):
            break
        logger.debug("%s: dropping %d node(s) below %d voxels", case_id, len(nodes) - len(kept), config.min_node_voxels)
        nodes = [nodes[i] for i in kept]
    else:
        labels, kept = _clean_mask(_instance_mask(nodes, geometry), len(nodes), config.min_node_voxels)
        nodes = [nodes[i] for i in kept]
        labels = _instance_mask(nodes, geometry)
        labels, _ = _clean_mask(labels, len(nodes), 0)
    dtype = np.uint8 if len(nodes) < 256 else np.uint16
    image = _render_image(image_rng, config, geometry, nodes, tubes, fat_hu)
    return LymphNodeCase(case_id, image, labels.astype(dtype), geometry, tuple(nodes), tuple(tubes))


# ====================================================================================== dataset
def _generate_case(args) -> dict:
    config, seed, index, split, staging = args
    case = make_lymph_node_case(config, common.patient_seed_sequence(seed, index), f"LN{index:04d}")
    folder = Path(staging)
    write_image(folder / f"images{split}" / f"{case.case_id}_0000.nii.gz", common.to_int16_hu(case.image_zyx),
                case.geometry)
    write_image(folder / f"labels{split}" / f"{case.case_id}.nii.gz", case.labels_zyx, case.geometry)
    return {"case_id": case.case_id, "split": split, "num_nodes": case.num_nodes}


def default_output_folder() -> Path:
    """``$lesionnet_raw/Dataset502_SynthLymphNodes``."""
    from lesionnet import paths
    from lesionnet.datasets.dataset_id import dataset_folder_name
    return paths.raw_dir() / dataset_folder_name(DATASET_ID, DATASET_NAME)


def generate_lymph_node_dataset(output_folder=None, config: LymphNodeConfig | None = None, seed: int = 0,
                                overwrite: bool = False, num_processes: int = 1, progress: bool = True) -> dict:
    """Write Dataset502 in the raw format (detection task) and return a summary.

    Args and behaviour as :func:`lesionnet.datasets.synthetic.tracking.generate_tracking_dataset`.
    Writes ``dataset.json``, ``imagesTr/``, ``labelsTr/``, ``imagesTs/``, ``labelsTs/``. Returns
    ``{"folder", "num_cases_tr", "num_cases_ts", "num_nodes_tr", "num_nodes_ts"}``.
    """
    config = config or LymphNodeConfig()
    output_folder = Path(output_folder) if output_folder is not None else default_output_folder()
    num_test = common.num_test_cases(config.num_patients, config.test_fraction)
    splits = ["Tr"] * (config.num_patients - num_test) + ["Ts"] * num_test
    logger.info("Generating %s with %d cases (%d test), seed %d, grid %s into %s", DATASET_NAME,
                config.num_patients, num_test, seed, tuple(config.shape_zyx), output_folder)
    with common.staged_output_folder(output_folder, overwrite) as staging:
        jobs = [(config, seed, i, splits[i], str(staging)) for i in range(config.num_patients)]
        results = run_jobs(_generate_case, jobs, num_processes, progress, f"Dataset{DATASET_ID} cases")
        results.sort(key=lambda r: r["case_id"])
        summary = {}
        for split in ("Tr", "Ts"):
            chosen = [r for r in results if r["split"] == split]
            for sub in ("images", "labels"):
                (staging / f"{sub}{split}").mkdir(exist_ok=True)
            summary[f"num_cases_{split.lower()}"] = len(chosen)
            summary[f"num_nodes_{split.lower()}"] = sum(r["num_nodes"] for r in chosen)
        meta = make_dataset_json(
            DATASET_NAME, "detection", summary["num_cases_tr"],
            description=("Synthetic anisotropic CT-like crops of mediastinal/abdominal fat with clusters of small, "
                         "low-contrast lymph-node-like ellipsoids (instance masks in labelsTr/labelsTs) and "
                         "tube-like vessels of similar intensity running mostly along z. Intensities in HU, int16."),
            licence=common.LICENCE,
            numTest=summary["num_cases_ts"],
            labels={"background": 0, "lymph_node": "1..N (one instance each)"},
            generator={"function": "lesionnet.datasets.synthetic.lymph_nodes.generate_lymph_node_dataset",
                       "seed": int(seed), "config": config.to_json()},
        )
        write_json(staging / "dataset.json", meta)
    summary["folder"] = str(output_folder)
    logger.info("Wrote %s: %d/%d cases with %d/%d nodes (train/test)", output_folder, summary["num_cases_tr"],
                summary["num_cases_ts"], summary["num_nodes_tr"], summary["num_nodes_ts"])
    return summary


__all__ = ["LymphNodeConfig", "LymphNodeCase", "LymphNode", "Tube", "make_lymph_node_case",
           "generate_lymph_node_dataset", "default_output_folder", "DATASET_ID", "DATASET_NAME"]
