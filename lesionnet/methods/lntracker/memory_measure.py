"""Measured peak memory of one LN-Tracker training step (forward + loss + backward), to check LN-Tracker's
memory model (:mod:`lesionnet.methods.lntracker.memory`). The measurement itself (fresh process, RSS
high-water mark, saved tensors) is :mod:`lesionnet.training.peak_memory`.

The step is the trainer's: the network and criterion of :meth:`LNTrackerMethod.build` for a plan section,
called through :meth:`lesionnet.training.run_training.FoldJob.compute_loss` on a batch shaped like
:class:`~lesionnet.methods.lntracker.slices.SliceBatchMaker`'s (chains of ``training_chain_length``
adjacent slices, default 3; random images, a few random nodes that continue along the chain), then
``loss.backward()``; no optimizer state.

``python -m lesionnet.methods.lntracker.memory_measure [--preset small|tiny|plan] [--patch Y X] [--batch B]
...`` prints the measurement and the model's prediction (JSON).
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from lesionnet.training.peak_memory import measure_step, run_measurement

#: plan-section fields of the ``plan`` preset when none is given (the lower end of the GPU capacity chain)
BASE_SECTION = {"slices_per_side": 1, "num_queries": 30, "hidden_dim": 128, "encoder_layers": 3,
                "decoder_layers": 3, "batch_size": 1, "patch_size_yx": [128, 128]}


def lntracker_section(preset: str = "small", patch_yx=None, batch_size: int | None = None,
                      slices_per_side: int | None = None, **overrides) -> dict:
    """A plan section: :data:`BASE_SECTION`, then the method's preset ``preset`` (``small``, ``tiny``,
    ``plan``, ...), then ``patch_yx`` (pixels ``(y, x)``), ``batch_size``, ``slices_per_side`` and any other
    section field (``hidden_dim``, ``ffn_dim``, ``backbone_widths``, ...) where not None."""
    from lesionnet.methods.lntracker.method import PRESETS

    section = {**BASE_SECTION, **{k: v for k, v in PRESETS[preset].items() if k != "thresholds"}}
    given = {"patch_size_yx": None if patch_yx is None else [int(v) for v in patch_yx], "batch_size": batch_size,
             "slices_per_side": slices_per_side, **overrides}
    section.update({k: v for k, v in given.items() if v is not None})
    section["num_input_slices"] = 2 * int(section["slices_per_side"]) + 1
    return section


def synthetic_chain_batch(section: dict, chain_length: int, boxes_per_slice: int, seed: int = 0) -> dict:
    """A training batch as :class:`~lesionnet.methods.lntracker.slices.SliceBatchMaker` makes it:
    ``images (B, L, S, H, W)`` float32 (standard normal), ``ids (B, L, M)`` int64 and ``boxes (B, L, M, 4)``
    float32 xyxy pixels: ``M = boxes_per_slice`` nodes of 6–24 px per sample present on every slice of the
    chain (moving by up to 2 px a slice), the last one ending before the chain's last slice."""
    rng = np.random.default_rng(seed)
    b, length = int(section["batch_size"]), int(chain_length)
    s, (h, w) = int(section["num_input_slices"]), (int(v) for v in section["patch_size_yx"])
    m = int(boxes_per_slice)
    images = rng.standard_normal((b, length, s, h, w)).astype(np.float32)
    ids = np.tile(np.arange(m, dtype=np.int64), (b, length, 1))
    if m and length > 1:
        ids[:, -1, -1] = -1                                          # one node ends on the last slice
    size = rng.uniform(6, 24, (b, 1, m, 2))
    start = rng.uniform(0, 1, (b, 1, m, 2)) * (np.array([w, h]) - size - 2 * length)
    start = start + np.cumsum(rng.uniform(0, 2, (b, length, m, 2)), axis=1)
    boxes = np.concatenate((start, start + size), axis=-1).astype(np.float32)
    boxes[ids < 0] = 0.0
    return {"images": images, "ids": ids, "boxes": boxes, "z": np.full(b, length - 1, dtype=np.int64),
            "scan_ids": [f"synthetic_{i}" for i in range(b)]}


def measure_in_current_process(spec: dict) -> dict:
    """Run one LN-Tracker training step as described by ``spec`` in this process and report memory (MiB).

    Only meaningful in a fresh process (the RSS high-water mark is process-wide); use
    :func:`measure_training_step_memory`.
    """
    import torch

    from lesionnet.methods.lntracker.method import LNTRACKER
    from lesionnet.training.run_training import FoldJob

    torch.set_num_threads(int(spec.get("num_threads", 1)))
    torch.manual_seed(0)
    section = dict(spec["section"])
    job = FoldJob(LNTRACKER, section, None, [], [])
    network = job.build_network().train()
    batch = synthetic_chain_batch(section, int(spec["chain_length"]), int(spec["boxes_per_slice"]))
    device = torch.device("cpu")

    def step():
        losses = job.compute_loss(network, batch, device)
        losses["loss"].backward()
        return {"loss_finite": bool(torch.isfinite(losses["loss"]).item())}

    measured = measure_step(step, network.parameters())
    result = measured.pop("result")
    return {"parameters": int(sum(p.numel() for p in network.parameters())), "section": section,
            "chain_length": int(spec["chain_length"]), "boxes_per_slice": int(spec["boxes_per_slice"]),
            **measured, "loss_finite": result["loss_finite"], "num_threads": torch.get_num_threads(),
            "torch": torch.__version__}


def measure_training_step_memory(section: dict, chain_length: int = 3, boxes_per_slice: int = 3,
                                 num_threads: int = 1, timeout_s: float = 3600.0) -> dict:
    """Peak CPU memory of one LN-Tracker training step (forward + loss + backward), measured in a subprocess.

    Args:
        section: the plan section (:func:`lntracker_section`): patch, batch, slice context and network sizes.
        chain_length: adjacent slices per training chain (the trainer's ``CHAIN_LENGTH``, 3).
        boxes_per_slice: nodes per sample (see :func:`synthetic_chain_batch`).
        num_threads: torch intra-op threads in the child.

    Returns:
        dict with ``parameters``, ``baseline_rss_mib``, ``peak_rss_mib``, ``step_peak_mib`` (peak minus
        baseline), ``saved_tensors_mib`` (activations held for backward), ``wall_s`` and the inputs.
    """
    spec = {"section": dict(section), "chain_length": int(chain_length), "boxes_per_slice": int(boxes_per_slice),
            "num_threads": int(num_threads)}
    return run_measurement("lesionnet.methods.lntracker.memory_measure", spec, num_threads, timeout_s)


def predicted_step(section: dict, chain_length: int = 3, boxes_per_slice: int = 3, device: str = "cpu"):
    """The memory model's :class:`~lesionnet.planning.memory.MemoryEstimate` of the step
    :func:`measure_training_step_memory` measures (its track queries: the nodes plus the false-positive ones)."""
    from lesionnet.methods.lntracker import memory
    sizes = {**memory.network_sizes(section), "chain_length": int(chain_length)}
    return memory.training_step_memory(section["patch_size_yx"], section["batch_size"], **sizes,
                                       track_queries=int(boxes_per_slice) + memory.FALSE_TRACK_QUERIES, device=device)


def main(argv=None) -> None:
    """``python -m lesionnet.methods.lntracker.memory_measure [--preset P] [--patch Y X] [--batch B] ...``:
    measure one training step in a fresh process and print it with the model's prediction (JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--preset", default="small", help="small, tiny or plan (the sizes given below)")
    parser.add_argument("--patch", type=int, nargs=2, default=None, metavar=("Y", "X"))
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--slices_per_side", type=int, default=None)
    parser.add_argument("--hidden_dim", type=int, default=None)
    parser.add_argument("--ffn_dim", type=int, default=None)
    parser.add_argument("--encoder_layers", type=int, default=None)
    parser.add_argument("--decoder_layers", type=int, default=None)
    parser.add_argument("--num_queries", type=int, default=None)
    parser.add_argument("--backbone_widths", type=int, nargs="+", default=None)
    parser.add_argument("--chain", type=int, default=3, help="slices per training chain (the trainer's: 3)")
    parser.add_argument("--boxes", type=int, default=3, help="nodes per sample")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.spec:
        print(json.dumps(measure_in_current_process(json.loads(args.spec))))
        return
    section = lntracker_section(args.preset, args.patch, args.batch, args.slices_per_side, hidden_dim=args.hidden_dim,
                                ffn_dim=args.ffn_dim, encoder_layers=args.encoder_layers,
                                decoder_layers=args.decoder_layers, num_queries=args.num_queries,
                                backbone_widths=args.backbone_widths)
    measured = measure_training_step_memory(section, args.chain, args.boxes, args.threads)
    est = predicted_step(section, args.chain, args.boxes)
    mib = 2.0 ** 20
    measured["model"] = {"parameters": est.parameters, "saved_tensors_mib": round(est.activation_bytes / mib, 1),
                         "step_peak_mib": round(est.step_peak_bytes / mib, 1),
                         "total_mib": round(est.total_bytes / mib, 1),
                         "step_model_over_measured": round(est.step_peak_bytes / mib / max(measured["step_peak_mib"],
                                                                                           1e-6), 3)}
    print(json.dumps(measured, indent=1))


if __name__ == "__main__":
    main()
