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

Modules: :mod:`.lymph_node_config` (:class:`LymphNodeConfig`, dataset id and name), :mod:`.lymph_node_scene`
(nodes, tubes and their random placement), :mod:`.lymph_node_rendering` (instance mask and image) and this
module (:class:`LymphNodeCase`, :func:`make_lymph_node_case`, :func:`generate_lymph_node_dataset`). The
public names of the others are re-exported here.

Arrays are ``[z, y, x]``; node centers are world points ``(x, y, z)`` in mm (``LymphNode.center_mm``) or
continuous voxel indices ``(z, y, x)`` (:meth:`LymphNodeCase.node_center_zyx`); sizes in mm.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.image_io import write_image
from lesionnet.datasets.raw_format import make_dataset_json
from lesionnet.datasets.synthetic import common
from lesionnet.datasets.synthetic.lymph_node_config import DATASET_ID, DATASET_NAME, LymphNodeConfig
from lesionnet.datasets.synthetic.lymph_node_rendering import clean_mask, instance_mask, render_image
from lesionnet.datasets.synthetic.lymph_node_scene import LymphNode, Tube, place_nodes, random_tubes
from lesionnet.utils.files import write_json
from lesionnet.utils.parallel import run_jobs

logger = logging.getLogger(__name__)


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

    def node_center_zyx(self, i: int) -> np.ndarray:
        """Continuous voxel index (z, y, x) of node ``i`` (label ``i + 1``)."""
        return self.geometry.world_to_voxel(self.nodes[i].center_mm)


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
    # half field of view (mm) along the world x, y, z axes up to the outer voxel centers (the grid is
    # axis-aligned, so the geometry's ITK-order extent and spacing lie along the world axes)
    half_fov_mm = np.asarray(geometry.extent_mm_xyz) / 2.0 - np.asarray(geometry.spacing_xyz) / 2.0
    fat_hu = float(scene_rng.uniform(*config.fat_hu_range))
    tubes = random_tubes(scene_rng, config, half_fov_mm)
    nodes = place_nodes(scene_rng, config, tubes, half_fov_mm, thickness)
    for _ in range(3):  # drop nodes too small to appear in the mask, then relabel
        labels, kept = clean_mask(instance_mask(nodes, geometry), len(nodes), config.min_node_voxels)
        if len(kept) == len(nodes):
            break
        logger.debug("%s: dropping %d node(s) below %d voxels", case_id, len(nodes) - len(kept), config.min_node_voxels)
        nodes = [nodes[i] for i in kept]
    else:
        labels, kept = clean_mask(instance_mask(nodes, geometry), len(nodes), config.min_node_voxels)
        nodes = [nodes[i] for i in kept]
        labels = instance_mask(nodes, geometry)
        labels, _ = clean_mask(labels, len(nodes), 0)
    dtype = np.uint8 if len(nodes) < 256 else np.uint16
    image = render_image(image_rng, config, geometry, nodes, tubes, fat_hu)
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
