"""``lesionnet_evaluate_tracking``: DLS-benchmark metrics of lesion tracking predictions.

Thin wrapper around :mod:`lesionnet.evaluation`; see ``documentation/evaluation.md``.
"""
from __future__ import annotations

import argparse
import logging
import sys

from lesionnet.cli.entry import run_command
from lesionnet.evaluation.pair_matching import DEFAULT_MATCH_TOLERANCE_VOX, MATCH_MODES
from lesionnet.evaluation.robustness import (
    compare_drops,
    format_drop_comparison,
    format_robustness,
    original_pairs,
    robustness_summary,
)
from lesionnet.evaluation.tracking_metrics import (
    compare_predictions,
    evaluate_predictions,
    evaluate_tracking_file,
    format_comparison,
    format_summary_table,
)
from lesionnet.utils.files import write_json, write_text

PROG = "lesionnet_evaluate_tracking"
logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Evaluate lesion tracking predictions with the DLS benchmark conventions: CPM@10mm, "
                    "CPM@Radius, MED (mean Euclidean distance, mm) and MED_X/Y/Z. Reads a lesionnet "
                    "predictions file, a DLS results file ({\"results\": [...]}) or a DLS annotation file "
                    "(its 'predict target center' is the prediction).")
    parser.add_argument("predictions", help="predictions file (any of the three forms; detected automatically)")
    parser.add_argument("--reference", "-r", default=None,
                        help="take the ground truth from this file instead (a DLS annotation file or a lesionnet "
                             "raw pairs*.json)")
    parser.add_argument("-o", "--output", default=None, help="write the metrics to this JSON file")
    parser.add_argument("--compare", default=None, metavar="OTHER_PREDICTIONS",
                        help="also evaluate these predictions and run paired t-tests on the same pairs")
    parser.add_argument("--per_pair", default=None, metavar="CSV", help="write per-pair distances and hits here")
    parser.add_argument("--allow_missing", action="store_true",
                        help="evaluate even if the reference has pairs without a prediction (they are reported)")
    parser.add_argument("--match", choices=MATCH_MODES, default="auto",
                        help="how pairs are matched across files (default: by pair id, else by scans and lesion "
                             "centers, else by position)")
    parser.add_argument("--match_tolerance", type=float, default=DEFAULT_MATCH_TOLERANCE_VOX,
                        help="largest per-axis center difference (voxels) for matching by centers "
                             f"(default {DEFAULT_MATCH_TOLERANCE_VOX})")
    parser.add_argument("--robustness", action="store_true",
                        help="predictions of lesionnet_predict --robustness: compare the original pairs with all "
                             "(original + 9 shifted template centers per pair): CPM drop, MED increase, spread; "
                             "with --compare also a paired test of the two trackers' per-pair drops")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def run(args: argparse.Namespace) -> dict:
    """Evaluate, print, write; returns the JSON-able result."""
    if args.robustness and args.reference:
        raise ValueError("--robustness uses the ground truth stored in the predictions file (lesionnet_predict "
                         "writes it for pairs with a target); run it without --reference.")
    options = dict(allow_missing=args.allow_missing, match=args.match, match_tolerance_vox=args.match_tolerance)
    evaluation = evaluate_tracking_file(args.predictions, args.reference, **options)
    _log_loaded(evaluation.predictions)
    result = evaluation.summary()
    if evaluation.predictions.missing:
        result["n_missing"] = len(evaluation.predictions.missing)
        result["missing_pairs"] = list(evaluation.predictions.missing)
    comparison = None
    if args.compare:
        other = evaluate_tracking_file(args.compare, args.reference, **options)
        _log_loaded(other.predictions)
        # under the protocol, the trackers are compared on the original template centers
        a, b = ((evaluate_predictions(original_pairs(e.predictions)) for e in (evaluation, other))
                if args.robustness else (evaluation, other))
        comparison = compare_predictions(a, b, label_a=args.predictions, label_b=args.compare,
                                         match=args.match, match_tolerance_vox=args.match_tolerance)
        result["comparison"] = {"metrics_b": b.summary(), **comparison.to_dict()}
        print(format_summary_table([a.summary(), b.summary()], labels=[args.predictions, args.compare]))
        print()
        print(format_comparison(comparison))
    else:
        print(format_summary_table([evaluation.summary()]))
    if evaluation.predictions.missing:
        missing = evaluation.predictions.missing
        print(f"{len(missing)} reference pair(s) without a prediction were left out (--allow_missing): "
              + ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else ""))
    if args.robustness:
        result["robustness"] = robustness_summary(evaluation)
        print()
        print(format_robustness(result["robustness"]))
        if args.compare:
            result["comparison"]["robustness_b"] = robustness_summary(other)
            result["robustness_comparison"] = compare_drops(evaluation, other, args.predictions, args.compare)
            print(f"\n{args.compare}:")
            print(format_robustness(result["comparison"]["robustness_b"]))
            print()
            print(format_drop_comparison(result["robustness_comparison"]))
    if args.per_pair:
        write_text(args.per_pair, evaluation.per_pair_csv())
        logger.info("per-pair results written to %s", args.per_pair)
    if args.output:
        write_json(args.output, result)
        logger.info("metrics written to %s", args.output)
    return result


def _log_loaded(predictions) -> None:
    source = "its own ground truth" if predictions.reference is None else \
        f"ground truth from {predictions.reference} (matched by {predictions.match_rule})"
    logger.info("%s: %d pairs, %s, %s", predictions.path, len(predictions), predictions.form_description, source)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("lesionnet_evaluate_tracking", lambda: _evaluate(args), args.verbose)


def _evaluate(args: argparse.Namespace) -> int:
    run(args)
    return 0

if __name__ == "__main__":
    sys.exit(main())
