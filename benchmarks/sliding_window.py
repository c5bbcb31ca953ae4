"""Benchmark: lesionnet's sliding-window engine against MONAI's ``sliding_window_inference`` (CPU).

Same network (3 conv layers 1 -> 16 -> 16 -> 2, 3x3x3, padding 1), same volume, same patch, overlap
0.5 (step 0.5), Gaussian blending with sigma = patch / 8 (MONAI: ``mode="gaussian",
sigma_scale=0.125``) and the same number of windows per network call.

* Wall time: both engines in one process, after one warm-up call each, alternating
  A B B A A B ... (the order flips every pair so that neither engine always runs second);
  medians, the ratio of the medians (ours / MONAI), the median of the per-pair ratios and the
  ratio of the minima (interference from other processes only ever adds time).
* Peak memory: two methods, each in fresh child processes (``--child``):
  - peak RSS (``VmHWM``): peak resident set size of a child that runs one inference minus that of a
    baseline child that imports both engines and builds the same network and volume (median of
    ``--memory-repeats`` children each). Includes everything (allocator slack, oneDNN scratch).
    Measured twice: with glibc's default malloc (what users get; noisy, since glibc's dynamic mmap
    threshold keeps some freed memory in the heap depending on allocation order) and with
    ``MALLOC_MMAP_THRESHOLD_=131072`` (every large tensor its own mapping: deterministic).
  - ``torch allocator``: the PyTorch profiler with ``profile_memory=True`` records every CPU
    allocation and free made through PyTorch's allocator; replaying them in time order gives the
    peak of live bytes during the call (exact for tensors, blind to memory not allocated by torch).
* Agreement: max |ours - MONAI| with MONAI's default Gaussian (which clamps weights below 1e-3 up to
  1e-3), the same restricted to voxels where every covering window weighs >= 1e-3, with our map
  passed to MONAI as ``roi_weight_map``, and with uniform weights on both sides.

Results go to ``benchmarks/results/sliding_window.{json,md}`` (written atomically).

Usage (needs ``pip install monai`` or ``pip install -e ".[benchmark]"``)::

    python benchmarks/sliding_window.py                                   # the documented figures
    python benchmarks/sliding_window.py --volume 16 48 48 --patch 8 24 24 --repeats 2   # quick
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lesionnet.inference.gaussian import gaussian_importance_map  # noqa: E402
from lesionnet.inference.sliding_window import predict_sliding_window, window_slices  # noqa: E402
from lesionnet.utils.files import write_json, write_text  # noqa: E402

MONAI_MISSING = ("MONAI is not installed; it is an optional dependency for this benchmark. Install it with\n"
                 "    pip install monai        (or: pip install -e \".[benchmark]\")\n"
                 "and check that torch stays the CPU build (python -c \"import torch; print(torch.__version__)\").")


def import_monai():
    try:
        import monai
        from monai.inferers import sliding_window_inference
    except ImportError:
        print(MONAI_MISSING, file=sys.stderr)
        sys.exit(2)
    return monai, sliding_window_inference


def build(volume_zyx, seed=0):
    """The benchmark network (eval mode) and a random (1, Z, Y, X) volume."""
    torch.manual_seed(seed)
    nn = torch.nn
    net = nn.Sequential(nn.Conv3d(1, 16, 3, padding=1), nn.ReLU(inplace=True),
                        nn.Conv3d(16, 16, 3, padding=1), nn.ReLU(inplace=True),
                        nn.Conv3d(16, 2, 3, padding=1)).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    volume = torch.randn(1, *volume_zyx, generator=torch.Generator().manual_seed(seed + 1))
    return net, volume


def build_pointwise(seed=0):
    """A 1x1x1 convolution 1 -> 2: almost free, so the timings show the engines' own overhead."""
    torch.manual_seed(seed)
    net = torch.nn.Conv3d(1, 2, 1).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def make_engines(net, volume, patch, batch_size, sliding_window_inference):
    def ours(gaussian=True):
        return predict_sliding_window(net, volume, patch, step_size=0.5, batch_size=batch_size, gaussian=gaussian)

    def monai(mode="gaussian", roi_weight_map=None):
        with torch.inference_mode():
            out = sliding_window_inference(volume[None], patch, batch_size, net, overlap=0.5, mode=mode,
                                           sigma_scale=0.125, roi_weight_map=roi_weight_map)
        return out[0]

    return ours, monai


def torch_allocator_peak(fn) -> int:
    """Peak live bytes allocated through PyTorch's CPU allocator while ``fn`` runs."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # Each event carries the bytes it allocated net of what it freed, excluding its children
    # ("self"); "[memory]" events are allocations/frees outside any operator (mostly frees).
    events = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events()
                    if e.self_cpu_memory_usage)
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    return peak


def peak_rss_kib() -> int:
    """Peak resident set size of this process in KiB.

    ``VmHWM`` from /proc/self/status is the high-water mark of the current address space only.
    ``getrusage().ru_maxrss`` is not usable here: Linux carries the maximum over ``execve``, so a
    child started from the (large) benchmark process would report the parent's size.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass        # no /proc (not Linux): fall back to ru_maxrss below
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(args) -> None:
    """One measurement in a fresh process; prints a JSON line."""
    torch.set_num_threads(args.threads)
    _, sliding_window_inference = import_monai()
    net, volume = build(tuple(args.volume))
    ours, monai = make_engines(net, volume, tuple(args.patch), args.batch_size, sliding_window_inference)
    fn = {"ours": ours, "monai": monai, "baseline": lambda: None}[args.child]
    result = {}
    if args.child_method == "rss":
        fn()
        result["peak_rss_kib"] = peak_rss_kib()
    else:
        result["torch_peak_bytes"] = torch_allocator_peak(fn)
    print(json.dumps(result))


# glibc raises its mmap threshold dynamically after large frees, so freed activations may stay in
# the heap and the peak RSS depends on allocation order; a fixed threshold makes every large
# tensor its own mapping, returned on free, so the peak RSS follows the live memory.
FIXED_MMAP_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def run_child(args, engine: str, method: str, extra_env: dict | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", engine, "--child-method", method,
           "--volume", *map(str, args.volume), "--patch", *map(str, args.patch),
           "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    env = {**os.environ, **(extra_env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child {engine} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rss_above_baseline(args, repeats: int, extra_env: dict | None = None) -> dict:
    rss = {e: [] for e in ("baseline", "ours", "monai")}
    for _ in range(repeats):
        for engine in rss:  # interleaved so that drifting machine state affects all alike
            rss[engine].append(run_child(args, engine, "rss", extra_env)["peak_rss_kib"] / 1024)
    med = {e: statistics.median(v) for e, v in rss.items()}
    return {"samples_mib": rss, "median_mib": med,
            "above_baseline_mib": {e: med[e] - med["baseline"] for e in ("ours", "monai")}}


def measure_memory(args) -> dict:
    default = _rss_above_baseline(args, args.memory_repeats)
    fixed = _rss_above_baseline(args, 1, FIXED_MMAP_ENV)  # deterministic: one child each
    alloc = {e: run_child(args, e, "torch")["torch_peak_bytes"] / 2 ** 20 for e in ("ours", "monai")}
    return {
        "rss_default_malloc": default,
        "rss_fixed_mmap_threshold": {"env": FIXED_MMAP_ENV, **fixed},
        "rss_peak_above_baseline_mib": default["above_baseline_mib"],
        "rss_peak_above_baseline_fixed_mmap_mib": fixed["above_baseline_mib"],
        "torch_allocator_peak_mib": alloc,
    }


def measure_time(ours, monai, repeats: int) -> dict:
    ours()  # warm-up: oneDNN primitive creation, page faults, caches
    monai()
    times = {"ours": [], "monai": []}
    cpu = {"ours": [], "monai": []}
    for r in range(repeats):
        order = ("ours", "monai") if r % 2 == 0 else ("monai", "ours")
        for name in order:
            fn = ours if name == "ours" else monai
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    pair_ratios = [a / b for a, b in zip(times["ours"], times["monai"])]
    return {"samples_s": times, "median_s": med, "min_s": best, "ratio_of_medians": med["ours"] / med["monai"],
            "ratio_of_minima": best["ours"] / best["monai"],
            "median_pair_ratio": statistics.median(pair_ratios), "pair_ratios": pair_ratios,
            "cpu_samples_s": cpu, "cpu_median_s": cpu_med, "cpu_ratio_of_medians": cpu_med["ours"] / cpu_med["monai"]}


def min_window_weight(shape_zyx, patch, w) -> torch.Tensor:
    """Smallest weight of map ``w`` among the windows covering each voxel."""
    out = torch.full(tuple(shape_zyx), float("inf"))
    for sl in window_slices(shape_zyx, patch, 0.5):
        torch.minimum(out[sl], w, out=out[sl])
    return out


def measure_agreement(ours, monai, shape_zyx, patch, monai_module) -> dict:
    a, b = ours(), monai()
    diff = (a - b).abs()
    result = {"max_abs_output": a.abs().max().item(), "max_abs_diff_gaussian": diff.max().item(),
              "fraction_voxels_diff_gt_1e-4": (diff > 1e-4).float().mean().item()}
    if min(s - p for s, p in zip(shape_zyx, patch)) >= 0:
        # MONAI's map is not normalised to max 1 and is clamped below at 1e-3: where every covering
        # window's MONAI weight is above 1e-3, both blends use proportional weights.
        from monai.data.utils import compute_importance_map
        monai_map = compute_importance_map(patch, mode="gaussian", sigma_scale=0.125)
        safe = min_window_weight(shape_zyx, patch, monai_map) > 1e-3
        result["fraction_voxels_all_monai_weights_gt_1e-3"] = safe.float().mean().item()
        result["max_abs_diff_gaussian_where_monai_weights_gt_1e-3"] = diff[:, safe].max().item() if safe.any() else None
    result["max_abs_diff_same_map"] = (a - monai(roi_weight_map=gaussian_importance_map(patch))).abs().max().item()
    result["max_abs_diff_uniform"] = (ours(gaussian=False) - monai(mode="constant")).abs().max().item()
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval
    padded = tuple(max(s, p) for s, p in zip(shape_zyx, patch))
    theirs = dense_patch_slices(padded, patch, _get_scan_interval(padded, patch, 3, (0.5,) * 3))
    result["same_windows"] = sorted(tuple(s.start for s in w) for w in theirs) == \
        sorted(tuple(s.start for s in w) for w in window_slices(padded, patch, 0.5))
    return result


def markdown(res: dict) -> str:
    s = res["settings"]
    t, m, a = res["time"], res.get("memory"), res["agreement"]
    lines = [
        "# Sliding-window inference: lesionnet vs MONAI (CPU)",
        "",
        f"Volume 1x{'x'.join(map(str, s['volume_zyx']))}, patch {'x'.join(map(str, s['patch_zyx']))}, "
        "step/overlap 0.5, "
        f"Gaussian sigma = patch/8, {s['num_windows']} windows, batch {s['batch_size']}, "
        f"{s['threads']} threads, net 1->16->16->2 (3x3x3). torch {res['environment']['torch']}, "
        f"MONAI {res['environment']['monai']}. {s['repeats']} alternating repeats after a warm-up.",
        "",
        "| engine | median time (s) | min time (s) | median CPU time (s) | median time, 1x1x1 net (s) "
        "| peak RSS above baseline (MiB) | same, fixed mmap threshold (MiB) | torch allocator peak (MiB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    o = res["overhead_time"]
    for name, label in (("ours", "lesionnet `predict_sliding_window`"), ("monai", "MONAI `sliding_window_inference`")):
        rss = f"{m['rss_peak_above_baseline_mib'][name]:.1f}" if m else "n/a"
        fixed = f"{m['rss_peak_above_baseline_fixed_mmap_mib'][name]:.1f}" if m else "n/a"
        alloc = f"{m['torch_allocator_peak_mib'][name]:.1f}" if m else "n/a"
        lines.append(f"| {label} | {t['median_s'][name]:.3f} | {t['min_s'][name]:.3f} | {t['cpu_median_s'][name]:.3f} "
                     f"| {o['median_s'][name]:.4f} | {rss} | {fixed} | {alloc} |")
    lines += [
        "",
        f"Ratio ours/MONAI: {t['ratio_of_medians']:.3f} (ratio of medians), "
        f"{t['median_pair_ratio']:.3f} (median of per-pair ratios), {t['ratio_of_minima']:.3f} (ratio of minima), "
        f"{t['cpu_ratio_of_medians']:.3f} (CPU time). With the 1x1x1 network (engine overhead, "
        f"{3 * s['repeats']} pairs): {o['ratio_of_medians']:.3f} (medians), {o['median_pair_ratio']:.3f} (pairs). "
        f"Load average before/after: {res['environment']['load_average_before']} / "
        f"{res['environment']['load_average_after']} (2 shared cores: noisy).",
        "",
        f"Agreement: max |ours - MONAI| = {a['max_abs_diff_gaussian']:.3g} (outputs up to "
        f"{a['max_abs_output']:.3g}); on the {a.get('fraction_voxels_all_monai_weights_gt_1e-3', float('nan')):.1%} "
        "of voxels where MONAI clamps none of the covering windows' weights: "
        f"{a.get('max_abs_diff_gaussian_where_monai_weights_gt_1e-3') or float('nan'):.3g}; "
        "with our Gaussian map given to "
        f"MONAI: {a['max_abs_diff_same_map']:.3g}; uniform weights: {a['max_abs_diff_uniform']:.3g}. "
        f"Same windows: {a['same_windows']}.",
        "",
        f"Command: `{res['command']}`",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volume", type=int, nargs=3, default=[64, 192, 192], metavar=("Z", "Y", "X"))
    parser.add_argument("--patch", type=int, nargs=3, default=[32, 96, 96], metavar=("Z", "Y", "X"))
    parser.add_argument("--batch-size", type=int, default=1, help="windows per network call (both engines)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per engine (alternating)")
    parser.add_argument("--memory-repeats", type=int, default=3, help="child processes per engine for RSS")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurements")
    parser.add_argument("--output-dir", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--child", choices=["ours", "monai", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--child-method", choices=["rss", "torch"], default="rss", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        child(args)
        return 0
    monai_module, sliding_window_inference = import_monai()
    torch.set_num_threads(args.threads)
    volume_zyx, patch = tuple(args.volume), tuple(args.patch)
    net, volume = build(volume_zyx)
    ours, monai = make_engines(net, volume, patch, args.batch_size, sliding_window_inference)

    padded = tuple(max(s, p) for s, p in zip(volume_zyx, patch))
    res = {
        "command": "python benchmarks/sliding_window.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {"volume_zyx": list(volume_zyx), "patch_zyx": list(patch), "step_size": 0.5,
                     "batch_size": args.batch_size, "threads": args.threads, "repeats": args.repeats,
                     "num_windows": len(window_slices(padded, patch, 0.5))},
        "environment": {"torch": torch.__version__, "monai": monai_module.__version__,
                        "python": platform.python_version(), "cpu_count": os.cpu_count(),
                        "machine": platform.machine(),
                        "load_average_before": [round(x, 2) for x in os.getloadavg()]},
    }
    print(f"timing: {res['settings']['num_windows']} windows, {args.repeats} repeats per engine ...", flush=True)
    res["time"] = measure_time(ours, monai, args.repeats)
    print(json.dumps(res["time"]["median_s"]), f"ratio {res['time']['ratio_of_medians']:.3f}", flush=True)
    print("engine overhead with a 1x1x1 network ...", flush=True)
    res["overhead_time"] = measure_time(*make_engines(build_pointwise(), volume, patch, args.batch_size,
                                                      sliding_window_inference), 3 * args.repeats)
    print(json.dumps(res["overhead_time"]["median_s"]), f"ratio {res['overhead_time']['ratio_of_medians']:.3f}",
          flush=True)
    print("agreement ...", flush=True)
    res["agreement"] = measure_agreement(ours, monai, volume_zyx, patch, monai_module)
    if not args.no_memory:
        print("memory (child processes) ...", flush=True)
        res["memory"] = measure_memory(args)
    res["environment"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    write_json(args.output_dir / "sliding_window.json", res)
    text = markdown(res)
    write_text(args.output_dir / "sliding_window.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
