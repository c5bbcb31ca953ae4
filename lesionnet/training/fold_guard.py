"""Guards of a fold's results folder: trained work is never lost, overwritten by accident or mixed.

:func:`prepare_fold` is called by :func:`lesionnet.training.run_training.train_model` before anything is
written to the fold, and decides where the run writes:

* A fold *holds a model* when any checkpoint file is in it (``checkpoint_latest/best/final/untrained``).
  Training into such a fold without ``resume`` (``--c``) or ``overwrite`` (``--overwrite``) raises
  :class:`FoldHoldsModelError`; nothing in the fold changes.
* ``resume``: the checkpoint that would be continued (``checkpoint_latest.pth``, else
  ``checkpoint_final.pth``) is read and compared with what was asked for: the method, the preset and the
  network configuration it builds, and every training setting given explicitly (epochs, iterations,
  batch size, learning rate, seed, validation items, ...; ``num_workers`` may differ, batches do not
  depend on it). Any difference raises :class:`ResumeMismatchError` listing each one (checkpoint value
  vs requested). A fold that is already finished with the same settings is left as it is
  (:attr:`FoldPlan.finished`).
* ``overwrite`` on a fold that holds a model: the new run writes into a hidden *staging* folder beside
  the fold (``.fold_0.staging-XXXX``). Once the new run has written its first ``checkpoint_latest.pth``
  (end of epoch 0), :meth:`FoldPlan.swap_in` renames the old fold to ``.fold_0.replaced-XXXX``, renames the
  staging folder to ``fold_0`` and deletes the old one. A run stopped before that leaves the old fold
  untouched; an exception removes the staging folder at once, a killed process leaves it for the next
  run of that fold to remove (:func:`remove_interrupted_runs`, which also puts back an old fold whose
  replacement was killed between the two renames). The fold therefore always holds one run's files,
  never a mix.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lesionnet.training.checkpoints import CHECKPOINT_NAMES, FINAL, LATEST, load_checkpoint

logger = logging.getLogger(__name__)

STAGING_MARK = ".staging-"
REPLACED_MARK = ".replaced-"
#: command-line options of the training settings, to name them in messages
OPTION_NAMES = {"preset": "--preset", "num_epochs": "--epochs", "iterations_per_epoch": "--iterations",
                "batch_size": "--batch_size", "learning_rate": "--lr", "seed": "--seed",
                "max_val_pairs": "--max_val_pairs", "precision": "--bf16", "compile": "--compile"}
#: settings that may differ on resume: they do not change what the run computes
RESUMABLE_SETTINGS = ("num_workers",)
MAX_LISTED_DIFFERENCES = 12


class FoldHoldsModelError(ValueError):
    """Training into a fold that already holds a model without ``--c`` or ``--overwrite``."""


class ResumeMismatchError(ValueError):
    """``--c`` with settings that differ from those of the checkpoint it would continue."""


def model_files(fold: Path) -> list[str]:
    """The checkpoint files in ``fold`` (empty when it holds no model)."""
    return [name for name in CHECKPOINT_NAMES.values() if (fold / name).is_file()]


def _hidden_siblings(fold: Path, mark: str) -> list[Path]:
    prefix = f".{fold.name}{mark}"
    if not fold.parent.is_dir():
        return []
    return sorted(p for p in fold.parent.iterdir() if p.name.startswith(prefix) and p.is_dir())


def remove_interrupted_runs(fold: Path) -> None:
    """Clean up after a killed ``--overwrite`` run of ``fold``: put back an old fold whose replacement was
    killed between the two renames, then remove leftover staging and replaced folders."""
    replaced = _hidden_siblings(fold, REPLACED_MARK)
    if replaced and not fold.exists():
        newest = max(replaced, key=lambda p: p.stat().st_mtime_ns)
        os.replace(newest, fold)
        replaced.remove(newest)
        logger.warning("%s: put back the model that an interrupted --overwrite run was replacing.", fold)
    for leftover in replaced + _hidden_siblings(fold, STAGING_MARK):
        shutil.rmtree(leftover, ignore_errors=True)
        logger.info("Removed %s, left by an interrupted training run.", leftover)


def _flatten(value, prefix: str) -> dict:
    if isinstance(value, dict) and value:
        flat = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}"))
        return flat
    return {prefix: value}


def _label(name: str) -> str:
    option = OPTION_NAMES.get(name)
    return f"{name} ({option})" if option else name


def resume_differences(checkpoint: dict, method_name: str, configuration: dict, requested: dict) -> list[str]:
    """``"name: checkpoint X, requested Y"`` for each setting where ``requested`` differs from ``checkpoint``.

    ``requested`` holds ``preset`` and the training settings given explicitly (``TrainingConfig`` fields).
    """
    differences = []
    if checkpoint.get("method") != method_name:
        differences.append(f"method: checkpoint {checkpoint.get('method')!r}, requested {method_name!r}")
    stored_config = checkpoint.get("training_config") or {}
    stored = {"preset": (checkpoint.get("metadata") or {}).get("preset"), **stored_config}
    for name, value in requested.items():
        if name in RESUMABLE_SETTINGS or value is None:
            continue
        if name in stored and stored[name] != value:
            differences.append(f"{_label(name)}: checkpoint {stored[name]!r}, requested {value!r}")
    old, new = _flatten(checkpoint.get("configuration"), "configuration"), _flatten(configuration, "configuration")
    changed = [key for key in sorted(set(old) | set(new)) if old.get(key, "<absent>") != new.get(key, "<absent>")]
    for key in changed[:MAX_LISTED_DIFFERENCES]:
        differences.append(f"{key}: checkpoint {old.get(key, '<absent>')!r}, requested {new.get(key, '<absent>')!r}")
    if len(changed) > MAX_LISTED_DIFFERENCES:
        differences.append(f"... and {len(changed) - MAX_LISTED_DIFFERENCES} more configuration values")
    return differences


@dataclass
class FoldPlan:
    """Where a training run writes, decided by :func:`prepare_fold`.

    Attributes:
        fold: the fold's results folder.
        folder: where the trainer writes: ``fold``, or a staging folder beside it (``--overwrite``).
        finished: the final checkpoint of a finished run that ``--c`` asked to continue with the same
            settings (nothing is left to train), else None.
    """

    fold: Path
    folder: Path
    finished: dict | None = None

    @property
    def staged(self) -> bool:
        return self.folder != self.fold

    def swap_in(self) -> Path:
        """Replace the old fold by the staging folder (called once the new run has its first checkpoint);
        returns the fold, where the run continues to write."""
        if not self.staged:
            return self.fold
        replaced = Path(tempfile.mkdtemp(prefix=f".{self.fold.name}{REPLACED_MARK}", dir=self.fold.parent))
        os.replace(self.fold, replaced / self.fold.name)
        os.replace(self.folder, self.fold)
        shutil.rmtree(replaced, ignore_errors=True)
        logger.info("--overwrite: the new run has its first checkpoint; replaced the old model in %s", self.fold)
        self.folder = self.fold
        return self.fold

    def discard(self) -> None:
        """Remove the staging folder of a run that stopped before :meth:`swap_in` (the old fold stays)."""
        if self.staged and self.folder.exists():      # (after swap_in in another process it is gone)
            shutil.rmtree(self.folder, ignore_errors=True)
            logger.info("The run stopped before its first checkpoint; %s keeps its old model.", self.fold)


def prepare_fold(fold: str | os.PathLike, method_name: str, configuration: dict, requested: dict,
                 resume: bool = False, overwrite: bool = False) -> FoldPlan:
    """Check that a run may write into ``fold`` and decide where (see the module docstring). Nothing in the
    fold is written here; only leftovers of interrupted ``--overwrite`` runs beside it are cleaned up.

    Raises:
        ValueError: ``resume`` and ``overwrite`` together.
        FoldHoldsModelError: ``fold`` holds a model and neither ``resume`` nor ``overwrite`` was given.
        ResumeMismatchError: ``resume`` with settings that differ from the checkpoint's.
        lesionnet.training.checkpoints.CheckpointError: the checkpoint to continue cannot be read.
    """
    fold = Path(fold)
    if resume and overwrite:
        raise ValueError(f"{fold}: --c (continue) and --overwrite (train anew) exclude each other; choose one.")
    remove_interrupted_runs(fold)
    existing = model_files(fold)
    if resume:
        source = fold / LATEST if (fold / LATEST).is_file() else fold / FINAL
        if not source.is_file():
            return FoldPlan(fold, fold)             # the trainer warns and starts a new run
        checkpoint = load_checkpoint(source)
        differences = resume_differences(checkpoint, method_name, configuration, requested)
        if differences:
            listed = "\n  ".join(differences)
            raise ResumeMismatchError(
                f"{source}: --c continues a run with the settings it was started with, but the request differs:"
                f"\n  {listed}\nNothing was changed. Repeat the checkpoint's values (or leave those options out "
                "where the checkpoint has the default), or train anew with --overwrite instead of --c.")
        epochs = int((checkpoint.get("training_config") or {}).get("num_epochs", 0))
        if (fold / FINAL).is_file() and int(checkpoint["epoch"]) >= epochs:
            final = checkpoint if source.name == FINAL else load_checkpoint(fold / FINAL)
            return FoldPlan(fold, fold, finished=final)
        return FoldPlan(fold, fold)
    if not existing:
        return FoldPlan(fold, fold)
    if not overwrite:
        raise FoldHoldsModelError(
            f"{fold}: this fold already holds a trained model ({', '.join(existing)}). Nothing was changed. "
            "Add --c to continue that run, or --overwrite to train a new one (the old model is removed only "
            "once the new run has written its first checkpoint).")
    fold.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{fold.name}{STAGING_MARK}", dir=fold.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)              # mkdtemp makes it 0700; it becomes the fold
    logger.info("--overwrite: training into %s; it replaces %s after the first epoch.", staging, fold)
    return FoldPlan(fold, staging)


__all__ = ["FoldHoldsModelError", "ResumeMismatchError", "FoldPlan", "prepare_fold", "model_files",
           "remove_interrupted_runs", "resume_differences"]
