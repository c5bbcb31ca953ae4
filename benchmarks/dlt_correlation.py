"""Benchmark: DLT's fast cross-correlation (Eq. 6) against the full global-kernel correlation (Eq. 5).

For each feature map size (the paper's width, 64 channels; global kernel 7x11x11, local 3³), at the same
input, in one run:

* FLOPs counted by torch's ``FlopCounterMode`` during a forward pass of one
  :class:`lesionnet.methods.dlt.correlation.ScaleCorrelation` (and checked against the analytic count of
  :func:`~lesionnet.methods.dlt.correlation.correlation_macs`), for the global term alone (the part
  the decomposition replaces, its learned flattening included) and for the whole layer (the unchanged 3³
  term included);
* forward and forward + backward times: medians of ``--repeats`` runs after two warm-ups, the forms
  interleaved, with the ratio full / fast.

The fast form is measured with lesionnet's default depthwise flattening and with the dense (``C → C``)
flattening, whose fixed cost (``3 C² · 7 · 11 · 11`` multiply-adds) outweighs the saving on small maps.

Sizes: the three scales of the Dataset501 plan (search patch 40³ at strides 2, 4, 8), and a larger map
(16 × 48 × 48; the paper's finest scale is larger still). Results:
``benchmarks/results/dlt_correlation.{json,md}`` and the "DLT fast cross-correlation" section of
``documentation/benchmarks.md``.

Usage::

    python benchmarks/dlt_correlation.py [--repeats 9] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from benchmarks.report import machine_description, replace_section  # noqa: E402
from lesionnet.methods.dlt.correlation import ScaleCorrelation, correlation_macs  # noqa: E402
from lesionnet.utils.files import write_json, write_text  # noqa: E402

CHANNELS = 64
SIZES = {"Dataset501 plan, stride 2": (20, 20, 20), "Dataset501 plan, stride 4": (10, 10, 10),
         "Dataset501 plan, stride 8": (5, 5, 5), "a larger map": (16, 48, 48)}
HEADING = "DLT fast cross-correlation"
#: row key -> (global_kernel mode, flattening)
FORMS = {"full": ("full", "depthwise"), "decomposed": ("decomposed", "depthwise"),
         "decomposed_dense": ("decomposed", "dense")}


def _counted_flops(module, template, search, cells, global_only: bool) -> int:
    """FLOPs of one forward pass; ``global_only`` counts the global term (flattening + correlations) alone."""
    with FlopCounterMode(display=False) as counter:
        if global_only:
            from lesionnet.methods.dlt.correlation import crop_kernel, depthwise_xcorr
            kernel = crop_kernel(template, cells, module.global_kernel_zyx)
            for k in module.global_kernels(kernel):
                depthwise_xcorr(search, k)
        else:
            module(template, search, cells)
    return int(counter.get_total_flops())


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        fn()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(size_zyx, repeats: int) -> dict:
    torch.manual_seed(0)
    modules = {key: ScaleCorrelation(CHANNELS, 3, (7, 11, 11), *form) for key, form in FORMS.items()}
    template = torch.randn(2, CHANNELS, *size_zyx)
    search = torch.randn(2, CHANNELS, *size_zyx, requires_grad=True)
    cells = torch.tensor([[s // 2 for s in size_zyx]] * 2)
    row = {"search_map_zyx": list(size_zyx), "batch": 2, "channels": CHANNELS}
    for mode, module in modules.items():
        analytic = correlation_macs(CHANNELS, size_zyx, (7, 11, 11), 3, FORMS[mode][0], batch=2,
                                    flattening=FORMS[mode][1])
        row[mode] = {"flops_layer": _counted_flops(module, template, search, cells, False),
                     "flops_global": _counted_flops(module, template, search, cells, True),
                     "analytic_flops_layer": 2 * analytic["total"],
                     "analytic_flops_global": 2 * (analytic["global"] + analytic["flatten"])}
    forward, backward = {m: [] for m in modules}, {m: [] for m in modules}
    for _ in range(3):                       # interleaved rounds: both forms see the same machine state
        for mode, module in modules.items():
            with torch.no_grad():
                forward[mode].append(_median_seconds(lambda: module(template, search, cells), repeats // 3 + 1))
            backward[mode].append(_median_seconds(lambda: module(template, search, cells).sum().backward(),
                                                  repeats // 3 + 1))
    for mode in modules:
        row[mode]["forward_s_median"] = statistics.median(forward[mode])
        row[mode]["forward_backward_s_median"] = statistics.median(backward[mode])
    full = row["full"]
    for key, suffix in (("decomposed", ""), ("decomposed_dense", "_dense")):
        fast = row[key]
        row["flops_saved_global" + suffix] = 1.0 - fast["flops_global"] / full["flops_global"]
        row["flops_saved_layer" + suffix] = 1.0 - fast["flops_layer"] / full["flops_layer"]
        row["forward_speedup" + suffix] = full["forward_s_median"] / fast["forward_s_median"]
        row["forward_backward_speedup" + suffix] = full["forward_backward_s_median"] / fast["forward_backward_s_median"]
    return row


def markdown(rows: dict, machine: str, threads: int, repeats: int) -> str:
    lines = [f"`python benchmarks/dlt_correlation.py` — {machine}, {threads} torch threads, medians of "
             f"{repeats} runs per form (interleaved). One DLT correlation layer (64 channels, batch 2, global kernel "
             "7×11×11, local 3³); FLOPs counted by torch's FlopCounterMode (equal to the analytic count in every "
             "row). *Global term*: the part Eq. 6 replaces (the learned flattening included); *layer*: with the "
             "unchanged 3³ term. *fast*: lesionnet's default, the depthwise learned flattening; *dense*: a C → C "
             "flattening (lesionnet's first version), whose fixed cost loses the saving on small maps.", "",
             "| search feature map (z, y, x) | GFLOPs global, full → fast | saved | GFLOPs layer, full → fast "
             "| saved | forward, full / fast | forward + backward, full / fast | dense: global saved | dense: "
             "forward, full / dense |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in rows.items():
        full, fast = r["full"], r["decomposed"]
        lines.append(
            f"| {name}: {'×'.join(map(str, r['search_map_zyx']))} | {full['flops_global'] / 1e9:.3f} → "
            f"{fast['flops_global'] / 1e9:.3f} | {100 * r['flops_saved_global']:.1f} % | "
            f"{full['flops_layer'] / 1e9:.3f} → {fast['flops_layer'] / 1e9:.3f} | {100 * r['flops_saved_layer']:.1f} % "
            f"| {r['forward_speedup']:.2f}× | {r['forward_backward_speedup']:.2f}× | "
            f"{100 * r['flops_saved_global_dense']:.1f} % | {r['forward_speedup_dense']:.2f}× |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = {name: measure(size, args.repeats) for name, size in SIZES.items()}
    for row in rows.values():
        for mode in FORMS:
            r = row[mode]
            assert r["flops_layer"] == r["analytic_flops_layer"], (mode, r)
            assert r["flops_global"] == r["analytic_flops_global"], (mode, r)
    machine = machine_description()
    out = REPO / "benchmarks" / "results"
    write_json(out / "dlt_correlation.json", {"machine": machine, "threads": args.threads, "repeats": args.repeats,
                                              "rows": rows})
    table = markdown(rows, machine, args.threads, args.repeats)
    write_text(out / "dlt_correlation.md", f"# {HEADING}\n\n{table}")
    replace_section(REPO / "documentation" / "benchmarks.md", HEADING, table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
