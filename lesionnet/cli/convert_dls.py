"""``lesionnet_convert_dls --images DIR --annotations test.json -d 601``: DLS benchmark → raw tracking dataset."""
from __future__ import annotations

import argparse
import logging
import sys

from lesionnet.cli.entry import command_line, run_command
from lesionnet.datasets.dls_convert import convert_dls

logger = logging.getLogger("lesionnet_convert_dls")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesionnet_convert_dls",
        description="Convert DeepLesion NIfTI subvolumes (written by DeepLesion's DL_save_nifti.py) and a DLS "
                    "annotation file (github.com/JimmyCai91/DLT data/*.json) into a raw tracking dataset "
                    "$lesionnet_raw/Dataset{ID}_{name}. Scans are re-oriented to [slice, row, column] so that "
                    "the DLS [x, y, z] centers are kept as given; see documentation/dls_conversion.md.")
    parser.add_argument("--images", required=True, help="folder with the DeepLesion .nii.gz subvolumes")
    parser.add_argument("--annotations", required=True, help="DLS annotation json (e.g. test.json, valid.json)")
    parser.add_argument("-d", "--dataset_id", required=True, type=int, help="dataset id, 1..999")
    parser.add_argument("--name", default="DLS", help="dataset name after the id (default: DLS)")
    parser.add_argument("--split", choices=("Tr", "Ts"), default="Ts",
                        help="write to imagesTr/pairsTr.json or imagesTs/pairsTs.json (default: Ts)")
    parser.add_argument("--strict", action="store_true",
                        help="fail when a referenced subvolume is missing or unreadable (default: skip its pairs "
                             "with a warning)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing pairs{split}.json")
    parser.add_argument("--pair_prefix", default=None,
                        help="prefix of the pair ids (default: annotation file stem + '_', e.g. test_0001)")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("lesionnet_convert_dls", lambda: _convert(args), args.verbose,
                       interrupted_hint=command_line("lesionnet_convert_dls", argv, add=["--overwrite"]))


def _convert(args: argparse.Namespace) -> int:
    result = convert_dls(args.images, args.annotations, args.dataset_id, name=args.name, split=args.split,
                         strict=args.strict, overwrite=args.overwrite, pair_prefix=args.pair_prefix,
                         progress=not args.no_progress)
    skipped = f", {len(result.skipped_pairs)} pairs skipped" if result.skipped_pairs else ""
    print(f"{result.folder}: {result.num_scans} scans in images{result.split}/, {result.num_pairs} pairs in "
          f"pairs{result.split}.json{skipped}. Check it with: lesionnet_verify_dataset -d {args.dataset_id}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
