"""``lesionnet_demo``: the main job end to end on the built-in synthetic tracking dataset.

Steps, each an importable lesionnet function, each skipped when its output already exists:

1. generate Dataset501_SynthLesionTracking (``lesionnet_make_synthetic -d 501``);
2. check it (``lesionnet_verify_dataset -d 501``);
3. track the test pairs with every available method (``lesionnet_predict``) and score them with
   the DLS conventions (``lesionnet_evaluate_tracking``), side by side;
4. print the comparison table and write it, with the JSON, to the results folder.

Data go to ``$lesionnet_raw`` / ``$lesionnet_results`` (defaults: ``~/lesionnet_data/...``).
"""
from __future__ import annotations

import argparse
import logging
import sys

from lesionnet import paths
from lesionnet.datasets.dataset_id import DatasetNotFoundError, find_dataset_folder
from lesionnet.datasets.synthetic import TrackingConfig, generate_tracking_dataset
from lesionnet.datasets.verify import verify_dataset_report
from lesionnet.evaluation.tracker_comparison import compare_trackers, markdown_table
from lesionnet.inference.affine_tracker import TRACKING_BASELINES
from lesionnet.utils.files import write_json, write_text
from lesionnet.utils.logging_setup import configure_logging

logger = logging.getLogger("lesionnet_demo")
DEMO_DATASET_ID = 501


def run_demo(seed: int = 0, methods=TRACKING_BASELINES[::-1], progress: bool = True) -> dict:
    """Run the demo; returns the comparison (see :func:`compare_trackers`)."""
    try:
        dataset_folder = find_dataset_folder(DEMO_DATASET_ID)
        logger.info("Step 1/3: using the existing %s", dataset_folder)
    except DatasetNotFoundError:
        logger.info("Step 1/3: generating the synthetic tracking dataset (seed %d)", seed)
        generate_tracking_dataset(None, TrackingConfig(), seed=seed, progress=progress)
        dataset_folder = find_dataset_folder(DEMO_DATASET_ID)

    logger.info("Step 2/3: verifying %s", dataset_folder.name)
    report = verify_dataset_report(dataset_folder, progress=progress)
    if report.errors:
        for problem in report.errors:
            logger.error("%s", problem)
        raise RuntimeError(f"{dataset_folder} has {len(report.errors)} problem(s); fix or regenerate it "
                           "(lesionnet_make_synthetic -d 501 --overwrite).")
    logger.info("%s", report.summary())

    output_folder = paths.results_dir() / dataset_folder.name / "demo"
    logger.info("Step 3/3: tracking the test pairs with %s", ", ".join(methods))
    results = compare_trackers(dataset_folder, output_folder / "predictions", methods=methods, progress=progress)
    write_json(output_folder / "comparison.json", results)
    write_text(output_folder / "comparison.md", markdown_table(results) + "\n")
    logger.info("Wrote %s", output_folder / "comparison.md")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lesionnet_demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset (default 0)")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        results = run_demo(seed=args.seed, progress=not args.no_progress)
    except (RuntimeError, ValueError) as e:
        logger.error("%s", e)
        return 1
    print()
    print(markdown_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
