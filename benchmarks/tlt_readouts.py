"""Where a trained TLT puts the lesion, read out several ways: is the classification map localising, and on what?

    python benchmarks/tlt_readouts.py RUN_FOLDER [--checkpoints checkpoint_untrained.pth checkpoint_final.pth]
                                      [--pairs 60] [--offset 0.12] [--dataset 501] [--name NAME]

RUN_FOLDER is a TLT training folder (``.../tlt__lesionnet_plans/fold_0``); its ``network.json`` gives the
plan section. For fold-0 training and validation pairs (``--pairs`` of each; the training ones spread
over the fold) the search crop is cut as in training (``PairSampler``, no augmentation), once centred
on the registration prior (as at prediction) and once shifted by up to ``--offset`` of the patch per axis
(the prior map moves with its lesion, the crop center does not). Per checkpoint and crop it reports the
median distance (mm) to the target center and the % within 10 mm of:

* ``regression``: the network's prediction (global regression ``Σ softmax(Ŷ) Ĉ``);
* ``argmax``: the center of the classification map's highest token;
* ``prior``: the peak of the prior map on the crop;
* ``crop_center``: the search crop's center.

A map that learned the crop's center follows ``crop_center`` when the crop is shifted; one that reads
the prior follows ``prior``; one that matches the template beats both. Writes
``benchmarks/results/tlt_readouts_<dataset>[_<name>].json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine_description  # noqa: E402

from lesionnet.datasets.dataset_id import resolve_raw_dataset
from lesionnet.methods import get_method
from lesionnet.methods.tlt.maps import lesion_gaussian
from lesionnet.methods.tlt.method import INPUT_KEYS
from lesionnet.paths import preprocessed_folder_for
from lesionnet.preprocessing.loading import PreprocessedDataset
from lesionnet.training.checkpoints import load_checkpoint
from lesionnet.training.pair_sampling import PairSampler, stack_samples
from lesionnet.training.run_training import set_cpu_threads
from lesionnet.training.splits import fold_item_ids, load_or_create_splits
from lesionnet.utils.files import write_json, write_text

ROOT = Path(__file__).resolve().parents[1]
READOUTS = ("regression", "argmax", "prior", "crop_center")


def readout_errors_mm(network, sampler: PairSampler, pairs, batch_size: int = 6) -> dict:
    """``{readout: [distance to the target center in mm, per pair]}`` (see the module docstring)."""
    import torch

    rng = np.random.default_rng(0)
    errors = {name: [] for name in READOUTS}
    for start in range(0, len(pairs), batch_size):
        batch = stack_samples([sampler.sample(p, rng) for p in pairs[start:start + batch_size]])
        with torch.no_grad():
            out = network(*(torch.as_tensor(batch[k]) for k in INPUT_KEYS))
        target, spacing = batch["target_center_zyx"], batch["spacing_zyx"]
        prior_peak = np.array([np.unravel_index(np.argmax(g[0]), g[0].shape) for g in batch["search_prior"]])
        crop_center = np.broadcast_to((np.array(batch["search"].shape[2:]) - 1) / 2.0, target.shape)
        centers = {"regression": network.predict_center(out).numpy(),
                   "argmax": network.predict_center(out, use_global_regression=False).numpy(),
                   "prior": prior_peak, "crop_center": crop_center}
        for name, center in centers.items():
            errors[name] += np.linalg.norm((center - target) * spacing, axis=1).tolist()
    return errors


def summarise(errors: dict) -> dict:
    """``{readout: {"median_mm", "within_10mm" (%)}}`` of :func:`readout_errors_mm`'s distances."""
    return {name: {"median_mm": round(float(np.median(v)), 2),
                   "within_10mm": round(100 * float(np.mean(np.less_equal(v, 10))), 1)} for name, v in errors.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_folder", type=Path)
    parser.add_argument("--checkpoints", nargs="+", default=["checkpoint_untrained.pth", "checkpoint_final.pth"])
    parser.add_argument("--pairs", type=int, default=60, help="training and validation pairs (each)")
    parser.add_argument("--offset", type=float, default=0.12, help="largest crop shift, fraction of the patch")
    parser.add_argument("--dataset", default="501")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="", help="suffix of the results files (one per compared run)")
    args = parser.parse_args(argv)
    set_cpu_threads(args.threads)
    section = json.loads((args.run_folder / "network.json").read_text())["configuration"]
    method = get_method("tlt")
    raw = resolve_raw_dataset(args.dataset)
    data = PreprocessedDataset(raw, section["data_identifier"])
    splits = load_or_create_splits(preprocessed_folder_for(raw.folder), data.training_items())
    train_ids, val_ids = fold_item_ids(splits, 0)
    by_id = {p.pair_id: p for p in data.pairs()}
    step = max(1, len(train_ids) // args.pairs)
    pair_sets = {"train": [by_id[i] for i in train_ids[::step][:args.pairs]],
                 "validation": [by_id[i] for i in val_ids[:args.pairs]]}
    samplers = {f"offset {offset:g}": PairSampler(data.cached_case, section["template_patch_size_zyx"],
                                                   section["search_patch_size_zyx"], lesion_gaussian,
                                                   search_offset_fraction=offset)
                for offset in (0.0, args.offset)}
    results = {}
    for name in args.checkpoints:
        model = method.build(section)
        model.network.load_state_dict(load_checkpoint(args.run_folder / name)["model"])
        model.network.eval()
        for split, pairs in pair_sets.items():
            for crop, sampler in samplers.items():
                key = f"{name} | {split} | {crop}"
                results[key] = summarise(readout_errors_mm(model.network, sampler, pairs))
                print(key, json.dumps(results[key]), flush=True)
    out = ROOT / "benchmarks" / "results" / ("_".join(filter(None, ["tlt_readouts", args.dataset, args.name])))
    write_json(out.with_suffix(".json"), {"run_folder": args.run_folder.name, "machine": machine_description(),
                                          "pairs_per_split": args.pairs, "offset": args.offset, "results": results})
    lines = ["| checkpoint | pairs | crop | " + " | ".join(READOUTS) + " |", "|" + " --- |" * (3 + len(READOUTS))]
    for key, row in results.items():
        cells = [f"{row[r]['median_mm']} / {row[r]['within_10mm']}" for r in READOUTS]
        lines.append("| " + " | ".join(key.split(" | ") + cells) + " |")
    header = "Median distance to the target (mm) / % within 10 mm.\n\n"
    write_text(out.with_suffix(".md"), header + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
