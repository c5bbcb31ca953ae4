"""``lesionnet_plan_and_preprocess -d 501``: fingerprint → plans → preprocessed data.

    lesionnet_plan_and_preprocess -d ID [--gpu_memory_gb G] [-np N] [--plan_only] [--verify]

Thin wrapper around :func:`lesionnet.planning.fingerprint.extract_fingerprint`,
:func:`lesionnet.planning.plans_io.plan_experiment` and
:func:`lesionnet.preprocessing.preprocess.preprocess_dataset`. Re-running only redoes what changed.
See documentation/planning.md.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from lesionnet.datasets.dataset_id import DatasetNotFoundError, find_dataset_folder
from lesionnet.datasets.raw_format import DatasetFormatError, RawDataset
from lesionnet.methods import REGISTRY
from lesionnet.utils.logging_setup import configure_logging

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesionnet_plan_and_preprocess",
        description="Extract the dataset fingerprint, plan every registered method of the dataset's task "
                    "(lesionnet_plans.json) and preprocess the training data into "
                    "$lesionnet_preprocessed/DatasetXXX_Name/. Only what changed is redone.")
    parser.add_argument("-d", "--dataset", required=True, help="dataset id (e.g. 501) or folder name")
    parser.add_argument("--gpu_memory_gb", type=float, default=None,
                        help="training memory budget in GiB (default: the visible GPU's memory, else half the RAM "
                             "for CPU training)")
    parser.add_argument("-np", "--num_processes", type=int, default=None,
                        help="worker processes for fingerprint, registration and preprocessing (default: CPU cores)")
    parser.add_argument("--plan_only", action="store_true", help="fingerprint and plans only; no preprocessing")
    parser.add_argument("--verify", action="store_true",
                        help="check the raw dataset first (as lesionnet_verify_dataset) and stop on errors")
    parser.add_argument("--token_budget", type=int, default=1024,
                        help="most template tokens a tracker's attention may keep for large lesions (TLT's sparse "
                             "selection; default 1024)")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def run(dataset, gpu_memory_gb=None, num_processes=None, plan_only=False, verify=False, token_budget=1024,
        progress=True, registration_settings=None) -> dict:
    """The command's work as a function: returns ``{"fingerprint", "plans", "preprocessing", "seconds"}``."""
    from lesionnet.planning.fingerprint import extract_fingerprint
    from lesionnet.planning.plans_io import plan_experiment
    from lesionnet.preprocessing.preprocess import preprocess_dataset

    start = time.perf_counter()
    raw = RawDataset(find_dataset_folder(dataset))
    if verify:
        from lesionnet.datasets.verify import verify_dataset_report
        report = verify_dataset_report(raw.folder, progress=progress)
        for problem in report.problems:
            logger.warning("%s", problem)
        if report.errors:
            raise DatasetFormatError(f"{raw.folder}: {report.summary()}. Fix the errors above and run again.")
        logger.info("Verify: %s", report.summary())
    fingerprint = extract_fingerprint(raw, num_processes=num_processes, registration_settings=registration_settings,
                                      progress=progress)
    plans = plan_experiment(raw, REGISTRY.values(), gpu_memory_gb=gpu_memory_gb, fingerprint=fingerprint,
                            token_budget=token_budget)
    preprocessing = None
    if not plan_only:
        preprocessing = preprocess_dataset(raw, plans=plans, num_processes=num_processes, progress=progress)
    return {"fingerprint": fingerprint, "plans": plans, "preprocessing": preprocessing,
            "seconds": time.perf_counter() - start}


def _summary_lines(result: dict) -> list:
    """One line per planned method, as the method describes its section."""
    plans = result["plans"]
    lines = []
    for name, section in plans["configurations"].items():
        if name in REGISTRY:
            data_configuration = plans["data_configurations"].get(section.get("data_identifier") or "")
            lines.append(REGISTRY[name].summary(section, data_configuration))
    return lines


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        result = run(args.dataset, args.gpu_memory_gb, args.num_processes, args.plan_only, args.verify,
                     args.token_budget, progress=not args.no_progress)
    except (DatasetNotFoundError, DatasetFormatError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for line in _summary_lines(result):
        print(line)
    print(f"done in {result['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
