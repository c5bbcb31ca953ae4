"""``lesionnet_predict`` for tracking: read an input folder, run a tracker, write one predictions file."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from lesionnet.datasets.raw_format import DATASET_FOLDER_PATTERN
from lesionnet.evaluation.prediction_io import write_predictions
from lesionnet.inference.affine_tracker import TRACKING_BASELINES, track_with_baseline
from lesionnet.inference.tracking_input import load_tracking_input
from lesionnet.registration.affine import RegistrationSettings

logger = logging.getLogger(__name__)

PREDICTIONS_FILENAME = "predictions.json"


def dataset_name_of(folder: Path) -> str | None:
    """The raw dataset an input folder belongs to (``Dataset501_...``), when it lies inside one."""
    for candidate in (folder, *folder.parents):
        if DATASET_FOLDER_PATTERN.match(candidate.name):
            return candidate.name
    return None


def predict_tracking(input_folder: str | os.PathLike, output_folder: str | os.PathLike, method: str = "affine",
                     pairs_path: str | os.PathLike | None = None, settings: RegistrationSettings | None = None,
                     progress: bool = True) -> Path:
    """Track every pair of ``input_folder`` with ``method``; writes ``output_folder/predictions.json``.

    Returns the path of the predictions file (the lesionnet format, also a DLS results file).
    """
    if method not in TRACKING_BASELINES:
        raise ValueError(f"method '{method}' is not available for prediction; choose one of {TRACKING_BASELINES}.")
    tracking_input = load_tracking_input(input_folder, pairs_path)
    logger.info("%d pairs on %d scan pairs from %s", len(tracking_input.pairs), len(tracking_input.scan_pairs()),
                tracking_input.pairs_path)
    records = track_with_baseline(tracking_input, method, settings, progress=progress)
    settings_used = (settings or RegistrationSettings()).to_dict() if method == "affine" else {}
    out = write_predictions(Path(output_folder) / PREDICTIONS_FILENAME, records, method,
                            dataset_name_of(tracking_input.folder.resolve()),
                            pairs_file=str(tracking_input.pairs_path), registration=settings_used)
    logger.info("Wrote %s", out)
    return out
