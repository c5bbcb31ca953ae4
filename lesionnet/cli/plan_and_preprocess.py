"""``lesionnet_plan_and_preprocess -d 501``: fingerprint → plans → preprocessed data.

    lesionnet_plan_and_preprocess -d ID [--gpu_memory_gb G] [-np N] [--plan_only] [--verify | --strict]

The raw input is checked before any work starts (training scans read in full: complete voxel data,
no NaN/inf, positive spacing, large enough for the registration; pairs and masks); every problem is
listed in one error and nothing is written.

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

from lesionnet.cli.entry import command_line, run_command
from lesionnet.datasets.dataset_id import find_dataset_folder
from lesionnet.datasets.raw_format import RawDataset
from lesionnet.methods import REGISTRY

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
                        help="check the whole raw dataset first, imagesTs and pairsTs.json too (as "
                             "lesionnet_verify_dataset); the training data are always checked before any work")
    parser.add_argument("--strict", action="store_true",
                        help="like --verify, and stop on warnings too")
    parser.add_argument("--token_budget", type=int, default=1024,
                        help="most template tokens a tracker's attention may keep for large lesions (TLT's sparse "
                             "selection; default 1024)")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def run(dataset, gpu_memory_gb=None, num_processes=None, plan_only=False, verify=False, token_budget=1024,
        progress=True, registration_settings=None, strict=False) -> dict:
    """The command's work as a function: returns ``{"fingerprint", "plans", "preprocessing", "seconds"}``.

    The input is checked first (:func:`lesionnet.datasets.verify.check_dataset_input`: the training data,
    with ``verify`` or ``strict`` the whole dataset); bad input raises
    :class:`~lesionnet.datasets.verify.InputCheckError` listing every problem before anything is written."""
    from lesionnet.datasets.verify import check_dataset_input
    from lesionnet.planning.fingerprint import extract_fingerprint
    from lesionnet.planning.plans_io import plan_experiment
    from lesionnet.preprocessing.preprocess import preprocess_dataset

    start = time.perf_counter()
    raw = RawDataset(find_dataset_folder(dataset))
    report = check_dataset_input(raw.folder, whole_dataset=verify, strict=strict, progress=progress)
    logger.info("Input check: %s", report.summary())
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
    hint = command_line("lesionnet_plan_and_preprocess", argv) + " (finished cases are kept)"
    return run_command("lesionnet_plan_and_preprocess", lambda: _plan_and_preprocess(args), args.verbose,
                       interrupted_hint=hint)


def _plan_and_preprocess(args: argparse.Namespace) -> int:
    result = run(args.dataset, args.gpu_memory_gb, args.num_processes, args.plan_only, args.verify,
                 args.token_budget, progress=not args.no_progress, strict=args.strict)
    for line in _summary_lines(result):
        print(line)
    print(f"done in {result['seconds']:.1f} s")
    return 0

if __name__ == "__main__":
    sys.exit(main())
