"""Configuration of Dataset502_SynthLymphNodes: :class:`LymphNodeConfig` and the dataset's id and name.

The grid shape ``shape_zyx`` is in array order ``(z, y, x)``; lengths are in mm, intensities in HU.
The generator itself is described in :mod:`lesionnet.datasets.synthetic.lymph_nodes`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

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


__all__ = ["LymphNodeConfig", "DATASET_ID", "DATASET_NAME"]
