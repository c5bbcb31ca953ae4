"""Seeded, resumable batch streams on batchgenerators: batch ``k`` is a pure function of (seed, k).

A method gives :class:`SeededBatchLoader` its training items and a ``make_batch(items, rng)`` function;
the loader seeds a numpy Generator (the method's random choices) and numpy's and Python's global RNGs
(batchgenerators' transforms) from the run seed and the batch index, so batches are identical whether
they are built in this process or in any of the worker processes, and a resumed run sees exactly the
batches an uninterrupted run would have seen. :func:`make_batch_stream` returns an iterator with a
``close()`` that stops the worker processes.
"""
from __future__ import annotations

import random
from typing import Callable, Sequence

import numpy as np
from batchgenerators.dataloading.data_loader import DataLoader
from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter

MakeBatch = Callable[[list, np.random.Generator], dict]


def batch_seed(seed: int, batch_index: int) -> tuple[np.random.Generator, int]:
    """The Generator of batch ``batch_index`` and the 32-bit seed for numpy's global RNG."""
    sequence = np.random.SeedSequence([int(seed), int(batch_index)])
    return np.random.default_rng(sequence), int(sequence.generate_state(1)[0])


class SeededBatchLoader(DataLoader):
    """A batchgenerators ``DataLoader``: batch ``k`` of the stream is ``build_batch(first_batch + k)``,
    which draws ``batch_size`` items uniformly (with replacement) and calls ``make_batch(chosen, rng)``.
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

    def build_batch(self, batch_index: int) -> dict:
        """Batch number ``batch_index`` of the stream (pure function of the seed and the index)."""
        rng, global_seed = batch_seed(self.seed, batch_index)
        np.random.seed(global_seed)          # batchgenerators draws from numpy's and Python's global RNGs
        random.seed(global_seed)
        chosen = rng.integers(0, len(self._data), size=self.batch_size)
        batch = self.make_batch([self._data[i] for i in chosen], rng)
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


__all__ = ["batch_seed", "SeededBatchLoader", "BatchStream", "make_batch_stream"]
