"""Memory of one training step, the shared part: the estimate type and the device reserves.

Each method's memory model (``lesionnet/methods/<method>/memory.py``) counts, in float32 values, what
a training step holds at its peak:

* **parameters**, their **gradients** and Adam's two moment buffers (4 × parameters);
* **saved activations**: the tensors autograd keeps for the backward pass, counted layer by layer
  from the network's structure (which tensors each operation saves);
* **backward transient**: the gradient buffers alive together while the largest layers are
  differentiated (a method-specific, fitted number of full-resolution tensors);
* **runtime overhead**: allocator/oneDNN/threadpool memory that a CPU step needs beyond its tensors
  (measured ≈ 130 MiB with torch 2.x on CPU), or on a GPU the CUDA context and cuDNN workspace
  (``GPU_RESERVE_BYTES``, accounted for in :func:`usable_memory_bytes`).

Where a method's model has been checked against measured peaks is said in its own module.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

BYTES_PER_FLOAT = 4
MIB = 2 ** 20
GIB = 2 ** 30
#: CPU: memory a training step needs beyond its tensors (oneDNN scratch, allocator, threads), measured
CPU_RUNTIME_OVERHEAD_BYTES = 128 * MIB
#: GPU: CUDA context + cuDNN workspace, subtracted from the budget before anything is planned
GPU_RESERVE_BYTES = int(0.75 * GIB)
#: CPU: interpreter + torch libraries + data loading, subtracted from a CPU budget
CPU_RESERVE_BYTES = int(0.5 * GIB)
#: Adam keeps two moments per parameter
OPTIMIZER_STATES = 2


@dataclass
class MemoryEstimate:
    """Bytes of one training step, by component. ``total_bytes`` is what the budget must hold."""

    parameters: int
    parameter_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    activation_bytes: int
    transient_bytes: int
    overhead_bytes: int
    details: dict = field(default_factory=dict)

    @property
    def step_peak_bytes(self) -> int:
        """Peak memory added by forward + backward once the model and inputs exist (no optimizer
        state): saved activations + gradients + backward transient + runtime overhead. This is what
        a method's measurement in a fresh process reports (``step_peak_mib``, see
        :mod:`lesionnet.training.peak_memory`)."""
        return self.activation_bytes + self.gradient_bytes + self.transient_bytes + self.overhead_bytes

    @property
    def total_bytes(self) -> int:
        return self.parameter_bytes + self.optimizer_bytes + self.step_peak_bytes

    def to_dict(self) -> dict:
        d = asdict(self)
        d["step_peak_bytes"] = self.step_peak_bytes
        d["total_bytes"] = self.total_bytes
        d["total_gib"] = round(self.total_bytes / GIB, 3)
        return d


def usable_memory_bytes(budget_bytes: float, device: str = "cuda") -> int:
    """The part of a memory budget a training step may use: the budget minus the fixed reserve of the
    device (CUDA context on a GPU, interpreter and libraries on CPU). Monotone in the budget."""
    reserve = GPU_RESERVE_BYTES if device == "cuda" else CPU_RESERVE_BYTES
    return int(max(0.0, float(budget_bytes) - reserve))


def prod(values) -> int:
    """Product of integers (a patch's voxel count)."""
    out = 1
    for v in values:
        out *= int(v)
    return out



def estimate(parameters: int, activation_floats: float, transient_floats: float, device: str,
             details: dict | None = None) -> MemoryEstimate:
    """A :class:`MemoryEstimate` of an Adam training step from the counts a method's model makes:
    ``parameters`` (weights, gradients and two moments each), saved activations and the backward
    transient in float32 values, plus the CPU runtime overhead on ``device == "cpu"``."""
    return MemoryEstimate(
        parameters=int(parameters),
        parameter_bytes=int(parameters) * BYTES_PER_FLOAT,
        gradient_bytes=int(parameters) * BYTES_PER_FLOAT,
        optimizer_bytes=OPTIMIZER_STATES * int(parameters) * BYTES_PER_FLOAT,
        activation_bytes=int(activation_floats * BYTES_PER_FLOAT),
        transient_bytes=int(transient_floats * BYTES_PER_FLOAT),
        overhead_bytes=CPU_RUNTIME_OVERHEAD_BYTES if device == "cpu" else 0,
        details=dict(details or {}),
    )


__all__ = ["MemoryEstimate", "usable_memory_bytes", "estimate", "prod", "BYTES_PER_FLOAT", "GIB", "MIB",
           "GPU_RESERVE_BYTES", "CPU_RESERVE_BYTES", "CPU_RUNTIME_OVERHEAD_BYTES", "OPTIMIZER_STATES"]
