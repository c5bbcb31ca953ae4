"""The demo's datasets: the built-in synthetic dataset of an id, generated when missing, then checked."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

from lesionnet.datasets.dataset_id import DatasetNotFoundError, find_dataset_folder
from lesionnet.datasets.verify import verify_dataset_report

logger = logging.getLogger("lesionnet_demo")


def prepare_demo_dataset(dataset_id: int, generate: Callable, what: str, seed: int, progress: bool) -> Path:
    """The raw folder of dataset ``dataset_id``: the existing one, or ``generate(None, seed=..., progress=...,
    num_processes=...)``'s; raises RuntimeError listing the problems when it does not pass the dataset check."""
    try:
        dataset_folder = find_dataset_folder(dataset_id)
        logger.info("Using the existing %s", dataset_folder)
    except DatasetNotFoundError:
        logger.info("Generating the synthetic %s dataset (seed %d)", what, seed)
        generate(None, seed=seed, progress=progress, num_processes=os.cpu_count() or 1)
        dataset_folder = find_dataset_folder(dataset_id)
    logger.info("Verifying %s", dataset_folder.name)
    report = verify_dataset_report(dataset_folder, progress=progress)
    if report.errors:
        for problem in report.errors:
            logger.error("%s", problem)
        raise RuntimeError(f"{dataset_folder} has {len(report.errors)} problem(s); fix or regenerate it "
                           f"(lesionnet_make_synthetic -d {dataset_id} --overwrite).")
    logger.info("%s", report.summary())
    return dataset_folder


__all__ = ["prepare_demo_dataset"]
