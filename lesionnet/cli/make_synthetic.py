"""``lesionnet_make_synthetic``: write a built-in synthetic dataset into ``$lesionnet_raw``.

    lesionnet_make_synthetic -d 501 [--num_patients N] [--seed S] [--shape Z Y X] [--overwrite] [-np P]
    lesionnet_make_synthetic -d 502 [--num_patients N] [--seed S] [--shape Z Y X] [--overwrite] [-np P]
    lesionnet_make_synthetic -d 503 [--num_patients N] [--seed S] [--overwrite] [-np P]

501 = Dataset501_SynthLesionTracking (tracking), 502 = Dataset502_SynthLymphNodes (detection),
503 = Dataset503_SynthTorsoFollowUp (tracking; another anatomy and acquisition, to check generalisation).
The work is done by :func:`lesionnet.datasets.synthetic.generate_tracking_dataset`,
:func:`lesionnet.datasets.synthetic.generate_lymph_node_dataset` and
:func:`lesionnet.datasets.synthetic.generate_followup_dataset`; see documentation/synthetic_data.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time

from lesionnet.cli.entry import command_line, run_command
from lesionnet.datasets.synthetic import (
    FollowUpTorsoConfig,
    LymphNodeConfig,
    TrackingConfig,
    generate_followup_dataset,
    generate_lymph_node_dataset,
    generate_tracking_dataset,
)

logger = logging.getLogger(__name__)

DATASETS = {501: "Dataset501_SynthLesionTracking (lesion tracking)",
            502: "Dataset502_SynthLymphNodes (lymph-node detection)",
            503: "Dataset503_SynthTorsoFollowUp (lesion tracking, generalisation check)"}


def _percent(config_class) -> str:
    """The test share of a config class, written for an argparse help string (``%`` doubled)."""
    return f"{100 * config_class.test_fraction:.0f} %%"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesionnet_make_synthetic",
        description="Generate a built-in synthetic CT dataset in $lesionnet_raw: "
                    + "; ".join(f"{k} = {v}" for k, v in DATASETS.items()) + ".")
    parser.add_argument("-d", "--dataset", type=int, required=True, choices=sorted(DATASETS),
                        help="which dataset to generate (501 tracking, 502 detection, 503 tracking)")
    parser.add_argument("--num_patients", type=int, default=None,
                        help=f"patients (501, default {TrackingConfig.num_patients}; 503, default "
                             f"{FollowUpTorsoConfig.num_patients}) or cases (502, default "
                             f"{LymphNodeConfig.num_patients}); the last {_percent(TrackingConfig)} (501), "
                             f"{_percent(LymphNodeConfig)} (502) or {_percent(FollowUpTorsoConfig)} (503), at least "
                             "one, form the test split")
    parser.add_argument("--seed", type=int, default=0, help="run seed; the same seed gives the same data (default 0)")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), default=None,
                        help="nominal grid size in voxels: 501 keeps its field of view and scales the spacing "
                             f"(default {' '.join(map(str, TrackingConfig.nominal_shape_zyx))}); 502 sets the grid "
                             f"(default {' '.join(map(str, LymphNodeConfig.shape_zyx))}); not for 503, whose scans "
                             "draw their own grids")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing dataset folder (it is replaced only once the new one is complete)")
    parser.add_argument("-np", "--num_processes", type=int, default=1,
                        help="worker processes (default 1); results do not depend on it")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def _make_tracking(args, overrides: dict) -> tuple:
    if args.shape is not None:
        overrides["nominal_shape_zyx"] = tuple(args.shape)
    config = dataclasses.replace(TrackingConfig(), **overrides)
    summary = generate_tracking_dataset(None, config, seed=args.seed, overwrite=args.overwrite,
                                        num_processes=args.num_processes, progress=not args.no_progress)
    return summary, _pair_counts(summary)


def _make_lymph_nodes(args, overrides: dict) -> tuple:
    if args.shape is not None:
        overrides["shape_zyx"] = tuple(args.shape)
    config = dataclasses.replace(LymphNodeConfig(), **overrides)
    summary = generate_lymph_node_dataset(None, config, seed=args.seed, overwrite=args.overwrite,
                                          num_processes=args.num_processes, progress=not args.no_progress)
    return summary, (f"{summary['num_cases_tr']} training cases ({summary['num_nodes_tr']} nodes), "
                     f"{summary['num_cases_ts']} test cases ({summary['num_nodes_ts']} nodes)")


def _make_followup(args, overrides: dict) -> tuple:
    if args.shape is not None:
        raise ValueError("--shape does not apply to -d 503: each of its scans draws its own grid (in-plane spacing "
                         "1.3-1.8 mm, slices 2.5-5 mm, field of view 320-400 mm, z-coverage 180-280 mm). Leave "
                         "--shape out, or change FollowUpTorsoConfig from Python.")
    config = dataclasses.replace(FollowUpTorsoConfig(), **overrides)
    summary = generate_followup_dataset(None, config, seed=args.seed, overwrite=args.overwrite,
                                        num_processes=args.num_processes, progress=not args.no_progress)
    return summary, _pair_counts(summary)


def _pair_counts(summary: dict) -> str:
    return (f"{summary['num_scans_tr']} training scans, {summary['num_scans_ts']} test scans, "
            f"{summary['num_pairs_tr']} training pairs, {summary['num_pairs_ts']} test pairs")


_MAKERS = {501: _make_tracking, 502: _make_lymph_nodes, 503: _make_followup}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.num_patients is not None and args.num_patients < 1:
        build_parser().error("--num_patients must be at least 1.")
    hint = command_line("lesionnet_make_synthetic", argv, add=["--overwrite"])
    return run_command("lesionnet_make_synthetic", lambda: _make(args), args.verbose, interrupted_hint=hint)


def _make(args: argparse.Namespace) -> int:
    overrides = {} if args.num_patients is None else {"num_patients": args.num_patients}
    start = time.perf_counter()
    summary, counts = _MAKERS[args.dataset](args, overrides)
    print(f"Wrote {summary['folder']}: {counts} in {time.perf_counter() - start:.1f} s (seed {args.seed}).",
          file=sys.stdout)
    return 0

if __name__ == "__main__":
    sys.exit(main())
