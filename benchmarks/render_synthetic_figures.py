"""Regenerate the figures of documentation/synthetic_data.md from freshly generated synthetic data.

    python benchmarks/render_synthetic_figures.py [--output_folder documentation/images] [--seed 0]

Writes ``synthetic_pair.png`` (Dataset501: source and target scan of one pair, axial and coronal, lesion
centers and radii marked), ``synthetic_lymph_nodes.png`` (Dataset502: axial slices and a coronal
slice with the instance mask outlined) and ``synthetic_followup.png`` (Dataset503: one pair, as
for 501). Uses matplotlib's Agg backend; needs no data on disk.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lesionnet.datasets.synthetic.figures import (
    render_followup_figure,
    render_lymph_node_figure,
    render_tracking_figure,
)

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "documentation" / "images"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_folder", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--seed", type=int, default=0, help="run seed, as in lesionnet_make_synthetic --seed")
    parser.add_argument("--patient_index", type=int, default=1, help="Dataset501 patient shown (P0001 by default)")
    parser.add_argument("--case_index", type=int, default=0, help="Dataset502 case shown (LN0000 by default)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    render_tracking_figure(args.output_folder / "synthetic_pair.png", seed=args.seed, patient_index=args.patient_index)
    render_lymph_node_figure(args.output_folder / "synthetic_lymph_nodes.png", seed=args.seed,
                             case_index=args.case_index)
    render_followup_figure(args.output_folder / "synthetic_followup.png", seed=args.seed)


if __name__ == "__main__":
    main()
