"""``lesionnet_predict``: run a tracker over an input folder (thin wrapper over lesionnet.inference)."""
from __future__ import annotations

import argparse
import logging
import sys

from lesionnet.inference.affine_tracker import TRACKING_BASELINES
from lesionnet.inference.predict_tracking import predict_tracking
from lesionnet.inference.tracking_input import TrackingInputError
from lesionnet.utils.logging_setup import configure_logging

logger = logging.getLogger("lesionnet_predict")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesionnet_predict",
        description="Predict lesion positions in follow-up scans. IN holds {scan_id}_0000.nii.gz files and "
                    "a pairs file (IN/pairs.json, or the dataset's pairsTs.json when IN is its imagesTs).")
    parser.add_argument("-i", "--input", required=True, help="input folder with scans (and pairs.json)")
    parser.add_argument("-o", "--output", required=True, help="output folder; gets predictions.json")
    parser.add_argument("-m", "--method", default="affine", choices=TRACKING_BASELINES,
                        help="tracking method (default: affine)")
    parser.add_argument("--pairs", default=None, help="pairs file (raw format) if not in the default place")
    parser.add_argument("--continue", dest="resume", action="store_true",
                        help="reuse the finished cases of an earlier (e.g. killed) run in OUT; predict only the rest")
    parser.add_argument("--save_overlays", action="store_true",
                        help="write OUT/overlays/{pair_id}.png: axial/coronal/sagittal slices through each prediction")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        run = predict_tracking(args.input, args.output, args.method, args.pairs, resume=args.resume,
                               save_overlays=args.save_overlays, progress=not args.no_progress)
    except (TrackingInputError, ValueError, FileNotFoundError) as e:
        logger.error("%s", e)
        return 1
    print(f"Predictions for {run.num_pairs} pairs written to {run.predictions_path}")
    if not run.ok:
        logger.error("%d pair(s) could not be predicted (listed above and under 'failed_pairs' in %s).",
                     len(run.failed), run.predictions_path.name)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
