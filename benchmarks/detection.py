"""Detection benchmark on Dataset502's test scans: every trainable detection method (LN-Tracker), its
untrained network and its ``demo_variants`` (LN-Tracker's merging baseline: the same trained detector
without track queries), side by side from one run.

    python benchmarks/detection.py            # after (or instead of) lesionnet_demo --task detection

Runs the detection part of ``lesionnet_demo`` (generation, planning, the demo's training on fold 0 —
reused when finished — and the comparison), then writes ``benchmarks/results/detection_502.json`` and the
section "Detection (Dataset502)" of ``documentation/benchmarks.md``: AS, sens@1/2/4/8, AP@0.1, boxes,
lesions split into several boxes, boxes merging several lesions, median seconds per scan, training
wall time, and exact McNemar tests on the lesions found at ≤ 4 false positives per scan. Times are
wall times on the machine named in the output.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine_description, replace_section  # noqa: E402

from lesionnet.cli.demo import train_for_demo, training_lines  # noqa: E402
from lesionnet.cli.demo_detection import run_detection_demo  # noqa: E402
from lesionnet.evaluation.detection_comparison import comparison_markdown  # noqa: E402
from lesionnet.utils.files import write_json  # noqa: E402
from lesionnet.utils.logging_setup import configure_logging  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    configure_logging()
    results = run_detection_demo(train_for_demo, progress=not args.no_progress)
    results["machine"] = machine_description()
    write_json(ROOT / "benchmarks" / "results" / "detection_502.json", results)
    body = (f"`python benchmarks/detection.py` on {results['machine']}: {results['n_scans']} test scans, "
            f"{results['n_lesions']} lymph nodes; each method trained on fold 0 with its demo settings "
            "(`lesionnet_demo --task detection`).\n\n" + comparison_markdown(results) + "\n\n"
            + "\n".join(training_lines(results)) + "\n\nData: `benchmarks/results/detection_502.json`.")
    replace_section(ROOT / "documentation" / "benchmarks.md", "Detection (Dataset502)", body)
    print(comparison_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
