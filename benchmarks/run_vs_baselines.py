"""Training runs' networks, untrained and trained, against every baseline on a test split, in one run.

    python benchmarks/run_vs_baselines.py RUN_FOLDER [RUN_FOLDER ...] [--labels L ...] [--name NAME]
        [--checkpoint final] [--robustness] [--dataset OTHER]

A RUN_FOLDER is any training folder of a trainable tracking method (``network.json`` names the method,
dataset and plans): a fold of ``lesionnet_train``, the learning curve's run (``.../learning_curve/run``) or
one trained into its own folder. Each run's ``checkpoint_untrained.pth`` and ``checkpoint_<checkpoint>.pth``
track the test pairs next to the untrained baselines (identity, affine, deformable, matcher), scored with
the DLS conventions, with paired tests of each trained network against its untrained self, each baseline
and the other runs. ``--robustness`` also tracks every pair from 9 shifted template centers (the DLT
paper's protocol) and reports the CPM drop and the spread per method; when several runs are of one method
(e.g. the same training with seeds 0, 1, 2), it also tests each two such methods on the per-pair drops
averaged over their runs, so that one run's luck does not decide which is more robust. ``--dataset`` applies the runs,
unchanged, to another tracking dataset's test split (e.g. 503: the priors and the matcher then use the
runs' dataset's plan). Writes ``benchmarks/results/run_vs_baselines_<dataset id>[_<name>].json`` and
``.md``. The run folders are only read: the predictor finds each through a link in
``$lesionnet_results/<dataset>/run_vs_baselines/<name>/models/<label>/``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine_description  # noqa: E402

from lesionnet import paths
from lesionnet.cli.demo import demo_methods
from lesionnet.datasets.dataset_id import find_dataset_folder
from lesionnet.evaluation.robustness import compare_drops, format_drop_comparison, robustness_summary
from lesionnet.evaluation.tracker_comparison import compare_trackers, comparison_lines, markdown_table
from lesionnet.evaluation.tracking_metrics import evaluate_tracking_file
from lesionnet.inference.model_request import LearnedModelOptions
from lesionnet.inference.prediction_output import PREDICTIONS_FILENAME
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
    parser.add_argument("run_folders", type=Path, nargs="+")
    parser.add_argument("--labels", nargs="+", default=None, help="row names of the runs (default: their methods)")
    parser.add_argument("--name", default="", help="suffix of the results files")
    parser.add_argument("--checkpoint", default="final", help="the trained checkpoint: final | best | latest")
    parser.add_argument("--robustness", action="store_true", help="also the robustness protocol (9 shifted centers)")
    parser.add_argument("--dataset", default=None, help="track this dataset's test split instead (id or name)")
    args = parser.parse_args(argv)
    configure_logging()
    infos = [json.loads((folder / "network.json").read_text()) for folder in args.run_folders]
    methods = [get_method(info["method"], "tracking", "predict") for info in infos]
    labels = args.labels or [m.name for m in methods]
    if len(labels) != len(methods) or len(set(labels)) != len(labels):
        raise SystemExit("--labels: one distinct label per run folder.")
    dataset = infos[0]["dataset"]
    target = find_dataset_folder(args.dataset) if args.dataset else find_dataset_folder(dataset)
    work = paths.results_dir() / target.name / "run_vs_baselines" / (args.name or "default")
    baselines = [m for m in demo_methods() if not m.trainable]
    # the baselines that read a plan (the matcher, the planned prior) read the runs' dataset's, as the runs do
    base_options = LearnedModelOptions(dataset=dataset, plans_name=infos[0]["plans_name"])
    entries, comparisons = [(m.name, m, base_options) for m in baselines], []
    for folder, info, method, label in zip(args.run_folders, infos, methods, labels):
        root = discoverable_root(folder, info["dataset"], method.name, info["plans_name"], work / "models" / label)
        options = LearnedModelOptions(dataset=info["dataset"], folds=("0",), plans_name=info["plans_name"],
                                      checkpoint=args.checkpoint, results_dir=root)
        entries += [(f"{label}_untrained", method, dataclasses.replace(options, checkpoint="untrained")),
                    (label, method, options)]
        comparisons += [(label, f"{label}_untrained")] + [(label, m.name) for m in baselines]
    comparisons += [(a, b) for i, a in enumerate(labels) for b in labels[i + 1:]]
    results = compare_trackers(target, work / "predictions", entries, progress=False, comparisons=comparisons,
                               robustness=args.robustness)
    results.update(machine=machine_description(), run_folders=[f.name for f in args.run_folders],
                   checkpoint=args.checkpoint, trained_on=dataset)
    stem = ROOT / "benchmarks" / "results" / ("run_vs_baselines_" + target.name.split("_")[0][len("Dataset"):]
                                              + (f"_{args.name}" if args.name else ""))
    command = " ".join(["python benchmarks/run_vs_baselines.py", *["RUN_FOLDER"] * len(methods)]
                       + (["--labels", *labels] if args.labels else []) + (["--name", args.name] if args.name else [])
                       + (["--robustness"] if args.robustness else [])
                       + (["--dataset", args.dataset] if args.dataset else []))
    header = (f"`{command}` on {results['machine']}: each run's `checkpoint_{args.checkpoint}.pth` as "
              f"{', '.join(f'`{label}`' for label in labels)}, and `<label>_untrained` the same network as "
              f"initialised; trained on {dataset}, tracking {target.name}'s test split.")
    text = [header, "", markdown_table(results), "", *[f"- {line}" for line in comparison_lines(results)]]
    if args.robustness:
        results["pooled_robustness"] = pooled_robustness(work / "predictions", labels, [m.name for m in methods])
        text += ["", robustness_table(results)]
    write_json(stem.with_suffix(".json"), results)
    write_text(stem.with_suffix(".md"), "\n".join(text) + "\n")
    print("\n".join(text))
    return 0


def pooled_robustness(predictions_folder: Path, labels: list[str], method_names: list[str]) -> dict:
    """Several runs of one method (e.g. seeds): per method with two or more runs, the runs' CPM@10mm drops,
    and for each two such methods the paired test of the per-pair drops averaged over each method's runs
    (:func:`compare_drops` with lists). ``{}`` when no method has two runs."""
    groups: dict[str, list[str]] = {}
    for label, name in zip(labels, method_names):
        groups.setdefault(name, []).append(label)
    groups = {name: runs for name, runs in groups.items() if len(runs) > 1}
    if not groups:
        return {}
    evaluations = {label: evaluate_tracking_file(predictions_folder / label / PREDICTIONS_FILENAME)
                   for runs in groups.values() for label in runs}
    drops = {name: {label: robustness_summary(evaluations[label])["cpm_10mm_drop"] for label in runs}
             for name, runs in groups.items()}
    names = list(groups)
    tests = [compare_drops([evaluations[r] for r in groups[a]], [evaluations[r] for r in groups[b]], a, b)
             for i, a in enumerate(names) for b in names[i + 1:]]
    return {"runs": groups, "cpm_10mm_drop": drops, "comparisons": tests}


def robustness_table(results: dict) -> str:
    """The robustness protocol per method: CPM@10mm and MED from the original and from all template centers."""
    lines = ["Robustness (each pair also from 9 template centers shifted within 0.25 r; `lesionnet_predict "
             "--robustness`): CPM@10mm and MED on the original centers, on all ten, the drop, and the spread (per "
             "pair, the mean distance of its ten predictions from their centroid; median over pairs).", "",
             "| method | CPM@10mm original → all | drop (points) | MED original → all (mm) | spread (mm) |",
             "| --- | --- | --- | --- | --- |"]
    for label, row in results["methods"].items():
        r = row["robustness"]
        lines.append(f"| {label} | {r['original']['CPM@10mm']:.2f} → {r['all']['CPM@10mm']:.2f} | "
                     f"{r['cpm_10mm_drop']:.2f} | {r['original']['MED']:.2f} → {r['all']['MED']:.2f} | "
                     f"{r['spread_mm']['median']:.2f} |")
    drops = results.get("robustness_comparisons", [])
    if drops:
        lines += ["", "Paired tests of the per-pair drops (a negative difference: the first drops less):", ""]
        lines += [f"- {format_drop_comparison(c)}" for c in drops]
    pooled = results.get("pooled_robustness") or {}
    if pooled:
        lines += ["", "Over the runs of each method (training runs that differ only in their seed, when labelled so): "
                  "the CPM@10mm drop of each run, and the paired test of the per-pair drops averaged over each "
                  "method's runs:", ""]
        for name, run_drops in pooled["cpm_10mm_drop"].items():
            values = list(run_drops.values())
            lines.append(f"- {name}: " + ", ".join(f"{label} {d:.2f}" for label, d in run_drops.items())
                         + f" (mean {np.mean(values):.2f}, sd {np.std(values, ddof=1):.2f} points)")
        lines += [f"- {format_drop_comparison(c)}" for c in pooled["comparisons"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
