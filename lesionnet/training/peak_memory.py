"""Measured peak memory of one training step, for checking a method's memory model.

Method: the step runs in a **fresh Python subprocess** (:func:`run_measurement` starts
``python -m <module> --spec <json>``; the module builds the model and inputs and calls
:func:`measure_step`). :func:`measure_step` resets the kernel's resident-set high-water mark (writing
``5`` to ``/proc/self/clear_refs``, Linux >= 4.0), reads the current RSS (the baseline: interpreter +
torch + parameters + inputs), runs the step (forward, loss, backward: gradients allocated, no
optimizer state) and reads the high-water mark ``VmHWM`` from ``/proc/self/status``;
``step_peak_mib = peak - baseline``. Where the reset is not possible it falls back to
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` before and after the step (then transient peaks of
import and model building, ~400 MiB, hide steps smaller than that). RSS high-water marks are what the
OS actually had to provide (allocator overhead, oneDNN scratch buffers and temporaries included), the
number a memory budget must respect.

As a device-independent cross-check the step's saved tensors are summed
(``torch.autograd.graph.saved_tensors_hooks``, parameters excluded, each storage counted once):
``saved_tensors_mib`` is the activation memory autograd holds at the end of the forward pass.

These are CPU numbers. On a GPU the same step differs by the CUDA context, cuDNN workspaces and the
caching allocator; the activation part (``saved_tensors_mib``) carries over.
"""
from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import time
from typing import Callable


def _maxrss_mib() -> float:
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    scale = 1.0 / (1024.0 * 1024.0) if sys.platform == "darwin" else 1.0 / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _proc_status_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the process's RSS high-water mark to the current RSS (Linux); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    hwm, rss = _proc_status_mib("VmHWM"), _proc_status_mib("VmRSS")
    return hwm is not None and rss is not None and hwm <= rss + 1.0


def measure_step(step: Callable[[], object], parameters) -> dict:
    """Run ``step()`` (forward + loss + backward) once in this process and report its memory (MiB).

    ``parameters`` are the model's parameters (their storages are not counted as saved tensors).
    Only meaningful in a fresh process (the RSS high-water mark is process-wide); use
    :func:`run_measurement`. Returns ``baseline_rss_mib``, ``peak_rss_mib``, ``step_peak_mib``,
    ``saved_tensors_mib``, ``wall_s``, ``method`` and ``result`` (what ``step`` returned).
    """
    import torch

    param_ptrs = {p.untyped_storage().data_ptr() for p in parameters}
    saved: dict[int, int] = {}

    def pack(t):
        try:
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr not in param_ptrs:
                saved[ptr] = storage.nbytes()
        except (RuntimeError, NotImplementedError):
            pass        # a tensor without a plain storage (e.g. sparse): nothing to count, autograd keeps it as is
        return t

    gc.collect()
    if _reset_peak_rss():
        method = "VmHWM after resetting it via /proc/self/clear_refs, minus VmRSS before the step"
        baseline = _proc_status_mib("VmRSS")
    else:
        method = "ru_maxrss after the step minus ru_maxrss before it (fresh subprocess)"
        baseline = _maxrss_mib()
    t0 = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = step()
    wall = time.perf_counter() - t0
    peak = _proc_status_mib("VmHWM") if method.startswith("VmHWM") else _maxrss_mib()
    return {"baseline_rss_mib": round(baseline, 1), "peak_rss_mib": round(peak, 1),
            "step_peak_mib": round(peak - baseline, 1), "saved_tensors_mib": round(sum(saved.values()) / 2 ** 20, 1),
            "wall_s": round(wall, 2), "method": method, "result": result}


def run_measurement(module: str, spec: dict, num_threads: int = 2, timeout_s: float = 3600.0) -> dict:
    """Run ``python -m <module> --spec <json>`` in a fresh process with ``num_threads`` threads and return
    the JSON object it prints last (the module measures with :func:`measure_step`)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(int(num_threads)))
    proc = subprocess.run([sys.executable, "-m", module, "--spec", json.dumps(spec)], capture_output=True, text=True,
                          timeout=timeout_s, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement subprocess failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


__all__ = ["measure_step", "run_measurement"]
