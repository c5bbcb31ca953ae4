"""``lesionnet_predict`` for detection methods: 3D boxes for every scan of an input folder.

* input: ``IN/{scan_id}_0000{ending}``, every scan checked (readable, complete, finite, large enough)
  before any work, all problems listed in one error;
* model: the trained folds of the method (:func:`~lesionnet.inference.model_discovery.find_trained_model`,
  the dataset that ``IN`` belongs to unless ``-d`` says otherwise), given to ``method.predictor(request)``,
  whose ``predict_scan(path)`` returns the scan's record;
* output, per scan: ``OUT/{scan_id}.json`` (``boxes_xyz`` ``[x1, y1, z1, x2, y2, z2]`` voxel indices of the
  input scan, half open; ``scores``; ``slice_ranges``; ``boxes_world``; the ``signature`` of the run), the
  format ``lesionnet_evaluate_detection OUT GT_DIR`` reads, and a 3D Slicer markups file of the boxes,
  ``OUT/markups/{scan_id}.mrk.json``; with ``save_overlays``, ``OUT/overlays/{scan_id}.png``, axial slices
  through the best-scoring boxes. Files are written atomically, one scan at a time.

An output folder holding scan files of an earlier run is refused unless ``resume`` (``--continue``: a scan
whose file has the same signature — method, model, checkpoints, settings, input file — is kept, the rest
predicted) or ``overwrite`` (``--overwrite``: its scan files and markups are replaced).
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from lesionnet.datasets.image_io import read_image
from lesionnet.datasets.verification.problems import InputCheckError
from lesionnet.datasets.verification.scan_files import check_scan_files
from lesionnet.inference.case_signature import file_sha256, file_stamp
from lesionnet.inference.markups import write_box_markups
from lesionnet.inference.model_discovery import find_trained_model, load_trained_models
from lesionnet.inference.model_request import LearnedModelOptions, PredictorRequest, dataset_name_of
from lesionnet.inference.overlays import save_detection_overlay
from lesionnet.inference.tracking_input import find_scan_files
from lesionnet.inference.worker_pool import built_in_worker, worker_recipe
from lesionnet.utils.files import load_json, write_json
from lesionnet.utils.output_paths import check_output_folder
from lesionnet.utils.parallel import run_jobs

logger = logging.getLogger(__name__)
MARKUPS_FOLDER = "markups"
OVERLAYS_FOLDER = "overlays"


@dataclass
class DetectionRun:
    """What a detection prediction run did: scan ids predicted, reused (``--continue``) and failed."""

    output_folder: Path
    predicted: list = field(default_factory=list)
    reused: list = field(default_factory=list)
    failed: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def _earlier_scan_files(output_folder: Path) -> list[Path]:
    return sorted(p for p in output_folder.glob("*.json") if not p.name.startswith("."))


def _why_not_reusable(path: Path, signature: dict) -> str | None:
    """None when an earlier scan file can be kept (``--continue``), else why it is predicted again."""
    try:
        stored = load_json(path).get("signature")
    except (ValueError, AttributeError):
        return "the file cannot be read"
    return None if stored == signature else "model, settings or input changed"


def check_detection_output(output_folder, resume: bool, overwrite: bool) -> Path:
    """The output folder, checked before anything is read: creatable and writable, and not holding an
    earlier run's scan files unless ``resume`` or ``overwrite``."""
    output_folder = check_output_folder(output_folder, "output folder (-o)")
    if resume and overwrite:
        raise ValueError(f"{output_folder}: --continue and --overwrite exclude each other; choose one.")
    earlier = _earlier_scan_files(output_folder)
    if earlier and not (resume or overwrite):
        raise ValueError(f"{output_folder}: holds {len(earlier)} scan file(s) of an earlier run (e.g. "
                         f"{earlier[0].name}). Nothing was changed. Add --continue to keep the scans whose model, "
                         "settings and input still match and predict the rest, --overwrite to predict everything "
                         "again, or choose another output folder.")
    return output_folder


def load_detection_input(input_folder) -> dict[str, Path]:
    """``{scan_id: file}`` of an input folder, every scan checked; raises :class:`InputCheckError` listing
    every problem."""
    folder = Path(input_folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: input folder does not exist.")
    scans = find_scan_files(folder)
    if not scans:
        raise ValueError(f"{folder}: no scans ({{scan_id}}_0000.nii.gz) in the input folder.")
    _, problems = check_scan_files(folder, scans)
    errors = [p for p in problems if p.is_error]
    if errors:
        raise InputCheckError(f"{folder}: {len(errors)} problem(s) in the input of the prediction, nothing was "
                              "predicted. Fix each and run again:", errors)
    for problem in problems:
        logger.warning("%s", problem)
    return scans


def make_detector(method, dataset: str, options: LearnedModelOptions, predictor_options: dict | None):
    """``(detector, trained model)`` of a detection method for one prediction run."""
    model = find_trained_model(dataset, method.name, options.folds, options.plans_name, options.checkpoint,
                               options.results_dir)
    folds = load_trained_models(method, model, options.checkpoint, options.device)
    return method.predictor(PredictorRequest(folds, options.device, options=dict(predictor_options or {}))), model


def _detect_scan(detector, scan_id: str, path: Path) -> tuple:
    """``(scan_id, record, None)`` with the scan's wall time in the record, or ``(scan_id, None, error)``."""
    started = time.perf_counter()
    try:
        record = detector.predict_scan(path)
    except (RuntimeError, ValueError, OSError) as error:
        return scan_id, None, str(error)
    return scan_id, {"scan_id": scan_id, **record, "seconds": round(time.perf_counter() - started, 3)}, None


def _detect_scan_in_worker(job) -> tuple:
    """One scan in a pool worker (``predict_detection(..., num_processes > 1)``): the worker builds the run's
    detector once (:func:`~lesionnet.inference.worker_pool.built_in_worker`)."""
    scan_id, recipe, path = job
    return _detect_scan(built_in_worker(recipe)[0], scan_id, path)


def predict_detection(input_folder, output_folder, method, model_options: LearnedModelOptions | None = None,
                      resume: bool = False, overwrite: bool = False, progress: bool = True,
                      predictor_options: dict | None = None, save_overlays: bool = False,
                      num_processes: int = 1) -> DetectionRun:
    """Detect with ``method`` (a trained detection method) on every scan of ``input_folder`` (see the module
    docstring); ``predictor_options`` go to the method's predictor (e.g. one of its ``demo_variants``).
    Each record also holds ``seconds``, the wall time of its scan. ``num_processes > 1`` detects the scans
    in a pool of that many worker processes (each builds the detector once and holds one scan at a time;
    the files are written here as the scans finish)."""
    if method.task != "detection" or not method.predicts:
        raise ValueError(f"method '{method.name}' does not detect lesions in scans (a {method.task} method).")
    output_folder = check_detection_output(output_folder, resume, overwrite)
    scans = load_detection_input(input_folder)
    options = model_options or LearnedModelOptions()
    dataset = options.dataset or dataset_name_of(Path(input_folder).resolve())
    detector, model = make_detector(method, dataset, options, predictor_options)
    logger.info("Using %s (checkpoint_%s)", model.describe(), options.checkpoint)
    checkpoints = {f: file_sha256(model.folder / f"fold_{f}" / f"checkpoint_{options.checkpoint}.pth")
                   for f in model.folds}
    run_signature = {"method": method.name, "model": str(model.folder), "checkpoint": options.checkpoint,
                     "checkpoint_sha256": checkpoints, "settings": detector.description}
    output_folder.mkdir(parents=True, exist_ok=True)
    if overwrite:                       # the earlier run's scan files and markups
        for path in _earlier_scan_files(output_folder):
            path.unlink()
        for folder in (MARKUPS_FOLDER, OVERLAYS_FOLDER):
            shutil.rmtree(output_folder / folder, ignore_errors=True)
    run = DetectionRun(output_folder)
    todo = {}
    for scan_id, path in scans.items():
        out_path = output_folder / f"{scan_id}.json"
        if resume and out_path.is_file():
            reason = _why_not_reusable(out_path, {**run_signature, "input": file_stamp(path)})
            if reason is None:
                run.reused.append(scan_id)
                continue
            logger.info("predicting %s again: %s", out_path.name, reason)
        todo[scan_id] = path

    def store(outcome) -> None:
        """Write one scan's files (in this process, as soon as the scan is done)."""
        scan_id, record, error = outcome
        path = todo[scan_id]
        if error is not None:
            logger.error("%s: %s", path, error)
            run.failed[scan_id] = error
            return
        record["signature"] = {**run_signature, "input": file_stamp(path)}
        write_json(output_folder / f"{scan_id}.json", record)
        write_box_markups(output_folder / MARKUPS_FOLDER / f"{scan_id}.mrk.json", record.get("boxes_world", []),
                          [f"{scan_id} {i + 1} ({s:.2f})" for i, s in enumerate(record["scores"])])
        if save_overlays:
            image_zyx, geometry = read_image(path)
            save_detection_overlay(output_folder / OVERLAYS_FOLDER / f"{scan_id}.png", image_zyx, geometry,
                                   record["boxes_xyz"], record["scores"], title=f"{scan_id} ({method.name})")
        run.predicted.append(scan_id)

    if num_processes <= 1 or len(todo) <= 1:
        for scan_id, path in tqdm(todo.items(), desc="scans", unit="scan", disable=not progress):
            store(_detect_scan(detector, scan_id, path))
    else:
        recipe = worker_recipe(make_detector, (method, dataset, options, predictor_options), num_processes)
        run_jobs(_detect_scan_in_worker, [(scan_id, recipe, path) for scan_id, path in todo.items()],
                 num_processes, progress, f"{method.name} detection", unit="scan", on_result=store,
                 start_method="spawn")
    logger.info("%d scan(s) predicted, %d reused, %d failed -> %s", len(run.predicted), len(run.reused),
                len(run.failed), output_folder)
    return run


__all__ = ["DetectionRun", "make_detector", "MARKUPS_FOLDER", "OVERLAYS_FOLDER", "check_detection_output",
           "load_detection_input", "predict_detection"]
