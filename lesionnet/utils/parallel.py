"""One way to run independent jobs: in this process or a process pool, with a progress bar."""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable

from tqdm import tqdm


def run_jobs(function: Callable, jobs: list, num_processes: int, progress: bool, description: str,
             unit: str = "case", on_result: Callable | None = None) -> list:
    """``[function(job) for job in jobs]``, in a pool of ``num_processes`` workers when > 1.

    ``function`` must be picklable (module level). Results come back in the order of ``jobs``,
    whatever order the workers finish in, so outputs do not depend on the number of workers.
    ``on_result(result)``, when given, is called in this process as soon as each job finishes
    (e.g. to store it, so that an interrupted run keeps the work already done).
    """
    results: list = [None] * len(jobs)
    with tqdm(total=len(jobs), desc=description, unit=unit, disable=not progress or not jobs) as bar:
        if num_processes <= 1 or len(jobs) <= 1:
            for i, job in enumerate(jobs):
                results[i] = function(job)
                if on_result is not None:
                    on_result(results[i])
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=min(num_processes, len(jobs))) as pool:
                futures = {pool.submit(function, job): i for i, job in enumerate(jobs)}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    if on_result is not None:
                        on_result(results[futures[future]])
                    bar.update()
    return results


def default_num_processes() -> int:
    """Worker processes when ``-np`` is not given: the CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)
