"""LN-Tracker's inference rules on scans that choose nothing else: an independent synthetic tuning set, or the
test scans for the record.

    python benchmarks/detection_rules.py                      # the demo's model, on the tuning set
    python benchmarks/detection_rules.py --scans test         # ... on Dataset502's test scans
    python benchmarks/detection_rules.py --results_dir DIR    # a model trained into another results root

The tuning set is Dataset502 generated again with another seed (``--seed``, default 1; the demo's data use 0):
32 scans that no model trained on and that are no test scan, written to
``$lesionnet_results/<dataset>/benchmark_rules/tuning_seed<seed>/`` (all 32 as ``imagesTs``/``labelsTs``). Six
times the nodes of the 4 fold-0 validation scans, so the rules the paper leaves open can be chosen there
without looking at the test scans.

Rows: the untrained network, the plan's rules, each variant of ``VARIANTS`` (the plan's thresholds with the
variant's changes) and the merging baseline on the same detector. Each trained row is compared with the
merging baseline (exact McNemar at ≤ 4 FP per scan; paired bootstrap over scans of the AS and AP@0.1
differences). Writes ``benchmarks/results/detection_rules_<scans>[_<tag>].{json,md}``.
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine_description  # noqa: E402

from lesionnet import paths  # noqa: E402
from lesionnet.cli.demo_detection import DEMO_LYMPH_NODES  # noqa: E402
from lesionnet.datasets.dataset_id import find_dataset_folder  # noqa: E402
from lesionnet.datasets.synthetic import LymphNodeConfig, generate_lymph_node_dataset  # noqa: E402
from lesionnet.evaluation.detection_comparison import (  # noqa: E402
    compare_detectors,
    comparison_markdown,
    detection_entries,
)
from lesionnet.methods import get_method  # noqa: E402
from lesionnet.utils.files import write_json, write_text  # noqa: E402
from lesionnet.utils.logging_setup import configure_logging  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: label suffix -> changes to the plan's thresholds (documentation/methods/ln_tracker.md, "Thresholds")
VARIANTS = {
    "detection_scores": {"slice_score": "detection"},
    "one_to_one_0.5": {"duplicate_iou": 0.5},
    "detection_scores_one_to_one_0.5": {"slice_score": "detection", "duplicate_iou": 0.5},
    "one_to_one_0.3": {"duplicate_iou": 0.3},
    "tau_track_0.3": {"tau_track": 0.3},
    "no_similarity_gate": {"tau_sim": 0.0},
}


def tuning_scans(seed: int, dataset_name: str) -> Path:
    """The tuning set's folder (``imagesTs``/``labelsTs``: all its scans), generated when missing."""
    root = paths.results_dir() / dataset_name / "benchmark_rules"
    folder = root / f"tuning_seed{seed}"
    if (folder / "labelsTs").is_dir():
        return folder
    generated = root / f"generated_seed{seed}"
    generate_lymph_node_dataset(generated, LymphNodeConfig(**DEMO_LYMPH_NODES), seed=seed, overwrite=True,
                                progress=False)
    staging = root / f".tuning_seed{seed}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    for kind in ("images", "labels"):
        (staging / f"{kind}Ts").mkdir(parents=True)
        for split in ("Tr", "Ts"):
            for file in sorted((generated / f"{kind}{split}").iterdir()):
                shutil.copy2(file, staging / f"{kind}Ts" / file.name)
    staging.rename(folder)
    shutil.rmtree(generated)
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scans", choices=("tuning", "test"), default="tuning")
    parser.add_argument("--seed", type=int, default=1, help="the tuning set's generation seed (default 1)")
    parser.add_argument("--results_dir", type=Path, default=None,
                        help="results root of the trained model (default: $lesionnet_results, the demo's)")
    parser.add_argument("--tag", default="", help="suffix of the output files (e.g. the model's training)")
    args = parser.parse_args(argv)
    if args.scans == "tuning" and args.seed == 0:
        parser.error("--seed 0 regenerates the demo's own scans; the tuning set needs another seed")
    configure_logging()
    method = get_method("lntracker")
    dataset_folder = find_dataset_folder(502)
    dataset_name = dataset_folder.name
    scans = tuning_scans(args.seed, dataset_name) if args.scans == "tuning" else dataset_folder
    base = detection_entries(method, dataset_name)
    entries = [(label, m, dataclasses.replace(options, results_dir=args.results_dir), variant)
               for label, m, options, variant in base if label != f"{method.name}_algorithm1"]
    trained = entries[1]
    entries[2:2] = [(f"{method.name}_{suffix}", method, trained[2], {"thresholds": changes})
                    for suffix, changes in VARIANTS.items()]
    baseline = f"{method.name}_merging"
    comparisons = [(trained[0], entries[0][0])] + [(label, baseline) for label, *_ in entries[1:] if label != baseline]
    name = f"detection_rules_{args.scans}" + (f"_{args.tag}" if args.tag else "")
    output = paths.results_dir() / dataset_name / "benchmark_rules" / (name + "_predictions")
    results = compare_detectors(scans, output, entries, comparisons, progress=False)
    for row in results["rows"].values():
        row.pop("froc_curve", None)
    results.update({"machine": machine_description(), "scans": args.scans, "seed": args.seed,
                    "variants": VARIANTS, "model": args.tag or "the demo's"})
    write_json(ROOT / "benchmarks" / "results" / f"{name}.json", results)
    what = (f"the tuning set (Dataset502 generated with seed {args.seed})" if args.scans == "tuning"
            else "Dataset502's test scans")
    markdown = (f"`python benchmarks/detection_rules.py --scans {args.scans}` on {results['machine']}: "
                f"{what}, {results['n_scans']} scans, {results['n_lesions']} lymph nodes.\n\n"
                + comparison_markdown(results) + "\n")
    write_text(ROOT / "benchmarks" / "results" / f"{name}.md", markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
