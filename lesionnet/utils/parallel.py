"""One way to run independent jobs: in this process or a process pool, with a progress bar."""
from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from tqdm import tqdm


class WorkerDiedError(RuntimeError):
    """A worker process of :func:`run_jobs` died (killed, out of memory, a crash in native code)."""


def job_name(job) -> str:
    """How a job is named in messages: its first element (the callers put the case id there)."""
    first = job[0] if isinstance(job, (tuple, list)) and job else job
    return str(first)[:80]


def run_jobs(function: Callable, jobs: list, num_processes: int, progress: bool, description: str,
             unit: str = "case", on_result: Callable | None = None, start_method: str | None = None) -> list:
    """``[function(job) for job in jobs]``, in a pool of ``num_processes`` workers when > 1.

    ``function`` must be picklable (module level). Results come back in the order of ``jobs``,
    whatever order the workers finish in, so outputs do not depend on the number of workers.
    ``on_result(result)``, when given, is called in this process as soon as each job finishes
    (e.g. to store it, so that an interrupted run keeps the work already done). At most
    ``num_processes`` jobs run at once and each result is handed over when it is ready, so memory stays
    bounded by the workers' own. A worker that dies raises :class:`WorkerDiedError` naming the job(s) it
    may have been working on (:func:`job_name`); the pool never hangs. ``start_method`` (e.g. ``"spawn"``
    for work that runs torch, which a forked child must not inherit mid-use) picks how workers start.
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
            context = multiprocessing.get_context(start_method) if start_method else None
            pool = ProcessPoolExecutor(max_workers=min(num_processes, len(jobs)), initializer=_ignore_interrupts,
                                       mp_context=context)
            try:
                futures = {pool.submit(function, job): i for i, job in enumerate(jobs)}
                pending, started = set(futures), set()
                while pending:
                    started |= {f for f in pending if f.running()}
                    done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                    for future in done:
                        try:
                            results[futures[future]] = future.result()
                        except BrokenProcessPool:
                            names = sorted(job_name(jobs[futures[f]]) for f in started  # not finished well
                                           if not f.done() or f.exception() is not None)
                            held = " or ".join(names[:8]) or "a job it had just started"
                            raise WorkerDiedError(
                                f"{description}: a worker process died (killed, or out of memory?) while working on "
                                f"{held}. Run again with fewer processes (-np), or -np 1 to see "
                                "the error in this process.") from None
                        if on_result is not None:
                            on_result(results[futures[future]])
                        bar.update()
            except BaseException:                # Ctrl-C or a failed job: drop the queued jobs, then re-raise
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown()
    return results


def _ignore_interrupts() -> None:
    """Pool workers ignore SIGINT: Ctrl-C reaches the main process, which stops the pool (no worker tracebacks)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def default_num_processes() -> int:
    """Worker processes when ``-np`` is not given: the CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)
