"""Benchmark: TLT's memory model (``lesionnet.methods.tlt.memory``) against measured peak memory of a
training step on CPU.

For each case (patch sizes, batch, network width/heads/depth) one forward + TLT loss + backward of
``lesionnet.methods.tlt.network`` runs in a fresh subprocess
(:func:`lesionnet.methods.tlt.memory_measure.measure_training_step_memory`: the RSS high-water mark of
the step minus the RSS after building the model and inputs). The measuring child is started from a small
launcher process that never imports torch, because Linux carries ``ru_maxrss`` across ``execve``: a
child started straight from a large process inherits that process's high-water mark as its baseline.

Compared figures (MiB): ``saved`` — activations held for backward (autograd saved-tensor hooks) vs the
model's ``activation_bytes``; ``step`` — measured step peak vs the model's ``step_peak_bytes``
(activations + parameter gradients + backward transient + CPU runtime overhead).

Results go to ``benchmarks/results/tlt_memory_model.{json,md}`` (atomic writes).

Usage::

    python benchmarks/tlt_memory_model.py            # the documented cases (a few minutes on 2 cores)
    python benchmarks/tlt_memory_model.py --quick    # two small cases
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lesionnet.methods.tlt import memory as tlt_memory  # noqa: E402
from lesionnet.planning.memory import MIB  # noqa: E402
from lesionnet.utils.files import write_json, write_text  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import add_model_ratios, run_json_process  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"

CASES = [
    # template, search, batch, (width, heads, depth)
    ((16, 64, 64), (16, 64, 64), 1, (192, 8, 3)),
    ((16, 64, 64), (16, 64, 64), 2, (192, 8, 3)),
    ((32, 96, 96), (32, 96, 96), 1, (192, 8, 3)),
    ((24, 128, 128), (24, 128, 128), 1, (192, 8, 3)),
    ((16, 48, 48), (40, 128, 128), 1, (192, 8, 3)),
    ((32, 96, 96), (32, 96, 96), 1, (64, 2, 1)),
    ((40, 120, 120), (40, 120, 120), 1, (192, 8, 3)),
]
QUICK = CASES[:2]


def measure(template, search, batch, network: dict) -> dict:
    config = {k: v for k, v in network.items()}
    code = ("import json; from lesionnet.methods.tlt.memory_measure import measure_training_step_memory as m; "
            f"print(json.dumps(m({config!r}, {tuple(template)}, {tuple(search)}, {int(batch)}, radius_mm=10.0, "
            "spacing_zyx=(2.5, 2.0, 2.0))))")
    return run_json_process(code, REPO)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    for template, search, batch, (width, heads, depth) in (QUICK if args.quick else CASES):
        network = tlt_memory.network_config(width, heads, depth)
        measured = measure(template, search, batch, network)
        est = tlt_memory.training_step_memory(template, search, batch, channels=network["channels"], num_heads=heads,
                                              layers_per_line=depth, ffn_dim=network["ffn_dim"],
                                              head_hidden=network["head_hidden"],
                                              template_tokens=max(measured["template_tokens_kept"]))
        row = {
            "template_zyx": list(template), "search_zyx": list(search), "batch": batch,
            "width_heads_depth": [width, heads, depth], "parameters": measured["parameters"],
            "parameters_model": est.parameters, "template_tokens_kept": measured["template_tokens_kept"],
            "measured_saved_mib": measured["saved_tensors_mib"],
            "model_saved_mib": round(est.activation_bytes / MIB, 1),
            "measured_step_mib": measured["step_peak_mib"], "model_step_mib": round(est.step_peak_bytes / MIB, 1),
            "model_total_training_mib": round(est.total_bytes / MIB, 1),
            "baseline_rss_mib": measured["baseline_rss_mib"], "wall_s": measured["wall_s"],
        }
        rows.append(add_model_ratios(row))
        print(json.dumps(row))
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "tlt_memory_model.json", {"cases": rows, "torch": measured.get("torch")})
    lines = ["# TLT memory model vs measured CPU peak (forward + loss + backward)", "",
             "| template | search | batch | width/heads/depth | saved: measured / model (MiB) "
             "| step peak: measured / model (MiB) | model / measured |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {'x'.join(map(str, r['template_zyx']))} | {'x'.join(map(str, r['search_zyx']))} "
                     f"| {r['batch']} | {'/'.join(map(str, r['width_heads_depth']))} "
                     f"| {r['measured_saved_mib']} / {r['model_saved_mib']} | "
                     f"{r['measured_step_mib']} / {r['model_step_mib']} | {r['step_ratio']} |")
    lines += ["", "Reproduce: `python benchmarks/tlt_memory_model.py`"]
    write_text(RESULTS / "tlt_memory_model.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
