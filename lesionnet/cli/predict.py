"""``lesionnet_predict``: run a registered tracking or detection method over an input folder (thin wrapper
over lesionnet.inference: ``predict_tracking`` for tracking methods, ``predict_detection`` for detection
methods)."""
from __future__ import annotations

import argparse
import logging
import sys

from lesionnet.cli.entry import command_line, run_command
from lesionnet.datasets.dataset_id import find_dataset_folder
from lesionnet.inference.model_request import LearnedModelOptions
from lesionnet.inference.predict_detection import predict_detection
from lesionnet.inference.predict_tracking import predict_tracking
from lesionnet.inference.tracking_input import load_tracking_input
from lesionnet.methods import describe_methods, get_method, methods_with
from lesionnet.training.checkpoints import CHECKPOINT_NAMES

logger = logging.getLogger("lesionnet_predict")


def _predicting_method(name: str):
    """A registered method that can predict; the argparse error says why not and lists the others."""
    try:
        return get_method(name, None, "predict")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesionnet_predict",
        description="Predict lesion positions in follow-up scans (tracking methods) or 3D lesion boxes in scans "
                    "(detection methods). IN holds {scan_id}_0000.nii.gz files and, for tracking, a pairs file "
                    "(IN/pairs.json, or the dataset's pairsTs.json when IN is its imagesTs). Tracking writes "
                    "OUT/predictions.json; detection writes OUT/{scan_id}.json (what lesionnet_evaluate_detection "
                    f"reads) and OUT/markups/. Methods: {describe_methods(None, 'predict')}.")
    parser.add_argument("-i", "--input", required=True, help="input folder with scans (and pairs.json)")
    parser.add_argument("-o", "--output", required=True,
                        help="output folder; gets predictions.json (tracking) or {scan_id}.json per scan (detection)")
    predictors = [m.name for m in methods_with(None, "predict")]
    parser.add_argument("-m", "--method", default="affine", type=_predicting_method,
                        metavar="{" + ",".join(predictors) + "}",
                        help="method (default: affine); trainable methods need a trained model")
    parser.add_argument("-d", "--dataset", default=None,
                        help="dataset (id or name) whose trained model to use (default: the dataset IN belongs to, "
                             "or the only one with a trained model)")
    parser.add_argument("-f", "--folds", nargs="+", default=None,
                        help="folds to use (default: all trained folds; several folds are averaged)")
    parser.add_argument("--checkpoint", default="final", choices=sorted(CHECKPOINT_NAMES),
                        help="which checkpoint of each fold (default: final)")
    parser.add_argument("--plans", default=None, help="plans name of the model (when several were trained)")
    parser.add_argument("--step_size", type=float, default=0.5, help="sliding-window step, fraction of the patch")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--save_heatmaps", action="store_true",
                        help="methods with heatmaps: write OUT/heatmaps/{pair_id}.nii.gz (the blended heatmap)")
    parser.add_argument("--chain", action="store_true",
                        help="carry each lesion through the patient's intermediate scans, each prediction seeding "
                             "the next (multi-follow-up)")
    parser.add_argument("--pairs", default=None, help="pairs file (raw format) if not in the default place")
    parser.add_argument("--robustness", action="store_true",
                        help="also track every pair from 9 template centers shifted within 0.25 of its radius (the "
                             "DLT paper's robustness protocol; ids <pair_id>#shift<k>); score with "
                             "lesionnet_evaluate_tracking --robustness")
    parser.add_argument("--continue", dest="resume", action="store_true",
                        help="reuse the cases of an earlier (e.g. killed) run in OUT whose model, settings and scans "
                             "still match; predict the rest")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the predictions of an earlier run in OUT (without it such a folder is refused)")
    parser.add_argument("--save_overlays", action="store_true",
                        help="write overlay PNGs: tracking, OUT/overlays/{pair_id}.png (axial/coronal/sagittal slices "
                             "through each prediction); detection, OUT/overlays/{scan_id}.png (an axial slice through "
                             "each of the best-scoring boxes)")
    parser.add_argument("--strict", action="store_true",
                        help="check every scan in IN, not only those the pairs name, and refuse warnings too (the "
                             "default check already refuses missing, truncated, NaN, too small scans and centers "
                             "outside their scan before any work starts)")
    parser.add_argument("-np", "--num_processes", type=int, default=1,
                        help="predict the cases (tracking: scan pairs; detection: scans) in a pool of this many "
                             "worker processes, each holding one case at a time (default 1; --chain runs in one "
                             "process)")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    hint = command_line("lesionnet_predict", argv, add=["--continue"], drop=["--overwrite"])
    return run_command("lesionnet_predict", lambda: _predict(args), args.verbose, interrupted_hint=hint)


def _predict(args: argparse.Namespace) -> int:
    dataset = find_dataset_folder(args.dataset).name if args.dataset is not None else None
    options = LearnedModelOptions(dataset=dataset, folds=tuple(args.folds) if args.folds else None,
                                  checkpoint=args.checkpoint, plans_name=args.plans, step_size=args.step_size,
                                  device=args.device)
    if args.method.task == "detection":
        return _detect(args, options)
    if args.strict:  # the fuller input check; predict_tracking runs the default one itself
        load_tracking_input(args.input, args.pairs, strict=True)
    run = predict_tracking(args.input, args.output, args.method, args.pairs, resume=args.resume,
                           save_overlays=args.save_overlays, progress=not args.no_progress,
                           model_options=options, save_heatmaps=args.save_heatmaps, chain=args.chain,
                           overwrite=args.overwrite, robustness=args.robustness, num_processes=args.num_processes)
    print(f"Predictions for {run.num_pairs} pairs written to {run.predictions_path}")
    if not run.ok:
        logger.error("%d pair(s) could not be predicted (listed above and under 'failed_pairs' in %s).",
                     len(run.failed), run.predictions_path.name)
        return 1
    return 0

def _detect(args: argparse.Namespace, options: LearnedModelOptions) -> int:
    tracking_only = [flag for flag, used in (("--chain", args.chain), ("--save_heatmaps", args.save_heatmaps),
                                             ("--pairs", args.pairs), ("--robustness", args.robustness))
                     if used]
    if tracking_only:
        raise ValueError(f"{', '.join(tracking_only)}: tracking options; '{args.method.name}' is a detection method.")
    run = predict_detection(args.input, args.output, args.method, options, resume=args.resume,
                            overwrite=args.overwrite, progress=not args.no_progress, save_overlays=args.save_overlays,
                            num_processes=args.num_processes)
    print(f"3D boxes of {len(run.predicted) + len(run.reused)} scan(s) written to {run.output_folder} "
          f"({len(run.reused)} reused)")
    if not run.ok:
        logger.error("%d scan(s) could not be predicted: %s", len(run.failed), ", ".join(run.failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
