"""``lesionnet_verify_dataset -d 501``: check a raw dataset and list every problem found.

Exit status: 0 when no error was found (warnings alone do not fail unless ``--strict``), 1 otherwise.
"""
from __future__ import annotations

import argparse
import sys

from lesionnet.cli.entry import run_command
from lesionnet.datasets.dataset_id import find_dataset_folder
from lesionnet.datasets.verify import verify_dataset_report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesionnet_verify_dataset",
        description="Check a raw dataset in $lesionnet_raw: dataset.json, every scan (readable, all channels, "
                    "same geometry, positive spacing, no NaN voxels), tracking pairs (scans exist in the same "
                    "split, centers inside the scans, radii positive) or detection masks (present, same grid "
                    "as the image, non-negative integers). Prints one line per problem: "
                    "'file: what is wrong — what to do'.")
    parser.add_argument("-d", "--dataset", required=True,
                        help="dataset id (e.g. 501) or full folder name (e.g. Dataset501_Name)")
    parser.add_argument("--quick", action="store_true",
                        help="read image headers only (much faster; skips NaN voxels, mask values and "
                             "truncated voxel data)")
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("lesionnet_verify_dataset", lambda: _verify(args), args.verbose)


def _verify(args: argparse.Namespace) -> int:
    report = verify_dataset_report(find_dataset_folder(args.dataset), check_voxels=not args.quick,
                                   progress=not args.no_progress)
    for problem in report.problems:
        print(problem)
    print(report.summary())
    failed = report.errors or (args.strict and report.problems)
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
