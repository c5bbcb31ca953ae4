"""Files of detection evaluation: a folder of per-scan prediction JSONs and a folder of instance masks.

* predictions: ``PRED_DIR/{scan_id}.json`` with ``"boxes_xyz"`` (a list of ``[x1, y1, z1, x2, y2, z2]``,
  voxel indices of the scan, half open) and ``"scores"`` (one number per box); other keys (world
  coordinates, slice ranges, ...) are ignored;
* ground truth: ``GT_DIR/{scan_id}{file_ending}``, an instance mask (0 background, 1..N lesions), any
  of lesionnet's image file endings — a dataset's ``labelsTr`` / ``labelsTs`` as they are.

Every problem is reported at once, each naming its file, before anything is computed.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from lesionnet.datasets.image_io import SUPPORTED_FILE_ENDINGS, file_ending, read_image
from lesionnet.evaluation.boxes3d import as_boxes, instance_boxes


class DetectionInputError(ValueError):
    """Detection evaluation input that cannot be used; the message lists every problem."""


def _problems_error(problems: list[str]) -> DetectionInputError:
    shown = problems[:20]
    more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
    return DetectionInputError("\n  ".join([f"{len(problems)} problem(s):", *shown]) + more)


def mask_files(ground_truth_dir: str | os.PathLike) -> dict[str, Path]:
    """``{scan_id: mask file}`` of a folder of instance masks."""
    folder = Path(ground_truth_dir)
    if not folder.is_dir():
        raise DetectionInputError(f"{folder}: ground-truth folder not found — pass the folder of instance masks "
                                  "(e.g. a dataset's labelsTs)")
    found = {}
    for path in sorted(folder.iterdir()):
        ending = file_ending(path)
        if path.is_file() and ending in SUPPORTED_FILE_ENDINGS:
            found[path.name[: -len(ending)]] = path
    if not found:
        raise DetectionInputError(f"{folder}: no instance masks ({', '.join(SUPPORTED_FILE_ENDINGS)}) in this folder")
    return found


def load_ground_truth(ground_truth_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{scan_id: boxes_xyz (M, 6)}`` of every instance mask in the folder."""
    boxes, problems = {}, []
    for scan_id, path in mask_files(ground_truth_dir).items():
        try:
            mask, _ = read_image(path, dtype=np.float64)
            boxes[scan_id] = instance_boxes(mask)[1]
        except (ValueError, RuntimeError, OSError) as error:
            problems.append(f"{path}: {error} — export the instance mask again")
    if problems:
        raise _problems_error(problems)
    return boxes


def read_prediction_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(boxes_xyz (N, 6), scores (N,))`` of one ``{scan_id}.json``; ValueError naming the problem."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read it as JSON ({error})") from None
    if not isinstance(record, dict) or "boxes_xyz" not in record or "scores" not in record:
        raise ValueError('it must be a JSON object with "boxes_xyz" and "scores"')
    boxes = as_boxes(record["boxes_xyz"])
    try:
        scores = np.asarray(record["scores"], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError('"scores" must be a list of numbers') from None
    if len(scores) != len(boxes):
        raise ValueError(f'{len(boxes)} boxes but {len(scores)} scores: give one score per box')
    if not np.all(np.isfinite(scores)):
        raise ValueError('"scores" must be finite numbers')
    return boxes, scores


def load_predictions(prediction_dir: str | os.PathLike, scan_ids) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{scan_id: (boxes_xyz, scores)}`` of ``PRED_DIR/*.json``; every file must name a scan of
    ``scan_ids`` (the ground truth). A scan without a file has no predictions."""
    folder = Path(prediction_dir)
    if not folder.is_dir():
        raise DetectionInputError(f"{folder}: prediction folder not found — pass the folder that "
                                  "lesionnet_predict -o wrote")
    known = set(scan_ids)
    predictions, problems = {}, []
    for path in sorted(folder.glob("*.json")):
        if path.stem not in known:
            problems.append(f"{path}: no ground-truth mask for scan '{path.stem}' — remove the file, or add "
                            "its mask to the ground-truth folder")
            continue
        try:
            predictions[path.stem] = read_prediction_file(path)
        except ValueError as error:
            problems.append(f"{path}: {error}")
    if problems:
        raise _problems_error(problems)
    if not predictions:
        raise DetectionInputError(f"{folder}: no prediction files ({{scan_id}}.json) in this folder")
    return predictions


__all__ = ["DetectionInputError", "mask_files", "load_ground_truth", "read_prediction_file", "load_predictions"]
