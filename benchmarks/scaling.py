"""Data-parallel training throughput: one training process beside N (torch.distributed) with the same global
batch, in one run.

    python benchmarks/scaling.py [--methods tlt dlt] [--preset small] [--processes 1 2] [--iterations 20]
        [--repeats 3] [--batch_size 4] [--device cpu|cuda]

Each configuration trains fold 0 of Dataset501 (the demo's dataset; run ``lesionnet_demo --task tracking``
or ``lesionnet_plan_and_preprocess -d 501`` first) into a temporary folder for one epoch of
``--iterations`` steps, ``--repeats`` times, the configurations interleaved. Throughput is global batch ×
steps / the epoch's training seconds (the trainer's ``seconds_training``: the steps with their data
loading, without start-up and validation). On a CPU one process uses every core and N processes use
cores / N torch threads each, so the comparison is at equal hardware. Writes
``benchmarks/results/scaling_<device>.json`` and ``.md`` and the section "Data-parallel training" of
``documentation/benchmarks.md``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine_description, replace_section  # noqa: E402

from lesionnet.methods import get_method
from lesionnet.training.checkpoints import FINAL, load_checkpoint
from lesionnet.training.run_training import train_model
from lesionnet.utils.files import write_json, write_text
from lesionnet.utils.logging_setup import configure_logging
from lesionnet.utils.parallel import default_num_processes

ROOT = Path(__file__).resolve().parents[1]
HEADING = "Data-parallel training"


def one_run(method: str, processes: int, args, folder: Path) -> dict:
    """Train one epoch into ``folder``; the epoch's training seconds and samples per second."""
    cores = default_num_processes() if args.device == "cpu" else 1
    threads = max(1, cores // processes)
    if processes == 1:
        torch.set_num_threads(threads)
    train_model(501, get_method(method, capability="train"), 0, preset=args.preset, device=args.device,
                progress=False, output_folder=folder, num_processes=processes, threads_per_process=threads,
                num_epochs=1, iterations_per_epoch=args.iterations, batch_size=args.batch_size, max_val_pairs=1,
                seed=0)
    record = load_checkpoint(folder / FINAL)["history"][0]
    seconds = float(record["seconds_training"])
    return {"seconds": round(seconds, 3), "samples_per_s": round(args.batch_size * args.iterations / seconds, 3),
            "train_loss": record["train_loss"], "threads_per_process": threads}


def markdown(rows: list[dict], args, command: str) -> str:
    lines = [f"`{command}` on {machine_description()}, device `{args.device}`: one epoch of {args.iterations} "
             f"steps, global batch {args.batch_size}, preset `{args.preset}`, {args.repeats} interleaved repeats "
             "(median; the ratio is the median of the per-repeat ratios to 1 process).", "",
             "| method | processes | threads each | samples/s (median) | per repeat | × 1 process |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['method']} | {row['processes']} | {row['threads_per_process']} | "
                     f"{row['samples_per_s_median']:.2f} | {', '.join(f'{v:.2f}' for v in row['samples_per_s'])} | "
                     f"{row['speedup_median']:.2f} |")
    if args.device == "cpu":
        lines += ["", "On one CPU the processes share its cores (threads per process = cores / processes): this "
                  "measures what the data-parallel path costs or gains on the same hardware (gradient all-reduce, "
                  "one data pipeline per process, threads vs processes), not a scale-out to more hardware."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=["tlt", "dlt"])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--processes", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    configure_logging()
    if 1 not in args.processes:
        raise SystemExit("--processes must include 1 (the baseline).")
    runs: dict = {(m, n): [] for m in args.methods for n in args.processes}
    with tempfile.TemporaryDirectory(prefix="lesionnet_scaling_") as work:
        for repeat in range(args.repeats):
            for method in args.methods:
                for processes in args.processes:
                    folder = Path(work) / f"{method}_{processes}_{repeat}"
                    runs[(method, processes)].append(one_run(method, processes, args, folder))
                    print(f"{method} x{processes} repeat {repeat}: {runs[(method, processes)][-1]}", flush=True)
    rows = []
    for (method, processes), results in runs.items():
        ratios = [r["samples_per_s"] / b["samples_per_s"] for r, b in zip(results, runs[(method, 1)])]
        rows.append({"method": method, "processes": processes,
                     "threads_per_process": results[0]["threads_per_process"],
                     "samples_per_s": [r["samples_per_s"] for r in results],
                     "samples_per_s_median": statistics.median(r["samples_per_s"] for r in results),
                     "speedup_median": statistics.median(ratios), "runs": results})
    command = "python benchmarks/scaling.py " + " ".join(argv if argv is not None else sys.argv[1:])
    table = markdown(rows, args, command.strip())
    name = f"scaling_{args.device}"
    write_json(ROOT / "benchmarks" / "results" / f"{name}.json",
               {"command": command.strip(), "machine": machine_description(), "device": args.device,
                "settings": vars(args), "rows": rows})
    write_text(ROOT / "benchmarks" / "results" / f"{name}.md", table)
    replace_section(ROOT / "documentation" / "benchmarks.md", f"{HEADING} ({args.device})", table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
