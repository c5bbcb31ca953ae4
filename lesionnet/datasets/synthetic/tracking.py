"""Dataset501_SynthLesionTracking: longitudinal CT-like scans with lesions whose positions are known exactly.

How a patient is made (see ``documentation/synthetic_data.md``):

1. a :class:`~lesionnet.datasets.synthetic.phantom.TorsoPhantom` in canonical space (mm);
2. 2–4 time points; each draws its own voxel spacing and a mapping ``phi_t`` world → canonical
   (identity for the baseline ``T0``; a random affine and a smooth random displacement for follow-ups);
3. 3–6 lesions, ellipsoids defined in canonical space, each with a radius per time point (growth or
   shrinkage), a small drift per time point, and an appearance (contrast, rim, necrosis, texture)
   that changes between time points; some lesions get a similar-looking "twin" next to them;
4. scan ``t`` is rendered by sampling the phantom and the lesions at ``phi_t(world(voxel))``
   (averaging sub-slices across the slice thickness), then blurred in-plane, given a smooth bias field
   and correlated Gaussian noise;
5. a lesion's center in scan ``t`` is ``phi_t^{-1}(c_t)`` (Newton iteration, residual < 1e-6 mm)
   converted to a continuous voxel index ``(z, y, x)`` by ``Geometry.world_to_voxel``; its radius in scan
   ``t`` is its canonical radius divided by the scale of ``phi_t``'s affine part (world mm).

Modules: :mod:`.tracking_config` (:class:`TrackingConfig`, dataset id and name), :mod:`.tracking_patient`
(lesions, time points, :class:`SyntheticPatient`: truth and rendering), :mod:`.tracking_builder`
(:func:`make_patient`: the random construction) and this module (:func:`make_tracking_pair` in memory,
:func:`generate_tracking_dataset` writing the raw dataset through :mod:`.tracking_writer`, which Dataset503
shares). The names of the first three are re-exported here.

Coordinates: arrays are ``[z, y, x]``; in memory centers are continuous voxel indices ``(z, y, x)``
(``*_zyx``), in ``pairsTr.json`` / ``pairsTs.json`` they are written ``[x, y, z]`` as the raw format says;
world and canonical points are physical ``(x, y, z)`` vectors; mm everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lesionnet.datasets.geometry import Geometry
from lesionnet.datasets.raw_format import TrackingPair
from lesionnet.datasets.synthetic.tracking_builder import make_patient
from lesionnet.datasets.synthetic.tracking_config import (
    DATASET_ID,
    DATASET_NAME,
    ORGANS,
    REFERENCE_SHAPE_ZYX,
    TrackingConfig,
)
from lesionnet.datasets.synthetic.tracking_patient import (
    LesionAppearance,
    SyntheticLesion,
    SyntheticPatient,
    TimePoint,
)
from lesionnet.datasets.synthetic.tracking_writer import TrackingDatasetSpec, write_tracking_dataset


# ====================================================================================== in-memory pair
@dataclass(frozen=True)
class SyntheticPair:
    """A single source/target pair rendered in memory (for tests and quick experiments).

    Attributes:
        source_image_zyx, target_image_zyx: float32 HU arrays ``[z, y, x]``.
        source_geometry, target_geometry: their grids.
        pair: the :class:`TrackingPair` (centers are continuous voxel indices (z, y, x), radii in mm).
        patient: the generating :class:`SyntheticPatient` (exact mappings, other lesions).
        lesion_index, source_timepoint, target_timepoint: which lesion and scans.
    """

    source_image_zyx: np.ndarray
    source_geometry: Geometry
    target_image_zyx: np.ndarray
    target_geometry: Geometry
    pair: TrackingPair
    patient: SyntheticPatient
    lesion_index: int
    source_timepoint: int
    target_timepoint: int


def make_tracking_pair(config: TrackingConfig | None = None, seed=0, lesion_index: int = 0,
                       source_timepoint: int = 0, target_timepoint: int = 1,
                       patient_id: str = "P0000") -> SyntheticPair:
    """Render one directed pair of one synthetic patient without writing files.

    The patient is built with at least ``max(source, target) + 1`` time points. For the same ``seed``,
    configs that differ only in motion magnitudes (e.g. ``nonrigid_displacement_mm``) give the same
    anatomy, lesions, spacings and noise — only the motion changes.
    """
    num_timepoints = max(2, source_timepoint + 1, target_timepoint + 1)
    patient = make_patient(config, seed, patient_id, num_timepoints=num_timepoints)
    lesion_index = lesion_index % len(patient.lesions)
    source_image, source_geometry = patient.render(source_timepoint)
    target_image, target_geometry = patient.render(target_timepoint)
    pair_id = f"{patient_id}_L{lesion_index:02d}_T{source_timepoint}-T{target_timepoint}"
    pair = next(p for p in patient.pairs() if p.pair_id == pair_id)
    return SyntheticPair(source_image, source_geometry, target_image, target_geometry, pair, patient,
                         lesion_index, source_timepoint, target_timepoint)


# ====================================================================================== dataset
SPEC = TrackingDatasetSpec(
    DATASET_ID, DATASET_NAME,
    "Synthetic longitudinal CT-like torso phantoms (lower thorax / upper abdomen) with lesions in liver, lungs, "
    "spleen and soft tissue; follow-ups differ by a random affine motion, a smooth non-rigid deformation, lesion "
    "growth and appearance change, voxel spacing and slice thickness. Lesion centers are exact (derived from the "
    "generator). Intensities in HU, int16.",
    "lesionnet.datasets.synthetic.tracking.generate_tracking_dataset", make_patient)


def default_output_folder() -> Path:
    """``$lesionnet_raw/Dataset501_SynthLesionTracking``."""
    from lesionnet import paths
    from lesionnet.datasets.dataset_id import dataset_folder_name
    return paths.raw_dir() / dataset_folder_name(DATASET_ID, DATASET_NAME)


def generate_tracking_dataset(output_folder=None, config: TrackingConfig | None = None, seed: int = 0,
                              overwrite: bool = False, num_processes: int = 1, progress: bool = True) -> dict:
    """Write Dataset501 in the raw format and return a summary.

    Args:
        output_folder: dataset folder to create (default ``$lesionnet_raw/Dataset501_SynthLesionTracking``).
        config: generator parameters (default :class:`TrackingConfig`).
        seed: run seed; patient ``i`` uses ``SeedSequence(seed).spawn(n)[i]``, so the data do not depend
            on ``num_processes``.
        overwrite: replace an existing folder (only after the new one is complete); otherwise an
            existing folder raises :class:`common.DatasetExistsError`.
        num_processes: worker processes (1: in this process).
        progress: show a tqdm bar over patients.

    Writes ``dataset.json`` (with the config and seed under ``generator``), ``imagesTr/``, ``imagesTs/``,
    ``pairsTr.json`` and ``pairsTs.json``. Returns ``{"folder", "num_scans_tr", "num_scans_ts",
    "num_pairs_tr", "num_pairs_ts", "patients_tr", "patients_ts"}``.
    """
    config = config or TrackingConfig()
    output_folder = Path(output_folder) if output_folder is not None else default_output_folder()
    return write_tracking_dataset(SPEC, output_folder, config, seed, overwrite, num_processes, progress)


__all__ = ["TrackingConfig", "SyntheticPatient", "SyntheticLesion", "LesionAppearance", "TimePoint",
           "SyntheticPair", "make_patient", "make_tracking_pair", "generate_tracking_dataset",
           "default_output_folder", "DATASET_ID", "DATASET_NAME", "REFERENCE_SHAPE_ZYX", "ORGANS"]
