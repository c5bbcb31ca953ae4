"""Measured peak memory of one TLT training step (forward + loss + backward), for the planner's
memory model.

Method: the step runs in a **fresh Python subprocess**. The child imports torch, builds the model in
training mode and creates the inputs; then it resets the kernel's resident-set high-water mark
(writing ``5`` to ``/proc/self/clear_refs``, Linux >= 4.0) and reads the current RSS (the baseline:
interpreter + torch + parameters + inputs), runs one forward, the TLT loss and the backward pass
(gradients allocated, no optimizer state) and reads the high-water mark ``VmHWM`` from
``/proc/self/status``. ``step_peak_mib = peak - baseline`` is the extra peak resident memory of the
training step. Where the reset is not possible the child falls back to
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` before and after the step (then transient peaks of
import/model building, ~400 MiB, hide steps smaller than that). RSS high-water marks are what the OS
actually had to provide (allocator overhead, oneDNN scratch buffers and temporaries included), the
number a memory budget must respect; the profiler's ``profile_memory`` only sees allocations made
through torch's allocator and needs a timeline reconstruction to yield a peak.

As a device-independent cross-check the child also sums the storages saved for backward
(``torch.autograd.graph.saved_tensors_hooks``, parameters excluded, each storage counted once):
``saved_tensors_mib`` is the activation memory autograd holds at the end of the forward pass.

These are CPU numbers. On a GPU the same step differs by the CUDA context, cuDNN workspaces and the
caching allocator; the activation part (``saved_tensors_mib``) carries over.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time

PAPER_CROP_ZYX = (40, 200, 200)


def _maxrss_mib() -> float:
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    scale = 1.0 / (1024.0 * 1024.0) if sys.platform == "darwin" else 1.0 / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _proc_status_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the process's RSS high-water mark to the current RSS (Linux); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    hwm, rss = _proc_status_mib("VmHWM"), _proc_status_mib("VmRSS")
    return hwm is not None and rss is not None and hwm <= rss + 1.0


def measure_in_current_process(spec: dict) -> dict:
    """Run one training step as described by ``spec`` in this process and report memory (MiB).

    Only meaningful in a fresh process (the RSS high-water mark is process-wide); use
    :func:`measure_training_step_memory`.
    """
    import numpy as np
    import torch

    from lesionnet.networks.tlt import build_tlt, count_parameters
    from lesionnet.registration.anatomy_maps import tlt_gaussian
    from lesionnet.training.losses import TLTLoss

    torch.set_num_threads(int(spec.get("num_threads", 2)))
    torch.manual_seed(0)
    model = build_tlt(spec.get("config")).train()
    b = int(spec["batch_size"])
    tshape, sshape = tuple(spec["template_shape"]), tuple(spec["search_shape"])
    radius, spacing_zyx = float(spec["radius_mm"]), tuple(float(v) for v in spec["spacing_zyx"])
    spacing_xyz = spacing_zyx[::-1]

    def centred_gaussian(shape_zyx):
        center_xyz = tuple((n - 1) / 2.0 for n in shape_zyx[::-1])
        g = tlt_gaussian(shape_zyx, center_xyz, radius, spacing_xyz)
        return torch.from_numpy(np.ascontiguousarray(g))[None, None].repeat(b, 1, 1, 1, 1)

    template = torch.randn(b, 1, *tshape)
    search = torch.randn(b, 1, *sshape)
    template_gaussian = centred_gaussian(tshape)
    search_prior = centred_gaussian(sshape)
    target = torch.tensor([(n - 1) / 2.0 for n in sshape]) + torch.tensor([2.0, 5.0, -4.0])
    target = target[None].repeat(b, 1)
    loss_fn = TLTLoss(stride=model.output_stride)

    param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        try:
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr not in param_ptrs:
                saved[ptr] = storage.nbytes()
        except (RuntimeError, NotImplementedError):
            pass        # a tensor without a plain storage (e.g. sparse): nothing to count, autograd keeps it as is
        return t

    gc.collect()
    if _reset_peak_rss():
        method = "VmHWM after resetting it via /proc/self/clear_refs, minus VmRSS before the step"
        baseline = _proc_status_mib("VmRSS")
    else:
        method = "ru_maxrss after the step minus ru_maxrss before it (fresh subprocess)"
        baseline = _maxrss_mib()
    t0 = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        outputs = model(template, template_gaussian, search, search_prior)
        losses = loss_fn(outputs, target, radius, spacing_zyx)
    losses["loss"].backward()
    wall = time.perf_counter() - t0
    peak = _proc_status_mib("VmHWM") if method.startswith("VmHWM") else _maxrss_mib()
    finite = bool(torch.isfinite(losses["loss"]).item())
    return {
        "parameters": count_parameters(model),
        "config": model.config.to_dict(),
        "template_shape": list(tshape), "search_shape": list(sshape), "batch_size": b,
        "radius_mm": radius, "spacing_zyx": list(spacing_zyx),
        "template_tokens_total": int(outputs["template_keep_mask"][0].numel()),
        "template_tokens_kept": [int(v) for v in outputs["template_token_counts"]],
        "search_tokens": int(outputs["logits"][0].numel()),
        "baseline_rss_mib": round(baseline, 1),
        "peak_rss_mib": round(peak, 1),
        "step_peak_mib": round(peak - baseline, 1),
        "saved_tensors_mib": round(sum(saved.values()) / 2 ** 20, 1),
        "wall_s": round(wall, 2),
        "loss_finite": finite,
        "num_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "method": method,
    }


def measure_training_step_memory(config=None, template_shape=PAPER_CROP_ZYX, search_shape=PAPER_CROP_ZYX,
                                 batch_size: int = 1, radius_mm: float = 10.0,
                                 spacing_zyx=(1.0, 1.0, 1.0), num_threads: int = 2,
                                 timeout_s: float = 3600.0) -> dict:
    """Peak CPU memory of one TLT training step (forward + loss + backward), measured in a subprocess.

    Args:
        config: :class:`~lesionnet.networks.tlt.TLTConfig`, its dict, or None (paper configuration).
        template_shape, search_shape: patch sizes ``(D, H, W)`` (multiples of 8). The paper's public
            code crops template and search with the same 40×200×200 box.
        batch_size: samples per step.
        radius_mm, spacing_zyx: the lesion (its TLT Gaussian is centred in both patches; SSS keeps the
            tokens within ``r · sqrt(-12 ln Tr)`` of it) and the voxel spacing (mm).
        num_threads: torch intra-op threads in the child.

    Returns:
        dict with ``parameters``, ``baseline_rss_mib``, ``peak_rss_mib``, ``step_peak_mib`` (peak minus
        baseline), ``saved_tensors_mib`` (activations held for backward), ``template_tokens_kept``,
        ``template_tokens_total``, ``search_tokens``, ``wall_s`` and the inputs.
    """
    if config is not None and not isinstance(config, dict):
        config = config.to_dict()
    spec = {
        "config": config, "template_shape": [int(v) for v in template_shape],
        "search_shape": [int(v) for v in search_shape], "batch_size": int(batch_size),
        "radius_mm": float(radius_mm), "spacing_zyx": [float(v) for v in spacing_zyx],
        "num_threads": int(num_threads),
    }
    env = dict(os.environ, OMP_NUM_THREADS=str(int(num_threads)))
    proc = subprocess.run([sys.executable, "-m", "lesionnet.networks.memory_measure", "--spec", json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement subprocess failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    """``python -m lesionnet.networks.memory_measure [--template D H W] [--search D H W] ...``: measure
    SSS on and off and print both figures and their ratio (JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--template", type=int, nargs=3, default=list(PAPER_CROP_ZYX))
    parser.add_argument("--search", type=int, nargs=3, default=list(PAPER_CROP_ZYX))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--radius_mm", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--attention_dropout", type=float, default=0.0,
                        help="> 0 stores the attention probabilities (the paper's attention), 0 fuses them")
    parser.add_argument("--checkpoint_extractor", action="store_true",
                        help="recompute the extractor's activations in backward (TLTConfig.checkpoint_extractor)")
    args = parser.parse_args(argv)
    if args.spec:
        print(json.dumps(measure_in_current_process(json.loads(args.spec))))
        return
    from lesionnet.networks.tlt import TLTConfig
    results = {}
    for name, use_sss in (("sss_on", True), ("sss_off", False)):
        cfg = TLTConfig(use_sss=use_sss, attention_dropout=args.attention_dropout,
                        checkpoint_extractor=args.checkpoint_extractor)
        results[name] = measure_training_step_memory(cfg, args.template, args.search, args.batch,
                                                     args.radius_mm, num_threads=args.threads)
    results["ratio_step_peak_off_over_on"] = round(
        results["sss_off"]["step_peak_mib"] / max(results["sss_on"]["step_peak_mib"], 1e-6), 2)
    results["ratio_saved_tensors_off_over_on"] = round(
        results["sss_off"]["saved_tensors_mib"] / max(results["sss_on"]["saved_tensors_mib"], 1e-6), 2)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
