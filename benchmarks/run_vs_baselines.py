"""One training run's network, untrained and trained, against every baseline on a test split, in one run.

    python benchmarks/run_vs_baselines.py RUN_FOLDER [--name NAME] [--checkpoint final]

RUN_FOLDER is any training folder of a trainable tracking method (``network.json`` names the method, dataset
and plans): a fold of ``lesionnet_train``, the learning curve's run (``.../learning_curve/run``) or one
trained into its own folder. Its ``checkpoint_untrained.pth`` and ``checkpoint_<checkpoint>.pth`` track the
dataset's test pairs next to the untrained baselines (identity, affine, deformable, matcher), scored with the
DLS conventions, with paired tests of the trained network against its untrained self and each baseline.
Writes ``benchmarks/results/run_vs_baselines_<dataset id>[_<name>].json`` and ``.md``. The run folder is
only read: the predictor finds it through a link in ``$lesionnet_results/<dataset>/run_vs_baselines/``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine_description  # noqa: E402

from lesionnet import paths
from lesionnet.cli.demo import demo_methods
from lesionnet.datasets.dataset_id import find_dataset_folder
from lesionnet.evaluation.tracker_comparison import compare_trackers, comparison_lines, markdown_table
from lesionnet.inference.model_request import LearnedModelOptions
from lesionnet.methods import get_method
from lesionnet.utils.files import write_json, write_text
from lesionnet.utils.logging_setup import configure_logging

ROOT = Path(__file__).resolve().parents[1]


def discoverable_root(run_folder: Path, dataset: str, method: str, plans_name: str, work: Path) -> Path:
    """A results root in which ``run_folder`` is fold 0 of ``method`` (a symbolic link; nothing is copied)."""
    link = work / dataset / f"{method}__{plans_name}" / "fold_0"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and link.resolve() != run_folder.resolve():
        link.unlink()
    if not link.exists():
        link.symlink_to(run_folder.resolve(), target_is_directory=True)
    return work


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_folder", type=Path)
    parser.add_argument("--name", default="", help="suffix of the results files")
    parser.add_argument("--checkpoint", default="final", help="the trained checkpoint: final | best | latest")
    args = parser.parse_args(argv)
    configure_logging()
    info = json.loads((args.run_folder / "network.json").read_text())
    method, dataset, plans_name = get_method(info["method"], "tracking", "predict"), info["dataset"], info["plans_name"]
    label = args.name or method.name
    work = paths.results_dir() / dataset / "run_vs_baselines" / (args.name or "default")
    root = discoverable_root(args.run_folder, dataset, method.name, plans_name, work / "models")
    options = LearnedModelOptions(dataset=dataset, folds=("0",), plans_name=plans_name, checkpoint=args.checkpoint,
                                  results_dir=root)
    baselines = [m for m in demo_methods() if not m.trainable]
    entries = [*baselines, (f"{label}_untrained", method, dataclasses.replace(options, checkpoint="untrained")),
               (label, method, options)]
    comparisons = [(label, f"{label}_untrained")] + [(label, m.name) for m in baselines]
    results = compare_trackers(find_dataset_folder(dataset), work / "predictions", entries, progress=False,
                               comparisons=comparisons)
    results.update(machine=machine_description(), run_folder=args.run_folder.name, checkpoint=args.checkpoint)
    stem = ROOT / "benchmarks" / "results" / ("run_vs_baselines_" + dataset.split("_")[0][len("Dataset"):]
                                              + (f"_{args.name}" if args.name else ""))
    write_json(stem.with_suffix(".json"), results)
    name_option = f" --name {args.name}" if args.name else ""
    header = (f"`python benchmarks/run_vs_baselines.py RUN_FOLDER{name_option}` on {results['machine']}: "
              f"`{label}` is `checkpoint_{args.checkpoint}.pth` of the run, `{label}_untrained` the same network "
              "as initialised.")
    text = "\n".join([header, "", markdown_table(results), "", *[f"- {line}" for line in comparison_lines(results)]])
    write_text(stem.with_suffix(".md"), text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
