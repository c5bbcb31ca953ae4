"""Benchmark: LN-Tracker's memory model (``lesionnet.methods.lntracker.memory``) against the measured peak
memory of a training step on CPU.

For each case (preset or network sizes, patch, batch, slice context) one training step of the trainer —
forward over a chain of 3 adjacent slices, ``LNTrackerLoss``, backward; no optimizer state — runs in a
fresh subprocess (:func:`lesionnet.methods.lntracker.memory_measure.measure_training_step_memory`: the RSS
high-water mark of the step minus the RSS after building the model and inputs; 1 torch thread). Each
measuring child is started from a small launcher process that never imports torch (Linux carries
``ru_maxrss`` across ``execve``, which matters where the high-water mark cannot be reset).

Compared figures (MiB): ``saved`` — activations held for backward (autograd saved-tensor hooks) vs the
model's ``activation_bytes``; ``step`` — measured step peak vs the model's ``step_peak_bytes``
(activations + parameter gradients + backward transient + CPU runtime overhead). Parameters and Adam's
moments exist before the step (in the baseline) and are counted exactly by the model.

Results go to ``benchmarks/results/lntracker_memory_model.{json,md}`` (atomic writes).

Usage::

    python benchmarks/lntracker_memory_model.py            # the documented cases (about two minutes)
    python benchmarks/lntracker_memory_model.py --quick    # two small cases
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lesionnet.planning.memory import MIB  # noqa: E402
from lesionnet.utils.files import write_json, write_text  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import add_model_ratios, run_json_process  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
#: a GPU-plan-like network of width 128 (the plan's default FFN and backbone widths)
WIDE_128 = {"preset": "plan", "hidden_dim": 128, "ffn_dim": 512, "backbone_widths": [32, 64, 128, 256],
            "encoder_layers": 3, "decoder_layers": 3, "num_queries": 100}
#: the paper's width 256 (8 heads) at 6 + 6 layers
WIDE_256 = {"preset": "plan", "hidden_dim": 256, "num_heads": 8, "ffn_dim": 1024, "backbone_widths": [32, 64, 128, 256],
            "encoder_layers": 6, "decoder_layers": 6, "num_queries": 100}
#: (label, arguments of lntracker_section)
CASES = [
    ("tiny", {"preset": "tiny", "patch_yx": (64, 64), "batch_size": 2}),
    ("tiny", {"preset": "tiny", "patch_yx": (64, 64), "batch_size": 4}),
    ("tiny", {"preset": "tiny", "patch_yx": (128, 128), "batch_size": 2}),
    ("tiny", {"preset": "tiny", "patch_yx": (128, 128), "batch_size": 4}),
    ("small", {"preset": "small", "patch_yx": (128, 128), "batch_size": 2}),
    ("small", {"preset": "small", "patch_yx": (128, 128), "batch_size": 4}),
    ("small", {"preset": "small", "patch_yx": (256, 256), "batch_size": 2}),
    ("small", {"preset": "small", "patch_yx": (256, 256), "batch_size": 4}),
    ("small, 7 slices (the demo's step on Dataset502)", {"preset": "small", "patch_yx": (128, 128),
                                                         "batch_size": 4, "slices_per_side": 3}),
    ("small, 5 slices", {"preset": "small", "patch_yx": (192, 256), "batch_size": 4, "slices_per_side": 2}),
    ("width 128, 3 + 3 layers, 100 queries, 5 slices", {**WIDE_128, "patch_yx": (256, 256), "batch_size": 2,
                                                        "slices_per_side": 2}),
    ("width 256, 6 + 6 layers, 100 queries", {**WIDE_256, "patch_yx": (256, 256), "batch_size": 1}),
]
QUICK = CASES[:2]


def measure(arguments: dict) -> dict:
    """The measurement and the model's prediction of one case, from a small launcher process."""
    code = ("import json; from lesionnet.methods.lntracker import memory_measure as mm; "
            f"s = mm.lntracker_section(**{arguments!r}); m = mm.measure_training_step_memory(s); "
            "e = mm.predicted_step(s); m['model'] = {'parameters': e.parameters, "
            "'activation_bytes': e.activation_bytes, 'step_peak_bytes': e.step_peak_bytes, "
            "'total_bytes': e.total_bytes}; print(json.dumps(m))")
    return run_json_process(code, REPO)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    for label, arguments in (QUICK if args.quick else CASES):
        measured = measure(arguments)
        model, section = measured["model"], measured["section"]
        row = {"network": label, "patch_yx": list(section["patch_size_yx"]), "batch": section["batch_size"],
               "input_slices": section["num_input_slices"], "parameters": measured["parameters"],
               "parameters_model": model["parameters"], "measured_saved_mib": measured["saved_tensors_mib"],
               "model_saved_mib": round(model["activation_bytes"] / MIB, 1),
               "measured_step_mib": measured["step_peak_mib"],
               "model_step_mib": round(model["step_peak_bytes"] / MIB, 1),
               "model_total_training_mib": round(model["total_bytes"] / MIB, 1),
               "baseline_rss_mib": measured["baseline_rss_mib"], "wall_s": measured["wall_s"], "section": section}
        rows.append(add_model_ratios(row))
        print(json.dumps({k: v for k, v in row.items() if k != "section"}))
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "lntracker_memory_model.json", {"cases": rows, "torch": measured.get("torch"),
                                                         "num_threads": measured.get("num_threads")})
    lines = ["# LN-Tracker memory model vs measured CPU peak (forward + loss + backward, chains of 3 slices)", "",
             "| network | patch | batch | slices | parameters | saved: measured / model (MiB) "
             "| step peak: measured / model (MiB) | model / measured |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['network']} | {'x'.join(map(str, r['patch_yx']))} | {r['batch']} | {r['input_slices']} "
                     f"| {r['parameters']:,} | {r['measured_saved_mib']} / {r['model_saved_mib']} "
                     f"| {r['measured_step_mib']} / {r['model_step_mib']} | {r['step_ratio']} |")
    lines += ["", "Reproduce: `python benchmarks/lntracker_memory_model.py`"]
    write_text(RESULTS / "lntracker_memory_model.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
