"""``train_model(501, REGISTRY["tlt"], 0)``: everything ``lesionnet_train`` does, as an importable function.

It knows no method by name: it takes a method object (``lesionnet.methods.REGISTRY[name]``), reads the
method's section of the plans, applies a preset, splits the dataset's training items by patient and
hands a :class:`FoldJob` to the shared :class:`~lesionnet.training.trainer.Trainer`.

Results layout (nnU-Net style)::

    $lesionnet_results/<DatasetXXX_Name>/<method>__<plans_name>/fold_<k>/
        checkpoint_latest.pth  checkpoint_best.pth  checkpoint_final.pth
        training_log.txt  progress.png  training_summary.json  network.json

``network.json`` records what a predictor needs to rebuild the model: the method, the plan section
it was built from (preset applied), the data configuration (spacing, normalisation, registration),
and the dataset, plans and fold it came from.

Before anything is written to the fold, :func:`lesionnet.training.fold_guard.prepare_fold` checks it: a
fold that holds a model is trained again only with ``resume`` (same settings as its checkpoint) or
``overwrite`` (a staging folder that replaces the fold after the new run's first checkpoint).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lesionnet import paths
from lesionnet.datasets.dataset_id import resolve_raw_dataset
from lesionnet.paths import preprocessed_folder_for
from lesionnet.planning.plans_io import DEFAULT_PLANS_NAME, get_configuration, get_data_configuration, load_plans
from lesionnet.preprocessing.loading import PreprocessedDataset
from lesionnet.training.config import TrainingConfig
from lesionnet.training.distributed import (
    SINGLE_PROCESS,
    DistributedContext,
    check_batch_split,
    context_from_environment,
    environment_world_size,
    launch,
)
from lesionnet.training.fold_guard import prepare_fold
from lesionnet.training.splits import fold_item_ids, load_or_create_splits
from lesionnet.training.trainer import Trainer, TrainingResult
from lesionnet.utils.mappings import deep_merge
from lesionnet.utils.output_paths import check_output_folder

logger = logging.getLogger(__name__)


def training_output_folder(dataset_name: str, method: str, fold, plans_name: str = DEFAULT_PLANS_NAME) -> Path:
    """``$lesionnet_results/<dataset>/<method>__<plans>/fold_<fold>``."""
    return paths.results_dir() / dataset_name / f"{method}__{plans_name}" / f"fold_{fold}"


def configuration_with_preset(method, section: dict, preset: str = "plan") -> dict:
    """The method's plan section with one of its presets merged in (``plan`` keeps it as planned). A preset
    is a dict of overrides, or a function of the section that returns them (sizes that follow the plan,
    e.g. as many extractor stages as the planned stride needs)."""
    if preset not in method.presets:
        raise ValueError(f"unknown preset {preset!r} for '{method.name}'; choose one of {sorted(method.presets)}.")
    overrides = method.presets[preset]
    return deep_merge(section, overrides(section) if callable(overrides) else overrides)


def default_training_config(method, section: dict, **overrides) -> TrainingConfig:
    """The method's training defaults for a section (batch size from the plan, augmentation), with
    ``overrides`` (None values ignored)."""
    values = dict(method.training_defaults(section))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainingConfig(**values)


def resolve_device(device: str | None) -> torch.device:
    """``cuda`` when available and not told otherwise, else ``cpu``; a clear error for missing CUDA."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda: this torch build sees no CUDA device; use --device cpu.")
    return torch.device(device)


class FoldJob:
    """One method trained on one fold: what the :class:`~lesionnet.training.trainer.Trainer` runs
    (its ``TrainingMethod``), built from the method, its plan section and the fold's data.

    The loss step is the DETR shape: ``outputs = network(**inputs)`` with the batch arrays the model
    names in ``input_keys``, then ``criterion(outputs, batch)`` with every array of the batch as a
    tensor on the device.
    """

    def __init__(self, method, section: dict, data: PreprocessedDataset, train_ids: list, val_ids: list):
        self.method = method
        self.name = method.name
        self.configuration = section
        self.selection_metric = tuple(method.selection_metric)
        self.data = data
        self.train_ids = list(train_ids)
        self.val_ids = list(val_ids)
        self.model = None

    def build_network(self) -> torch.nn.Module:
        self.model = self.method.build(self.configuration)
        return self.model.network

    def batches(self, config: TrainingConfig, first_batch: int):
        return self.method.batches(self.data, self.train_ids, self.configuration, config, first_batch)

    def compute_loss(self, network: torch.nn.Module, batch: dict, device: torch.device) -> dict:
        tensors = {k: torch.as_tensor(v, device=device) for k, v in batch.items() if isinstance(v, np.ndarray)}
        outputs = network(**{k: tensors[k] for k in self.model.input_keys})
        return self.model.criterion(outputs, tensors)

    def validate(self, network: torch.nn.Module, device: torch.device,
                 context: DistributedContext = SINGLE_PROCESS) -> dict:
        """The method's validation metrics on the fold's validation items. With several processes, each
        validates every ``world_size``-th item when the method splits its validation into records and a
        summary (``validation_records``, ``validation_summary``); else rank 0 validates them all and sends
        the metrics to the others."""
        if not self.val_ids:
            return {}
        records = getattr(self.method, "validation_records", None)
        if not context.active:
            return self.method.validate(self.model, self.data, self.val_ids, self.configuration, device)
        if records is None:
            return context.broadcast(self.method.validate(self.model, self.data, self.val_ids, self.configuration,
                                                          device) if context.is_main else None)
        shard = records(self.model, self.data, context.shard(self.val_ids), self.configuration, device)
        return self.method.validation_summary([r for part in context.gather(shard) for r in part])


def train_model(dataset, method, fold: int | str = 0, plans_name: str = DEFAULT_PLANS_NAME, preset: str = "plan",
                resume: bool = False, device: str | None = None, progress: bool = True, output_folder=None,
                overwrite: bool = False, num_processes: int = 1, check_replicas: bool = False,
                threads_per_process: int | None = None, **training_overrides) -> TrainingResult:
    """Train ``method`` (a trainable method object) on fold ``fold`` of a preprocessed dataset (see the
    module docstring). ``output_folder`` replaces the fold's results folder (e.g. for a benchmark run that
    must not touch the trained model).

    ``resume`` (``--c``) continues the fold's run; settings that differ from its checkpoint's are refused
    (:class:`~lesionnet.training.fold_guard.ResumeMismatchError`), a finished run is returned as it is.
    ``overwrite`` replaces a fold that holds a model; without either such a fold is refused
    (:class:`~lesionnet.training.fold_guard.FoldHoldsModelError`).

    Data-parallel training (:mod:`lesionnet.training.distributed`): ``num_processes > 1`` spawns that many
    training processes on this machine (``threads_per_process`` torch threads each, default: the cores
    divided among them); a process started by ``torchrun`` joins the group its environment describes. The
    global batch (``batch_size``) is split evenly over the processes, so a run may be continued with
    another number of processes. ``check_replicas`` compares the processes' weights after every step.

    ``training_overrides`` are :class:`TrainingConfig` fields (``num_epochs``, ``iterations_per_epoch``,
    ``learning_rate``, ``seed``, ``num_workers``, ``max_val_pairs``, ...); None values keep the defaults.
    """
    if num_processes > 1 and environment_world_size() > 1:
        raise ValueError("--num_processes: this process was started by torchrun, which starts the training "
                         "processes itself; leave --num_processes out under torchrun.")
    job = _prepare_job(dataset, method, fold, plans_name, preset, output_folder, training_overrides)
    check_batch_split(job.config.batch_size, max(1, num_processes, environment_world_size()))
    resolved_device = resolve_device(device)
    context = SINGLE_PROCESS if num_processes > 1 else context_from_environment(resolved_device)
    fold_plan = context.on_main(lambda: prepare_fold(job.output, method.name, job.section, job.requested,
                                                     resume=resume, overwrite=overwrite))
    if fold_plan.finished is not None:
        return _finished_result(job.output, fold_plan.finished)
    if num_processes > 1:
        try:
            return launch(_train_in_process, (job, fold_plan, resume, device, progress, check_replicas),
                          num_processes, threads_per_process)
        except BaseException:
            fold_plan.discard()       # a staging folder that never replaced the fold (the old model stays)
            raise
    return _train_in_process(job, fold_plan, resume, device, progress, check_replicas)


@dataclass
class _Job:
    """What :func:`train_model` checked and prepared before any process trains (plain values: spawned
    training processes receive it)."""

    method: object
    raw_name: str
    fold: int | str
    plans_name: str
    preset: str
    section: dict
    train_ids: list
    val_ids: list
    config: TrainingConfig
    requested: dict
    network_info: dict
    output: Path


def _prepare_job(dataset, method, fold, plans_name, preset, output_folder, training_overrides) -> _Job:
    if not method.trainable:
        raise ValueError(f"'{method.name}' cannot be trained ({method.description}).")
    raw = resolve_raw_dataset(dataset)
    if method.task != raw.task:
        raise ValueError(f"'{method.name}' is a {method.task} method; {raw.name} is a {raw.task} dataset.")
    output = Path(output_folder) if output_folder else training_output_folder(raw.name, method.name, fold, plans_name)
    check_output_folder(output, "training results folder")
    plans = load_plans(raw, plans_name)
    section_name = getattr(method, "plan_section", None) or method.name     # a variant trains from its method's
    section = configuration_with_preset(method, get_configuration(plans, section_name), preset)
    data_configuration = get_data_configuration(plans, section)
    data = PreprocessedDataset(raw, section["data_identifier"])
    items = data.training_items()
    if not items:
        raise ValueError(f"{data.folder}: no training items (pairs or scans).")
    splits = load_or_create_splits(preprocessed_folder_for(raw.folder), items)
    train_ids, val_ids = fold_item_ids(splits, fold)
    missing = [i for i in train_ids + val_ids if i not in items]
    if missing:
        raise ValueError(f"splits_final.json names items that are not preprocessed: {missing[:5]}")
    config = default_training_config(method, section, **training_overrides)
    if config.max_val_pairs:
        val_ids = val_ids[:config.max_val_pairs]
    requested = {"preset": preset, **{k: v for k, v in training_overrides.items() if v is not None}}
    network_info = {"method": method.name, "dataset": raw.name, "plans_name": plans_name, "fold": fold,
                    "preset": preset, "configuration": section, "data_configuration": data_configuration}
    return _Job(method=method, raw_name=raw.name, fold=fold, plans_name=plans_name, preset=preset,
                section=section, train_ids=train_ids, val_ids=val_ids, config=config,
                requested=requested, network_info=network_info, output=output)


def _train_in_process(job: _Job, fold_plan, resume: bool, device, progress: bool, check_replicas: bool):
    """This process's part of the run: all of it, or one rank's of a data-parallel run."""
    resolved_device = resolve_device(device)
    context = context_from_environment(resolved_device)
    if resolved_device.type == "cuda" and context.active:
        resolved_device = torch.device("cuda", context.gpu)
    if context.is_main:
        logger.info("%s fold %s: %d training items, %d validation items -> %s", job.raw_name, job.fold,
                    len(job.train_ids), len(job.val_ids), job.output)
    data = PreprocessedDataset(job.raw_name, job.section["data_identifier"])     # each process reads its cases
    trainer = Trainer(FoldJob(job.method, job.section, data, job.train_ids, job.val_ids), job.config,
                      fold_plan.folder, resolved_device, resume=resume, progress=progress and context.is_main,
                      network_info=job.network_info, context=context, check_replicas=check_replicas,
                      metadata={"dataset": job.raw_name, "plans_name": job.plans_name, "fold": str(job.fold),
                                "preset": job.preset},
                      on_first_checkpoint=fold_plan.swap_in if fold_plan.staged and context.is_main else None)
    try:
        return trainer.run()
    except BaseException:
        if context.is_main:
            fold_plan.discard()       # a staging folder that never replaced the fold (the old model stays)
        raise


def _finished_result(folder: Path, final: dict) -> TrainingResult:
    """The result of a run that ``--c`` found finished with the requested settings (nothing is written)."""
    history = final.get("history") or []
    logger.info("%s: this run is finished (epoch %d of %d); nothing to continue, no file changed.", folder,
                final["epoch"], final["training_config"]["num_epochs"])
    final_metrics = {k: v for k, v in (history[-1] if history else {}).items() if k.startswith("val_")}
    return TrainingResult(folder, 0, final.get("best_metric"), final_metrics, 0.0)


def set_cpu_threads(num_threads: int | None) -> None:
    """Pin torch's intra-op threads (bit-for-bit CPU repeatability needs the same count in every run)."""
    if num_threads:
        torch.set_num_threads(int(num_threads))


__all__ = ["train_model", "training_output_folder", "configuration_with_preset", "default_training_config",
           "resolve_device", "FoldJob", "set_cpu_threads"]
