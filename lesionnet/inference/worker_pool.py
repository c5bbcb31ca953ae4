"""Prediction in a pool of worker processes (``lesionnet_predict -np N``): each worker builds the run's tracker
or detector once, from the same arguments as the main process, and reuses it for its later cases."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Callable

import torch

from lesionnet.utils.parallel import default_num_processes

_BUILT: dict = {}


@dataclass(frozen=True)
class WorkerRecipe:
    """How a pool worker builds the run's predictor: ``build(*arguments)`` (picklable: module-level function,
    plain arguments), with torch limited to ``threads``; ``run_id`` tells one prediction run from the next."""

    build: Callable
    arguments: tuple
    threads: int
    run_id: str


def worker_recipe(build: Callable, arguments: tuple, num_processes: int) -> WorkerRecipe:
    """A recipe for a pool of ``num_processes`` workers, which share the usable CPU cores."""
    return WorkerRecipe(build, tuple(arguments), max(1, default_num_processes() // num_processes), uuid.uuid4().hex)


def built_in_worker(recipe: WorkerRecipe) -> Any:
    """What ``recipe`` builds, built once in this worker process per run."""
    if _BUILT.get("run") != recipe.run_id:
        torch.set_num_threads(recipe.threads)
        _BUILT.update(run=recipe.run_id, value=recipe.build(*recipe.arguments))
    return _BUILT["value"]


__all__ = ["WorkerRecipe", "worker_recipe", "built_in_worker"]
