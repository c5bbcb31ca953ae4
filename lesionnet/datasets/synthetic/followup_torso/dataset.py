"""Writing Dataset503_SynthTorsoFollowUp in the raw format: :func:`generate_followup_dataset` (the writing
itself is :mod:`lesionnet.datasets.synthetic.tracking_writer`, shared with Dataset501).

Files (as Dataset501): ``dataset.json`` (with a ``generator`` record: function, seed, config),
``imagesTr/`` and ``imagesTs/`` (``{scan_id}_0000.nii.gz``, int16 HU), ``pairsTr.json`` and ``pairsTs.json``
(centers written ``[x, y, z]``). Patients are split by index: the last ``test_fraction`` go to the test split.
"""
from __future__ import annotations

from pathlib import Path

from lesionnet.datasets.synthetic.followup_torso.builder import make_followup_patient
from lesionnet.datasets.synthetic.followup_torso.config import DATASET_ID, DATASET_NAME, FollowUpTorsoConfig
from lesionnet.datasets.synthetic.tracking_writer import TrackingDatasetSpec, write_tracking_dataset

DESCRIPTION = ("Synthetic longitudinal CT-like torso scans for checking that registration and trackers generalise "
               "(an anatomy model and acquisition independent of Dataset501): elliptical body with fat and skin, "
               "discrete vertebrae, ribs, lungs above a diaphragm dome, heart, liver, spleen, kidneys, aorta, vena "
               "cava, bowel with gas. Every scan has its own spacing, field of view and z-coverage (follow-ups "
               "overlap partly); between scans the patient pose changes and organs near the diaphragm move with "
               "breathing. Lesions in liver, lungs, kidneys, spleen and para-aortic lymph nodes grow or shrink; "
               "pairs exist only between scans that both contain the lesion. Centers are exact (from the "
               "generator). Intensities in HU, int16.")


SPEC = TrackingDatasetSpec(DATASET_ID, DATASET_NAME, DESCRIPTION,
                           "lesionnet.datasets.synthetic.followup_torso.generate_followup_dataset",
                           make_followup_patient)


def default_output_folder() -> Path:
    """``$lesionnet_raw/Dataset503_SynthTorsoFollowUp``."""
    from lesionnet import paths
    from lesionnet.datasets.dataset_id import dataset_folder_name
    return paths.raw_dir() / dataset_folder_name(DATASET_ID, DATASET_NAME)


def generate_followup_dataset(output_folder=None, config: FollowUpTorsoConfig | None = None, seed: int = 0,
                              overwrite: bool = False, num_processes: int = 1, progress: bool = True) -> dict:
    """Write Dataset503 in the raw format and return a summary.

    Args:
        output_folder: dataset folder to create (default ``$lesionnet_raw/Dataset503_SynthTorsoFollowUp``).
        config: generator parameters (default :class:`FollowUpTorsoConfig`).
        seed: run seed; patient ``i`` uses ``common.patient_seed_sequence(seed, i)``, so the data do not depend
            on ``num_processes`` or on the number of patients.
        overwrite: replace an existing folder (only after the new one is complete); otherwise an existing
            folder raises :class:`common.DatasetExistsError`.
        num_processes: worker processes (1: in this process).
        progress: show a tqdm bar over patients.

    Returns ``{"folder", "num_scans_tr", "num_scans_ts", "num_pairs_tr", "num_pairs_ts", "patients_tr",
    "patients_ts"}``.
    """
    config = config or FollowUpTorsoConfig()
    output_folder = Path(output_folder) if output_folder is not None else default_output_folder()
    return write_tracking_dataset(SPEC, output_folder, config, seed, overwrite, num_processes, progress)


__all__ = ["generate_followup_dataset", "default_output_folder"]
