"""``lesionnet_make_synthetic``: write a built-in synthetic dataset into ``$lesionnet_raw``.

    lesionnet_make_synthetic -d 501 [--num_patients N] [--seed S] [--shape Z Y X] [--overwrite] [-np P]
    lesionnet_make_synthetic -d 502 [--num_patients N] [--seed S] [--shape Z Y X] [--overwrite] [-np P]

501 = Dataset501_SynthLesionTracking (tracking), 502 = Dataset502_SynthLymphNodes (detection).
The work is done by :func:`lesionnet.datasets.synthetic.generate_tracking_dataset` and
:func:`lesionnet.datasets.synthetic.generate_lymph_node_dataset`; see documentation/synthetic_data.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time

from lesionnet.datasets.synthetic import (
    LymphNodeConfig,
    TrackingConfig,
    generate_lymph_node_dataset,
    generate_tracking_dataset,
)
from lesionnet.datasets.synthetic.common import DatasetExistsError
from lesionnet.utils.logging_setup import configure_logging

logger = logging.getLogger(__name__)

DATASETS = {501: "Dataset501_SynthLesionTracking (lesion tracking)",
            502: "Dataset502_SynthLymphNodes (lymph-node detection)"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesionnet_make_synthetic",
        description="Generate a built-in synthetic CT dataset in $lesionnet_raw: "
                    + "; ".join(f"{k} = {v}" for k, v in DATASETS.items()) + ".")
    parser.add_argument("-d", "--dataset", type=int, required=True, choices=sorted(DATASETS),
                        help="which dataset to generate (501 tracking, 502 detection)")
    parser.add_argument("--num_patients", type=int, default=None,
                        help="patients (501, default %d) or cases (502, default %d); 20%% (at least one) are "
                             "held out as the test split" % (TrackingConfig.num_patients, LymphNodeConfig.num_patients))
    parser.add_argument("--seed", type=int, default=0, help="run seed; the same seed gives the same data (default 0)")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), default=None,
                        help="nominal grid size in voxels: 501 keeps its field of view and scales the spacing "
                             "(default %s); 502 sets the grid (default %s)" % (
                                 " ".join(map(str, TrackingConfig.nominal_shape_zyx)),
                                 " ".join(map(str, LymphNodeConfig.shape_zyx))))
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing dataset folder (it is replaced only once the new one is complete)")
    parser.add_argument("-np", "--num_processes", type=int, default=1,
                        help="worker processes (default 1); results do not depend on it")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    if args.num_patients is not None and args.num_patients < 1:
        raise SystemExit("error: --num_patients must be at least 1.")
    overrides = {}
    if args.num_patients is not None:
        overrides["num_patients"] = args.num_patients
    start = time.perf_counter()
    try:
        if args.dataset == 501:
            if args.shape is not None:
                overrides["nominal_shape_zyx"] = tuple(args.shape)
            config = dataclasses.replace(TrackingConfig(), **overrides)
            summary = generate_tracking_dataset(None, config, seed=args.seed, overwrite=args.overwrite,
                                                num_processes=args.num_processes, progress=not args.no_progress)
            counts = (f"{summary['num_scans_tr']} training scans, {summary['num_scans_ts']} test scans, "
                      f"{summary['num_pairs_tr']} training pairs, {summary['num_pairs_ts']} test pairs")
        else:
            if args.shape is not None:
                overrides["shape_zyx"] = tuple(args.shape)
            config = dataclasses.replace(LymphNodeConfig(), **overrides)
            summary = generate_lymph_node_dataset(None, config, seed=args.seed, overwrite=args.overwrite,
                                                  num_processes=args.num_processes, progress=not args.no_progress)
            counts = (f"{summary['num_cases_tr']} training cases ({summary['num_nodes_tr']} nodes), "
                      f"{summary['num_cases_ts']} test cases ({summary['num_nodes_ts']} nodes)")
    except (DatasetExistsError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"Wrote {summary['folder']}: {counts} in {time.perf_counter() - start:.1f} s (seed {args.seed}).",
          file=sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
