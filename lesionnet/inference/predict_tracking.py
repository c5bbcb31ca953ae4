"""``lesionnet_predict`` for tracking: read an input folder, run a tracker case by case, collect the results.

A *case* is one directed scan pair (source → target) with all its lesions: the registration (or
network run) is done once per case. Output folder layout::

    OUT/cases/{source}__{target}.json   one per case, written atomically as soon as it is done
    OUT/predictions.json                all cases (lesionnet format = a DLS results file)
    OUT/markups/{target}.mrk.json       predicted centers per target scan, for 3D Slicer
    OUT/overlays/{pair_id}.png          with save_overlays: slices through each prediction
    OUT/heatmaps/{pair_id}.nii.gz       with save_heatmaps (methods that make heatmaps): the blended heatmap

The method is any tracking method object (``lesionnet.methods.REGISTRY``): its ``predictor(request)``
gives the per-case tracker. For a trainable method the trained model is found with
:func:`lesionnet.inference.model_discovery.find_trained_model` and its folds are loaded through the
method's ``build`` first. With ``chain=True`` a lesion is carried through a patient's intermediate
scans (:mod:`lesionnet.inference.chains`): each case's pairs go hop by hop, each prediction seeding
the next. With ``robustness=True`` each pair is also tracked from 9 template centers shifted within
0.25 of its radius (:mod:`lesionnet.datasets.robustness_pairs`, the DLT paper's protocol; ids
``<pair_id>#shift<k>``), for ``lesionnet_evaluate_tracking --robustness``.

A killed run leaves only complete case files (never a partial one); ``resume`` (``--continue``)
reuses a complete case file only when its recorded signature matches (method, model folder, plans,
folds, checkpoint file hash, settings, the scans' size and modification time, the pairs; see
:mod:`lesionnet.inference.case_signature`), and predicts the others again, logging each case and why.
Without ``resume`` an output folder that holds an earlier run's predictions is refused unless
``overwrite`` (which deletes them once the checks have passed); the folder is checked before any
work (:mod:`lesionnet.inference.prediction_output`). The input is checked before any work too
(:func:`lesionnet.inference.tracking_input.load_tracking_input`: missing, truncated, NaN or too small
scans and centers outside their scan are refused, all listed in one error). A case that still fails
during the run (e.g. a file changed meanwhile) is reported, its pairs are listed under
``failed_pairs``, the other cases are finished, and the run is marked failed (the command exits
non-zero).
"""
from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from tqdm import tqdm

from lesionnet.datasets.image_io import ImageReadError, read_image
from lesionnet.datasets.prediction_format import predicted_center_zyx, write_predictions
from lesionnet.datasets.raw_format import TrackingPair
from lesionnet.datasets.robustness_pairs import with_shifted_templates
from lesionnet.inference.case_signature import case_signature, run_signature, signature_differences
from lesionnet.inference.chains import predict_chained
from lesionnet.inference.markups import write_markups
from lesionnet.inference.model_discovery import find_trained_model, load_trained_models
from lesionnet.inference.model_request import LearnedModelOptions, PredictorRequest, dataset_name_of
from lesionnet.inference.overlays import save_tracking_overlay
from lesionnet.inference.prediction_output import (
    CASES_FOLDER,
    PREDICTIONS_FILENAME,
    check_prediction_folder,
    remove_earlier_predictions,
)
from lesionnet.inference.tracking_input import TrackingInput, load_tracking_input
from lesionnet.inference.worker_pool import built_in_worker, worker_recipe
from lesionnet.planning.plans_io import DEFAULT_PLANS_NAME, get_configuration, get_data_configuration, load_plans
from lesionnet.registration.affine import RegistrationSettings
from lesionnet.utils.files import load_json, write_json
from lesionnet.utils.parallel import run_jobs

logger = logging.getLogger(__name__)


class CaseTracker(Protocol):
    """What a tracking method's ``predictor(request)`` returns: ``tracker(tracking_input, pairs) ->
    records`` for the pairs of one directed scan pair (:mod:`lesionnet.datasets.prediction_format`
    records, in order), and ``description``: what the predictions file records about it (settings)."""

    description: dict

    def __call__(self, tracking_input: TrackingInput, pairs: list[TrackingPair]) -> list[dict]: ...


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


def case_path(output_folder: Path, source: str, target: str) -> Path:
    return output_folder / CASES_FOLDER / f"{source}__{target}.json"


def _load_finished_case(path: Path, pairs: list[TrackingPair], signature: dict) -> list[dict] | None:
    """The records of a complete case file whose signature matches ``signature``, else None (logging why the
    case is predicted again)."""
    if not path.is_file():
        return None
    try:
        case = load_json(path)
    except ValueError:
        logger.warning("%s is not valid JSON; predicting that case again.", path)
        return None
    reasons = signature_differences(case.get("signature"), signature)
    if case.get("pair_ids") != [p.pair_id for p in pairs]:
        reasons.insert(0, "other pairs")
    if reasons or not isinstance(case.get("results"), list):
        logger.warning("--continue: predicting %s again: %s.", path.name, "; ".join(reasons) or "no results")
        return None
    return case["results"]


def make_case_tracker(method, input_folder: Path, output_folder: Path, settings: RegistrationSettings | None,
                      model_options: LearnedModelOptions | None, save_heatmaps: bool) -> tuple[CaseTracker, dict]:
    """``(tracker, description dict)`` of ``method`` for one prediction run (see the module docstring)."""
    options = model_options or LearnedModelOptions()
    models, description = [], {}
    if method.trainable:
        dataset = options.dataset or dataset_name_of(input_folder.resolve())
        model = find_trained_model(dataset, method.name, options.folds, options.plans_name, options.checkpoint,
                                   options.results_dir)
        logger.info("Using %s (checkpoint_%s)", model.describe(), options.checkpoint)
        models = load_trained_models(method, model, options.checkpoint, options.device)
        description = {"model": str(model.folder), "folds": list(model.folds), "checkpoint": options.checkpoint}
    plan = None
    if getattr(method, "uses_plan", False):       # an untrained method that runs at the planned resolution
        dataset = options.dataset or dataset_name_of(input_folder.resolve())
        plans = load_plans(dataset, options.plans_name or DEFAULT_PLANS_NAME)
        section = get_configuration(plans, getattr(method, "plan_section", None) or method.name)
        plan = {"configuration": section, "data_configuration": get_data_configuration(plans, section)}
        description = {"plans": f"{dataset}/{options.plans_name or DEFAULT_PLANS_NAME}"}
    request = PredictorRequest(models, options.device, options.step_size, options.search_region_zyx,
                               output_folder / "heatmaps" if save_heatmaps else None, settings, plan)
    tracker = method.predictor(request)
    return tracker, {**description, **tracker.description}


def predict_tracking(input_folder: str | os.PathLike, output_folder: str | os.PathLike, method,
                     pairs_path: str | os.PathLike | None = None, settings: RegistrationSettings | None = None,
                     resume: bool = False, save_overlays: bool = False, progress: bool = True,
                     model_options: LearnedModelOptions | None = None, save_heatmaps: bool = False,
                     chain: bool = False, overwrite: bool = False, robustness: bool = False,
                     robustness_seed: int = 0, num_processes: int = 1) -> PredictionRun:
    """Track every pair of ``input_folder`` with ``method`` (a tracking method object, e.g.
    ``REGISTRY["affine"]``) into ``output_folder`` (see the module docstring). ``resume`` reuses the
    matching cases of an earlier run there, ``overwrite`` replaces its predictions; without either an
    output folder with earlier predictions is an error. ``num_processes > 1`` tracks the cases in a pool of
    that many worker processes (each builds the tracker once and holds one case at a time; the cases are
    written here as they finish; a chain runs in one process)."""
    if method.task != "tracking" or not method.predicts:
        raise ValueError(f"method '{method.name}' cannot track lesion pairs (a {method.task} method"
                         f"{'' if method.predicts else ' without a predictor'}).")
    if save_heatmaps and not method.makes_heatmaps:
        raise ValueError(f"--save_heatmaps: '{method.name}' makes no heatmap.")
    if robustness and chain:
        raise ValueError("--robustness tracks each pair from shifted template centers; it cannot be combined with "
                         "--chain (a chain's later hops start from predictions, not from a template center).")
    output_folder = check_prediction_folder(output_folder, resume=resume, overwrite=overwrite)
    tracking_input = load_tracking_input(input_folder, pairs_path)  # input check: refuses bad input, lists all
    if robustness:
        geometries = tracking_input.geometries
        tracking_input = replace(tracking_input, pairs=with_shifted_templates(
            tracking_input.pairs, lambda scan: geometries[scan].spacing_zyx, seed=robustness_seed))
    tracker, description = make_case_tracker(method, Path(input_folder), output_folder, settings, model_options,
                                             save_heatmaps)
    case_method = f"{method.name}+chain" if chain else method.name
    options = model_options or LearnedModelOptions()
    signature_of_run = run_signature(case_method, description, options.step_size, options.search_region_zyx,
                                     save_heatmaps)
    if overwrite:
        remove_earlier_predictions(output_folder)
    hop_cache: dict = {}
    run = PredictionRun(output_folder / PREDICTIONS_FILENAME)
    groups = tracking_input.scan_pairs()
    logger.info("%d pairs on %d scan pairs from %s", len(tracking_input.pairs), len(groups), tracking_input.pairs_path)

    records: dict = {}
    todo: dict = {}                             # (source, target) -> (pairs, case file, signature)
    for (source, target), pairs in groups.items():
        path = case_path(output_folder, source, target)
        signature = case_signature(signature_of_run, tracking_input.scan_paths, pairs, chain)
        finished = _load_finished_case(path, pairs, signature) if resume else None
        if finished is not None:
            records[(source, target)] = finished
            run.cases_reused += 1
        else:
            todo[(source, target)] = (pairs, path, signature)

    def store(outcome) -> None:
        """Write one predicted case (in this process, as soon as it is done)."""
        source, target, case_records, error = outcome
        pairs, path, signature = todo[(source, target)]
        if error is not None:
            logger.error("Skipping case %s -> %s: %s", source, target, error)
            run.failed.update({p.pair_id: error for p in pairs})
            return
        write_json(path, {"method": case_method, "source": source, "target": target,
                          "pair_ids": [p.pair_id for p in pairs], "signature": signature, "results": case_records})
        records[(source, target)] = case_records
        run.cases_predicted += 1
        if save_overlays:
            _save_overlays(tracking_input, target, pairs, case_records, output_folder / "overlays")

    if chain or num_processes <= 1 or len(todo) <= 1:      # chains reuse earlier hops: one process
        for (source, target), (pairs, _, _) in tqdm(todo.items(), desc=f"{method.name} tracking", unit="case",
                                                     disable=not progress):
            try:
                if chain:
                    case_records = predict_chained(tracking_input, pairs, tracker, progress=False, cache=hop_cache)
                else:
                    case_records = tracker(tracking_input, pairs)
                store((source, target, case_records, None))
            except ImageReadError as e:
                store((source, target, None, str(e)))
    else:
        recipe = worker_recipe(make_case_tracker, (method, Path(input_folder), output_folder, settings,
                                                   model_options, save_heatmaps), num_processes)
        jobs = [(f"{source} -> {target}", recipe, tracking_input, source, target, pairs)
                for (source, target), (pairs, _, _) in todo.items()]
        run_jobs(_track_case_in_worker, jobs, num_processes, progress, f"{method.name} tracking",
                 on_result=store, start_method="spawn")
    records = [r for key in groups if key in records for r in records[key]]      # in the cases' order

    write_predictions(run.predictions_path, records, case_method, dataset_name_of(tracking_input.folder.resolve()),
                      pairs_file=str(tracking_input.pairs_path), failed_pairs=run.failed, **description)
    _save_markups(records, output_folder / "markups")
    run.num_pairs = len(records)
    logger.info("Wrote %s (%d pairs; %d cases predicted, %d reused, %d pairs failed)", run.predictions_path,
                run.num_pairs, run.cases_predicted, run.cases_reused, len(run.failed))
    return run


def _track_case_in_worker(job) -> tuple:
    """One case in a pool worker (``predict_tracking(..., num_processes > 1)``): the worker builds the run's
    tracker once (:func:`~lesionnet.inference.worker_pool.built_in_worker`), then tracks the case's pairs.
    Returns ``(source, target, records, None)`` or ``(source, target, None, error)`` for a scan that cannot
    be read."""
    _, recipe, tracking_input, source, target, pairs = job
    try:
        return source, target, built_in_worker(recipe)[0](tracking_input, pairs), None
    except ImageReadError as error:
        return source, target, None, str(error)


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
        save_tracking_overlay(folder / f"{pair.pair_id}.png", image_zyx, geometry, predicted_center_zyx(record),
                              pair.target_center_zyx, pair.target_radius_mm,
                              title=f"{pair.pair_id}: {pair.source} -> {pair.target}")
