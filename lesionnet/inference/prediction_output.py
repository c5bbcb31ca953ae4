"""The output folder of ``lesionnet_predict``: checked before any work, never mixed with an earlier run.

:func:`check_prediction_folder` runs before the input is read or a model is loaded: the folder must be
creatable and writable (``-o`` naming an existing file is an error that names it), and a folder that
already holds an earlier run's predictions (case files or ``predictions.json``) is refused unless the
caller continues that run (``--continue``: cases are reused only when their signature matches, see
:mod:`lesionnet.inference.case_signature`) or replaces it (``--overwrite``: :func:`remove_earlier_predictions`
deletes the earlier outputs once the new run has passed its checks and loaded its model).
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from lesionnet.utils.output_paths import check_output_folder

logger = logging.getLogger(__name__)

PREDICTIONS_FILENAME = "predictions.json"
CASES_FOLDER = "cases"
#: what a prediction run writes into its output folder (removed by ``--overwrite``)
RUN_OUTPUTS = (CASES_FOLDER, PREDICTIONS_FILENAME, "markups", "overlays", "heatmaps")


class EarlierPredictionsError(ValueError):
    """The output folder holds an earlier run's predictions and neither ``--continue`` nor ``--overwrite``
    was given."""


def earlier_predictions(output_folder: Path) -> list[str]:
    """What of an earlier run ``output_folder`` holds: ``["N case files in cases/", "predictions.json"]``."""
    found = []
    cases = sorted((output_folder / CASES_FOLDER).glob("*.json")) if (output_folder / CASES_FOLDER).is_dir() else []
    if cases:
        found.append(f"{len(cases)} case file(s) in {CASES_FOLDER}/")
    if (output_folder / PREDICTIONS_FILENAME).exists():
        found.append(PREDICTIONS_FILENAME)
    return found


def check_prediction_folder(output_folder: str | os.PathLike, resume: bool = False, overwrite: bool = False) -> Path:
    """Check ``output_folder`` before a prediction run (see the module docstring); nothing is written.

    Raises:
        lesionnet.utils.output_paths.OutputPathError: an existing file, or not creatable / writable.
        EarlierPredictionsError: earlier predictions there, without ``resume`` or ``overwrite``.
        ValueError: ``resume`` and ``overwrite`` together.
    """
    output_folder = check_output_folder(output_folder, "output folder (-o)")
    if resume and overwrite:
        raise ValueError(f"{output_folder}: --continue (reuse the earlier cases) and --overwrite (delete them) "
                         "exclude each other; choose one.")
    found = earlier_predictions(output_folder)
    if found and not resume and not overwrite:
        raise EarlierPredictionsError(
            f"{output_folder}: holds the predictions of an earlier run ({', '.join(found)}). Nothing was changed. "
            "Add --continue to reuse the cases that still match (same method, model, checkpoint, settings and "
            "scans) and predict the rest, add --overwrite to delete them and predict everything again, or choose "
            "another output folder.")
    return output_folder


def remove_earlier_predictions(output_folder: Path) -> None:
    """Delete what an earlier prediction run wrote into ``output_folder`` (``--overwrite``); other files stay."""
    removed = []
    for name in RUN_OUTPUTS:
        path = output_folder / name
        if path.is_dir():
            shutil.rmtree(path)
            removed.append(name + "/")
        elif path.exists():
            path.unlink()
            removed.append(name)
    if removed:
        logger.info("--overwrite: removed the earlier run's %s from %s", ", ".join(removed), output_folder)


__all__ = ["PREDICTIONS_FILENAME", "CASES_FOLDER", "RUN_OUTPUTS", "EarlierPredictionsError", "earlier_predictions",
           "check_prediction_folder", "remove_earlier_predictions"]
