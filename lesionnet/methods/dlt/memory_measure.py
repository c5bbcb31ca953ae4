"""Measured peak memory of one DLT training step (forward + loss + backward), to check DLT's memory model
(:mod:`lesionnet.methods.dlt.memory`). The measurement itself (fresh process, RSS high-water mark, saved
tensors) is :mod:`lesionnet.training.peak_memory`.

``python -m lesionnet.methods.dlt.memory_measure [--patch D H W] [--batch B] [--preset plan|small|tiny]``
prints the measurement and the model's estimate (JSON).
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from lesionnet.training.peak_memory import measure_step, run_measurement


def measure_in_current_process(spec: dict) -> dict:
    """One DLT training step as described by ``spec`` in this process; memory in MiB. Only meaningful in a
    fresh process (the RSS high-water mark is process-wide): use :func:`measure_training_step_memory`."""
    import torch

    from lesionnet.methods.dlt.loss import dlt_loss
    from lesionnet.methods.dlt.maps import lesion_gaussian
    from lesionnet.methods.dlt.network import build_dlt

    torch.set_num_threads(int(spec.get("num_threads", 2)))
    torch.manual_seed(0)
    model = build_dlt(spec.get("config")).train()
    b, shape = int(spec["batch_size"]), tuple(int(v) for v in spec["patch_shape"])
    spacing = (2.0, 2.0, 2.0)
    center = tuple((n - 1) / 2.0 for n in shape)
    gaussian = torch.from_numpy(np.ascontiguousarray(lesion_gaussian(shape, center, 8.0, spacing)))
    gaussian = gaussian[None, None].repeat(b, 1, 1, 1, 1)
    template, search = torch.randn(b, 1, *shape), torch.randn(b, 1, *shape)
    centers = torch.tensor(center)[None].repeat(b, 1)
    target = centers + torch.tensor([2.0, 5.0, -4.0])

    def step():
        outputs = model(template, gaussian, centers, search, gaussian)
        losses = dlt_loss(outputs, target, torch.full((b,), 8.0), spacing, model.output_stride)
        losses["loss"].backward()
        return bool(torch.isfinite(losses["loss"]).item())

    measured = measure_step(step, model.parameters())
    finite = measured.pop("result")
    return {"parameters": int(sum(p.numel() for p in model.parameters())), "config": model.config.to_dict(),
            "patch_shape": list(shape), "batch_size": b, **measured, "loss_finite": finite,
            "num_threads": torch.get_num_threads(), "torch": torch.__version__}


def measure_training_step_memory(config=None, patch_shape=(40, 40, 40), batch_size: int = 1, num_threads: int = 2,
                                 timeout_s: float = 3600.0) -> dict:
    """Peak CPU memory of one DLT training step (template and search of ``patch_shape``), measured in a
    subprocess: ``parameters``, ``step_peak_mib`` (peak RSS minus the baseline), ``saved_tensors_mib``
    (activations held for backward), ``wall_s`` and the inputs."""
    if config is not None and not isinstance(config, dict):
        config = config.to_dict()
    spec = {"config": config, "patch_shape": [int(v) for v in patch_shape], "batch_size": int(batch_size),
            "num_threads": int(num_threads)}
    return run_measurement("lesionnet.methods.dlt.memory_measure", spec, num_threads, timeout_s)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--patch", type=int, nargs=3, default=[40, 40, 40])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--preset", default="plan", choices=["plan", "small", "tiny"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.spec:
        print(json.dumps(measure_in_current_process(json.loads(args.spec))))
        return
    from lesionnet.methods.dlt import memory
    from lesionnet.methods.dlt.config import DLTConfig
    from lesionnet.methods.dlt.method import PRESETS

    config = DLTConfig.from_dict({**DLTConfig().to_dict(), **PRESETS[args.preset].get("network", {})})
    measured = measure_training_step_memory(config, args.patch, args.batch, args.threads)
    estimate = memory.training_step_memory(args.patch, args.patch, args.batch, **config.to_dict())
    print(json.dumps({"measured": measured, "estimate": estimate.to_dict(),
                      "step_ratio": estimate.step_peak_bytes / 2 ** 20 / measured["step_peak_mib"],
                      "saved_ratio": estimate.activation_bytes / 2 ** 20 / measured["saved_tensors_mib"]}, indent=1))


if __name__ == "__main__":
    main()
