"""``lesionnet_evaluate_detection``: FROC (sens@1/2/4/8, AS) and AP@0.1 of 3D lesion boxes.

Thin wrapper around :mod:`lesionnet.evaluation.detection_metrics`; see ``documentation/evaluation.md``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lesionnet.cli.entry import run_command
from lesionnet.evaluation.detection_io import load_ground_truth, load_predictions
from lesionnet.evaluation.detection_metrics import IOU_THRESHOLD, evaluate_detection, format_detection_table
from lesionnet.utils.files import write_json

PROG = "lesionnet_evaluate_detection"
logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Evaluate 3D lesion detections against instance masks: a prediction finds a lesion when "
                    "their 3D IoU exceeds 0.1 (each lesion found once, in descending score order); FROC "
                    "sensitivities at 1, 2, 4, 8 false positives per scan and their mean (AS), and COCO-style "
                    "AP at IoU 0.1. Percentages 0-100.")
    parser.add_argument("predictions", metavar="PRED_DIR",
                        help='folder of {scan_id}.json files with "boxes_xyz" ([x1, y1, z1, x2, y2, z2] voxel '
                             'indices, half open) and "scores"')
    parser.add_argument("ground_truth", metavar="GT_DIR",
                        help="folder of instance masks {scan_id}.nii.gz (0 background, 1..N lesions), e.g. a "
                             "dataset's labelsTs; scans without a prediction file count as having no boxes")
    parser.add_argument("-o", "--output", default=None, help="write the metrics to this JSON file")
    parser.add_argument("--iou", type=float, default=IOU_THRESHOLD,
                        help=f"3D IoU a prediction must exceed to find a lesion (default {IOU_THRESHOLD})")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and tracebacks of errors")
    return parser


def run(args: argparse.Namespace) -> dict:
    """Evaluate, print the table, write ``-o``; returns the JSON-able result."""
    if not 0.0 <= args.iou < 1.0:
        raise ValueError(f"--iou {args.iou}: give a threshold in [0, 1)")
    ground_truth = load_ground_truth(args.ground_truth)
    predictions = load_predictions(args.predictions, ground_truth)
    missing = sorted(set(ground_truth) - set(predictions))
    if missing:
        logger.warning("%d scan(s) of %s have no prediction file and count as having no boxes: %s",
                       len(missing), args.ground_truth, ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    result = evaluate_detection(predictions, ground_truth, args.iou)
    result["predictions"], result["ground_truth"] = str(Path(args.predictions)), str(Path(args.ground_truth))
    print(format_detection_table({Path(args.predictions).name or str(args.predictions): result}))
    if args.output:
        write_json(args.output, result)
        logger.info("metrics written to %s", args.output)
    return result


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(PROG, lambda: _evaluate(args), args.verbose)


def _evaluate(args: argparse.Namespace) -> int:
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
