"""Training checkpoints: written atomically, read with ``torch.load(..., weights_only=True)``.

A checkpoint is a dict of tensors and plain Python values only (no pickled classes)::

    {"format": 2, "method": <name>, "epoch": completed epochs, "configuration": {plan section},
     "training_config": {...}, "model": state_dict, "optimizer": state_dict,
     "rng": {"torch": ByteTensor, "numpy": [...], "python": [...]}, "history": [...],
     "best_metric": {"name", "mode", "value"}, "metadata": {"dataset", "plans_name", "fold", ...},
     "initial_validation": {...}}

A file that cannot be read (truncated by a killed copy, a disk full, a foreign file) raises
:class:`CheckpointError` naming the file; nothing ever falls back to a fresh start silently.
"""
from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from lesionnet.utils.files import atomic_path

CHECKPOINT_FORMAT = 2
LATEST, BEST, FINAL = "checkpoint_latest.pth", "checkpoint_best.pth", "checkpoint_final.pth"
#: the network as initialised (written when a run starts): what training adds is measured against it
UNTRAINED = "checkpoint_untrained.pth"
CHECKPOINT_NAMES = {"latest": LATEST, "best": BEST, "final": FINAL, "untrained": UNTRAINED}
#: a fold's description for predictors: method, dataset, plans, fold, preset, plan section, data configuration
NETWORK_FILE = "network.json"
REQUIRED_KEYS = ("format", "method", "epoch", "configuration", "model")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated or not a lesionnet checkpoint."""


def save_checkpoint(path: str | os.PathLike, checkpoint: dict) -> None:
    """Write ``checkpoint`` atomically (temporary file + rename): a killed run never leaves half a file."""
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint with ``weights_only=True``; raise :class:`CheckpointError` naming the file if it
    is missing, unreadable or lacks the lesionnet keys."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found.")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise CheckpointError(f"{path}: cannot read this checkpoint ({type(e).__name__}: {e}). The file is "
                              "truncated or corrupt; delete it to start over, or restore it.") from e
    if isinstance(checkpoint, dict) and checkpoint.get("format") == 1:
        raise CheckpointError(f"{path}: written by lesionnet before methods became plug-ins (checkpoint format 1); "
                              "this lesionnet reads format 2. Train the model again.")
    if not isinstance(checkpoint, dict) or any(k not in checkpoint for k in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(checkpoint, dict) or k not in checkpoint]
        raise CheckpointError(f"{path}: not a lesionnet checkpoint (missing keys {missing}).")
    if checkpoint["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {checkpoint['format']}, this lesionnet reads "
                              f"{CHECKPOINT_FORMAT}.")
    return checkpoint


def capture_rng_state() -> dict:
    """The torch, numpy and Python RNG states, as tensors and plain values (``weights_only``-safe)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "python": [int(py_state[0]), list(py_state[1]), py_state[2]],
    }


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
