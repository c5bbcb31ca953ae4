"""Training on several processes with ``torch.distributed``: the process group, its collectives, the launcher.

Two ways to start ``N`` training processes, one code path after the start:

* ``lesionnet_train 501 tlt 0 --num_processes N`` -- :func:`launch` spawns ``N`` workers on this machine
  (``multiprocessing``, start method ``spawn``); they meet at ``127.0.0.1`` on a free port;
* ``torchrun --nnodes M --nproc_per_node N ... $(which lesionnet_train) 501 tlt 0`` -- ``torchrun`` starts the
  processes on every machine and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
  ``MASTER_PORT``; :func:`context_from_environment` joins that group.

Either way each process holds a :class:`DistributedContext` and the backend is ``gloo`` on CPU and ``nccl``
on CUDA (each process on GPU ``LOCAL_RANK``). The trainer uses the context to split the global batch
(:func:`lesionnet.training.batch_stream.batch_shard`), to shard and gather validation, to average the logged losses,
and to let rank 0 alone write files. A single process uses :data:`SINGLE_PROCESS`, whose collectives are
identities, so the trainer has one code path.

A worker that dies (killed, out of memory, an error) ends the whole run: :func:`launch` stops the other
workers and raises :class:`DistributedRunError` naming the rank, its process id and what happened, with
the command that continues (``--c``). Under ``torchrun`` its agent does the same.
"""
from __future__ import annotations

import datetime
import hashlib
import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist
from tqdm import tqdm

from lesionnet.utils.errors import error_message

logger = logging.getLogger(__name__)

#: how long a collective may wait for a rank before the process group gives up (a dead peer is normally
#: noticed at once: its sockets close; this bounds the rare case of a peer that hangs without dying)
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)
ENVIRONMENT_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedRunError(RuntimeError):
    """A multi-process run ended because one of its processes failed (the message names it)."""


class ReplicaDivergenceError(RuntimeError):
    """The ranks of a data-parallel run hold different weights (a bug in the run's synchronisation)."""


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in a data-parallel run: ``rank`` of ``world_size`` processes, on CUDA on GPU ``gpu``.
    ``world_size == 1`` is a single process: every collective returns its input."""

    rank: int = 0
    world_size: int = 1
    gpu: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, logs and plots."""
        return self.rank == 0

    def shard(self, items: list) -> list:
        """Every ``world_size``-th item, from ``rank`` (a validation shard)."""
        return list(items)[self.rank::self.world_size]

    def gather(self, value: Any) -> list:
        """``[value of rank 0, value of rank 1, ...]`` on every rank (picklable values)."""
        if not self.active:
            return [value]
        gathered: list = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (picklable values; e.g. a checkpoint read by rank 0)."""
        if not self.active:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, function: Callable[[], Any]) -> Any:
        """``function()`` run by rank 0 alone, its result (or its exception, raised) on every rank: a
        decision that reads or writes the results folder (e.g. whether a fold may be trained) ends every
        rank the same way, with rank 0's message."""
        if not self.active:
            return function()
        outcome = None
        if self.is_main:
            try:
                outcome = ("value", function())
            except Exception as error:            # sent to every rank, raised there too
                outcome = ("error", error)
        kind, value = self.broadcast(outcome)
        if kind == "error":
            raise value
        return value

    def mean(self, values: dict) -> dict:
        """The mean over ranks of each number in ``values`` (the same keys on every rank)."""
        if not self.active or not values:
            return dict(values)
        keys = sorted(values)
        tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        dist.all_reduce(tensor)
        return {k: float(v) / self.world_size for k, v in zip(keys, tensor.tolist())}

    def check_replicas(self, network: torch.nn.Module, step: int) -> None:
        """Raise :class:`ReplicaDivergenceError` unless every rank holds bit-identical weights."""
        if not self.active:
            return
        digests = self.gather(weights_digest(network))
        if len(set(digests)) != 1:
            raise ReplicaDivergenceError(f"step {step}: the ranks hold different weights (digests {digests}); "
                                         "the gradient synchronisation is broken.")


SINGLE_PROCESS = DistributedContext()


def check_batch_split(global_batch_size: int, world_size: int) -> None:
    if world_size < 1 or global_batch_size % world_size:
        raise ValueError(f"a global batch of {global_batch_size} cannot be split evenly over {world_size} "
                         f"processes; choose a --batch_size that is a multiple of {world_size}.")


def weights_digest(network: torch.nn.Module) -> str:
    """A hash of every parameter's and buffer's bytes (equal digests: bit-identical weights)."""
    digest = hashlib.sha256()
    for name, tensor in network.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def backend_for(device: torch.device, processes_per_gpu: int = 1) -> str:
    """NCCL when each process has a GPU of its own, else gloo (CPU, or several processes sharing a GPU,
    which NCCL refuses)."""
    return "nccl" if device.type == "cuda" and processes_per_gpu <= 1 else "gloo"


def environment_world_size() -> int:
    """``WORLD_SIZE`` as ``torchrun`` sets it (1 when the process was not started by it)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number; unset it, or start the "
                         "run with torchrun.") from None


def context_from_environment(device: torch.device) -> DistributedContext:
    """Join the process group that ``torchrun`` (or :func:`launch`) described in the environment; a single
    process when there is none. On CUDA the process uses GPU ``LOCAL_RANK`` modulo the GPUs it sees (more
    processes than GPUs on a machine share them, over gloo)."""
    world_size = environment_world_size()
    if world_size <= 1:
        return SINGLE_PROCESS
    missing = [k for k in ENVIRONMENT_KEYS if k not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={world_size} but {', '.join(missing)} not set; start the run with torchrun "
                         "(it sets them) or with lesionnet_train --num_processes N.")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    lesionnet_logger = logging.getLogger("lesionnet")
    if rank and lesionnet_logger.getEffectiveLevel() > logging.DEBUG:
        lesionnet_logger.setLevel(logging.WARNING)          # rank 0 reports; the others only warnings
    gpu, sharing = 0, 1
    if device.type == "cuda":
        gpus = max(1, torch.cuda.device_count())
        gpu = local_rank % gpus
        sharing = -(-int(os.environ.get("LOCAL_WORLD_SIZE", local_rank + 1)) // gpus)
        torch.cuda.set_device(gpu)
        if sharing > 1 and rank == 0:
            logger.warning("%d processes per GPU: gloo instead of NCCL (NCCL needs a GPU per process).", sharing)
    if not dist.is_initialized():
        dist.init_process_group(backend_for(device, sharing), init_method="env://", rank=rank,
                                world_size=world_size, timeout=COLLECTIVE_TIMEOUT)
    return DistributedContext(rank, world_size, gpu)


def is_main_process() -> bool:
    """False in the ranks other than 0 of a run started by ``torchrun`` (or :func:`launch`)."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def leave_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def free_port() -> int:
    """A TCP port that is free on this machine now (for the workers' rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _worker(rank: int, function: Callable, args: tuple, world_size: int, port: int, threads: int, verbose: bool,
            connection) -> None:
    """One spawned worker: the torchrun environment, logging (INFO on rank 0 only), then ``function(*args)``;
    sends ``("done", rank 0's result)`` or ``("error", one line)`` to the launcher and exits."""
    import traceback

    from lesionnet.utils.logging_setup import configure_logging

    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                       "LOCAL_WORLD_SIZE": str(world_size),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    configure_logging(verbose)                 # context_from_environment quiets the ranks other than 0
    signal.signal(signal.SIGINT, signal.SIG_IGN)          # Ctrl-C reaches the launcher, which stops the workers
    tqdm.set_lock(threading.RLock())     # tqdm's default is a semaphore, which a killed worker leaves behind
    if threads:
        torch.set_num_threads(threads)
    try:
        result = function(*args)
        connection.send(("done", result if rank == 0 else None))
    except BaseException as error:
        if verbose:
            traceback.print_exc()
        connection.send(("error", error_message(error)))
        raise SystemExit(1) from None
    finally:
        leave_process_group()
        connection.close()


def _failure(rank: int, process, message: str | None) -> str:
    """What happened to worker ``rank``, in one sentence."""
    if process.exitcode is not None and process.exitcode < 0:
        cause = f"was killed by signal {signal.Signals(-process.exitcode).name}"
    elif message:
        cause = f"failed: {message}"
    else:
        cause = f"exited with status {process.exitcode}"
    return f"rank {rank} (pid {process.pid}) {cause}"


def _stop(processes) -> None:
    """Terminate the workers still running (SIGTERM, then SIGKILL after 30 s)."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
            process.join()


def launch(function: Callable, args: tuple, num_processes: int, threads_per_process: int | None = None) -> Any:
    """Run ``function(*args)`` in ``num_processes`` spawned workers that form one process group (the
    function joins it with :func:`context_from_environment`); return rank 0's result.

    The workers' environment is the one ``torchrun`` would give them on one machine; they log like this
    process (rank 0 at INFO, the others warnings only). ``threads_per_process`` (default: the usable CPU
    cores divided among the workers) sets torch's intra-op threads. When a worker dies or fails, the others
    are stopped at once and :class:`DistributedRunError` names it (a worker killed by a signal before one
    that failed because its peer vanished); Ctrl-C stops all of them.
    """
    import multiprocessing
    from multiprocessing.connection import wait

    from lesionnet.utils.parallel import default_num_processes

    if num_processes < 2:
        raise ValueError(f"launch needs at least 2 processes, got {num_processes}.")
    threads = threads_per_process or max(1, default_num_processes() // num_processes)
    verbose = logging.getLogger().getEffectiveLevel() <= logging.DEBUG      # -v: the workers log at DEBUG too
    spawn, port = multiprocessing.get_context("spawn"), free_port()
    pipes = [spawn.Pipe(duplex=False) for _ in range(num_processes)]
    processes = [spawn.Process(target=_worker, args=(rank, function, args, num_processes, port, threads, verbose,
                                                     pipes[rank][1]), name=f"lesionnet-rank{rank}")
                 for rank in range(num_processes)]
    try:
        for process in processes:
            process.start()
        for _, sender in pipes:
            sender.close()
        logger.info("Started %d training processes (pids %s), %d torch threads each.", num_processes,
                    ", ".join(str(p.pid) for p in processes), threads)
        messages: dict = {}
        while True:
            for rank, (receiver, _) in enumerate(pipes):
                if rank not in messages and receiver.poll():
                    try:
                        messages[rank] = receiver.recv()
                    except EOFError:                     # closed without a message: the worker died
                        messages[rank] = ("gone", None)
            failed = [rank for rank, p in enumerate(processes) if p.exitcode not in (None, 0)]
            if failed:
                first = min(failed, key=lambda r: (processes[r].exitcode >= 0, r))   # killed ones first
                kind, text = messages.get(first, (None, None))
                raise DistributedRunError(
                    f"{_failure(first, processes[first], text if kind == 'error' else None)}; the other training "
                    "processes were stopped. Add --c to the same command to continue from the last checkpoint "
                    "(with any number of processes).")
            if all(p.exitcode == 0 for p in processes):
                return (messages.get(0) or (None, None))[1]
            wait([p.sentinel for p in processes if p.exitcode is None] + [r for r, _ in pipes if r.poll() is False],
                 timeout=1.0)
    finally:
        _stop(processes)
        for receiver, _ in pipes:
            receiver.close()


__all__ = ["DistributedContext", "SINGLE_PROCESS", "DistributedRunError", "ReplicaDivergenceError",
           "check_batch_split", "weights_digest", "backend_for", "environment_world_size", "context_from_environment",
           "is_main_process", "leave_process_group", "free_port", "launch", "COLLECTIVE_TIMEOUT"]
