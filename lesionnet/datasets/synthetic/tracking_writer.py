"""Writing a synthetic longitudinal tracking dataset in the raw format, shared by Dataset501 and Dataset503.

A generator describes itself with a :class:`TrackingDatasetSpec` (id, name, description, the function that
builds a patient) and calls :func:`write_tracking_dataset`. Files: ``dataset.json`` (with a ``generator``
record: function, seed, config), ``imagesTr/`` and ``imagesTs/`` (``{scan_id}_0000.nii.gz``, int16 HU),
``pairsTr.json`` and ``pairsTs.json`` (centers written ``[x, y, z]``). Patients are split by index: the
last ``test_fraction`` of them form the test split. Patient ``i`` is built from
``common.patient_seed_sequence(seed, i)``, so the data do not depend on the number of worker processes.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lesionnet.datasets.image_io import write_image
from lesionnet.datasets.raw_format import make_dataset_json, pair_from_json, save_pairs
from lesionnet.datasets.synthetic import common
from lesionnet.utils.files import write_json
from lesionnet.utils.parallel import run_jobs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackingDatasetSpec:
    """What differs between the synthetic tracking datasets.

    ``make_patient(config, seed_sequence, patient_id)`` must be a module-level function (it runs in worker
    processes) returning an object with ``render(t) -> (image_zyx, geometry)``, ``scan_id(t)``,
    ``num_timepoints``, ``lesions`` and ``pairs()``.
    """

    dataset_id: int
    name: str
    description: str
    generator_function: str
    make_patient: Callable


def _generate_patient(args) -> dict:
    """Worker: build, render and write one patient; return its pairs (JSON records) and scan ids."""
    spec, config, seed, patient_index, split, staging = args
    patient_id = f"P{patient_index:04d}"
    patient = spec.make_patient(config, common.patient_seed_sequence(seed, patient_index), patient_id)
    images_dir = Path(staging) / f"images{split}"
    for t in range(patient.num_timepoints):
        image, geometry = patient.render(t)
        write_image(images_dir / f"{patient.scan_id(t)}_0000.nii.gz", common.to_int16_hu(image), geometry)
    return {"patient_id": patient_id, "split": split,
            "scan_ids": [patient.scan_id(t) for t in range(patient.num_timepoints)],
            "pairs": [p.to_json() for p in patient.pairs()],
            "num_lesions": len(patient.lesions)}


def write_tracking_dataset(spec: TrackingDatasetSpec, output_folder: Path, config, seed: int, overwrite: bool,
                           num_processes: int, progress: bool) -> dict:
    """Write the dataset (staged, replaced only once complete) and return ``{"folder", "num_scans_tr",
    "num_scans_ts", "num_pairs_tr", "num_pairs_ts", "patients_tr", "patients_ts"}``.

    ``config`` needs ``num_patients``, ``test_fraction`` and ``to_json()``.
    """
    num_test = common.num_test_cases(config.num_patients, config.test_fraction)
    if num_test == 0:
        logger.warning("only %d patient(s): no test split is written.", config.num_patients)
    splits = ["Tr"] * (config.num_patients - num_test) + ["Ts"] * num_test
    logger.info("Generating %s with %d patients (%d test), seed %d into %s", spec.name, config.num_patients,
                num_test, seed, output_folder)
    with common.staged_output_folder(output_folder, overwrite) as staging:
        jobs = [(spec, config, seed, i, splits[i], str(staging)) for i in range(config.num_patients)]
        results = run_jobs(_generate_patient, jobs, num_processes, progress, f"Dataset{spec.dataset_id} patients")
        results.sort(key=lambda r: r["patient_id"])
        summary = _write_metadata(spec, staging, results, config, seed)
    summary["folder"] = str(output_folder)
    logger.info("Wrote %s: %d/%d scans and %d/%d pairs (train/test)", output_folder, summary["num_scans_tr"],
                summary["num_scans_ts"], summary["num_pairs_tr"], summary["num_pairs_ts"])
    return summary


def _write_metadata(spec: TrackingDatasetSpec, folder: Path, results: list, config, seed: int) -> dict:
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
        spec.name, "tracking", summary["num_scans_tr"],
        description=spec.description,
        licence=common.LICENCE,
        numTest=summary["num_scans_ts"],
        numPairsTr=summary["num_pairs_tr"],
        numPairsTs=summary["num_pairs_ts"],
        patientsTr=summary["patients_tr"],
        patientsTs=summary["patients_ts"],
        generator={"function": spec.generator_function, "seed": int(seed), "config": config.to_json()},
    )
    write_json(folder / "dataset.json", meta)
    return summary


__all__ = ["TrackingDatasetSpec", "write_tracking_dataset"]
