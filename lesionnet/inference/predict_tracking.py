"""``lesionnet_predict`` for tracking: read an input folder, run a tracker case by case, collect the results.

A *case* is one directed scan pair (source → target) with all its lesions: the registration (or
network run) is done once per case. Output folder layout::

    OUT/cases/{source}__{target}.json   one per case, written atomically as soon as it is done
    OUT/predictions.json                all cases (lesionnet format = a DLS results file)
    OUT/markups/{target}.mrk.json       predicted centers per target scan, for 3D Slicer
    OUT/overlays/{pair_id}.png          with save_overlays: slices through each prediction
    OUT/heatmaps/{pair_id}.nii.gz       with save_heatmaps (learned trackers): the blended heatmap

Methods: the registration baselines (``affine``, ``identity``) and the learned trackers (``tlt``), whose
trained model is found with :func:`lesionnet.inference.model_discovery.find_trained_model`. With
``chain=True`` a lesion is carried through a patient's intermediate scans
(:mod:`lesionnet.inference.chains`): each case's pairs go hop by hop, each prediction seeding the next.

A killed run leaves only complete case files (never a partial one); ``resume`` (``--continue``)
reuses every complete case file whose pairs match and predicts only the rest. A scan that exists
but cannot be read is reported, its cases are skipped, the other cases are finished, and the run
is marked failed (the command exits non-zero).
"""
from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from lesionnet.datasets.image_io import ImageReadError, read_image
from lesionnet.datasets.raw_format import DATASET_FOLDER_PATTERN, TrackingPair
from lesionnet.evaluation.prediction_io import write_predictions
from lesionnet.inference.affine_tracker import TRACKING_BASELINES, track_scan_pair
from lesionnet.inference.chains import predict_chained
from lesionnet.inference.markups import write_markups
from lesionnet.inference.overlays import save_tracking_overlay
from lesionnet.inference.tracking_input import TrackingInput, load_tracking_input
from lesionnet.registration.affine import RegistrationSettings
from lesionnet.utils.files import load_json, write_json

logger = logging.getLogger(__name__)

PREDICTIONS_FILENAME = "predictions.json"
CASES_FOLDER = "cases"
LEARNED_TRACKERS = ("tlt",)
TRACKING_METHODS = TRACKING_BASELINES + LEARNED_TRACKERS


@dataclass
class PredictionRun:
    """What a prediction run did."""

    predictions_path: Path
    num_pairs: int = 0
    cases_predicted: int = 0
    cases_reused: int = 0
    failed: dict = field(default_factory=dict)  # pair_id -> reason

    @property
    def ok(self) -> bool:
        return not self.failed


def dataset_name_of(folder: Path) -> str | None:
    """The raw dataset an input folder belongs to (``Dataset501_...``), when it lies inside one."""
    for candidate in (folder, *folder.parents):
        if DATASET_FOLDER_PATTERN.match(candidate.name):
            return candidate.name
    return None


def case_path(output_folder: Path, source: str, target: str) -> Path:
    return output_folder / CASES_FOLDER / f"{source}__{target}.json"


def _load_finished_case(path: Path, pairs: list[TrackingPair], method: str) -> list[dict] | None:
    """The records of a complete case file for exactly these pairs and method, else None."""
    if not path.is_file():
        return None
    try:
        case = load_json(path)
    except ValueError:
        logger.warning("%s is not valid JSON; predicting that case again.", path)
        return None
    if case.get("method") != method or case.get("pair_ids") != [p.pair_id for p in pairs]:
        return None
    return case["results"]


@dataclass
class LearnedModelOptions:
    """Which trained model ``predict_tracking`` uses for a learned tracker, and how it runs it."""

    dataset: str | None = None           # dataset name (default: the one the input folder belongs to)
    folds: tuple | None = None           # default: every fold with the checkpoint
    checkpoint: str = "final"            # final | best | latest
    plans_name: str | None = None
    step_size: float = 0.5
    device: str = "cpu"
    search_region_zyx: tuple | None = None


def make_case_tracker(method: str, input_folder: Path, output_folder: Path, settings: RegistrationSettings | None,
                      model_options: LearnedModelOptions | None, save_heatmaps: bool):
    """``(tracker(tracking_input, pairs) -> records, description dict)`` for ``method``."""
    if method in TRACKING_BASELINES:
        settings_used = (settings or RegistrationSettings()).to_dict() if method == "affine" else {}
        return (lambda ti, pairs: track_scan_pair(ti, pairs, method, settings)), {"registration": settings_used}
    from lesionnet.inference.model_discovery import find_trained_model
    from lesionnet.inference.tlt_predictor import TLTCaseTracker
    options = model_options or LearnedModelOptions()
    dataset = options.dataset or dataset_name_of(input_folder.resolve())
    model = find_trained_model(dataset, method, options.folds, options.plans_name, options.checkpoint)
    logger.info("Using %s (checkpoint_%s)", model.describe(), options.checkpoint)
    tracker = TLTCaseTracker(model, options.checkpoint, options.device, options.step_size, options.search_region_zyx,
                             output_folder / "heatmaps" if save_heatmaps else None)
    return tracker, {"model": str(model.folder), "folds": list(model.folds), "checkpoint": options.checkpoint,
                     "registration": tracker.registration_settings.to_dict()}


def predict_tracking(input_folder: str | os.PathLike, output_folder: str | os.PathLike, method: str = "affine",
                     pairs_path: str | os.PathLike | None = None, settings: RegistrationSettings | None = None,
                     resume: bool = False, save_overlays: bool = False, progress: bool = True,
                     model_options: LearnedModelOptions | None = None, save_heatmaps: bool = False,
                     chain: bool = False) -> PredictionRun:
    """Track every pair of ``input_folder`` with ``method`` into ``output_folder`` (see module docstring)."""
    if method not in TRACKING_METHODS:
        raise ValueError(f"method '{method}' is not available for prediction; choose one of {TRACKING_METHODS}.")
    if save_heatmaps and method not in LEARNED_TRACKERS:
        raise ValueError(f"--save_heatmaps needs a learned tracker ({', '.join(LEARNED_TRACKERS)}); "
                         f"'{method}' makes no heatmap.")
    output_folder = Path(output_folder)
    tracking_input = load_tracking_input(input_folder, pairs_path, skip_unreadable=True)
    tracker, description = make_case_tracker(method, Path(input_folder), output_folder, settings, model_options,
                                             save_heatmaps)
    case_method = f"{method}+chain" if chain else method
    hop_cache: dict = {}
    run = PredictionRun(output_folder / PREDICTIONS_FILENAME, failed=dict(tracking_input.skipped))
    for pair_id, reason in tracking_input.skipped.items():
        logger.error("Skipping pair '%s': %s", pair_id, reason)
    groups = tracking_input.scan_pairs()
    logger.info("%d pairs on %d scan pairs from %s", len(tracking_input.pairs), len(groups), tracking_input.pairs_path)

    records: list[dict] = []
    for (source, target), pairs in tqdm(groups.items(), desc=f"{method} tracking", unit="case", disable=not progress):
        path = case_path(output_folder, source, target)
        finished = _load_finished_case(path, pairs, case_method) if resume else None
        if finished is not None:
            records.extend(finished)
            run.cases_reused += 1
            continue
        try:
            if chain:
                case_records = predict_chained(tracking_input, pairs, tracker, progress=False, cache=hop_cache)
            else:
                case_records = tracker(tracking_input, pairs)
        except ImageReadError as e:
            logger.error("Skipping case %s -> %s: %s", source, target, e)
            run.failed.update({p.pair_id: str(e) for p in pairs})
            continue
        write_json(path, {"method": case_method, "source": source, "target": target,
                          "pair_ids": [p.pair_id for p in pairs], "results": case_records})
        records.extend(case_records)
        run.cases_predicted += 1
        if save_overlays:
            _save_overlays(tracking_input, target, pairs, case_records, output_folder / "overlays")

    write_predictions(run.predictions_path, records, case_method, dataset_name_of(tracking_input.folder.resolve()),
                      pairs_file=str(tracking_input.pairs_path), failed_pairs=run.failed, **description)
    _save_markups(records, output_folder / "markups")
    run.num_pairs = len(records)
    logger.info("Wrote %s (%d pairs; %d cases predicted, %d reused, %d pairs failed)", run.predictions_path,
                run.num_pairs, run.cases_predicted, run.cases_reused, len(run.failed))
    return run


def _save_markups(records: list[dict], folder: Path) -> None:
    by_target: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        if record.get("predict target center world") is not None:
            by_target[record["target"]].append(record)
    for target, target_records in by_target.items():
        write_markups(folder / f"{target}.mrk.json", [r["predict target center world"] for r in target_records],
                      [r["pair_id"] for r in target_records])


def _save_overlays(tracking_input: TrackingInput, target: str, pairs: list[TrackingPair], records: list[dict],
                   folder: Path) -> None:
    image_zyx, geometry = read_image(tracking_input.scan_paths[target])
    for pair, record in zip(pairs, records):
        save_tracking_overlay(folder / f"{pair.pair_id}.png", image_zyx, geometry, record["predict target center"],
                              pair.target_center_xyz, pair.target_radius_mm,
                              title=f"{pair.pair_id}: {pair.source} -> {pair.target}")
