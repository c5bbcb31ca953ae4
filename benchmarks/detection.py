"""Detection benchmark on Dataset502's test scans: every trainable detection method (LN-Tracker), its
untrained network and its ``demo_variants`` (LN-Tracker's merging baseline: the same trained detector
without track queries), side by side from one run.

    python benchmarks/detection.py            # after (or instead of) lesionnet_demo --task detection
    python benchmarks/detection.py --ablations   # + the paper's ablations, each trained like the demo's model

``--ablations`` trains every ablation preset of the method (LN-Tracker: ``small_no_mask``,
``small_no_similarity``) on fold 0 with the demo's settings into its own results folder
(``$lesionnet_results/<dataset>/benchmark_ablations/<preset>/``, reused when finished), and compares each
with the demo's model on the same test scans (section "ablations" of the JSON).

Runs the detection part of ``lesionnet_demo`` (generation, planning, the demo's training on fold 0 —
reused when finished — and the comparison), then writes ``benchmarks/results/detection_502.json`` and the
section "Detection (Dataset502)" of ``documentation/benchmarks.md``: AS, sens@1/2/4/8, AP@0.1, boxes,
lesions split into several boxes, boxes merging several lesions, median seconds per scan, training
wall time, and exact McNemar tests on the lesions found at ≤ 4 false positives per scan. Times are
wall times on the machine named in the output.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine_description, replace_section  # noqa: E402

from lesionnet import paths  # noqa: E402
from lesionnet.cli.demo import train_for_demo, training_lines  # noqa: E402
from lesionnet.cli.demo_detection import detection_demo_methods, run_detection_demo  # noqa: E402
from lesionnet.datasets.dataset_id import find_dataset_folder  # noqa: E402
from lesionnet.evaluation.detection_comparison import (  # noqa: E402
    compare_detectors,
    comparison_markdown,
    detection_entries,
)
from lesionnet.training.checkpoints import FINAL  # noqa: E402
from lesionnet.training.run_training import train_model  # noqa: E402
from lesionnet.training.trainer import SUMMARY_FILE  # noqa: E402
from lesionnet.utils.files import load_json, write_json  # noqa: E402
from lesionnet.utils.logging_setup import configure_logging  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def ablation_presets(method) -> list[str]:
    """The method's presets that are the paper's ablations (named ``<demo preset>_no_<part>``)."""
    base = method.demo_training.get("preset", "plan")
    return [name for name in method.presets if name.startswith(f"{base}_no_")]


def run_ablations(progress: bool) -> dict:
    """Train each ablation preset like the demo's model (reused when finished) and compare it with the demo's
    model on the test scans; :func:`compare_detectors`'s result with ``"training"``."""
    dataset_folder = find_dataset_folder(502)
    root = paths.results_dir() / dataset_folder.name / "benchmark_ablations"
    entries, comparisons, training = [], [], {}
    for method in detection_demo_methods():
        trained = next(row for row in detection_entries(method, dataset_folder.name) if row[0] == method.name)
        entries.append(trained)
        settings = {k: v for k, v in method.demo_training.items() if k != "preset"}
        for preset in ablation_presets(method):
            results_dir = root / preset
            folder = results_dir / dataset_folder.name / f"{method.name}__lesionnet_plans" / "fold_0"
            label = f"{method.name}_{preset}"
            seconds = None
            if not (folder / FINAL).is_file():
                seconds = train_model(dataset_folder.name, method, 0, preset=preset, progress=progress,
                                      output_folder=folder, resume=folder.is_dir(), **settings).seconds
            if seconds is None and (folder / SUMMARY_FILE).is_file():      # the earlier run's epochs
                seconds = load_json(folder / SUMMARY_FILE).get("training_seconds_total")
            training[label] = {"preset": preset, "settings": settings, "seconds": seconds}
            options = dataclasses.replace(trained[2], results_dir=results_dir)
            entries.append((label, method, options, {}))
            comparisons.append((method.name, label))
    results = compare_detectors(dataset_folder, root / "predictions", entries, comparisons, progress=progress)
    results["training"] = training
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no_progress", action="store_true")
    parser.add_argument("--ablations", action="store_true", help="also train and compare the paper's ablations")
    args = parser.parse_args(argv)
    configure_logging()
    results = run_detection_demo(train_for_demo, progress=not args.no_progress)
    if args.ablations:
        results["ablations"] = run_ablations(progress=not args.no_progress)
    results["machine"] = machine_description()
    write_json(ROOT / "benchmarks" / "results" / "detection_502.json", results)
    body = (f"`python benchmarks/detection.py` on {results['machine']}: {results['n_scans']} test scans, "
            f"{results['n_lesions']} lymph nodes; each method trained on fold 0 with its demo settings "
            "(`lesionnet_demo --task detection`).\n\n" + comparison_markdown(results) + "\n\n"
            + "\n".join(training_lines(results)) + ablation_markdown(results.get("ablations"))
            + "\n\nData: `benchmarks/results/detection_502.json`.")
    replace_section(ROOT / "documentation" / "benchmarks.md", "Detection (Dataset502)", body)
    print(comparison_markdown(results))
    return 0


def ablation_markdown(ablations: dict | None) -> str:
    """The ablations' table and paired tests, with each ablation's training time."""
    if not ablations:
        return ""
    times = ", ".join(f"{label} {info['seconds'] / 60:.1f} min" for label, info in ablations["training"].items()
                      if info["seconds"])
    return ("\n\n### Ablations (`python benchmarks/detection.py --ablations`)\n\n" + comparison_markdown(ablations)
            + (f"\n\nTraining wall time: {times}." if times else ""))


if __name__ == "__main__":
    sys.exit(main())
