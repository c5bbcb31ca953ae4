"""``train_model(501, "tlt", 0)``: everything ``lesionnet_train`` does, as an importable function.

Results layout (nnU-Net style)::

    $lesionnet_results/<DatasetXXX_Name>/<method>__<plans_name>/fold_<k>/
        checkpoint_latest.pth  checkpoint_best.pth  checkpoint_final.pth
        training_log.txt  progress.png  training_summary.json  network.json

``network.json`` records what a predictor needs to rebuild the model: method, network configuration,
patch sizes, target spacing, normalisation and the plans it came from.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from lesionnet import paths
from lesionnet.planning.fingerprint import preprocessed_folder_for, resolve_raw_dataset
from lesionnet.planning.plans_io import DEFAULT_PLANS_NAME, get_configuration, load_plans
from lesionnet.preprocessing.loading import PreprocessedDataset
from lesionnet.training.config import TrainingConfig
from lesionnet.training.splits import fold_pair_ids, load_or_create_splits
from lesionnet.training.tlt_method import TLTMethod
from lesionnet.training.trainer import Trainer, TrainingResult
from lesionnet.utils.files import write_json

logger = logging.getLogger(__name__)

TRAINABLE_METHODS = ("tlt",)
NETWORK_FILE = "network.json"

#: network presets: "plan" is the planned configuration; "small" is a CPU-sized TLT (same structure,
#: narrower extractor, 2 layers per line) used by the demo; "tiny" is for tests
TLT_PRESETS = {
    "plan": {},
    "small": {"channels": [16, 32, 48, 64], "num_heads": 4, "layers_per_line": 2, "ffn_dim": 128,
              "head_hidden": 64, "head_layers": 2, "dropout": 0.0, "stem_kernel": 3,
              "gaussian_input_channels": True},
    "tiny": {"channels": [8, 16, 16, 24], "num_heads": 4, "layers_per_line": 1, "ffn_dim": 48,
             "head_hidden": 24, "head_layers": 2, "dropout": 0.0, "stem_kernel": 3},
}


def training_output_folder(dataset_name: str, method: str, fold, plans_name: str = DEFAULT_PLANS_NAME) -> Path:
    """``$lesionnet_results/<dataset>/<method>__<plans>/fold_<fold>``."""
    return paths.results_dir() / dataset_name / f"{method}__{plans_name}" / f"fold_{fold}"


def network_config_for(configuration: dict, preset: str = "plan") -> dict:
    """The planned TLT network with a preset's overrides (the plan's SSS threshold is always kept)."""
    if preset not in TLT_PRESETS:
        raise ValueError(f"unknown network preset {preset!r}; choose one of {sorted(TLT_PRESETS)}.")
    return {**configuration["network"], **TLT_PRESETS[preset]}


def default_training_config(configuration: dict, **overrides) -> TrainingConfig:
    """Training settings from the plan (batch size) with ``overrides`` (None values ignored)."""
    values = {"batch_size": int(configuration.get("batch_size", 2))}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainingConfig(**values)


def resolve_device(device: str | None) -> torch.device:
    """``cuda`` when available and not told otherwise, else ``cpu``; a clear error for missing CUDA."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda: this torch build sees no CUDA device; use --device cpu.")
    return torch.device(device)


def train_model(dataset, method: str = "tlt", fold: int | str = 0, plans_name: str = DEFAULT_PLANS_NAME,
                preset: str = "plan", resume: bool = False, device: str | None = None, progress: bool = True,
                **training_overrides) -> TrainingResult:
    """Train ``method`` on fold ``fold`` of a preprocessed dataset (see the module docstring).

    ``training_overrides`` are :class:`TrainingConfig` fields (``num_epochs``, ``iterations_per_epoch``,
    ``learning_rate``, ``seed``, ``num_workers``, ...); None values keep the defaults.
    """
    if method not in TRAINABLE_METHODS:
        raise ValueError(f"method '{method}' cannot be trained yet; trainable: {TRAINABLE_METHODS} "
                         "('affine' needs no training).")
    raw = resolve_raw_dataset(dataset)
    plans = load_plans(raw, plans_name)
    configuration = get_configuration(plans, method)
    data = PreprocessedDataset(raw, method, plans=plans)
    pairs = data.pairs()
    if not pairs:
        raise ValueError(f"{data.folder}: no training pairs.")
    # preprocessing stores TrackingPair.patient_id; the fallback is the same rule (scan id up to its first "_")
    patients = {p.pair_id: p.patient or p.source.split("_")[0] for p in pairs}
    splits = load_or_create_splits(preprocessed_folder_for(raw.folder), patients)
    train_ids, val_ids = fold_pair_ids(splits, fold)
    by_id = {p.pair_id: p for p in pairs}
    missing = [i for i in train_ids + val_ids if i not in by_id]
    if missing:
        raise ValueError(f"splits_final.json names pairs that are not preprocessed: {missing[:5]}")
    network_config = network_config_for(configuration, preset)
    config = default_training_config(configuration, **training_overrides)
    max_val = config.max_val_pairs
    val_pairs = [by_id[i] for i in val_ids][:max_val] if max_val else [by_id[i] for i in val_ids]
    method_impl = TLTMethod(data.case, configuration, [by_id[i] for i in train_ids], val_pairs, network_config)
    output = training_output_folder(raw.name, method, fold, plans_name)
    output.mkdir(parents=True, exist_ok=True)
    write_json(output / NETWORK_FILE, {
        "method": method, "dataset": raw.name, "plans_name": plans_name, "fold": fold, "preset": preset,
        "network_config": network_config, "data_identifier": configuration["data_identifier"],
        "target_spacing_zyx": configuration["target_spacing_zyx"],
        "template_patch_size_zyx": configuration["template_patch_size_zyx"],
        "search_patch_size_zyx": configuration["search_patch_size_zyx"],
        "normalization": configuration["normalization"],
        "registration": plans["configurations"].get("affine", {}).get("registration", {}),
    })
    logger.info("%s fold %s: %d training pairs, %d validation pairs -> %s", raw.name, fold, len(train_ids),
                len(val_pairs), output)
    trainer = Trainer(method_impl, config, output, resolve_device(device), resume=resume,
                      metadata={"dataset": raw.name, "plans_name": plans_name, "fold": str(fold), "preset": preset},
                      progress=progress)
    return trainer.run()


def set_cpu_threads(num_threads: int | None) -> None:
    """Pin torch's intra-op threads (bit-for-bit CPU repeatability needs the same count in every run)."""
    if num_threads:
        torch.set_num_threads(int(num_threads))
