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
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine_description, replace_section  # noqa: E402

from lesionnet import paths
from lesionnet.cli.demo import run_demo, validation_line
from lesionnet.evaluation.tracker_comparison import markdown_table
from lesionnet.evaluation.tracking_metrics import compare_predictions, evaluate_tracking_file
from lesionnet.utils.files import write_json
from lesionnet.utils.logging_setup import configure_logging

ROOT = Path(__file__).resolve().parents[1]


def trained_method_lines(results: dict, predictions: Path) -> list[str]:
    """Per trained method: its difference to the affine prior (paired t-test), its demo training and what
    the training adds on fold 0's validation pairs."""
    m, lines = results["methods"], []
    for name, info in results.get("training", {}).items():
        versus = compare_predictions(evaluate_tracking_file(predictions / name / "predictions.json"),
                                     evaluate_tracking_file(predictions / "affine" / "predictions.json"),
                                     label_a=name, label_b="affine").to_dict()
        results.setdefault("vs_affine", {})[name] = versus
        settings, seconds = info["settings"], info.get("seconds")
        lines += [
            f"{name} vs affine: CPM@10mm {m[name]['CPM@10mm'] - m['affine']['CPM@10mm']:+.2f} points, "
            f"MED {m[name]['MED'] - m['affine']['MED']:+.2f} mm (paired t-test on distances p = "
            f"{versus['distance_mm']['p_value']:.2g}). {name}: the demo's `{settings.get('preset', 'plan')}` preset "
            f"({settings['num_epochs']} epochs × {settings['iterations_per_epoch']} iterations, batch "
            f"{settings['batch_size']}, fold 0), training wall time "
            + (f"{seconds / 60:.1f} min" if seconds is not None else "not recorded")
            + "; its `s / pair` includes resampling, normalisation and the affine registration of the prior.",
            "",
        ]
        validation = info.get("validation") or {}
        if validation.get("untrained") and validation.get("trained"):
            lines += [f"What the training adds, on fold 0's validation pairs (`training_summary.json`): untrained "
                      f"{name} -> trained: {validation_line(validation)}.", ""]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    configure_logging()
    start = time.perf_counter()
    results = run_demo(seed=args.seed, progress=False)
    results["machine"] = machine_description()
    results["total_wall_seconds"] = time.perf_counter() - start
    affine = results["methods"]["affine"]["vs_reference"]
    predictions = Path(results["predictions_folder"])
    method_lines = trained_method_lines(results, predictions)
    # written relative to $lesionnet_results: the file is committed and names no machine's folders
    results["predictions_folder"] = "$lesionnet_results/" + predictions.relative_to(paths.results_dir()).as_posix()
    write_json(ROOT / "benchmarks" / "results" / "tracking.json", results)
    text = "\n".join([
        "Produced by `python benchmarks/tracking.py` (seed 0, default dataset configuration) on "
        f"{results['machine']}; metrics follow the DLS conventions (documentation/evaluation.md). "
        "`identity` predicts the unmoved source center (its world position read in the target scan); "
        "`affine` is the SimpleITK affine registration baseline. `s / pair` is the registration time of "
        "a scan pair shared among its lesions.",
        "",
        markdown_table(results),
        "",
        f"Paired t-test, affine vs identity on the per-pair distances: mean difference "
        f"{affine['distance_mm']['mean_difference']:+.2f} mm, p = {affine['distance_mm']['p_value']:.2g}; "
        f"on CPM@10mm hits: {affine['CPM@10mm']['mean_difference']:+.1f} points, "
        f"p = {affine['CPM@10mm']['p_value']:.2g}.",
        "",
        *method_lines,
    ])
    replace_section(ROOT / "documentation" / "benchmarks.md", "Lesion tracking on Dataset501 (synthetic), test split",
                    text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
