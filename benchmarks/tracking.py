"""Tracking benchmark: every registered tracker on the Dataset501 test pairs, side by side, in one run.

    python benchmarks/tracking.py [--seed 0]

Runs the main job (``lesionnet_demo``): generates Dataset501 in ``$lesionnet_raw`` when it is missing
(default configuration), plans and preprocesses it, trains each trainable tracking method with its demo
settings on fold 0 (reused when ``checkpoint_final.pth`` exists), predicts the test pairs with the
baselines (identity, affine) and the trained methods, scores them with the DLS conventions and writes
``benchmarks/results/tracking.json`` and ``documentation/benchmarks.md``. Run-time figures are wall
times on the machine that ran it (stated in the output).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine_description, replace_section  # noqa: E402

from lesionnet import paths
from lesionnet.cli.demo import demo_entries, demo_methods, run_demo, validation_line
from lesionnet.datasets.dataset_id import DatasetNotFoundError, find_dataset_folder
from lesionnet.datasets.synthetic.followup_torso.config import DATASET_ID as FOLLOWUP_ID
from lesionnet.datasets.synthetic.followup_torso.dataset import generate_followup_dataset
from lesionnet.evaluation.tracker_comparison import compare_trackers, comparison_lines, markdown_table
from lesionnet.utils.files import write_json
from lesionnet.utils.logging_setup import configure_logging

ROOT = Path(__file__).resolve().parents[1]


def trained_method_lines(results: dict) -> list[str]:
    """Per trained method: its demo training, and what the training adds on fold 0's validation pairs."""
    lines = []
    for name, info in results.get("training", {}).items():
        settings, seconds = info["settings"], info.get("seconds")
        lines += [f"{name}: the demo's `{settings.get('preset', 'plan')}` preset ({settings['num_epochs']} epochs × "
                  f"{settings['iterations_per_epoch']} iterations, batch {settings['batch_size']}, fold 0), training "
                  "wall time " + (f"{seconds / 60:.1f} min" if seconds is not None else "not recorded")
                  + f"; `{name}_untrained` is the same network as initialised (`checkpoint_untrained.pth`).", ""]
        validation = info.get("validation") or {}
        if validation.get("untrained") and validation.get("trained"):
            lines += [f"What the training adds, on fold 0's validation pairs (`training_summary.json`): untrained "
                      f"{name} -> trained: {validation_line(validation)}.", ""]
    return lines


def transfer(results: dict, seed: int) -> dict:
    """The demo's methods, the trained ones unchanged (Dataset501's models and plans), on Dataset503's test
    split (the independent follow-up family; generated when missing)."""
    try:
        folder = find_dataset_folder(FOLLOWUP_ID)
    except DatasetNotFoundError:
        generate_followup_dataset(None, seed=seed, num_processes=os.cpu_count() or 1, progress=False)
        folder = find_dataset_folder(FOLLOWUP_ID)
    entries, comparisons = demo_entries(demo_methods(), results["dataset"])
    output = paths.results_dir() / folder.name / "transfer_from_501"
    return compare_trackers(folder, output, entries, progress=False, comparisons=comparisons)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no_transfer", action="store_true",
                        help="skip tracking Dataset503's test split with the Dataset501 models")
    args = parser.parse_args(argv)
    configure_logging()
    start = time.perf_counter()
    results = run_demo(seed=args.seed, progress=False)
    results["machine"] = machine_description()
    results["transfer"] = {} if args.no_transfer else {str(FOLLOWUP_ID): transfer(results, args.seed)}
    results["total_wall_seconds"] = time.perf_counter() - start
    predictions = Path(results["predictions_folder"])
    # written relative to $lesionnet_results: the file is committed and names no machine's folders
    results["predictions_folder"] = "$lesionnet_results/" + predictions.relative_to(paths.results_dir()).as_posix()
    write_json(ROOT / "benchmarks" / "results" / "tracking.json", results)
    text = [
        "Produced by `python benchmarks/tracking.py` (seed 0, default dataset configuration) on "
        f"{results['machine']}; metrics follow the DLS conventions (documentation/evaluation.md). "
        "`identity` predicts the unmoved source center (its world position read in the target scan); "
        "`affine` and `deformable` are the registration priors (SimpleITK); `matcher` is the parameter-free "
        "weighted NCC + prior matcher at the planned resolution; `<method>_untrained` is a trained method's "
        "network before training. `s / pair` includes the registration of a scan pair, shared among its lesions.",
        "", markdown_table(results), "", *[f"- {line}" for line in comparison_lines(results)], "",
        *trained_method_lines(results),
    ]
    for dataset_id, other in results["transfer"].items():
        text += [f"Trained on Dataset501 and applied unchanged to Dataset{dataset_id}'s test split (the priors and "
                 "the matcher with Dataset501's plan):", "", markdown_table(other), "",
                 *[f"- {line}" for line in comparison_lines(other)], ""]
    text = "\n".join(text)
    replace_section(ROOT / "documentation" / "benchmarks.md", "Lesion tracking on Dataset501 (synthetic), test split",
                    text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
