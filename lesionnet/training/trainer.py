"""The shared training loop: one loop for every method, which it knows by its parts only.

A training job supplies the parts that differ (see :class:`TrainingMethod`; :mod:`.run_training`
builds one from a registered method, its plan section and the fold's data): its network, its
batches, its loss, its validation and the metric that picks the best checkpoint. The loop owns
everything else:

* Adam/AdamW/SGD and the learning-rate schedule of :class:`~lesionnet.training.config.TrainingConfig`;
* epochs of a fixed number of iterations, a tqdm bar per epoch;
* validation after every epoch (the method's metrics on the fold's validation data);
* ``checkpoint_latest.pth`` after every epoch, ``checkpoint_best.pth`` at the best value of the
  method's selection metric (lowest or highest, as the method says), ``checkpoint_final.pth`` at the
  end (all written atomically; see :mod:`lesionnet.training.checkpoints`);
* ``resume=True`` (``--c``) continues from ``checkpoint_latest.pth`` with its model, optimiser,
  epoch, history and RNG states; the batch stream and dropout are seeded per epoch from the seed,
  so a resumed run ends with the same weights as an uninterrupted one;
* ``training_log.txt`` (the ``lesionnet`` logger, via ``logging``) and ``progress.png``;
* data-parallel training when given a :class:`~lesionnet.training.distributed.DistributedContext` of several
  processes: the network is wrapped in ``DistributedDataParallel`` (gradients averaged over the ranks),
  each rank trains on its share of every global batch (:func:`~lesionnet.training.batch_stream.batch_shard`),
  validation runs in shards and is summarised once, the logged losses are averaged over the ranks, and rank
  0 alone writes files (a resumed checkpoint is read by rank 0 and sent to the others).
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np
import torch
from tqdm import tqdm

from lesionnet.training.batch_stream import batch_shard
from lesionnet.training.checkpoints import (
    BEST,
    CHECKPOINT_FORMAT,
    FINAL,
    LATEST,
    NETWORK_FILE,
    UNTRAINED,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from lesionnet.training.config import TrainingConfig
from lesionnet.training.distributed import SINGLE_PROCESS, DistributedContext
from lesionnet.training.fold_guard import FoldHoldsModelError, model_files
from lesionnet.training.progress_plot import plot_progress
from lesionnet.utils.files import write_json

logger = logging.getLogger(__name__)

LOG_FILE = "training_log.txt"
PROGRESS_FILE = "progress.png"
SUMMARY_FILE = "training_summary.json"


class TrainingMethod(Protocol):
    """What a training job gives the shared trainer.

    Attributes:
        name: the method's name (recorded in the checkpoints; ``--c`` refuses another method's).
        configuration: the plan section the network is built from (recorded in the checkpoints;
            ``--c`` refuses a different one).
        selection_metric: ``(metric, "min" | "max")``: the validation metric (without the ``val_``
            prefix) whose best value selects ``checkpoint_best.pth``.
    """

    name: str
    configuration: dict
    selection_metric: tuple

    def build_network(self) -> torch.nn.Module:
        """A freshly initialised network (the global torch seed is set before this is called)."""

    def batches(self, config: TrainingConfig, first_batch: int) -> Iterator[dict]:
        """The infinite training batch stream starting at batch number ``first_batch``; when the object
        has a ``close()`` the trainer calls it at the end (e.g. to stop worker processes)."""

    def compute_loss(self, network: torch.nn.Module, batch: dict, device: torch.device) -> dict:
        """``{"loss": scalar tensor to minimise, other name: scalar tensor, ...}`` for one batch."""

    def validate(self, network: torch.nn.Module, device: torch.device, context: DistributedContext) -> dict:
        """Validation metrics, the same on every rank of ``context``; ``{}`` when there is no validation
        data. Called in eval mode on every rank."""


@dataclass
class TrainingResult:
    output_folder: Path
    epochs_run: int
    best_metric: dict | None        # {"name": "val_<metric>", "mode": "min" | "max", "value": ...}
    final_metrics: dict
    seconds: float


def _improves(value: float | None, best: float | None, mode: str) -> bool:
    if value is None:
        return False
    return best is None or (value < best if mode == "min" else value > best)


def _seed_everything(seed: int, epoch: int, rank: int = 0) -> None:
    """Seed torch and numpy for ``epoch`` (a pure function of the run seed, the epoch and the rank, rank 0
    as a single process; ``epoch = -1`` seeds the network initialisation, the same on every rank)."""
    sequence = np.random.SeedSequence([int(seed), int(epoch) + 1, 7] + ([int(rank)] if rank else []))
    state = sequence.generate_state(2)
    torch.manual_seed(int(state[0]))
    np.random.seed(int(state[1]))


def make_optimizer(network: torch.nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    params = [p for p in network.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.learning_rate, momentum=0.99, nesterov=True,
                           weight_decay=config.weight_decay)


class _LogFile:
    """Attach ``training_log.txt`` to the ``lesionnet`` logger for the duration of a run."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handler = logging.FileHandler(self.path, mode="a", encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.logger = logging.getLogger("lesionnet")
        self.logger.addHandler(self.handler)
        self.old_level = self.logger.level
        if self.logger.getEffectiveLevel() > logging.INFO:
            self.logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.old_level)
        self.handler.close()


class Trainer:
    """Train ``method`` with ``config`` into ``output_folder`` (see the module docstring).

    Args:
        method: a :class:`TrainingMethod`.
        config: the training settings (ignored on resume: the checkpoint's settings are used, except
            ``num_workers``).
        output_folder: ``$lesionnet_results/<dataset>/<method>__<plans>/fold_<k>``.
        device: ``"cpu"``, ``"cuda"`` or a torch device.
        resume: continue from ``checkpoint_latest.pth`` (an unreadable one is an error, never a restart).
        metadata: extra JSON-able values stored in the checkpoints (dataset, plans name, fold, ...).
        progress: tqdm bars.
        network_info: written to ``network.json`` once the run has started (a resumed run only after its
            checkpoint was accepted): what a predictor needs to rebuild the model.
        on_first_checkpoint: called once, right after the run's first ``checkpoint_latest.pth`` (end of its
            first epoch); returns the folder the run continues in (``--overwrite`` swaps its staging folder
            in for the old fold here, see :mod:`lesionnet.training.fold_guard`).
        context: this process's place in a data-parallel run (default: a single process).
        check_replicas: after every optimiser step, check that all ranks hold bit-identical weights
            (:class:`~lesionnet.training.distributed.ReplicaDivergenceError` otherwise; a debugging aid).

    A new run (``resume=False``) refuses an ``output_folder`` that already holds checkpoints
    (:class:`~lesionnet.training.fold_guard.FoldHoldsModelError`): it never overwrites a model.
    """

    def __init__(self, method: TrainingMethod, config: TrainingConfig, output_folder: str | os.PathLike,
                 device="cpu", resume: bool = False, metadata: dict | None = None, progress: bool = True,
                 network_info: dict | None = None, on_first_checkpoint: Callable[[], Path] | None = None,
                 context: DistributedContext = SINGLE_PROCESS, check_replicas: bool = False):
        self.method = method
        self.config = config
        self.output_folder = Path(output_folder)
        self.device = torch.device(device)
        self.resume = resume
        self.metadata = dict(metadata or {})
        self.initial_validation: dict | None = None     # validation of the untrained network (new runs)
        self.progress = progress
        self.network_info = network_info
        self.on_first_checkpoint = on_first_checkpoint
        self.context = context
        self.check_replicas = check_replicas
        self.bf16 = False                  # set per run from config.precision and the device

    # ------------------------------------------------------------------------------------ state
    @property
    def selection(self) -> tuple[str, str]:
        """``("val_<metric>", "min" | "max")`` of the method's selection metric."""
        metric, mode = self.method.selection_metric
        if mode not in ("min", "max"):
            raise ValueError(f"{self.method.name}: selection_metric mode must be 'min' or 'max', got {mode!r}")
        return f"val_{metric}", mode

    def _best_record(self, value: float | None) -> dict:
        name, mode = self.selection
        return {"name": name, "mode": mode, "value": value}

    def _checkpoint(self, epoch: int, network, optimizer, history, best_value) -> dict:
        return {
            "format": CHECKPOINT_FORMAT, "method": self.method.name, "epoch": int(epoch),
            "configuration": self.method.configuration, "training_config": self.config.to_dict(),
            "model": {k: v.detach().cpu() for k, v in network.state_dict().items()},
            "optimizer": optimizer.state_dict(), "rng": capture_rng_state(), "history": history,
            "best_metric": self._best_record(best_value), "metadata": self.metadata,
            "initial_validation": self.initial_validation,
        }

    def _start(self):
        latest = self.output_folder / LATEST
        if not latest.exists():
            latest = self.output_folder / FINAL
        checkpoint = self.context.on_main(lambda: load_checkpoint(latest) if self.resume and latest.exists()
                                          else None)        # rank 0 reads it and sends it to the others
        if checkpoint is not None:
            if checkpoint["method"] != self.method.name:
                raise ValueError(f"{latest}: a '{checkpoint['method']}' checkpoint, "
                                 f"cannot continue '{self.method.name}'.")
            if checkpoint["configuration"] != self.method.configuration:
                raise ValueError(f"{latest}: this run was started with another network configuration (another "
                                 "--preset or another plan); continue it with the same settings, or train into "
                                 "another folder.")
            workers = self.config.num_workers
            self.config = TrainingConfig.from_dict(checkpoint["training_config"])
            self.config.num_workers = workers
            network = self.method.build_network().to(self.device)
            network.load_state_dict(checkpoint["model"])
            optimizer = make_optimizer(network, self.config)
            optimizer.load_state_dict(checkpoint["optimizer"])
            restore_rng_state(checkpoint["rng"])
            logger.info("Continuing from %s (epoch %d of %d)", latest, checkpoint["epoch"], self.config.num_epochs)
            self.initial_validation = checkpoint.get("initial_validation")
            return network, optimizer, int(checkpoint["epoch"]), list(checkpoint["history"]), \
                checkpoint["best_metric"]["value"]
        if self.resume:
            logger.warning("--c: no checkpoint in %s; starting a new training run.", self.output_folder)
        _seed_everything(self.config.seed, -1)
        network = self.method.build_network().to(self.device)
        optimizer = make_optimizer(network, self.config)
        if self.context.is_main:
            save_checkpoint(self.output_folder / UNTRAINED, self._checkpoint(0, network, optimizer, [], None))
        # what training adds: the validation metrics of the untrained network (every epoch reseeds)
        self.initial_validation = self._validate(network)
        logger.info("untrained network: %s", ", ".join(f"{k} {v:.4g}" for k, v in self.initial_validation.items()))
        return network, optimizer, 0, [], None

    def _validate(self, network) -> dict:
        """``{"val_<metric>": value}`` of the method's validation (finite numbers only), in eval mode."""
        network.eval()
        metrics = self.method.validate(network, self.device, self.context)
        return {f"val_{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))
                and math.isfinite(float(v))}

    # ------------------------------------------------------------------------------------ loop
    def run(self) -> TrainingResult:
        existing = [] if self.resume or not self.context.is_main else model_files(self.output_folder)
        if existing:
            raise FoldHoldsModelError(f"{self.output_folder}: already holds a trained model ({', '.join(existing)}); "
                                      "a new run never overwrites it. Continue it (resume, --c), or train into "
                                      "another folder (train_model(..., overwrite=True) replaces it safely).")
        if not self.context.is_main:          # rank 0 writes the folder's files
            return self._run()
        self.output_folder.mkdir(parents=True, exist_ok=True)
        with _LogFile(self.output_folder / LOG_FILE):
            return self._run()

    def _run(self) -> TrainingResult:
        start_time = time.perf_counter()
        network, optimizer, start_epoch, history, best_value = self._start()
        metric_name, mode = self.selection
        main = self.context.is_main
        if self.network_info is not None and main:
            write_json(self.output_folder / NETWORK_FILE, self.network_info)
        cfg = self.config
        n_params = sum(p.numel() for p in network.parameters())
        processes = f" x {self.context.world_size} processes" if self.context.active else ""
        logger.info("Training %s (%d parameters) on %s%s: epochs %d..%d of %d x %d iterations, batch %d, %s lr %g",
                    self.method.name, n_params, self.device, processes, start_epoch, cfg.num_epochs - 1,
                    cfg.num_epochs, cfg.iterations_per_epoch, cfg.batch_size, cfg.optimizer, cfg.learning_rate)
        with batch_shard(self.context.rank, self.context.world_size):       # this rank's share of each batch
            stream = self.method.batches(cfg, start_epoch * cfg.iterations_per_epoch) \
                if start_epoch < cfg.num_epochs else None
        trained, self.bf16 = self._accelerated(self._data_parallel(network))
        try:
            for epoch in range(start_epoch, cfg.num_epochs):
                record = self._epoch(epoch, network, trained, optimizer, stream)
                history.append(record)
                improved = _improves(record.get(metric_name), best_value, mode)
                if improved:
                    best_value = record[metric_name]
                if not main:
                    continue
                checkpoint = self._checkpoint(epoch + 1, network, optimizer, history, best_value)
                save_checkpoint(self.output_folder / LATEST, checkpoint)
                if improved:
                    save_checkpoint(self.output_folder / BEST, checkpoint)
                if self.on_first_checkpoint is not None:
                    self.output_folder, self.on_first_checkpoint = self.on_first_checkpoint(), None
                plot_progress(history, self.output_folder / PROGRESS_FILE,
                              title=f"{self.method.name} {self.metadata.get('dataset', '')} "
                                    f"fold {self.metadata.get('fold', '')}")
                logger.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4g}" for k, v in record.items()
                                                             if isinstance(v, float)))
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        seconds = time.perf_counter() - start_time
        final_metrics = {k: v for k, v in (history[-1] if history else {}).items() if k.startswith("val_")}
        if not main:
            return TrainingResult(self.output_folder, cfg.num_epochs - start_epoch, self._best_record(best_value),
                                  final_metrics, seconds)
        final = self._checkpoint(cfg.num_epochs, network, optimizer, history, best_value)
        save_checkpoint(self.output_folder / FINAL, final)
        summary = {"method": self.method.name, "epochs": cfg.num_epochs, "best": self._best_record(best_value),
                   "final": final_metrics, "untrained": self.initial_validation, "seconds_this_run": round(seconds, 1),
                   "training_seconds_total": round(sum(h["epoch_seconds"] for h in history), 1),
                   "training_config": cfg.to_dict(), "metadata": self.metadata,
                   "num_processes_this_run": self.context.world_size}
        write_json(self.output_folder / SUMMARY_FILE, summary)
        logger.info("Finished: %s (best %s %s)", self.output_folder / FINAL, metric_name,
                    "n/a" if best_value is None else f"{best_value:.4g}")
        return TrainingResult(self.output_folder, cfg.num_epochs - start_epoch, self._best_record(best_value),
                              final_metrics, seconds)

    def _data_parallel(self, network: torch.nn.Module) -> torch.nn.Module:
        """The module the training steps run: ``network`` itself, or wrapped in ``DistributedDataParallel``
        (which averages the gradients over the ranks in ``backward``) when several processes train."""
        if not self.context.active:
            return network
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(network, device_ids=device_ids)

    def _accelerated(self, trained: torch.nn.Module) -> tuple[torch.nn.Module, bool]:
        """``trained`` compiled when the config asks for it, and whether the steps run under bf16 autocast:
        both on CUDA only (and bf16 where the GPU supports it); elsewhere a warning says they are off."""
        cuda = self.device.type == "cuda"
        bf16 = self.config.precision == "bf16" and cuda and torch.cuda.is_bf16_supported()
        if self.config.precision == "bf16" and not bf16:
            logger.warning("precision bf16: not supported on %s; training in fp32.", self.device)
        if self.config.compile:
            if cuda:
                return torch.compile(trained), bf16
            logger.warning("compile: torch.compile is used on CUDA only; training uncompiled on %s.", self.device)
        return trained, bf16

    def _epoch(self, epoch: int, network, trained, optimizer, stream) -> dict:
        """One epoch of steps on ``trained`` (``network`` or its data-parallel wrapper), then validation."""
        cfg = self.config
        t0 = time.perf_counter()
        _seed_everything(cfg.seed, epoch, self.context.rank)
        lr = cfg.learning_rate_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        network.train()
        sums: dict = {}
        bar = tqdm(range(cfg.iterations_per_epoch), desc=f"epoch {epoch}/{cfg.num_epochs - 1}", unit="it",
                   disable=not self.progress, leave=False)
        for step in bar:
            batch = next(stream)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                losses = self.method.compute_loss(trained, batch, self.device)
            loss = losses["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch}: the loss became {loss.item()} (batch "
                                         f"{batch.get('batch_index')}); lower the learning rate.")
            loss.backward()
            if cfg.grad_clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(network.parameters(), cfg.grad_clip_norm)
            optimizer.step()
            if self.check_replicas:
                self.context.check_replicas(network, epoch * cfg.iterations_per_epoch + step)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        sums = self.context.mean(sums)           # each rank's loss is its share's mean: the batch's mean
        record = {"epoch": epoch, "learning_rate": lr, "seconds_training": time.perf_counter() - t0}
        record.update({f"train_{k}": v / cfg.iterations_per_epoch for k, v in sums.items()})
        record.update(self._validate(network))
        record["epoch_seconds"] = time.perf_counter() - t0
        return record
