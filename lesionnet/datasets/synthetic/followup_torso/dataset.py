"""Writing Dataset503_SynthTorsoFollowUp in the raw format: :func:`generate_followup_dataset`.

Files (as Dataset501): ``dataset.json`` (with a ``generator`` record: function, seed, config),
``imagesTr/`` and ``imagesTs/`` (``{scan_id}_0000.nii.gz``, int16 HU), ``pairsTr.json`` and ``pairsTs.json``
(centers written ``[x, y, z]``). Patients are split by index: the last ``test_fraction`` go to the test split.
"""
from __future__ import annotations

import logging
from pathlib import Path

from lesionnet.datasets.image_io import write_image
from lesionnet.datasets.raw_format import make_dataset_json, pair_from_json, save_pairs
from lesionnet.datasets.synthetic import common
from lesionnet.datasets.synthetic.followup_torso.builder import make_followup_patient
from lesionnet.datasets.synthetic.followup_torso.config import DATASET_ID, DATASET_NAME, FollowUpTorsoConfig
from lesionnet.utils.files import write_json
from lesionnet.utils.parallel import run_jobs

logger = logging.getLogger(__name__)

DESCRIPTION = ("Synthetic longitudinal CT-like torso scans for checking that registration and trackers generalise "
               "(an anatomy model and acquisition independent of Dataset501): elliptical body with fat and skin, "
               "discrete vertebrae, ribs, lungs above a diaphragm dome, heart, liver, spleen, kidneys, aorta, vena "
               "cava, bowel with gas. Every scan has its own spacing, field of view and z-coverage (follow-ups "
               "overlap partly); between scans the patient pose changes and organs near the diaphragm move with "
               "breathing. Lesions in liver, lungs, kidneys, spleen and para-aortic lymph nodes grow or shrink; "
               "pairs exist only between scans that both contain the lesion. Centers are exact (from the "
               "generator). Intensities in HU, int16.")


def default_output_folder() -> Path:
    """``$lesionnet_raw/Dataset503_SynthTorsoFollowUp``."""
    from lesionnet import paths
    from lesionnet.datasets.dataset_id import dataset_folder_name
    return paths.raw_dir() / dataset_folder_name(DATASET_ID, DATASET_NAME)


def _generate_patient(args) -> dict:
    """Worker: build, render and write one patient; return its pairs (JSON records) and scan ids."""
    config, seed, patient_index, split, staging = args
    patient_id = f"P{patient_index:04d}"
    patient = make_followup_patient(config, common.patient_seed_sequence(seed, patient_index), patient_id)
    images_dir = Path(staging) / f"images{split}"
    for t in range(patient.num_timepoints):
        image, geometry = patient.render(t)
        write_image(images_dir / f"{patient.scan_id(t)}_0000.nii.gz", common.to_int16_hu(image), geometry)
    return {"patient_id": patient_id, "split": split,
            "scan_ids": [patient.scan_id(t) for t in range(patient.num_timepoints)],
            "pairs": [p.to_json() for p in patient.pairs()],
            "num_lesions": len(patient.lesions)}


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
    num_test = common.num_test_cases(config.num_patients, config.test_fraction)
    if num_test == 0:
        logger.warning("only %d patient(s): no test split is written.", config.num_patients)
    splits = ["Tr"] * (config.num_patients - num_test) + ["Ts"] * num_test
    logger.info("Generating %s with %d patients (%d test), seed %d into %s", DATASET_NAME, config.num_patients,
                num_test, seed, output_folder)
    with common.staged_output_folder(output_folder, overwrite) as staging:
        jobs = [(config, seed, i, splits[i], str(staging)) for i in range(config.num_patients)]
        results = run_jobs(_generate_patient, jobs, num_processes, progress, f"Dataset{DATASET_ID} patients")
        results.sort(key=lambda r: r["patient_id"])
        summary = _write_metadata(staging, results, config, seed)
    summary["folder"] = str(output_folder)
    logger.info("Wrote %s: %d/%d scans and %d/%d pairs (train/test)", output_folder, summary["num_scans_tr"],
                summary["num_scans_ts"], summary["num_pairs_tr"], summary["num_pairs_ts"])
    return summary


def _write_metadata(folder: Path, results: list, config: FollowUpTorsoConfig, seed: int) -> dict:
    summary = {}
    for split in ("Tr", "Ts"):
        chosen = [r for r in results if r["split"] == split]
        pairs = [p for r in chosen for p in r["pairs"]]
        save_pairs(folder / f"pairs{split}.json", [pair_from_json(p, "generated pair") for p in pairs])
        (folder / f"images{split}").mkdir(exist_ok=True)
        summary[f"num_scans_{split.lower()}"] = sum(len(r["scan_ids"]) for r in chosen)
        summary[f"num_pairs_{split.lower()}"] = len(pairs)
        summary[f"patients_{split.lower()}"] = [r["patient_id"] for r in chosen]
    meta = make_dataset_json(
        DATASET_NAME, "tracking", summary["num_scans_tr"],
        description=DESCRIPTION,
        licence=common.LICENCE,
        numTest=summary["num_scans_ts"],
        numPairsTr=summary["num_pairs_tr"],
        numPairsTs=summary["num_pairs_ts"],
        patientsTr=summary["patients_tr"],
        patientsTs=summary["patients_ts"],
        generator={"function": "lesionnet.datasets.synthetic.followup_torso.generate_followup_dataset",
                   "seed": int(seed), "config": config.to_json()},
    )
    write_json(folder / "dataset.json", meta)
    return summary


__all__ = ["generate_followup_dataset", "default_output_folder"]
