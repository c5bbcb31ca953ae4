"""Measured peak memory of one TLT training step (forward + loss + backward), to check TLT's memory model
(:mod:`lesionnet.methods.tlt.memory`). The measurement itself (fresh process, RSS high-water mark,
saved tensors) is :mod:`lesionnet.training.peak_memory`.

``python -m lesionnet.methods.tlt.memory_measure [--template D H W] [--search D H W] ...`` measures SSS
on and off and prints both figures and their ratio (JSON).
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from lesionnet.training.peak_memory import measure_step, run_measurement

PAPER_CROP_ZYX = (40, 200, 200)


def measure_in_current_process(spec: dict) -> dict:
    """Run one TLT training step as described by ``spec`` in this process and report memory (MiB).

    Only meaningful in a fresh process (the RSS high-water mark is process-wide); use
    :func:`measure_training_step_memory`.
    """
    import torch

    from lesionnet.methods.tlt.loss import TLTLoss
    from lesionnet.methods.tlt.maps import lesion_gaussian
    from lesionnet.methods.tlt.network import build_tlt, count_parameters

    torch.set_num_threads(int(spec.get("num_threads", 2)))
    torch.manual_seed(0)
    model = build_tlt(spec.get("config")).train()
    b = int(spec["batch_size"])
    tshape, sshape = tuple(spec["template_shape"]), tuple(spec["search_shape"])
    radius, spacing_zyx = float(spec["radius_mm"]), tuple(float(v) for v in spec["spacing_zyx"])

    def centred_gaussian(shape_zyx):
        center_zyx = tuple((n - 1) / 2.0 for n in shape_zyx)
        g = lesion_gaussian(shape_zyx, center_zyx, radius, spacing_zyx)
        return torch.from_numpy(np.ascontiguousarray(g))[None, None].repeat(b, 1, 1, 1, 1)

    template = torch.randn(b, 1, *tshape)
    search = torch.randn(b, 1, *sshape)
    template_gaussian = centred_gaussian(tshape)
    search_prior = centred_gaussian(sshape)
    target = torch.tensor([(n - 1) / 2.0 for n in sshape]) + torch.tensor([2.0, 5.0, -4.0])
    target = target[None].repeat(b, 1)
    loss_fn = TLTLoss(stride=model.output_stride)

    def step():
        outputs = model(template, template_gaussian, search, search_prior)
        losses = loss_fn(outputs, target, radius, spacing_zyx)
        losses["loss"].backward()
        return {"tokens_total": int(outputs["template_keep_mask"][0].numel()),
                "tokens_kept": [int(v) for v in outputs["template_token_counts"]],
                "search_tokens": int(outputs["logits"][0].numel()),
                "loss_finite": bool(torch.isfinite(losses["loss"]).item())}

    measured = measure_step(step, model.parameters())
    result = measured.pop("result")
    return {
        "parameters": count_parameters(model),
        "config": model.config.to_dict(),
        "template_shape": list(tshape), "search_shape": list(sshape), "batch_size": b,
        "radius_mm": radius, "spacing_zyx": list(spacing_zyx),
        "template_tokens_total": result["tokens_total"],
        "template_tokens_kept": result["tokens_kept"],
        "search_tokens": result["search_tokens"],
        **measured,
        "loss_finite": result["loss_finite"],
        "num_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def measure_training_step_memory(config=None, template_shape=PAPER_CROP_ZYX, search_shape=PAPER_CROP_ZYX,
                                 batch_size: int = 1, radius_mm: float = 10.0,
                                 spacing_zyx=(1.0, 1.0, 1.0), num_threads: int = 2,
                                 timeout_s: float = 3600.0) -> dict:
    """Peak CPU memory of one TLT training step (forward + loss + backward), measured in a subprocess.

    Args:
        config: :class:`~lesionnet.methods.tlt.config.TLTConfig`, its dict, or None (paper configuration).
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
    return run_measurement("lesionnet.methods.tlt.memory_measure", spec, num_threads, timeout_s)


def main(argv=None) -> None:
    """``python -m lesionnet.methods.tlt.memory_measure [--template D H W] [--search D H W] ...``: measure
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
    from lesionnet.methods.tlt.config import TLTConfig
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
