"""Memory budget detection, ``plan_experiment`` (fingerprint → ``lesionnet_plans.json``) and plan loading.

``lesionnet_plans.json`` (in ``$lesionnet_preprocessed/DatasetXXX_Name/``)::

    {
      "plans_version": 4, "dataset": ..., "task": "tracking" | "detection",
      "fingerprint_signature": ..., "memory_budget": {decision}, "usable_memory_bytes": ...,
      "normalization": {decision},
      "data_configurations": {"lesionnetPlans_3d": {"target_spacing_zyx", "native_z", "normalization",
                                                    "registration", ...}},
      "configurations": {
        "<method>": {"method", "data_identifier", <the method's own sizes>,
                     "decisions": {name: {"value", "rule", "inputs"}}},
        ...                                    # one per planned method of the dataset's task
      },
      "not_planned": {method: reason}
    }

What each method's section holds is documented with the method (``documentation/methods/``).
The file is rewritten only when its content changes.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable

from lesionnet.datasets.dataset_id import resolve_raw_dataset
from lesionnet.paths import preprocessed_folder_for
from lesionnet.planning import memory as mm
from lesionnet.planning.fingerprint import FINGERPRINT_FILE, load_fingerprint
from lesionnet.planning.planner import PLANS_VERSION, PlanningMethod, plan_from_fingerprint
from lesionnet.planning.rules import decision
from lesionnet.utils.manifest import read_json_or_none, write_json_if_changed

logger = logging.getLogger(__name__)

PLANS_FILE = "lesionnet_plans.json"
#: fraction of the machine's RAM used as the CPU training budget
CPU_BUDGET_FRACTION = 0.5


def _cgroup_memory_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
    return None


def physical_memory_bytes() -> int:
    """RAM of this machine (``os.sysconf``), or the cgroup limit when that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = _cgroup_memory_limit()
    return int(min(total, limit) if limit else total)


def cpu_budget_bytes(physical_bytes: int, fraction: float = CPU_BUDGET_FRACTION) -> int:
    """``fraction`` of the RAM, rounded down to 0.5 GiB (stable between runs, unlike MemAvailable)."""
    half_gib = mm.GIB // 2
    return int(max(half_gib, (fraction * physical_bytes) // half_gib * half_gib))


def detect_memory_budget(gpu_memory_gb: float | None = None) -> dict:
    """The training memory budget as a decision record (value in bytes; ``inputs.device``).

    ``gpu_memory_gb`` (GiB) wins; else the visible GPU's total memory (``torch.cuda``, device 0); else
    :data:`CPU_BUDGET_FRACTION` of the RAM (MemTotal / cgroup limit) for CPU training.
    """
    if gpu_memory_gb is not None:
        if gpu_memory_gb <= 0:
            raise ValueError(f"--gpu_memory_gb must be positive, got {gpu_memory_gb}")
        return decision(int(gpu_memory_gb * mm.GIB), "--gpu_memory_gb (GiB)", device="cuda",
                        gpu_memory_gb=gpu_memory_gb, source="argument")
    try:
        import torch
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            return decision(int(props.total_memory), "total memory of the visible GPU (torch.cuda device 0)",
                            device="cuda", gpu=props.name, source="torch.cuda")
    except Exception as e:  # pragma: no cover - broken CUDA setups
        logger.warning("Could not query the GPU (%s); planning for CPU.", e)
    physical = physical_memory_bytes()
    return decision(cpu_budget_bytes(physical), f"no GPU: {CPU_BUDGET_FRACTION:g} × RAM, rounded down to 0.5 GiB",
                    device="cpu", physical_memory_bytes=physical, source="os.sysconf")


DEFAULT_PLANS_NAME = PLANS_FILE[: -len(".json")]


def plans_path_for(dataset, plans_name: str = DEFAULT_PLANS_NAME) -> Path:
    """``$lesionnet_preprocessed/<dataset>/<plans_name>.json``."""
    raw = resolve_raw_dataset(dataset)
    return preprocessed_folder_for(raw.folder) / f"{plans_name}.json"


def plan_experiment(dataset, methods: Iterable[PlanningMethod], gpu_memory_gb: float | None = None,
                    fingerprint: dict | None = None, output_folder: str | os.PathLike | None = None,
                    token_budget: int = 1024, write: bool = True) -> dict:
    """Plan ``methods`` for a dataset from its fingerprint and the memory budget.

    Args:
        dataset: dataset id, folder name, path or RawDataset.
        methods: the methods to plan (``lesionnet.methods.REGISTRY.values()`` plans every registered one).
        gpu_memory_gb: budget in GiB (default: detected, see :func:`detect_memory_budget`).
        fingerprint: the fingerprint dict (default: read ``dataset_fingerprint.json``).
        output_folder: preprocessed dataset folder (default ``$lesionnet_preprocessed/<name>``).
        token_budget: most template tokens SSS keeps for large lesions.
        write: write ``lesionnet_plans.json`` (only if its content changed).
    """
    raw = resolve_raw_dataset(dataset)
    out_folder = Path(output_folder) if output_folder is not None else preprocessed_folder_for(raw.folder)
    if fingerprint is None:
        fingerprint = read_json_or_none(out_folder / FINGERPRINT_FILE) if output_folder is not None \
            else load_fingerprint(raw)
        if fingerprint is None:
            raise FileNotFoundError(f"{out_folder / FINGERPRINT_FILE}: no fingerprint; run extract_fingerprint first.")
    budget = detect_memory_budget(gpu_memory_gb)
    plans = plan_from_fingerprint(fingerprint, budget, methods, token_budget=token_budget)
    for name, config in plans["configurations"].items():
        if config.get("fits_memory_budget") is False:
            logger.warning("%s: even the smallest %s configuration (%.2f GiB) exceeds the usable budget "
                           "(%.2f GiB); training may run out of memory.", raw.name, name,
                           config["estimated_memory_bytes"] / mm.GIB, plans["usable_memory_bytes"] / mm.GIB)
    if write:
        path = out_folder / PLANS_FILE
        if write_json_if_changed(path, plans):
            logger.info("Wrote %s", path)
        else:
            logger.info("Plans unchanged (%s)", path)
    return plans


def load_plans(dataset, plans_name: str = DEFAULT_PLANS_NAME) -> dict:
    """Read ``<plans_name>.json`` (default ``lesionnet_plans.json``) of a dataset (id, name, path or RawDataset)."""
    path = plans_path_for(dataset, plans_name)
    plans = read_json_or_none(path)
    if plans is None:
        raise FileNotFoundError(f"{path}: no plans. Run lesionnet_plan_and_preprocess -d {Path(path).parent.name} "
                                "first.")
    if plans.get("plans_version") != PLANS_VERSION:
        raise FileNotFoundError(f"{path}: plans version {plans.get('plans_version')} was made by another lesionnet "
                                f"version (this one reads version {PLANS_VERSION}). Run lesionnet_plan_and_preprocess "
                                f"-d {Path(path).parent.name} again (it re-plans and redoes what changed).")
    return plans


class NotPlannedError(KeyError):
    """A method has no section in the plans; the message says why and what was planned."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def get_configuration(plans: dict, method: str) -> dict:
    """One method's section of a plans dict, with a clear error when it was not planned."""
    configs = plans.get("configurations", {})
    if method in configs:
        return configs[method]
    reason = plans.get("not_planned", {}).get(method)
    known = ", ".join(sorted(configs)) or "none"
    hint = "" if reason else " Re-run lesionnet_plan_and_preprocess to plan it."
    raise NotPlannedError(f"method '{method}' is not planned for {plans.get('dataset')}"
                          + (f": {reason}" if reason else "") + f". Planned: {known}.{hint}")


def get_data_configuration(plans: dict, section: dict) -> dict:
    """The data configuration (preprocessing: spacing, normalisation, registration) a section names."""
    data_id = section.get("data_identifier")
    if not data_id:
        raise ValueError(f"method '{section.get('method')}' works on the raw scans (no preprocessed data).")
    configs = plans.get("data_configurations", {})
    if data_id not in configs:
        raise ValueError(f"the plans of {plans.get('dataset')} name data configuration '{data_id}' but do not define "
                         "it; re-run lesionnet_plan_and_preprocess.")
    return configs[data_id]


__all__ = ["PLANS_FILE", "DEFAULT_PLANS_NAME", "NotPlannedError",
           "detect_memory_budget", "cpu_budget_bytes", "physical_memory_bytes", "plan_experiment",
           "load_plans", "get_configuration", "get_data_configuration", "plans_path_for"]
