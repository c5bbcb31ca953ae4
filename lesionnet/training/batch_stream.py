"""Seeded, resumable, shardable batch streams on batchgenerators: sample ``j`` of batch ``k`` is a pure
function of (seed, k, j).

A method gives :class:`SeededBatchLoader` its training items and a ``make_batch(items, draws)`` function.
For global batch ``k`` the loader draws the items of all its positions from the batch's Generator
(``draws.rng``, the same in every process), keeps the positions this process builds (all of them in a
single process; a contiguous share per rank in a data-parallel run, see :func:`batch_shard`), and the
method builds each of those samples with :meth:`BatchDraws.samples`: a Generator of its own, with numpy's
and Python's global RNGs (batchgenerators' transforms) seeded for that sample. So

* batches are identical whether they are built in this process or in any of the worker processes,
* a resumed run sees exactly the batches an uninterrupted run would have seen, and
* ``N`` data-parallel ranks together build and train on exactly the samples of the single-process
  batch, each sample once, whatever ``N`` (the global batch size stays the same).

:func:`make_batch_stream` returns an iterator with a ``close()`` that stops the worker processes.
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
from batchgenerators.dataloading.data_loader import DataLoader
from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter

from lesionnet.training.distributed import check_batch_split

#: the rank and number of ranks whose share of each global batch new loaders build (see :func:`batch_shard`)
_SHARD = (0, 1)


def batch_seed(seed: int, batch_index: int) -> np.random.Generator:
    """The Generator of batch ``batch_index``'s batch-level draws (its items; e.g. DLT-Mix's batch mode)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(batch_index)]))


def sample_seed(seed: int, batch_index: int, position: int) -> tuple[np.random.Generator, int]:
    """The Generator of sample ``position`` of batch ``batch_index`` and the 32-bit seed for the global RNGs."""
    sequence = np.random.SeedSequence([int(seed), int(batch_index), int(position), 1])
    return np.random.default_rng(sequence), int(sequence.generate_state(1)[0])


@contextmanager
def batch_shard(rank: int, world_size: int):
    """Loaders created inside build only rank ``rank``'s share of every global batch (data-parallel training;
    the trainer enters this around the method's ``batches``)."""
    global _SHARD
    previous, _SHARD = _SHARD, (int(rank), int(world_size))
    try:
        yield
    finally:
        _SHARD = previous


@dataclass
class BatchDraws:
    """The randomness of one process's share of global batch ``batch_index``.

    Attributes:
        rng: the batch-level Generator (the same in every rank): choices that concern the whole batch.
        positions: the positions of the global batch this process builds, in order.
    """

    seed: int
    batch_index: int
    global_batch_size: int
    positions: range
    rng: np.random.Generator

    def share(self, values: Sequence) -> list:
        """This process's part of ``values``, one per position of the global batch."""
        return [values[p] for p in self.positions]

    def samples(self, items: Sequence) -> Iterator[tuple[object, np.random.Generator]]:
        """``(item, Generator)`` per position; numpy's and Python's global RNGs are seeded for that sample
        just before it is yielded, so build the sample completely before taking the next one."""
        for position, item in zip(self.positions, items):
            rng, global_seed = sample_seed(self.seed, self.batch_index, position)
            np.random.seed(global_seed)
            random.seed(global_seed)
            yield item, rng


MakeBatch = Callable[[list, BatchDraws], dict]


def whole_batch_draws(batch_size: int, seed: int = 0, batch_index: int = 0) -> BatchDraws:
    """The draws of every position of batch ``batch_index`` in one process (to call a ``make_batch`` directly)."""
    return BatchDraws(int(seed), int(batch_index), int(batch_size), range(int(batch_size)),
                      batch_seed(seed, batch_index))


def concatenate_batches(parts: list[dict]) -> dict:
    """One batch from per-sample batches: arrays joined along their first axis, lists joined, other values
    taken from the first part."""
    out = {}
    for key, value in parts[0].items():
        if isinstance(value, np.ndarray) and value.ndim:
            out[key] = np.concatenate([p[key] for p in parts])
        elif isinstance(value, list):
            out[key] = [v for p in parts for v in p[key]]
        else:
            out[key] = value
    return out


class SeededBatchLoader(DataLoader):
    """A batchgenerators ``DataLoader``: batch ``k`` of the stream is ``build_batch(first_batch + k)``,
    which draws ``batch_size`` items uniformly (with replacement) for the global batch and calls
    ``make_batch(items of this process's positions, draws)``; ``batch_size`` is the global batch size.
    In a ``MultiThreadedAugmenter`` worker ``w`` of ``n`` builds batches ``w, w + n, ...`` and the
    augmenter returns them in order, so the stream is the same for any number of workers."""

    def __init__(self, items: Sequence, make_batch: MakeBatch, batch_size: int, seed: int, first_batch: int = 0,
                 num_workers: int = 1):
        if not items:
            raise ValueError("no training items to sample from.")
        super().__init__(list(items), int(batch_size), num_threads_in_multithreaded=max(1, int(num_workers)),
                         seed_for_shuffle=int(seed), infinite=True)
        self.make_batch = make_batch
        self.seed = int(seed)
        self.first_batch = int(first_batch)
        self._produced = 0
        rank, world_size = _SHARD
        check_batch_split(self.batch_size, world_size)
        share = self.batch_size // world_size
        self.positions = range(rank * share, (rank + 1) * share)

    def build_batch(self, batch_index: int) -> dict:
        """This process's share of global batch ``batch_index`` (a pure function of the seed and the index)."""
        rng = batch_seed(self.seed, batch_index)
        chosen = rng.integers(0, len(self._data), size=self.batch_size)
        draws = BatchDraws(self.seed, int(batch_index), self.batch_size, self.positions, rng)
        batch = self.make_batch(draws.share([self._data[i] for i in chosen]), draws)
        batch["batch_index"] = int(batch_index)
        return batch

    def generate_train_batch(self) -> dict:
        index = self.first_batch + self.thread_id + self._produced * self.number_of_threads_in_multithreaded
        self._produced += 1
        return self.build_batch(index)


class BatchStream:
    """An iterator over a loader's batches, in this process or in ``num_workers`` batchgenerators worker
    processes; :meth:`close` stops the workers (the trainer calls it when training ends or fails)."""

    def __init__(self, loader: SeededBatchLoader, num_workers: int):
        self._augmenter = None
        if num_workers > 0:
            self._augmenter = MultiThreadedAugmenter(loader, None, int(num_workers), num_cached_per_queue=2,
                                                     seeds=None, pin_memory=False)
        self._source = self._augmenter if self._augmenter is not None else loader

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        return next(self._source)

    def close(self) -> None:
        if self._augmenter is not None:
            self._augmenter._finish()
            self._augmenter = None


def make_batch_stream(loader: SeededBatchLoader, num_workers: int) -> BatchStream:
    """The loader's batches, built here (``num_workers == 0``) or in worker processes."""
    return BatchStream(loader, int(num_workers))


__all__ = ["batch_seed", "sample_seed", "batch_shard", "BatchDraws", "whole_batch_draws", "concatenate_batches",
           "SeededBatchLoader", "BatchStream", "make_batch_stream"]
