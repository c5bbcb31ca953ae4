"""Rendering of a Dataset502 case: the instance mask and the CT-like image on the scan's grid.

* :func:`instance_mask` labels each voxel center with the node of smallest normalised radius
  ``rho < 1``; :func:`clean_mask` keeps each label's largest 26-connected blob and drops labels
  below a voxel count;
* :func:`render_image` paints fat texture, tubes and nodes slice by slice (averaging sub-slices across
  the slice thickness), then blurs in-plane and adds a smooth bias field and correlated noise.

Arrays are ``[z, y, x]`` and voxel indices ``(z, y, x)``; world points are physical ``(x, y, z)`` vectors
in mm; intensities in HU.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.synthetic import common, shapes
from lesionnet.datasets.synthetic.lymph_node_config import LymphNodeConfig
from lesionnet.datasets.synthetic.lymph_node_scene import LymphNode


def instance_mask(nodes: list, geometry: Geometry) -> np.ndarray:
    """Label of the node with the smallest ``rho < 1`` at each voxel center (int32 ``[z, y, x]``, 0 = none)."""
    labels = np.zeros(geometry.shape_zyx, dtype=np.int32)
    best_rho = np.full(geometry.shape_zyx, np.inf, dtype=np.float32)
    for i, node in enumerate(nodes):
        box = _node_box(node, geometry)
        if box is None:
            continue
        grids_zyx = np.meshgrid(*[np.arange(lo, hi) for lo, hi in box], indexing="ij")
        index_zyx = np.stack(grids_zyx, axis=-1).astype(np.float64)
        points_world = geometry.voxel_to_world(index_zyx)
        rho = node.rho(points_world[..., 0], points_world[..., 1], points_world[..., 2]).astype(np.float32)
        region = tuple(slice(lo, hi) for lo, hi in box)
        better = (rho < 1.0) & (rho < best_rho[region])
        best_rho[region][better] = rho[better]
        labels[region][better] = i + 1
    return labels


def _node_box(node: LymphNode, geometry: Geometry, pad_mm: float = 1.0):
    """``[(z0, z1), (y0, y1), (x0, x1)]`` voxel ranges enclosing the node, or None when outside."""
    reach = np.array([node.reach_mm(axis) for axis in np.eye(3)]) + pad_mm
    low_zyx = geometry.world_to_voxel(node.center_mm - reach)
    high_zyx = geometry.world_to_voxel(node.center_mm + reach)
    box_zyx = []
    for low, high, size in zip(low_zyx, high_zyx, geometry.shape_zyx):
        lo = max(0, int(np.floor(min(low, high))))
        hi = min(size, int(np.ceil(max(low, high))) + 1)
        if hi <= lo:
            return None
        box_zyx.append((lo, hi))
    return box_zyx


def clean_mask(labels: np.ndarray, num_nodes: int, min_voxels: int) -> tuple:
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


def render_image(rng: np.random.Generator, config: LymphNodeConfig, geometry: Geometry, nodes: list, tubes: list,
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
            index_zyx = np.stack([np.full_like(grid_x, z + offset), grid_y, grid_x], axis=-1)
            points_world = geometry.voxel_to_world(index_zyx)
            x, y, zw = points_world[..., 0], points_world[..., 1], float(points_world[0, 0, 2])
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


__all__ = ["instance_mask", "clean_mask", "render_image"]
