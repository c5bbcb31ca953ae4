"""``lesionnet_demo``: the main job end to end on the built-in synthetic datasets: tracking (Dataset501),
then detection (Dataset502, :mod:`lesionnet.cli.demo_detection`); ``--task`` runs one of them.

Tracking steps, each an importable lesionnet function, each skipped when its output already exists:

1. generate Dataset501_SynthLesionTracking (``lesionnet_make_synthetic -d 501``);
2. check it (``lesionnet_verify_dataset -d 501``);
3. fingerprint, plan and preprocess it (``lesionnet_plan_and_preprocess -d 501``);
4. train every registered trainable tracking method on fold 0 with its ``demo_training`` settings
   (``lesionnet_train 501 METHOD 0 ...``; TLT: the planned network, about 20 minutes on 2 CPU cores; a
   finished run is reused);
5. track the test pairs with every registered tracking method that can predict — the baselines first,
   each trained method also as its untrained network (``<name>_untrained``) — through
   ``lesionnet_predict``, score them with the DLS conventions (``lesionnet_evaluate_tracking``) side by
   side, and test each trained method against its untrained network and every baseline (paired t-tests);
6. print the comparison table and write it, with the JSON, to the results folder.

Data go to ``$lesionnet_raw`` / ``$lesionnet_preprocessed`` / ``$lesionnet_results`` (defaults:
``~/lesionnet_data/...``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys

from lesionnet import paths
from lesionnet.cli.demo_data import prepare_demo_dataset
from lesionnet.cli.demo_detection import run_detection_demo
from lesionnet.cli.entry import command_line, run_command
from lesionnet.datasets.synthetic import TrackingConfig, generate_tracking_dataset
from lesionnet.evaluation.detection_comparison import comparison_markdown
from lesionnet.evaluation.tracker_comparison import compare_trackers, comparison_lines, markdown_table
from lesionnet.inference.model_request import LearnedModelOptions
from lesionnet.methods import methods_with
from lesionnet.training.checkpoints import FINAL
from lesionnet.training.fold_guard import model_files
from lesionnet.training.run_training import train_model, training_output_folder
from lesionnet.training.trainer import SUMMARY_FILE
from lesionnet.utils.files import write_json, write_text

logger = logging.getLogger("lesionnet_demo")
DEMO_DATASET_ID = 501


def demo_methods() -> list:
    """The tracking methods the demo runs: every registered one that can predict, the untrained ones
    (the baselines) first; the trainable ones need ``demo_training`` settings."""
    methods = methods_with("tracking", "predict")
    return [m for m in methods if not m.trainable] + [m for m in methods if m.trainable and m.demo_training]


def demo_entries(methods: list, dataset_name: str) -> tuple[list, list]:
    """``(entries, comparisons)`` for :func:`compare_trackers`: every method as a row, a trained method also
    as its untrained network (``<name>_untrained``, the weights it started from); each trained method is
    compared, paired, with its untrained network and with every baseline."""
    options = LearnedModelOptions(dataset=dataset_name, folds=("0",), plans_name="lesionnet_plans")
    entries, comparisons = [], []
    baselines = [m.name for m in methods if not m.trainable]
    for method in methods:
        if method.trainable:
            untrained = f"{method.name}_untrained"
            entries.append((untrained, method, dataclasses.replace(options, checkpoint="untrained")))
            comparisons += [(method.name, untrained)] + [(method.name, name) for name in baselines]
        entries.append((method.name, method, options))
    return entries, comparisons


def train_for_demo(method, dataset_folder, progress: bool) -> dict:
    """Train ``method`` on fold 0 of ``dataset_folder`` with its demo settings (or reuse the finished run);
    returns ``{"settings", "seconds", "validation": {"untrained", "trained"}}``."""
    settings = dict(method.demo_training)
    preset = settings.pop("preset", "plan")
    folder = training_output_folder(dataset_folder.name, method.name, 0)
    info: dict = {"settings": dict(method.demo_training), "seconds": None, "validation": None}
    if (folder / FINAL).is_file():
        logger.info("Training: using the trained %s in %s", method.name, folder)
    else:
        logger.info("Training a %s %s on fold 0 of %s (%s)", preset, method.name, dataset_folder.name, settings)
        # continue a killed run (--c); a new one otherwise (without --c's "no checkpoint" warning)
        info["seconds"] = train_model(dataset_folder.name, method, 0, preset=preset, resume=bool(model_files(folder)),
                                      progress=progress, **settings).seconds
    if (folder / SUMMARY_FILE).is_file():
        summary = json.loads((folder / SUMMARY_FILE).read_text())
        # fold-0 validation before and after training: what the training itself adds
        info["validation"] = {"untrained": summary.get("untrained"), "trained": summary.get("final")}
        # the run's whole training time (sum of its epochs' wall times), also when this call only continued it
        info["seconds"] = summary.get("training_seconds_total", info["seconds"])
    return info


def run_demo(seed: int = 0, progress: bool = True) -> dict:
    """Run the demo; returns the comparison (see :func:`compare_trackers`) with ``"training"``: per
    trained method its settings, training time and fold-0 validation before and after training."""
    from lesionnet.cli.plan_and_preprocess import run as plan_and_preprocess

    logger.info("Steps 1-2/5: the synthetic tracking dataset")
    dataset_folder = prepare_demo_dataset(DEMO_DATASET_ID, lambda folder, **kw: generate_tracking_dataset(
        folder, TrackingConfig(), **kw), "tracking", seed, progress)

    methods = demo_methods()
    trained = [m for m in methods if m.trainable]
    training = {}
    if trained:
        logger.info("Step 3/5: fingerprint, plans and preprocessing")
        plan_and_preprocess(DEMO_DATASET_ID, progress=progress)
        training = {m.name: train_for_demo(m, dataset_folder, progress) for m in trained}
    output_folder = paths.results_dir() / dataset_folder.name / "demo"
    entries, comparisons = demo_entries(methods, dataset_folder.name)
    logger.info("Step 5/5: tracking the test pairs with %s", ", ".join(label for label, _, _ in entries))
    results = compare_trackers(dataset_folder, output_folder / "predictions", entries, progress=progress,
                               comparisons=comparisons)
    results["predictions_folder"] = str(output_folder / "predictions")
    results["training"] = training
    write_json(output_folder / "comparison.json", results)
    write_text(output_folder / "comparison.md", markdown_table(results) + "\n")
    logger.info("Wrote %s", output_folder / "comparison.md")
    return results


def training_lines(results: dict) -> list[str]:
    """Per trained method: its training time and its fold-0 validation, untrained -> trained."""
    lines = []
    for name, info in results.get("training", {}).items():
        if info.get("seconds") is not None:
            preset = info["settings"].get("preset", "plan")
            lines.append(f"{name} training ({preset} preset, fold 0): {info['seconds'] / 60:.1f} min wall time.")
        validation = info.get("validation") or {}
        if validation.get("untrained") and validation.get("trained"):
            items = "scans" if "val_AS" in validation["trained"] else "pairs"
            lines.append(f"{name} on the fold-0 validation {items}, untrained -> trained: "
                         f"{validation_line(validation)}")
    return lines


def validation_line(validation: dict) -> str:
    """``CPM@10mm a -> b %, MED c -> d mm`` (tracking) or ``AS a -> b %, AP@0.1 c -> d %`` (detection) from
    ``{"untrained": {...}, "trained": {...}}`` metrics."""
    u, t = validation["untrained"], validation["trained"]
    if "val_AS" in t:
        return (f"AS {u.get('val_AS', 0.0):.1f} -> {t['val_AS']:.1f} %, "
                f"AP@0.1 {u.get('val_AP@0.1', 0.0):.1f} -> {t['val_AP@0.1']:.1f} %")
    return (f"CPM@10mm {u['val_cpm_10mm']:.1f} -> {t['val_cpm_10mm']:.1f} %, "
            f"MED {u['val_med_mm']:.2f} -> {t['val_med_mm']:.2f} mm")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lesionnet_demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic datasets (default 0)")
    parser.add_argument("--task", choices=("both", "tracking", "detection"), default="both",
                        help="run the tracking part (Dataset501), the detection part (Dataset502) or both (default)")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    hint = command_line("lesionnet_demo", argv) + " (every finished step is reused)"
    return run_command("lesionnet_demo", lambda: _demo(args), args.verbose, interrupted_hint=hint)


def _demo(args: argparse.Namespace) -> int:
    if args.task in ("both", "tracking"):
        results = run_demo(seed=args.seed, progress=not args.no_progress)
        print()
        print(markdown_table(results))
        lines = comparison_lines(results) + training_lines(results)
        if lines:
            print()
            print("\n".join(lines))
    if args.task in ("both", "detection"):
        detection = run_detection_demo(train_for_demo, seed=args.seed, progress=not args.no_progress)
        if detection:
            print()
            print(comparison_markdown(detection))
            lines = training_lines(detection)
            if lines:
                print()
                print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
